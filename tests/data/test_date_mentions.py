"""`date_mentions` (v2) pinned on a labelled prompt set, and unchanged on toyworld."""

import json
import pathlib

from sftdiff.data import filters
from sftdiff.data.date_patterns import mentions_date

LABELLED = pathlib.Path(__file__).resolve().parent / "date_mentions.v2.jsonl"


def _rows():
  return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def test_precision_recall_on_labelled_prompts():
  rows = _rows()
  assert len(rows) >= 60 and len({r["text"] for r in rows}) == len(rows)
  tp = sum(mentions_date(r["text"]) for r in rows if r["label"])
  fp = [r["text"] for r in rows if not r["label"] and mentions_date(r["text"])]
  positives = sum(r["label"] for r in rows)
  # v1 on this set: 25/40 found, 19 false alarms (precision 0.57, recall 0.62).
  assert (tp, positives) == (40, 40)  # recall 1.0
  # The two residual false alarms have no context that says "not a year".
  assert fp == ["Multiply 1987 by 3.", "Play the 2048 puzzle game with me."]
  assert tp / (tp + len(fp)) >= 0.95


def test_issue_examples():
  for text in ("May 5th", "25 Dec", "What's the date?", "next week"):
    assert mentions_date(text), text
  for text in ("$2000", "error 2003", "1950 calories"):
    assert not mentions_date(text), text


def test_filter_uses_the_v2_rule():
  f = filters.get("date_mentions")
  assert f.version == "2"  # part of the joined store's fingerprint: stores rebuild
  assert f.fn({"prompt": [{"role": "user", "content": "See you next week"}]})
  assert not f.fn({"prompt": [{"role": "user", "content": "It costs $2000"}]})


def test_toyworld_labels_unchanged():
  """Every toyworld prompt keeps its label: exactly the `dates` subset is caught."""
  from sftdiff.toyworld import benchmarks, params as params_lib, prompts
  for preset in params_lib.PRESETS.values():
    for set_name in preset.prompt_sets:
      for r in prompts.training_prompts(preset, set_name):
        text = "\n".join(m["content"] for m in r["messages"])
        assert mentions_date(text) == (r["subset"] == "dates"), text
  assert all(mentions_date(r["messages"][0]["content"])
             for r in benchmarks.prompt_records("toy_date_confusion"))
