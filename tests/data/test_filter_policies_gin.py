"""Every filter policy is settable from gin (`DataConfig.labels_files` /
`regex_filters` entries as dicts); labels files are read like sources."""

import gzip
import json
import os

import gin
import pytest

from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import train_data


@pytest.fixture()
def data_dir(tmp_path):
  d = str(tmp_path / "data")
  example_data.write_example_rollouts(d)
  with open(os.path.join(d, "labels.jsonl"), "w") as f:
    for pid in example_data.PROMPTS:
      f.write(json.dumps({"prompt_id": pid, "label": pid in ("p01", "p12")}) + "\n")
  # drop_prompt removes p12: the teacher has no completion for it.
  with open(os.path.join(d, "teacher.jsonl")) as f:
    kept = [l for l in f if json.loads(l)["prompt_id"] != "p12"]
  with open(os.path.join(d, "teacher.jsonl"), "w") as f:
    f.writelines(kept)
  yield d
  filters.unregister("hand")
  filters.unregister("teacher_i")


def _config(data_dir, labels, regex="{}"):
  gin.clear_config()
  gin.parse_config(f"""
train_data.DataConfig.data_dir = '{data_dir}'
train_data.DataConfig.prompt_set = 'jsonl:prompts.jsonl'
train_data.DataConfig.sources = {{'alt': 'jsonl:alt.jsonl',
                                 'teacher': 'jsonl:teacher.jsonl'}}
train_data.DataConfig.missing = 'drop_prompt'
train_data.DataConfig.labels_files = {labels}
train_data.DataConfig.regex_filters = {regex}
""")
  try:
    return train_data.DataConfig()
  finally:
    gin.clear_config()


def test_labels_file_unknown_policy_from_gin(data_dir):
  strict = _config(data_dir, "{'hand': 'labels.jsonl'}")
  with pytest.raises(filters.FilterError, match=(
      r"filter 'hand': .*labels.jsonl labels 1 prompt_id\(s\) not in the prompt "
      r"set, e\.g\. \['p12'\] .*in gin: DataConfig.labels_files = \{'hand': "
      r"\{'path': \.\.\., 'unknown': 'ignore'\}\}")):
    strict.build()
  lenient = _config(data_dir,
                    "{'hand': {'path': 'labels.jsonl', 'unknown': 'ignore'}}")
  store = lenient.build()
  assert store.meta["coverage"]["dropped_prompts"] == 1
  assert store.meta["filter_checks"]["hand"] == {"unknown_ids": 1, "unlabeled": 0}
  cols = store.selection_columns()
  assert [p for p, v in zip(cols["prompt_id"], cols["label:hand"]) if v] == ["p01"]


def test_unlabeled_policy_from_gin(data_dir):
  path = os.path.join(data_dir, "labels.jsonl")
  with open(path) as f:
    rows = [l for l in f if json.loads(l)["prompt_id"] not in ("p05", "p12")]
  with open(path, "w") as f:
    f.writelines(rows)
  with pytest.raises(filters.FilterError, match=(
      r"no label for prompt_id 'p05' .*'unlabeled': 'false'")):
    _config(data_dir, "{'hand': 'labels.jsonl'}").build()
  store = _config(data_dir, "{'hand': {'path': 'labels.jsonl', "
                  "'unlabeled': 'false'}}").build()
  assert store.meta["filter_checks"]["hand"] == {"unknown_ids": 0, "unlabeled": 1}


def test_regex_filter_field_and_case_from_gin(data_dir):
  store = _config(
      data_dir, "{}",
      "{'teacher_i': {'pattern': r'\\bi\\b', 'field': 'completion:teacher', "
      "'ignore_case': False}}").build()
  assert not store.selection_columns()["label:teacher_i"].any()
  filters.unregister("teacher_i")
  store = _config(
      data_dir, "{}",
      "{'teacher_i': {'pattern': r'\\bi\\b', 'field': 'completion:teacher'}}"
  ).build()
  cols = store.selection_columns()
  assert [p for p, v in zip(cols["prompt_id"], cols["label:teacher_i"]) if v] == [
      "p11"]


@pytest.mark.parametrize("entry, message", [
    ("{'hand': {'path': 'labels.jsonl', 'unknwon': 'ignore'}}",
     r"DataConfig.labels_files\['hand'\]: needs a string 'path' and takes only "
     r"'unlabeled', 'unknown'; unknown key\(s\) \['unknwon'\]"),
    ("{'hand': {'unknown': 'ignore'}}",
     r"DataConfig.labels_files\['hand'\]: needs a string 'path'"),
    ("{'hand': 3}", r"DataConfig.labels_files\['hand'\]: expected a string or a dict"),
    ("{'hand': {'path': 'labels.jsonl', 'unknown': 'skip'}}",
     r"filter 'hand': unlabeled must be 'fail'\|'false' and unknown 'fail'\|'ignore'"),
])
def test_bad_policy_entries_are_named(data_dir, entry, message):
  with pytest.raises(filters.FilterError, match=message):
    _config(data_dir, entry).register_filters()


def test_labels_files_with_bom_gzip_and_bad_bytes(tmp_path):
  csv_path = tmp_path / "labels.csv"
  csv_path.write_bytes(b"\xef\xbb\xbfprompt_id,label\r\na,true\r\nb,0\r\n")
  gz_path = tmp_path / "labels.jsonl.gz"
  gz_path.write_bytes(gzip.compress(b'{"prompt_id": "a", "label": false}\n'))
  bad_path = tmp_path / "bad.jsonl"
  bad_path.write_bytes(b'{"prompt_id": "a", "label": true}\n'
                       b'{"prompt_id": "\xe9", "label": true}\n')
  try:
    f = filters.register_labels_file("hand", str(csv_path))
    assert [f.fn({"prompt_id": p}) for p in "ab"] == [True, False]
    f = filters.register_labels_file("hand", str(gz_path))
    assert f.fn({"prompt_id": "a"}) is False
    with pytest.raises(filters.FilterError, match=rf"^{bad_path}:2: not UTF-8"):
      filters.register_labels_file("hand", str(bad_path))
  finally:
    filters.unregister("hand")
