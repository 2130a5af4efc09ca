"""A deterministic in-memory batch source with the real pipeline's interface.

For tests and benchmarks of the trainer without a tokenizer or an arm: bind
`train.data_fn = @synthetic_train_data` in gin. Batches are a pure function
of (seed, step, row), and process `i` of `n` gets rows
`[i * B/n, (i+1) * B/n)` of the global batch, so any process count sees the
same global batches. The iterator is a real Grain iterator (checkpointable
with `get_state`/`set_state`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import gin
import grain
import numpy as np

from sftdiff.data import batch as batch_lib


@dataclasses.dataclass
class SyntheticTrainData:
  """A `sftdiff.data.batch.TrainData`."""
  train: Iterator[batch_lib.Batch]
  manifest: dict[str, Any]
  _make_eval: Callable[[], Iterator[batch_lib.Batch]]

  def eval_batches(self) -> Iterator[batch_lib.Batch]:
    return self._make_eval()


def _row(seed: int, step: int, row: int, seq_len: int, vocab_size: int) -> dict[str, np.ndarray]:
  """One packed row: 1-3 segments, trailing padding, uneven trainable spans."""
  rng = np.random.default_rng([seed, step, row])
  used = int(rng.integers(seq_len // 2, seq_len + 1))
  num_segments = int(rng.integers(1, 4))
  cuts = np.sort(rng.choice(np.arange(1, used), size=min(num_segments - 1, used - 1),
                            replace=False)) if used > 1 else np.array([], int)
  bounds = [0, *cuts.tolist(), used]
  out = {k: np.zeros(seq_len, np.int32) for k in batch_lib.FEATURES}
  # Low ids are reserved (pad etc.); learnable structure: next = (3 * cur + 1) % V.
  for seg, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
    length = hi - lo + 1
    ids = np.empty(length, np.int64)
    ids[0] = rng.integers(4, vocab_size)
    for t in range(1, length):
      ids[t] = (3 * ids[t - 1] + 1) % (vocab_size - 4) + 4 if rng.random() < 0.8 \
          else rng.integers(4, vocab_size)
    out["input_ids"][lo:hi] = ids[:-1]
    out["target_ids"][lo:hi] = ids[1:]
    out["segment_ids"][lo:hi] = seg
    out["positions"][lo:hi] = np.arange(hi - lo)
    prompt = int(rng.integers(0, hi - lo))  # trained span = the "reply"
    out["loss_mask"][lo + prompt:hi] = 1
  return out


def make_batch(seed: int, step: int, rows: range, seq_len: int,
               vocab_size: int) -> batch_lib.Batch:
  rows_ = [_row(seed, step, r, seq_len, vocab_size) for r in rows]
  return batch_lib.Batch.from_features(
      {k: np.stack([r[k] for r in rows_]) for k in batch_lib.FEATURES})


@gin.configurable
def synthetic_train_data(tokenizer=None, *, arm: str = "synthetic", seq_len: int,
                         batch_size: int, seed: int, shard_index: int = 0,
                         shard_count: int = 1,
                         vocab_size: int = 256, num_eval_batches: int = 2,
                         global_batch_size: int | None = None) -> SyntheticTrainData:
  """A `trainer.train.data_fn` like `make_train_data`; `batch_size` is per process."""
  del tokenizer
  if vocab_size <= 8:
    raise ValueError(f"synthetic_train_data.vocab_size={vocab_size} must be > 8")
  global_batch_size = global_batch_size or batch_size * shard_count
  if global_batch_size != batch_size * shard_count:
    raise ValueError(f"global batch {global_batch_size} != {batch_size} x {shard_count}")
  rows = range(shard_index * batch_size, (shard_index + 1) * batch_size)

  train = (grain.MapDataset.range(1 << 40)
           .map(lambda step: make_batch(seed, int(step), rows, seq_len, vocab_size))
           .to_iter_dataset()
           .__iter__())

  def eval_batches():
    for i in range(num_eval_batches):
      yield make_batch(seed + 1_000_003, i, rows, seq_len, vocab_size)

  return SyntheticTrainData(train=train, _make_eval=eval_batches,
                            manifest={"arm": arm, "source": "synthetic", "seed": seed})
