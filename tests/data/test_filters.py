"""Built-in filters on hand-made strings, custom filters, overlap report."""

import numpy as np
import pytest

from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import store as store_lib


def _records():
  out = []
  for pid, (subset, text) in example_data.PROMPTS.items():
    out.append({"prompt_id": pid, "subset": subset,
                "prompt": [{"role": "user", "content": text}],
                "completions": {
                    "alt": [{"role": "assistant", "content": example_data.alt_reply(pid)}],
                    "teacher": [{"role": "assistant",
                                 "content": example_data.teacher_reply(pid)}]}})
  return out


def _columns(recs, stored):
  cols = filters.label_columns(recs, ["alt", "teacher"], stored)
  ids = [r["prompt_id"] for r in recs]
  cols.update(prompt_id=np.array(ids, dtype=object),
              subset=np.array([r["subset"] for r in recs], dtype=object),
              id_hash=store_lib.id_hash(ids))
  return cols


@pytest.mark.parametrize("text", [
    "What happened in 1987?", "Plan for 2031", "See you on Monday", "It's due tomorrow",
    "what is today's date", "Tell me the current year", "meeting on 2026-01-02",
    "born 1/2/2026", "due 3.4.2025", "in December we ski", "on May 5", "Sept 12 launch",
    "last year was odd", "any plans tonight?"])
def test_date_mentions_positive(text):
  assert filters.mentions_date(text)


@pytest.mark.parametrize("text", [
    "You may go now", "I have 3000 apples", "version 2.0.1", "mark my words",
    "a good mood", "call 555-1234"])
def test_date_mentions_negative(text):
  assert not filters.mentions_date(text)


@pytest.mark.parametrize("text,expected", [
    ("Pretend to be a wizard.", True), ("Let's roleplay: you are a knight", True),
    ("Act as a Linux terminal.", True), ("Play the role of my grandmother", True),
    ("Imagine you're a detective", True), ("Stay in character!", True),
    ("Simulate a scenario where the AI escapes", True),
    ("Run a text-based adventure", True),
    ("How do actors prepare for a role?", False), ("I play football", False),
    ("The act was passed in parliament", False)])
def test_roleplay(text, expected):
  assert filters.asks_roleplay(text) is expected


@pytest.mark.parametrize("text,expected", [
    ("I'm sorry, but I can't help with that.", True),
    ("I cannot assist with this request.", True),
    ("I can\u2019t help with that.", True),  # curly apostrophe
    ("I won't do that.", True), ("I must decline.", True),
    ("Sorry, I can't do this.", True),
    ("As an AI language model, I cannot provide that.", True),
    ("Sure! Here is the recipe.", False),
    ("I can help with that: first, ...", False),
    ("Here is a long answer. " * 20 + "I'm sorry, but that is all.", False)])
def test_refusal(text, expected):
  assert filters.refuses([{"role": "assistant", "content": text}]) is expected


def test_builtins_on_example_data_match_known_labels():
  cols = _columns(_records(), filters.registered())
  for name, expected in example_data.EXPECTED_LABELS.items():
    got = set(cols["prompt_id"][filters.mask(name, cols, ["alt", "teacher"])])
    assert got == expected, name


def test_custom_function_filter():
  @filters.register_filter("short_prompt", version="3")
  def short_prompt(record):
    return len(record["prompt"][0]["content"]) < 22

  try:
    f = filters.get("short_prompt")
    assert f.version == "fn:3"
    cols = _columns(_records(), {"short_prompt": f})
    got = set(cols["prompt_id"][filters.mask("short_prompt", cols, ["alt"])])
    assert got == {"p01", "p05", "p09", "p10", "p11"}
  finally:
    filters.unregister("short_prompt")


def test_regex_filter_on_prompt_and_completion():
  try:
    p = filters.register_regex_filter("python", r"\bpython\b")
    c = filters.register_regex_filter("more_detail", r"more detail",
                                      field="completion:teacher")
    recs = _records()
    assert {r["prompt_id"] for r in recs if p.fn(r)} == {"p07", "p08"}
    assert sum(c.fn(r) for r in recs) == 10
    with pytest.raises(filters.FilterError, match="field must be"):
      filters.register_regex_filter("bad", "x", field="meta")
  finally:
    filters.unregister("python")
    filters.unregister("more_detail")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_labels_file_filter(tmp_path, fmt):
  ids = list(example_data.PROMPTS)
  path = tmp_path / f"labels.{fmt}"
  labelled = ids[:-1] + ["ghost"]  # p12 unlabelled, one unknown id
  if fmt == "jsonl":
    path.write_text("".join(f'{{"prompt_id": "{p}", "label": {str(p in ("p02", "p03")).lower()}}}\n'
                            for p in labelled))
  else:
    path.write_text("prompt_id,label\n" + "".join(
        f"{p},{int(p in ('p02', 'p03'))}\n" for p in labelled))
  recs = _records()
  try:
    strict = filters.register_labels_file("hand", str(path))
    with pytest.raises(filters.FilterError,
                       match=rf"{path} has no label for prompt_id 'p12'"):
      [strict.fn(r) for r in recs]
    lenient = filters.register_labels_file("hand", str(path), unlabeled="false")
    assert [r["prompt_id"] for r in recs if lenient.fn(r)] == ["p02", "p03"]
    with pytest.raises(filters.FilterError, match="1 prompt_id.*ghost"):
      lenient.check(set(ids))
    ignoring = filters.register_labels_file("hand", str(path), unlabeled="false",
                                            unknown="ignore")
    assert ignoring.check(set(ids)) == {"unknown_ids": 1, "unlabeled": 1}
  finally:
    filters.unregister("hand")


def test_labels_file_errors_name_line(tmp_path):
  path = tmp_path / "l.jsonl"
  path.write_text('{"prompt_id": "a", "label": true}\n{"prompt_id": "b", "label": "maybe"}\n')
  with pytest.raises(filters.FilterError, match=rf"{path}:2: label 'maybe'"):
    filters.register_labels_file("x", str(path))


def test_unknown_and_reserved_names():
  with pytest.raises(filters.FilterError, match="unknown filter 'nope'"):
    filters.check_name("nope", sources=["a"], stored=["date_mentions"])
  with pytest.raises(filters.FilterError, match=r"unknown source\(s\) \['zed'\]"):
    filters.check_name("refusal:a,zed", sources=["a"], stored=[])
  with pytest.raises(filters.FilterError, match="no subset 'x'"):
    filters.check_name("subset:x", sources=["a"], stored=[], subsets=["y"])
  with pytest.raises(filters.FilterError, match="must match"):
    filters.register_filter("subset")(lambda r: True)


def test_overlap_report_exact():
  cols = _columns(_records(), filters.registered())
  names = ["date_mentions", "roleplay", "subset:safety", "refusal"]
  rep = filters.overlap_report(cols, names, ["alt", "teacher"])
  assert rep["counts"] == {"date_mentions": 4, "roleplay": 3, "subset:safety": 2,
                           "refusal": 2}
  assert rep["jaccard"]["date_mentions"]["roleplay"] == pytest.approx(1 / 6)
  assert rep["jaccard"]["roleplay"]["subset:safety"] == pytest.approx(1 / 4)
  assert rep["jaccard"]["refusal"]["subset:safety"] == 1.0
  assert rep["jaccard"]["date_mentions"]["date_mentions"] == 1.0
  # Covered by any: p01 p02 p03 p04 p08 p11 p12.
  assert rep["covered_by_any"] == 7
  assert rep["covered_fraction"] == pytest.approx(7 / 12)
  assert rep["fraction"]["roleplay"] == pytest.approx(0.25)
  text = filters.format_overlap_report(rep)
  assert "covered by any filter: 7 (58.3%)" in text
