"""Joined store: join, coverage policies, fingerprint reuse vs rebuild, reads."""

import json
import os

import pytest

from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import joined
from sftdiff.data import sources


@pytest.fixture()
def example(tmp_path):
  paths = example_data.write_example_rollouts(str(tmp_path / "data"))
  prompts = sources.SourceSpec("prompts", "jsonl", paths["prompts"], role="prompts")
  srcs = [sources.SourceSpec(n, "jsonl", paths[n]) for n in ("alt", "teacher")]
  return paths, prompts, srcs, str(tmp_path / "store")


def _drop_lines(path, ids):
  with open(path) as f:
    rows = [json.loads(l) for l in f]
  with open(path, "w") as f:
    for r in rows:
      if r.get("id", r.get("prompt_id")) not in ids:
        f.write(json.dumps(r) + "\n")


def test_build_and_random_access(example):
  _, prompts, srcs, store_dir = example
  store = joined.build_store(prompts, srcs, store_dir)
  assert len(store) == 12 and store.sources == ["alt", "teacher"]
  assert store.subsets == ["chat", "code", "safety"]
  rec = store[7]
  assert rec["prompt_id"] == "p08" and rec["subset"] == "code"
  assert rec["prompt"][-1] == {"role": "user",
                               "content": example_data.PROMPTS["p08"][1]}
  assert rec["completions"]["teacher"][0]["content"] == example_data.teacher_reply("p08")
  assert [r["prompt_id"] for r in store.read([11, 0])] == ["p12", "p01"]
  assert [r["prompt_id"] for r in store] == list(example_data.PROMPTS)
  with pytest.raises(IndexError, match="store index 12 out of range"):
    store[12]
  cols = store.selection_columns()
  assert list(cols["prompt_id"]) == list(example_data.PROMPTS)
  for name, expected in example_data.EXPECTED_LABELS.items():
    assert set(cols["prompt_id"][filters.mask(name, cols, store.sources)]) == expected
  assert (cols["id_hash"] == joined.id_hash(list(example_data.PROMPTS))).all()
  assert store.meta["prompt_id_provenance"]["prompt_set"] == {"id_field": 12}


def test_fingerprint_reuse_and_rebuild(example, monkeypatch):
  paths, prompts, srcs, store_dir = example
  first = joined.build_store(prompts, srcs, store_dir)

  def no_reads(*a, **k):
    raise AssertionError("a cached store must not read its inputs")
  monkeypatch.setattr(sources, "read_records", no_reads)
  monkeypatch.setattr(sources, "stream_records", no_reads)
  again = joined.build_store(prompts, srcs, store_dir)
  assert again.path == first.path
  monkeypatch.undo()

  # A changed input file rebuilds (new fingerprint, new directory).
  _drop_lines(paths["teacher"], {"p05"})
  with open(paths["teacher"], "a") as f:
    f.write(json.dumps({"prompt_id": "p05", "completion": "Changed."}) + "\n")
  changed = joined.build_store(prompts, srcs, store_dir)
  assert changed.path != first.path
  assert changed[4]["completions"]["teacher"][0]["content"] == "Changed."

  # A new filter (or a new version of one) rebuilds too.
  filters.register_filter("has_question_mark", version="1")(
      lambda r: "?" in r["prompt"][-1]["content"])
  try:
    labelled = joined.build_store(prompts, srcs, store_dir)
    assert labelled.path != changed.path
    assert "has_question_mark" in labelled.filters
    mask = filters.mask("has_question_mark", labelled.selection_columns(), [])
    assert set(labelled.selection_columns()["prompt_id"][mask]) == {
        "p01", "p05", "p10", "p11"}
  finally:
    filters.unregister("has_question_mark")
  assert sorted(os.listdir(store_dir)) == sorted(
      os.path.basename(s.path) for s in (first, changed, labelled))


def test_missing_fail_reports_coverage(example):
  paths, prompts, srcs, store_dir = example
  _drop_lines(paths["teacher"], {"p03", "p09"})
  with pytest.raises(joined.CoverageError,
                     match=r"teacher: 2 of 12 prompts lack a completion, e.g. "
                     r"\['p03', 'p09'\]"):
    joined.build_store(prompts, srcs, store_dir)
  assert not os.path.exists(store_dir) or not os.listdir(store_dir)


def test_missing_drop_prompt_counts(example):
  paths, prompts, srcs, store_dir = example
  _drop_lines(paths["teacher"], {"p03", "p09"})
  _drop_lines(paths["alt"], {"p09", "p10"})
  store = joined.build_store(prompts, srcs, store_dir, missing="drop_prompt")
  assert len(store) == 9
  assert "p03" not in set(store.columns(["prompt_id"])["prompt_id"])
  cov = store.meta["coverage"]
  assert cov["dropped_prompts"] == 3
  assert cov["lacking"] == {"alt": 2, "teacher": 2}


def test_missing_fallback_counts(example):
  paths, prompts, srcs, store_dir = example
  _drop_lines(paths["teacher"], {"p03", "p09"})
  store = joined.build_store(prompts, srcs, store_dir, missing="fallback:alt")
  assert len(store) == 12
  assert store.meta["coverage"]["fallback_filled"] == {"alt": 0, "teacher": 2}
  assert store[2]["completions"]["teacher"] == store[2]["completions"]["alt"]
  with pytest.raises(ValueError, match="fallback source 'gpt' is not one"):
    joined.build_store(prompts, srcs, store_dir, missing="fallback:gpt")
  with pytest.raises(ValueError, match="missing='maybe'"):
    joined.build_store(prompts, srcs, store_dir, missing="maybe")


def test_skips_and_unmatched_counted_in_meta(example):
  paths, prompts, srcs, store_dir = example
  with open(paths["teacher"], "a") as f:
    f.write("{not json\n")
    f.write(json.dumps({"prompt_id": "p99", "completion": "extra"}) + "\n")
  with pytest.raises(Exception, match=r"teacher.jsonl:13: malformed JSON"):
    joined.build_store(prompts, srcs, store_dir)
  store = joined.build_store(prompts, srcs, store_dir, on_error="skip")
  reports = store.meta["read_reports"]
  assert reports["teacher"]["skipped"] == {"malformed_json": 1}
  assert store.meta["coverage"]["unmatched_completions"] == {"alt": 0, "teacher": 1}
  assert "teacher: skipped 1 rows" in joined.coverage_summary(store)


def test_labels_file_filter_in_store(example):
  paths, prompts, srcs, store_dir = example
  labels = os.path.join(os.path.dirname(paths["prompts"]), "labels.jsonl")
  with open(labels, "w") as f:
    for pid in example_data.PROMPTS:
      f.write(json.dumps({"prompt_id": pid, "label": pid in ("p01", "p12")}) + "\n")
    f.write(json.dumps({"prompt_id": "zzz", "label": True}) + "\n")
  filters.register_labels_file("hand_labels", labels, unknown="ignore")
  try:
    store = joined.build_store(prompts, srcs, store_dir)
    cols = store.selection_columns()
    assert set(cols["prompt_id"][filters.mask("hand_labels", cols, [])]) == {"p01", "p12"}
    assert store.meta["filter_checks"]["hand_labels"] == {"unknown_ids": 1,
                                                          "unlabeled": 0}
  finally:
    filters.unregister("hand_labels")
