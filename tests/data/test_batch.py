"""`Batch` is one pytree value through jit, device_put and a Grain pipeline
whose iterator state round-trips; `TrainData` is checked structurally."""

import dataclasses
import pickle

import grain
import jax
import numpy as np
import pytest

from sftdiff.data.batch import Batch, FEATURES, TrainData


def _batch(seed=0, rows=2, length=5):
  rng = np.random.default_rng(seed)
  return Batch.from_features({k: rng.integers(0, 9, (rows, length), dtype=np.int32)
                              for k in FEATURES} | {"num_examples": np.ones(rows)})


def test_features_are_the_five_fields_in_one_order():
  assert FEATURES == ("input_ids", "target_ids", "loss_mask", "segment_ids", "positions")
  b = _batch()
  assert list(b.features()) == list(FEATURES) and b.num_rows == 2
  assert jax.tree.leaves(b) == [getattr(b, k) for k in FEATURES]
  with pytest.raises(dataclasses.FrozenInstanceError):
    b.input_ids = None  # type: ignore[misc]
  with pytest.raises(KeyError, match="positions"):
    Batch.from_features({k: 0 for k in FEATURES[:-1]})


def test_a_batch_passes_through_jit_device_put_and_pickle():
  b = _batch()
  doubled = jax.jit(lambda x: jax.tree.map(lambda v: 2 * v, x))(b)
  assert isinstance(doubled, Batch)
  np.testing.assert_array_equal(doubled.loss_mask, 2 * b.loss_mask)
  on_device = jax.device_put(b, jax.devices()[0])
  assert isinstance(on_device.positions, jax.Array)
  again = pickle.loads(pickle.dumps(b))
  for k in FEATURES:
    np.testing.assert_array_equal(getattr(again, k), getattr(b, k))
  shardings = Batch.filled("s")
  assert jax.tree.leaves(shardings) == ["s"] * 5


def test_a_grain_stream_of_batches_resumes_from_its_state():
  ds = grain.MapDataset.range(100).map(lambda i: _batch(int(i))).to_iter_dataset()
  it = iter(ds)
  next(it), next(it)
  state = it.get_state()
  want = [next(it) for _ in range(3)]
  resumed = iter(ds)
  resumed.set_state(state)
  for a, b in zip(want, [next(resumed) for _ in range(3)]):
    assert isinstance(b, Batch)
    for k in FEATURES:
      np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_train_data_is_structural():
  class Good:
    train = iter(())
    manifest = {}

    def eval_batches(self):
      return []

  class NoManifest:
    train = iter(())

    def eval_batches(self):
      return []

  assert isinstance(Good(), TrainData)
  assert not isinstance(NoManifest(), TrainData)
  assert not isinstance({"train": iter(()), "manifest": {}}, TrainData)
