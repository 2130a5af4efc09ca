"""make_batches: content, determinism, shuffling, sharding, resume, orbax."""

import json

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sftdiff.data import chat
from sftdiff.data.batch import Batch, FEATURES
from sftdiff.data import pipeline
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.testing import tokenizer as test_tokenizer

NUM_RECORDS = 24


def _record(i):
  messages = [
      {"role": "user", "content": f"Question {i}: what is {i} plus {i}?"},
      {"role": "assistant", "content": f"{i} plus {i} is {2 * i}." + " Yes." * (i % 4)},
  ]
  if i % 3 == 0:  # some multi-turn conversations
    messages += [
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "You are welcome."},
    ]
  return {"prompt_id": f"p{i}", "source": "teacher", "subset": "math",
          "messages": messages}


RECORDS = [_record(i) for i in range(NUM_RECORDS)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  d = test_tokenizer.write_test_tokenizer(str(tmp_path_factory.mktemp("tok")))
  return tokenizer_lib.ChatTokenizer.from_dir(d)


@pytest.fixture(scope="module")
def examples(tok):
  """input_ids tuple of each record's (shifted) example → record index."""
  out = {}
  for i, r in enumerate(RECORDS):
    ex = chat.tokenize_with_assistant_mask(tok, r["messages"])
    out[tuple(ex.ids[:-1].tolist())] = (i, ex)
  assert len(out) == NUM_RECORDS
  return out


def _batches(tok, n=None, records=RECORDS, **kwargs):
  kwargs = {"seq_len": 128, "batch_size": 2, "seed": 0, **kwargs}
  ds = pipeline.make_batches(grain.MapDataset.source(records), tok, **kwargs)
  it = iter(ds)
  if n is None:
    out = list(it)
  else:
    out = [next(it) for _ in range(n)]
  return out, it


def _order(batches, examples):
  """Record indices in the order their examples appear in the batches."""
  order = []
  for b in batches:
    for row_ids, row_seg in zip(b.input_ids, b.segment_ids):
      for s in range(1, row_seg.max() + 1):
        order.append(examples[tuple(row_ids[row_seg == s].tolist())][0])
  return order


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert isinstance(x, Batch) and isinstance(y, Batch)
    for k in FEATURES:
      np.testing.assert_array_equal(getattr(x, k), getattr(y, k), err_msg=k)


def test_batches_hold_exactly_the_tokenized_examples(tok, examples):
  batches, it = _batches(tok, num_epochs=1)
  for b in batches:
    assert isinstance(b, Batch)
    for k, v in b.features().items():
      assert v.shape == (2, 128) and v.dtype == np.int32, k
    for r in range(2):
      seg = b.segment_ids[r]
      for s in range(1, seg.max() + 1):
        sel = seg == s
        _, ex = examples[tuple(b.input_ids[r][sel].tolist())]
        np.testing.assert_array_equal(b.target_ids[r][sel], ex.ids[1:])
        np.testing.assert_array_equal(b.loss_mask[r][sel], ex.mask[1:])
        np.testing.assert_array_equal(b.positions[r][sel], np.arange(sel.sum()))
  assert sorted(_order(batches, examples)) == list(range(NUM_RECORDS))
  total_trainable = sum(ex.num_trainable for _, ex in examples.values())
  assert it.stats.examples == NUM_RECORDS
  assert it.stats.trainable_tokens == total_trainable
  assert it.stats.tokens == sum(len(ex) - 1 for _, ex in examples.values())
  assert it.stats.batches == len(batches)
  assert (it.stats.truncated, it.stats.dropped) == (0, 0)


def test_deterministic_for_a_seed(tok):
  a, _ = _batches(tok, num_epochs=2, packing="best_fit")
  b, _ = _batches(tok, num_epochs=2, packing="best_fit")
  _assert_same(a, b)


def test_shuffle_differs_across_seeds_and_epochs(tok, examples):
  one_per_row = {"packing": "none", "batch_size": 1, "num_epochs": 2}
  a = _order(_batches(tok, seed=0, **one_per_row)[0], examples)
  b = _order(_batches(tok, seed=1, **one_per_row)[0], examples)
  epoch1, epoch2 = a[:NUM_RECORDS], a[NUM_RECORDS:]
  assert sorted(epoch1) == sorted(epoch2) == list(range(NUM_RECORDS))
  assert epoch1 != epoch2
  assert epoch1 != list(range(NUM_RECORDS))
  assert b[:NUM_RECORDS] != epoch1


def test_two_way_sharding_is_disjoint_and_complete(tok, examples):
  kw = {"packing": "none", "batch_size": 1, "num_epochs": 2, "shard_count": 2}
  s0 = _order(_batches(tok, shard_index=0, **kw)[0], examples)
  s1 = _order(_batches(tok, shard_index=1, **kw)[0], examples)
  half = NUM_RECORDS // 2
  assert len(s0) == len(s1) == 2 * half
  for epoch in range(2):
    e0 = s0[epoch * half:(epoch + 1) * half]
    e1 = s1[epoch * half:(epoch + 1) * half]
    assert not set(e0) & set(e1)
    assert sorted(e0 + e1) == list(range(NUM_RECORDS))
  # Each epoch is a fresh global permutation, so shards change membership.
  assert set(s0[:half]) != set(s0[half:])


@pytest.mark.parametrize("packing", ["first_fit", "best_fit"])
def test_resume_mid_epoch_with_get_set_state(tok, packing):
  # 8 packing bins, batches of 2: the saved state falls inside a packed group.
  kw = {"packing": packing, "num_packing_bins": 8, "num_epochs": 2,
        "overlong": "drop", "seq_len": 60}
  full, it_full = _batches(tok, **kw)
  _, it = _batches(tok, n=3, **kw)
  state = it.get_state()
  stats_at_3 = it.stats.as_dict()
  rest_a = list(it)
  resumed = iter(pipeline.make_batches(
      grain.MapDataset.source(RECORDS), tok, seed=0, batch_size=2, **kw))
  # The state survives JSON (what grain's orbax handler writes).
  resumed.set_state(json.loads(json.dumps(state)))
  assert resumed.stats.as_dict() == stats_at_3
  rest_b = list(resumed)
  _assert_same(rest_a, full[3:])
  _assert_same(rest_b, full[3:])
  assert resumed.stats == it_full.stats
  assert it_full.stats.dropped > 0  # the over-long policy was exercised


def test_overlong_truncate_and_drop_are_counted(tok, examples):
  lengths = np.array([len(ex) for _, ex in examples.values()])
  seq_len = int(np.median(lengths))
  over = int(np.sum(lengths > seq_len + 1))
  assert 0 < over < NUM_RECORDS
  _, cut = _batches(tok, seq_len=seq_len, num_epochs=1, overlong="truncate")
  assert (cut.stats.truncated, cut.stats.dropped) == (over, 0)
  assert cut.stats.examples == NUM_RECORDS
  _, drop = _batches(tok, seq_len=seq_len, num_epochs=1, overlong="drop")
  assert (drop.stats.truncated, drop.stats.dropped) == (0, over)
  assert drop.stats.examples == NUM_RECORDS - over


def test_orbax_save_restore_of_iterator(tok, tmp_path):
  kw = {"num_epochs": 1, "num_packing_bins": 4}
  full, _ = _batches(tok, **kw)
  _, it = _batches(tok, n=2, **kw)
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.save(2, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  fresh = iter(pipeline.make_batches(
      grain.MapDataset.source(RECORDS), tok, seq_len=128, batch_size=2, seed=0,
      **kw))
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    assert mngr.latest_step() == 2
    restored = mngr.restore(2, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(fresh)))["data"]
  assert restored.stats.batches == 2
  _assert_same(list(restored), full[2:])


def test_bad_record_names_prompt_id(tok):
  bad = RECORDS[:3] + [{"prompt_id": "p-bad", "source": "teacher",
                        "messages": [{"role": "robot", "content": "x"}]}]
  with pytest.raises(chat.MessageFormatError) as e:
    _batches(tok, records=bad, num_epochs=1)
  assert "prompt_id='p-bad'" in str(e.value)
  assert "unknown role 'robot'" in str(e.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shard_index": 2, "shard_count": 2}, "shard_index=2"),
        ({"packing": "greedy"}, "packing='greedy'"),
        ({"overlong": "cut"}, "overlong='cut'"),
        ({"num_epochs": 0}, "num_epochs=0"),
    ],
)
def test_bad_arguments(tok, kwargs, message):
  with pytest.raises(ValueError, match=message):
    pipeline.make_batches(grain.MapDataset.source(RECORDS), tok, seq_len=8,
                          batch_size=2, seed=0, **kwargs)


@pytest.mark.slow
def test_one_worker_process_matches_in_process_and_resumes(tok):
  kw = {"num_epochs": 1, "packing": "best_fit", "num_packing_bins": 4}
  in_process, it0 = _batches(tok, **kw)
  multi, it1 = _batches(tok, worker_count=1, **kw)
  it1.close()
  _assert_same(in_process, multi)
  assert it0.stats == it1.stats
  _, it2 = _batches(tok, n=3, worker_count=1, **kw)
  state = json.loads(json.dumps(it2.get_state()))
  it2.close()
  resumed = iter(pipeline.make_batches(
      grain.MapDataset.source(RECORDS), tok, seq_len=128, batch_size=2,
      seed=0, worker_count=1, **kw))
  resumed.set_state(state)
  rest = list(resumed)
  resumed.close()
  _assert_same(rest, in_process[3:])
  assert resumed.stats == it0.stats
