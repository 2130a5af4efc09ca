"""The joined-store build (`sftdiff.data.store_build`): pinned output, coverage
policies, fingerprint reuse vs rebuild, duplicates, chunking."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import store as store_lib
from sftdiff.data import store_build
from sftdiff.data import manifest
from sftdiff.data import records
from sftdiff.data import sources

SYSTEM = {"role": "system", "content": "Be brief."}


def _user(text):
  return {"role": "user", "content": text}


def _asst(text):
  return {"role": "assistant", "content": text}


PROMPT_ROWS = [
    {"id": "a1", "subset": "chat", "extra": 1, "messages": [
        SYSTEM, _user("What happened in 1999? \u00fcn\u00efc\u00f6d\u00e9 \u2713")]},
    {"id": "a2", "subset": "code", "prompt": "Write a loop.\nIn Python."},
    {"id": "a3", "subset": "chat", "messages": [
        _user("Hi"), _asst("Hello!"), _user("Tell me a story about March.")]},
    {"id": "a4", "subset": "safety", "prompt": "Pretend to be a pirate."},
    {"id": "a5", "prompt": 'About "quotes" and \\ backslashes'},
    {"id": "a6", "subset": "code", "prompt": "Explain closures."},
]
# alt lacks a3 and has an unmatched b9; a6 has a tool call.
ALT_ROWS = [
    {"id": pid, "messages": [_user(f"q {pid}"), _asst(f"Alt answer to {pid}.")]}
    for pid in ("a1", "a2", "a4", "a5")
] + [
    {"id": "a6", "messages": [_user("q a6"), _asst("Let me check."),
                              {"role": "tool", "content": "42"},
                              _asst("It is 42 \u2014 done.")]},
    {"id": "b9", "messages": [_user("q b9"), _asst("Unmatched.")]},
]
# teacher lacks a2 and a5, has a malformed line 4, a duplicate of a4 on line 6
# (first on line 3) and an unmatched zz.
TEACHER_LINES = [
    {"prompt_id": "a1", "completion": "It is 2026.", "model": "t"},
    {"prompt_id": "a3", "completion": "Once upon a time."},
    {"prompt_id": "a4", "completion": "I'm sorry, but I can't help with that."},
    "{bad json",
    {"prompt_id": "a6", "completion": [_asst("Closures capture variables.")]},
    {"prompt_id": "a4", "completion": "Arr!"},
    {"prompt_id": "zz", "completion": "Nobody asked."},
]

# What the (pre-streaming) in-memory build wrote for these inputs with
# missing='fallback:alt', on_error='skip': a3 is dropped (alt lacks it and alt
# is the fallback), teacher's a2 and a5 are filled from alt.
EXPECTED_RECORDS = [
    b'{"prompt_id": "a1", "prompt": [{"role": "system", "content": "Be brief."}, '
    b'{"role": "user", "content": "What happened in 1999? '
    b'\xc3\xbcn\xc3\xafc\xc3\xb6d\xc3\xa9 \xe2\x9c\x93"}], "subset": "chat", '
    b'"completions": {"alt": [{"role": "assistant", "content": "Alt answer to a1."}], '
    b'"teacher": [{"role": "assistant", "content": "It is 2026."}]}}',
    b'{"prompt_id": "a2", "prompt": [{"role": "user", "content": "Write a loop.\\nIn '
    b'Python."}], "subset": "code", "completions": {"alt": [{"role": "assistant", '
    b'"content": "Alt answer to a2."}], "teacher": [{"role": "assistant", "content": '
    b'"Alt answer to a2."}]}}',
    b'{"prompt_id": "a4", "prompt": [{"role": "user", "content": "Pretend to be a '
    b'pirate."}], "subset": "safety", "completions": {"alt": [{"role": "assistant", '
    b'"content": "Alt answer to a4."}], "teacher": [{"role": "assistant", "content": '
    b'"I\'m sorry, but I can\'t help with that."}]}}',
    b'{"prompt_id": "a5", "prompt": [{"role": "user", "content": "About \\"quotes\\" '
    b'and \\\\ backslashes"}], "subset": "default", "completions": {"alt": [{"role": '
    b'"assistant", "content": "Alt answer to a5."}], "teacher": [{"role": '
    b'"assistant", "content": "Alt answer to a5."}]}}',
    b'{"prompt_id": "a6", "prompt": [{"role": "user", "content": "Explain '
    b'closures."}], "subset": "code", "completions": {"alt": [{"role": "assistant", '
    b'"content": "Let me check."}, {"role": "tool", "content": "42"}, {"role": '
    b'"assistant", "content": "It is 42 \xe2\x80\x94 done."}], "teacher": [{"role": '
    b'"assistant", "content": "Closures capture variables."}]}}',
]
EXPECTED_INDEX = {
    "prompt_id": ["a1", "a2", "a4", "a5", "a6"],
    "subset": ["chat", "code", "safety", "default", "code"],
    "id_hash": [2012317400386921887, 11688721041116941998, 11183023621018753236,
                12569186340189942969, 11361688285394785830],
    "label:date_mentions": [True, False, False, False, False],
    "label:roleplay": [False, False, True, False, False],
    "refusal@alt": [False] * 5,
    "refusal@teacher": [False, False, True, False, False],
    "fallback@alt": [False] * 5,
    "fallback@teacher": [False, True, False, True, False],
}
EXPECTED_COVERAGE = {
    "policy": "fallback:alt", "prompts_in": 6,
    "lacking": {"alt": 1, "teacher": 2},
    "unmatched_completions": {"alt": 1, "teacher": 1},
    "dropped_prompts": 1, "fallback_filled": {"alt": 0, "teacher": 2},
}


def _write(directory, name, rows):
  path = os.path.join(directory, f"{name}.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    for r in rows:
      f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
  return path


@pytest.fixture()
def inputs(tmp_path):
  d = str(tmp_path / "data")
  os.makedirs(d)
  prompts = sources.SourceSpec("prompts", "jsonl", _write(d, "prompts", PROMPT_ROWS),
                               role="prompts")
  srcs = [sources.SourceSpec("alt", "jsonl", _write(d, "alt", ALT_ROWS)),
          sources.SourceSpec("teacher", "jsonl", _write(d, "teacher", TEACHER_LINES))]
  return prompts, srcs, str(tmp_path / "store")


def _raw_records(store):
  from array_record.python import array_record_module
  reader = array_record_module.ArrayRecordReader(
      os.path.join(store.path, store_lib.RECORDS_FILE))
  return reader.read(0, reader.num_records())


def test_streamed_build_pins_records_index_and_meta(inputs):
  prompts, srcs, store_dir = inputs
  store = store_build.build_store(prompts, srcs, store_dir, missing="fallback:alt",
                             on_error="skip")
  assert _raw_records(store) == EXPECTED_RECORDS
  cols = store.columns()
  assert list(cols) == list(EXPECTED_INDEX)
  assert {k: v.tolist() for k, v in cols.items()} == EXPECTED_INDEX
  assert cols["id_hash"].dtype == np.uint64
  assert cols["label:roleplay"].dtype == bool
  m = store.meta
  assert m["coverage"] == EXPECTED_COVERAGE
  assert m["num_prompts"] == 5
  assert m["subsets"] == ["chat", "code", "default", "safety"]
  assert m["subset_counts"] == {"chat": 1, "code": 2, "default": 1, "safety": 1}
  teacher = m["read_reports"]["teacher"]
  assert teacher["records"] == 5
  assert teacher["skipped"] == {"duplicate_prompt_id": 1, "malformed_json": 1}
  assert teacher["skip_examples"][1].endswith(
      f"teacher.jsonl:6: duplicate prompt_id 'a4' in 'teacher' (first seen at "
      f"{srcs[1].location}:3)")
  assert m["read_reports"]["prompt_set"]["records"] == 6
  assert m["prompt_id_provenance"] == {
      "prompt_set": {"id_field": 6},
      "sources": {"alt": {"id_field": 6}, "teacher": {"id_field": 5}}}
  # The fingerprint is the same function of the inputs as before.
  fp, _ = store_build.fingerprint(prompts, srcs, missing="fallback:alt", on_error="skip",
                             filters=filters.registered())
  assert m["fingerprint"] == fp and os.path.basename(store.path) == fp
  # Only the store's three files remain: the SQLite spill is gone.
  assert sorted(os.listdir(store.path)) == sorted(
      [store_lib.INDEX_FILE, store_lib.META_FILE, store_lib.RECORDS_FILE])
  assert os.listdir(store_dir) == [fp]


def test_duplicate_fails_naming_both_locations(inputs):
  prompts, srcs, store_dir = inputs
  with open(srcs[1].location) as f:
    lines = f.read().splitlines()
  with open(srcs[1].location, "w") as f:  # Without the malformed line 4.
    f.write("\n".join(lines[:3] + lines[4:]) + "\n")
  path = srcs[1].location
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:5: duplicate prompt_id 'a4' in 'teacher' "
                     rf"\(first seen at {path}:3\)"):
    store_build.build_store(prompts, srcs, store_dir, missing="fallback:alt")
  assert os.listdir(store_dir) == []  # The half-built store (and spill) is gone.


def test_missing_fail_lists_first_lacking_ids_in_prompt_order(inputs):
  prompts, srcs, store_dir = inputs
  with pytest.raises(store_build.CoverageError) as e:
    store_build.build_store(prompts, srcs, store_dir, on_error="skip")
  assert "alt: 1 of 6 prompts lack a completion, e.g. ['a3']" in str(e.value)
  assert "teacher: 2 of 6 prompts lack a completion, e.g. ['a2', 'a5']" in str(e.value)


@pytest.fixture()
def small_chunks(monkeypatch):
  """Chunk sizes small enough that a few hundred rows cross every boundary."""
  monkeypatch.setattr(sources, "_CHUNK", 16)
  monkeypatch.setattr(store_build, "_LABEL_CHUNK", 32)
  monkeypatch.setattr(store_build, "_INDEX_ROW_GROUP", 64)


def _many(tmp_path, n):
  d = str(tmp_path / "many")
  os.makedirs(d, exist_ok=True)
  ids = [f"m{i:04d}" for i in range(n)]
  prompts = [{"id": pid, "subset": f"s{i % 3}",
              "prompt": f"Question {i}" + (" about today?" if i % 5 == 0 else "?")}
             for i, pid in enumerate(ids)]
  # alt lacks every 7th prompt; teacher lists its prompts in reverse order and
  # refuses every 11th.
  alt = [{"prompt_id": pid, "completion": f"alt {pid}"}
         for i, pid in enumerate(ids) if i % 7 != 3]
  teacher = [{"prompt_id": pid, "completion": "I won't." if i % 11 == 0
              else f"teacher {pid}"} for i, pid in reversed(list(enumerate(ids)))]
  return (ids, prompts,
          sources.SourceSpec("prompts", "jsonl", _write(d, "prompts", prompts),
                             role="prompts"),
          [sources.SourceSpec("alt", "jsonl", _write(d, "alt", alt)),
           sources.SourceSpec("teacher", "jsonl", _write(d, "teacher", teacher))])


def test_build_across_chunks_and_row_groups(tmp_path, small_chunks):
  ids, prompts, pspec, srcs = _many(tmp_path, 300)
  store = store_build.build_store(pspec, srcs, str(tmp_path / "store"),
                             missing="drop_prompt")
  kept = [i for i in range(300) if i % 7 != 3]
  expected = []
  for i in kept:
    pid = ids[i]
    teacher = "I won't." if i % 11 == 0 else f"teacher {pid}"
    expected.append(json.dumps({
        "prompt_id": pid, "prompt": [_user(prompts[i]["prompt"])],
        "subset": f"s{i % 3}",
        "completions": {"alt": [_asst(f"alt {pid}")],
                        "teacher": [_asst(teacher)]}}).encode())
  assert _raw_records(store) == expected
  index = pq.ParquetFile(os.path.join(store.path, store_lib.INDEX_FILE))
  assert index.metadata.num_row_groups == 5  # 257 rows, 64 per group
  cols = store.columns()
  assert cols["prompt_id"].tolist() == [ids[i] for i in kept]
  assert cols["label:date_mentions"].tolist() == [i % 5 == 0 for i in kept]
  assert cols["refusal@teacher"].tolist() == [i % 11 == 0 for i in kept]
  assert not cols["refusal@alt"].any()
  assert (cols["id_hash"] == store_lib.id_hash([ids[i] for i in kept])).all()
  assert store.meta["coverage"]["lacking"] == {"alt": 43, "teacher": 0}
  assert store.meta["coverage"]["dropped_prompts"] == 43
  assert store.meta["subset_counts"] == {
      f"s{k}": sum(1 for i in kept if i % 3 == k) for k in range(3)}


def test_build_is_independent_of_chunk_sizes(tmp_path, monkeypatch):
  _, _, pspec, srcs = _many(tmp_path, 120)
  big = store_build.build_store(pspec, srcs, str(tmp_path / "big"), missing="drop_prompt")
  monkeypatch.setattr(sources, "_CHUNK", 8)
  monkeypatch.setattr(store_build, "_LABEL_CHUNK", 16)
  monkeypatch.setattr(store_build, "_INDEX_ROW_GROUP", 32)
  small = store_build.build_store(pspec, srcs, str(tmp_path / "small"),
                             missing="drop_prompt")
  assert _raw_records(small) == _raw_records(big)
  assert small.meta == big.meta
  for k, v in big.columns().items():
    assert small.columns()[k].tolist() == v.tolist()


def test_duplicates_across_dedupe_batches(tmp_path, small_chunks):
  rows = [{"prompt_id": f"d{i}", "completion": "x"} for i in range(40)]
  rows.insert(30, {"prompt_id": "d2", "completion": "again"})  # batch 5 vs batch 1
  rows.insert(33, {"prompt_id": "d31", "completion": "again"})  # same batch
  rows.insert(36, "{oops")
  path = _write(str(tmp_path), "src", rows)
  spec = sources.SourceSpec("src", "jsonl", path)
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:31: duplicate prompt_id 'd2' in 'src' "
                     rf"\(first seen at {path}:3\)"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert [r["prompt_id"] for r in recs] == [f"d{i}" for i in range(40)]
  assert report.skipped == {"duplicate_prompt_id": 2, "malformed_json": 1}
  assert report.examples[1].startswith(
      f"{path}:34: duplicate prompt_id 'd31' in 'src' (first seen at {path}:33)")


def test_stream_report_only_once_exhausted(tmp_path, small_chunks):
  _, _, pspec, _ = _many(tmp_path, 50)
  stream = sources.stream_records(pspec, decode=False)
  first = next(stream)
  assert first["prompt_id"] == "m0000" and isinstance(first["messages"], str)
  with pytest.raises(RuntimeError, match="only once the stream is exhausted"):
    stream.report
  assert sum(1 for _ in stream) == 49
  assert stream.report.records == 50


def test_error_deep_in_a_stream_names_its_line(tmp_path, small_chunks):
  rows = [{"prompt_id": f"e{i}", "completion": "x"} for i in range(100)]
  rows[77] = {"prompt_id": "e77", "completion": ""}
  path = _write(str(tmp_path), "src", rows)
  stream = sources.stream_records(sources.SourceSpec("src", "jsonl", path))
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:78: completion\[0\] is an assistant turn "
                     "with empty content"):
    for _ in stream:
      pass


def test_selection_hash_in_blocks_equals_one_pass():
  rng = np.random.default_rng(0)
  n = 70_000  # More than one hashing block.
  ids = np.array([f"q{i}" for i in rng.permutation(n)], dtype=object)
  chosen = rng.integers(-1, 2, n).astype(np.int16)
  names = ["a", "b", "-"]
  order = np.argsort(ids.astype(str), kind="stable")
  import hashlib
  one_pass = hashlib.sha256("".join(
      f"{ids[i]}\t{names[chosen[i]]}\n" for i in order).encode()).hexdigest()
  assert manifest.selection_hash(ids, chosen, ["a", "b"]) == one_pass


def _drop_lines(path, ids):
  with open(path) as f:
    rows = [json.loads(l) for l in f]
  with open(path, "w") as f:
    for r in rows:
      if r.get("id", r.get("prompt_id")) not in ids:
        f.write(json.dumps(r) + "\n")


def test_fingerprint_reuse_and_rebuild(example, monkeypatch):
  paths, prompts, srcs, store_dir = example
  first = store_build.build_store(prompts, srcs, store_dir)

  def no_reads(*a, **k):
    raise AssertionError("a cached store must not read its inputs")
  monkeypatch.setattr(sources, "read_records", no_reads)
  monkeypatch.setattr(sources, "stream_records", no_reads)
  again = store_build.build_store(prompts, srcs, store_dir)
  assert again.path == first.path
  monkeypatch.undo()

  # A changed input file rebuilds (new fingerprint, new directory).
  _drop_lines(paths["teacher"], {"p05"})
  with open(paths["teacher"], "a") as f:
    f.write(json.dumps({"prompt_id": "p05", "completion": "Changed."}) + "\n")
  changed = store_build.build_store(prompts, srcs, store_dir)
  assert changed.path != first.path
  assert changed[4]["completions"]["teacher"][0]["content"] == "Changed."

  # A new filter (or a new version of one) rebuilds too.
  filters.register_filter("has_question_mark", version="1")(
      lambda r: "?" in r["prompt"][-1]["content"])
  try:
    labelled = store_build.build_store(prompts, srcs, store_dir)
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
  with pytest.raises(store_build.CoverageError,
                     match=r"teacher: 2 of 12 prompts lack a completion, e.g. "
                     r"\['p03', 'p09'\]"):
    store_build.build_store(prompts, srcs, store_dir)
  assert not os.path.exists(store_dir) or not os.listdir(store_dir)


def test_missing_drop_prompt_counts(example):
  paths, prompts, srcs, store_dir = example
  _drop_lines(paths["teacher"], {"p03", "p09"})
  _drop_lines(paths["alt"], {"p09", "p10"})
  store = store_build.build_store(prompts, srcs, store_dir, missing="drop_prompt")
  assert len(store) == 9
  assert "p03" not in set(store.columns(["prompt_id"])["prompt_id"])
  cov = store.meta["coverage"]
  assert cov["dropped_prompts"] == 3
  assert cov["lacking"] == {"alt": 2, "teacher": 2}


def test_missing_fallback_counts(example):
  paths, prompts, srcs, store_dir = example
  _drop_lines(paths["teacher"], {"p03", "p09"})
  store = store_build.build_store(prompts, srcs, store_dir, missing="fallback:alt")
  assert len(store) == 12
  assert store.meta["coverage"]["fallback_filled"] == {"alt": 0, "teacher": 2}
  assert store[2]["completions"]["teacher"] == store[2]["completions"]["alt"]
  with pytest.raises(ValueError, match="fallback source 'gpt' is not one"):
    store_build.build_store(prompts, srcs, store_dir, missing="fallback:gpt")
  with pytest.raises(ValueError, match="missing='maybe'"):
    store_build.build_store(prompts, srcs, store_dir, missing="maybe")


def test_skips_and_unmatched_counted_in_meta(example):
  paths, prompts, srcs, store_dir = example
  with open(paths["teacher"], "a") as f:
    f.write("{not json\n")
    f.write(json.dumps({"prompt_id": "p99", "completion": "extra"}) + "\n")
  with pytest.raises(Exception, match=r"teacher.jsonl:13: malformed JSON"):
    store_build.build_store(prompts, srcs, store_dir)
  store = store_build.build_store(prompts, srcs, store_dir, on_error="skip")
  reports = store.meta["read_reports"]
  assert reports["teacher"]["skipped"] == {"malformed_json": 1}
  assert store.meta["coverage"]["unmatched_completions"] == {"alt": 0, "teacher": 1}
  assert "teacher: skipped 1 rows" in store_lib.coverage_summary(store)


def test_labels_file_filter_in_store(example):
  paths, prompts, srcs, store_dir = example
  labels = os.path.join(os.path.dirname(paths["prompts"]), "labels.jsonl")
  with open(labels, "w") as f:
    for pid in example_data.PROMPTS:
      f.write(json.dumps({"prompt_id": pid, "label": pid in ("p01", "p12")}) + "\n")
    f.write(json.dumps({"prompt_id": "zzz", "label": True}) + "\n")
  filters.register_labels_file("hand_labels", labels, unknown="ignore")
  try:
    store = store_build.build_store(prompts, srcs, store_dir)
    cols = store.selection_columns()
    assert set(cols["prompt_id"][filters.mask("hand_labels", cols, [])]) == {"p01", "p12"}
    assert store.meta["filter_checks"]["hand_labels"] == {"unknown_ids": 1,
                                                          "unlabeled": 0}
  finally:
    filters.unregister("hand_labels")
