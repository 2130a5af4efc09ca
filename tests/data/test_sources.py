"""Sources are SeqIO tasks over JSONL / Parquet / existing tasks."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import seqio

from sftdiff.data import records
from sftdiff.data import sources


def _rows(n, prefix="q"):
  return [{"id": f"{prefix}{i}", "subset": "s" + str(i % 2), "messages": [
      {"role": "user", "content": f"question {i}"},
      {"role": "assistant", "content": f"answer {i}"}]} for i in range(n)]


def _jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def test_jsonl_source_is_a_registered_seqio_task(tmp_path):
  spec = sources.parse_uri("alt", "jsonl:alt.jsonl", base_dir=str(tmp_path))
  _jsonl(tmp_path / "alt.jsonl", _rows(5))
  name = sources.register_task(spec)
  assert name in seqio.TaskRegistry.names()
  assert sources.register_task(spec) == name  # idempotent
  recs, report = sources.read_records(spec)
  assert [r["prompt_id"] for r in recs] == [f"q{i}" for i in range(5)]
  assert recs[3]["completion"] == [{"role": "assistant", "content": "answer 3"}]
  assert recs[3]["prompt"] == [{"role": "user", "content": "question 3"}]
  assert recs[3]["subset"] == "s1" and recs[3]["source"] == "alt"
  assert report.records == 5 and report.num_skipped == 0


def test_errors_surface_through_seqio_with_file_and_line(tmp_path):
  rows = _rows(3)
  rows[1]["messages"][1]["role"] = "narrator"
  path = _jsonl(tmp_path / "bad.jsonl", rows)
  spec = sources.SourceSpec("bad", "jsonl", path)
  with pytest.raises(records.DataValidationError,
                     match=rf"^{path}:2: messages\[1\] has unknown role"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert len(recs) == 2 and report.skipped == {"unknown_role": 1}


def test_registered_file_task_serves_the_streamed_rows(tmp_path):
  # Users read a file-backed task by name through SeqIO; stream_records reads
  # the same validated rows directly. Both must agree.
  path = _jsonl(tmp_path / "alt.jsonl", _rows(5))
  spec = sources.SourceSpec("alt", "jsonl", path)
  task = seqio.get_mixture_or_task(sources.register_task(spec))
  served = [{k: v.decode("utf-8") for k, v in ex.items()} for ex in task.get_dataset(
      sequence_length=None, split=spec.split, shuffle=False).as_numpy_iterator()]
  streamed = list(sources.stream_records(spec, decode=False))
  assert [dict(r, source=spec.name) for r in served] == streamed
  assert len(served) == 5


def test_policy_is_per_call_not_remembered(tmp_path):
  rows = _rows(3)
  rows[1]["messages"][1]["role"] = "narrator"
  spec = sources.SourceSpec("bad", "jsonl", _jsonl(tmp_path / "bad.jsonl", rows))
  assert len(sources.read_records(spec, on_error="skip")[0]) == 2
  with pytest.raises(records.DataValidationError, match=r"bad.jsonl:2: "):
    sources.read_records(spec)  # The earlier 'skip' does not leak into this read.


def test_changed_file_registers_a_new_task(tmp_path):
  path = _jsonl(tmp_path / "a.jsonl", _rows(2))
  spec = sources.SourceSpec("a", "jsonl", path)
  first = spec.task_name()
  _jsonl(tmp_path / "a.jsonl", _rows(3))
  assert spec.task_name() != first
  assert len(sources.read_records(spec)[0]) == 3


def test_parquet_hf_layout_with_row_numbers(tmp_path):
  rows = _rows(6)
  rows[4]["messages"] = rows[4]["messages"][:1]  # no assistant turn
  d = tmp_path / "hf" / "data"
  d.mkdir(parents=True)
  pq.write_table(pa.Table.from_pylist(rows[:3]), d / "train-00000-of-00002.parquet")
  pq.write_table(pa.Table.from_pylist(rows[3:]), d / "train-00001-of-00002.parquet")
  spec = sources.parse_uri("hf", f"parquet:{tmp_path / 'hf'}")
  with pytest.raises(records.DataValidationError,
                     match=r"train-00001-of-00002.parquet:row 1: conversation does "
                     "not end in an assistant turn"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert [r["prompt_id"] for r in recs] == ["q0", "q1", "q2", "q3", "q5"]
  assert report.skipped == {"no_final_assistant": 1}


def test_prompt_set_from_a_sources_conversations(tmp_path):
  path = _jsonl(tmp_path / "alt.jsonl", _rows(4))
  spec = sources.SourceSpec("alt", "jsonl", path).as_prompts("prompts_of_alt")
  recs, _ = sources.read_records(spec)
  assert recs[2] == {"prompt_id": "q2", "subset": "s0", "meta": {},
                     "messages": [{"role": "user", "content": "question 2"}]}


def test_existing_seqio_task(tmp_path, function_task):
  msgs = [json.dumps([{"role": "user", "content": f"u{i}"},
                      {"role": "assistant", "content": f"a{i}" if i != 2 else ""}])
          for i in range(4)]

  task = "test_sources.external_rollouts"
  uri = function_task(task, {"messages": msgs, "subset": ["x"] * 4})
  spec = sources.parse_uri("ext", uri)
  with pytest.raises(records.DataValidationError,
                     match=rf"{task}:train example 2: .*empty content"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert [r["completion"][0]["content"] for r in recs] == ["a0", "a1", "a3"]
  assert report.provenance == {"content_hash": 3}


@pytest.mark.parametrize("uri", ["csv:x.csv", "jsonl:", "nothing"])
def test_bad_uris(uri):
  with pytest.raises(ValueError, match="cannot parse"):
    sources.parse_uri("s", uri)


def test_missing_files_named(tmp_path):
  spec = sources.SourceSpec("gone", "jsonl", str(tmp_path / "nope*.jsonl"))
  with pytest.raises(FileNotFoundError, match="source 'gone': no jsonl files"):
    sources.read_records(spec)


def test_tfds_source(tmp_path):
  import tensorflow_datasets as tfds

  class SftdiffTestRollouts(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "id": tfds.features.Text(), "subset": tfds.features.Text(),
          "messages": tfds.features.Sequence({"role": tfds.features.Text(),
                                              "content": tfds.features.Text()})}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for i in range(4):
        turns = [{"role": "user", "content": f"q{i}"},
                 {"role": "assistant", "content": f"a{i}"}][: 1 if i == 3 else 2]
        yield i, {"id": f"t{i}", "subset": "tf", "messages": turns}

  data_dir = str(tmp_path / "tfds")
  SftdiffTestRollouts(data_dir=data_dir).download_and_prepare()
  spec = sources.parse_uri("tf", "tfds:sftdiff_test_rollouts:1.0.0/train",
                           tfds_data_dir=data_dir)
  with pytest.raises(records.DataValidationError, match=r"example \d: conversation "
                     "does not end in an assistant turn"):
    sources.read_records(spec)
  recs, report = sources.read_records(spec, on_error="skip")
  assert sorted(r["prompt_id"] for r in recs) == ["t0", "t1", "t2"]
  got = {r["prompt_id"]: r["completion"][0]["content"] for r in recs}
  assert got == {"t0": "a0", "t1": "a1", "t2": "a2"}
  assert report.skipped == {"no_final_assistant": 1}


def test_unknown_seqio_task_named():
  with pytest.raises(ValueError, match="source 'x': SeqIO task 'no_such_task' is "
                     "not registered"):
    sources.read_records(sources.parse_uri("x", "seqio:no_such_task"))
