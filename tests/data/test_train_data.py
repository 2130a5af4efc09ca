"""make_train_data end to end with the test tokenizer."""

import dataclasses
import os

import gin
import numpy as np
import pytest

from sftdiff import gin_utils
from sftdiff import strict_json
from sftdiff.data import arms
from sftdiff.data.batch import Batch, TrainData
from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import store_build
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.data import train_data
from sftdiff.testing.tokenizer import write_test_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("train_data"))
  example_data.write_example_rollouts(d)
  tok = tokenizer_lib.ChatTokenizer.from_dir(write_test_tokenizer(d + "/tok"))
  cfg = train_data.DataConfig(
      prompt_set="jsonl:prompts.jsonl", data_dir=d,
      sources={"alt": "jsonl:alt.jsonl", "teacher": "jsonl:teacher.jsonl"})
  return d, tok, cfg


def _make(setup, arm, **kw):
  d, tok, cfg = setup
  args = dict(seq_len=48, batch_size=2, seed=0, data=cfg,
              eval_fraction=0.25)
  args.update(kw)
  return train_data.make_train_data(tok, arm=arm, **args)


def test_batches_manifest_and_disjoint_eval(setup):
  arm = "Patch(base='alt', patch='teacher', where='date_mentions')"
  data = _make(setup, arm)
  batch = next(data.train)
  assert isinstance(batch, Batch) and isinstance(data, TrainData)
  assert list(batch.features()) == ["input_ids", "target_ids", "loss_mask", "segment_ids",
                                    "positions"]
  assert all(v.shape == (2, 48) for v in batch.features().values())
  assert batch.loss_mask.sum() > 0
  train_ids = {data.train_records[i]["prompt_id"] for i in range(len(data.train_records))}
  eval_ids = {data.eval_records[i]["prompt_id"] for i in range(len(data.eval_records))}
  assert eval_ids and not train_ids & eval_ids
  assert train_ids | eval_ids == set(example_data.PROMPTS)
  m = data.manifest
  assert m["split"] == {"train": len(train_ids), "eval": len(eval_ids),
                        "eval_fraction": 0.25}
  assert m["counts"]["teacher"]["_total"] == 4
  # The manifest is strict JSON for the trainer (its one writer) to write.
  assert strict_json.loads(strict_json.dumps(m))["selection_hash"] == m["selection_hash"]
  evals = data.eval_batches()
  assert evals and all(b.input_ids.shape == (2, 48) for b in evals)
  # Records carry the arm's choice: date prompts train on the teacher.
  for i in range(len(data.train_records)):
    r = data.train_records[i]
    want = "teacher" if r["prompt_id"] in example_data.EXPECTED_LABELS["date_mentions"] else "alt"
    assert r["source"] == want
    assert r["messages"][-1]["role"] == "assistant"


def test_eval_slice_is_the_same_for_every_arm(setup):
  a = _make(setup, "teacher")
  b = _make(setup, "Drop(base='alt', where='roleplay')")
  ids = lambda recs: {recs[i]["prompt_id"] for i in range(len(recs))}
  roleplay = example_data.EXPECTED_LABELS["roleplay"]
  assert ids(b.eval_records) == ids(a.eval_records) - roleplay
  assert ids(b.train_records) == ids(a.train_records) - roleplay


def test_shards_are_disjoint(setup):
  arm = "teacher"
  seen = []
  for shard in range(2):
    data = _make(setup, arm, shard_index=shard, shard_count=2, eval_fraction=0.0,
                 num_epochs=1, batch_size=1, seq_len=80, packing="none")
    ids = []
    for b in data.train:
      ids.append(tuple(b.input_ids[0][b.segment_ids[0] > 0]))
    seen.append(ids)
  assert len(seen[0]) + len(seen[1]) == 12
  assert not set(seen[0]) & set(seen[1])


def test_bad_arm_fails_before_reading_data(setup, monkeypatch):
  def no_build(*a, **k):
    raise AssertionError("store must not be built for a bad arm")
  monkeypatch.setattr(store_build, "build_store", no_build)
  with pytest.raises(arms.ArmError, match="unknown source 'teacher2'"):
    _make(setup, "Patch(base='alt', patch='teacher2', where='roleplay')")
  with pytest.raises(arms.ArmError, match="unknown filter 'dates'"):
    _make(setup, "Drop(base='alt', where='dates')")
  with pytest.raises(arms.ArmError, match=r"p=2 must be a number in \[0, 1\]"):
    _make(setup, "Random('alt', 'teacher', 2)")
  with pytest.raises(ValueError, match="eval_fraction=1.5"):
    _make(setup, "alt", eval_fraction=1.5)


def test_arm_selecting_nothing_fails(setup):
  with pytest.raises(arms.ArmError, match="selects nothing"):
    _make(setup, "Drop(base=Drop(base=Drop(base='alt', where='subset:chat'), "
          "where='subset:code'), where='subset:safety')")


def test_gin_configured_data(setup):
  d, tok, _ = setup
  try:
    gin_utils.parse(["data/example.gin"], [
        f"DATA_DIR = '{d}'",
        "train_data.DataConfig.regex_filters = {'asks_python': r'\\bpython\\b'}"],
        finalize=False)
    cfg = train_data.DataConfig()
    assert cfg.sources == {"alt": "jsonl:alt.jsonl", "teacher": "jsonl:teacher.jsonl"}
    assert cfg.resolved_store_dir() == os.path.join(d, "joined_store")
    data = train_data.make_train_data(
        tok, arm="Patch(base='alt', patch='teacher', where='asks_python')",
        seq_len=32, batch_size=2, seed=1)
    assert data.manifest["counts"]["teacher"] == {"code": 2, "_total": 2}
    assert data.manifest["counts"]["alt"]["_total"] == 10
    assert next(data.train).input_ids.shape == (2, 32)
  finally:
    gin.clear_config()
    filters.unregister("asks_python")


def test_filters_registered_once_and_unknown_subset_named(setup, monkeypatch):
  d, tok, cfg = setup
  cfg = dataclasses.replace(cfg, regex_filters={"asks_python": r"\bpython\b"})
  calls = []
  register = filters.register_regex_filter
  monkeypatch.setattr(filters, "register_regex_filter",
                      lambda name, *a, **kw: calls.append(name) or register(name, *a, **kw))
  try:
    data = _make(setup, "Patch(base='alt', patch='teacher', where='asks_python')", data=cfg)
    assert calls == ["asks_python"]
    assert data.manifest["counts"]["teacher"]["_total"] == 2
    # A subset is known only once the prompt set is read: named after the build.
    with pytest.raises(arms.ArmError, match="no subset 'poetry'"):
      _make(setup, "Drop(base='alt', where='subset:poetry')", data=cfg)
  finally:
    filters.unregister("asks_python")
