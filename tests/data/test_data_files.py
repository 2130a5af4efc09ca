"""Data files as people have them: BOM, gzip files and shards, bad bytes, lone
surrogates, empty files, stray files in shard directories."""

import bz2
import gzip
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftdiff.data import example_data
from sftdiff.data import store_build
from sftdiff.data import records
from sftdiff.data import sources


def _row(i):
  return {"id": f"q{i}", "subset": "s", "messages": [
      {"role": "user", "content": f"question {i} \u00fc\u2713"},
      {"role": "assistant", "content": f"answer {i}"}]}


def _lines(ids):
  return "".join(json.dumps(_row(i), ensure_ascii=False) + "\n"
                 for i in ids).encode("utf-8")


def _ids(spec, on_error="fail"):
  recs, report = sources.read_records(spec, on_error=on_error)
  return [r["prompt_id"] for r in recs], report


def _spec(path, kind="jsonl"):
  return sources.SourceSpec("src", kind, str(path))


def test_utf8_bom_is_dropped(tmp_path):
  path = tmp_path / "bom.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + _lines(range(3)))
  ids, report = _ids(_spec(path))
  assert ids == ["q0", "q1", "q2"] and report.num_skipped == 0
  prompts, _ = sources.read_records(sources.SourceSpec(
      "p", "jsonl", str(path), role="prompts"))
  assert prompts[0]["messages"][0]["content"] == "question 0 \u00fc\u2713"


def test_gzip_file_is_read(tmp_path):
  path = tmp_path / "rollouts.jsonl.gz"
  path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + _lines(range(4))))
  assert _ids(_spec(path))[0] == ["q0", "q1", "q2", "q3"]


def test_directory_reads_plain_gzip_and_bz2_shards_and_counts_other_files(tmp_path):
  d = tmp_path / "shards"
  (d / "nested").mkdir(parents=True)
  (d / "part-0.jsonl").write_bytes(_lines([0, 1]))
  (d / "part-1.jsonl.gz").write_bytes(gzip.compress(_lines([2, 3])))
  (d / "nested" / "part-2.json.bz2").write_bytes(bz2.compress(_lines([4])))
  (d / "README.md").write_text("# my rollouts\n")
  spec = _spec(d)
  assert [os.path.basename(p) for p in spec.files()] == [
      "part-2.json.bz2", "part-0.jsonl", "part-1.jsonl.gz"]
  ids, report = _ids(spec)
  assert ids == ["q4", "q0", "q1", "q2", "q3"]
  # Not read, but counted and named in the report (under either policy).
  assert report.skipped == {"ignored_file": 1}
  assert report.examples == [f"{d / 'README.md'}: not read: not a jsonl file"]


def test_gzip_shards_in_a_glob(tmp_path):
  for i in range(3):
    (tmp_path / f"t-{i}.jsonl.gz").write_bytes(gzip.compress(_lines([i])))
  assert _ids(_spec(tmp_path / "t-*.jsonl.gz"))[0] == ["q0", "q1", "q2"]


def test_shard_in_an_unreadable_compression_is_not_left_out(tmp_path):
  d = tmp_path / "shards"
  d.mkdir()
  (d / "a.jsonl").write_bytes(_lines([0]))
  (d / "b.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd not really zstd")
  with pytest.raises(records.DataValidationError,
                     match=rf"^{d / 'b.jsonl.zst'}: cannot read '.zst' files"):
    _ids(_spec(d))
  ids, report = _ids(_spec(d), on_error="skip")
  assert ids == ["q0"] and report.skipped == {"unsupported_compression": 1}


def test_directory_with_no_data_files_names_what_it_found(tmp_path):
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(FileNotFoundError, match=r"no jsonl files .*found only: .*notes.txt"):
    _ids(_spec(tmp_path))


def test_undecodable_bytes_name_file_and_line(tmp_path):
  path = tmp_path / "latin1.jsonl"
  bad = _lines([1]).replace("\u00fc".encode(), b"\xfc")  # Latin-1
  path.write_bytes(_lines([0]) + bad + _lines([2]))
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:2: not UTF-8: byte b'\\xfc' at byte column \d+"):
    _ids(_spec(path))
  ids, report = _ids(_spec(path), on_error="skip")
  assert ids == ["q0", "q2"] and report.skipped == {"undecodable_bytes": 1}


def test_undecodable_bytes_in_a_gzip_shard(tmp_path):
  path = tmp_path / "r.jsonl.gz"
  path.write_bytes(gzip.compress(_lines([0, 1]) + b'{"id": "\xff"}\n'))
  with pytest.raises(records.DataValidationError, match=rf"^{path}:3: not UTF-8"):
    _ids(_spec(path))


def test_lone_surrogate_names_file_and_line(tmp_path):
  path = tmp_path / "sur.jsonl"
  lone = json.dumps(_row(1)).replace("answer 1", "answer \\ud83d 1")
  pair = json.dumps(_row(2)).replace("answer 2", "answer \\ud83d\\ude00 2")
  path.write_text(json.dumps(_row(0)) + "\n" + lone + "\n" + pair + "\n")
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:2: lone surrogate '\\ud83d'"):
    _ids(_spec(path))
  recs, report = sources.read_records(_spec(path), on_error="skip")
  assert [r["prompt_id"] for r in recs] == ["q0", "q2"]
  assert recs[1]["completion"][0]["content"] == "answer \U0001f600 2"
  assert report.skipped == {"invalid_text": 1}


def test_truncated_gzip_names_file_and_line(tmp_path):
  path = tmp_path / "cut.jsonl.gz"
  whole = gzip.compress(_lines(range(200)))
  path.write_bytes(whole[:len(whole) // 2])
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:\d+: cannot read the rest of the file"):
    _ids(_spec(path))
  ids, report = _ids(_spec(path), on_error="skip")
  assert 0 < len(ids) < 200 and report.skipped == {"unreadable_file": 1}


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf\n"])
def test_empty_jsonl_file_is_named(tmp_path, content):
  path = tmp_path / "empty.jsonl"
  path.write_bytes(content)
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}: empty file \(no rows\)$"):
    _ids(_spec(path))
  ids, report = _ids(_spec(path), on_error="skip")
  assert ids == [] and report.skipped == {"empty_file": 1}


def test_empty_and_corrupt_parquet_files_are_named(tmp_path):
  empty = tmp_path / "zero_rows.parquet"
  pq.write_table(pa.Table.from_pylist([_row(0)]).slice(0, 0), empty)
  with pytest.raises(records.DataValidationError,
                     match=rf"^{empty}: empty file \(no rows\)$"):
    _ids(_spec(empty, "parquet"))
  zero = tmp_path / "zero_bytes.parquet"
  zero.write_bytes(b"")
  with pytest.raises(records.DataValidationError,
                     match=rf"^{zero}: not a readable Parquet file"):
    _ids(_spec(zero, "parquet"))
  assert _ids(_spec(zero, "parquet"), on_error="skip")[1].skipped == {
      "unreadable_file": 1}


def test_parquet_string_column_with_bad_bytes_names_the_row(tmp_path):
  # Arrow does not validate UTF-8 when building from buffers: a file written
  # by a tool that did not check either.
  texts = [b"fine 0", b"bad \xff", b"fine 2"]
  offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int32)
  content = pa.Array.from_buffers(pa.string(), 3, [
      None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(texts))])
  path = tmp_path / "bad.parquet"
  pq.write_table(pa.table({"id": ["a", "b", "c"], "prompt": content}), path)
  spec = sources.SourceSpec("p", "parquet", str(path), role="prompts")
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:row 1: a string column is not UTF-8"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert [r["prompt_id"] for r in recs] == ["a", "c"]
  assert report.skipped == {"undecodable_bytes": 1}


def test_external_task_with_bad_bytes_names_the_example(function_task):
  msgs = [json.dumps([{"role": "user", "content": f"u{i}"},
                      {"role": "assistant", "content": f"a{i}"}]).encode()
          for i in range(3)]
  msgs[1] = msgs[1].replace(b"a1", b"a\xff")

  task = "test_data_files.bad_bytes"
  uri = function_task(task, {"messages": msgs})
  spec = sources.parse_uri("ext", uri)
  with pytest.raises(records.DataValidationError,
                     match=rf"^{task}:train example 1: a string feature is not UTF-8"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert len(recs) == 2 and report.skipped == {"undecodable_bytes": 1}


def test_empty_prompt_set_under_skip_names_it(tmp_path):
  paths = example_data.write_example_rollouts(str(tmp_path / "data"))
  open(paths["prompts"], "w").close()
  prompts = sources.SourceSpec("prompts", "jsonl", paths["prompts"], role="prompts")
  srcs = [sources.SourceSpec(n, "jsonl", paths[n]) for n in ("alt", "teacher")]
  with pytest.raises(store_build.CoverageError, match=(
      rf"the joined store would be empty \(prompt set jsonl:{paths['prompts']}: "
      r"0 prompts read; jsonl:.*prompts.jsonl: skipped 1 \{'empty_file': 1\}\)")):
    store_build.build_store(prompts, srcs, str(tmp_path / "store"), on_error="skip")
