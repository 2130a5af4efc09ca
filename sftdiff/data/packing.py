"""Packing tokenized examples into fixed-length rows (Grain transforms).

Each example is shifted to (input, target) pairs *before* packing, so a row's
targets never cross from one example into the next: the last input token of an
example has that example's last token as its target, and the next example
starts a new segment. Packing itself is Grain's first-fit / best-fit packer;
it gives `segment_ids` (1.. per example in a row, 0 = padding) and `positions`
(restarting at 0 per example).

Per-row counters (`num_examples`, `num_truncated`, `num_dropped`) travel with
the data as scalars so that statistics stay right with multiprocess prefetch;
`sftdiff.data.pipeline` strips them from the batches and accumulates them.
"""

from __future__ import annotations

from typing import Any

import grain
from grain import experimental as grain_exp
import numpy as np

from sftdiff.data.chat import TokenizedExample

PACKING_MODES = ("first_fit", "best_fit", "none")
SEQUENCE_FEATURES = ("input_ids", "target_ids", "loss_mask")
COUNTER_FEATURES = ("num_examples", "num_truncated", "num_dropped",
                    "num_failed")
# Marks an example removed by the over-long policy; counted, never packed.
DROPPED = {"dropped": True}
# Marks a record skipped for a per-record error under on_error='skip'.
FAILED = {"dropped": True, "failed": True}


def shift_example(example: TokenizedExample) -> dict[str, Any]:
  """(ids, mask) of length n → n-1 (input, target, loss_mask) triples.

  The loss mask moves with the target: position t is trained iff token t+1 is.
  """
  ids = np.asarray(example.ids, dtype=np.int32)
  mask = np.asarray(example.mask, dtype=bool)
  return {
      "input_ids": ids[:-1],
      "target_ids": ids[1:],
      "loss_mask": mask[1:].astype(np.int32),
      "num_examples": 1,
      "num_truncated": int(example.truncated),
      "num_dropped": 0,
      "num_failed": 0,
  }


def _empty_element(num_dropped: int, num_failed: int) -> dict[str, Any]:
  empty = np.zeros((0,), dtype=np.int32)
  return {
      "input_ids": empty,
      "target_ids": empty,
      "loss_mask": empty,
      "num_examples": 0,
      "num_truncated": 0,
      "num_dropped": num_dropped,
      "num_failed": num_failed,
  }


class _CountDropsIterator(grain.DatasetIterator):
  """Skips DROPPED markers, adding their count to the next kept element."""

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)
    self._pending = 0
    self._pending_failed = 0
    self._exhausted = False

  def __next__(self):
    while True:
      try:
        element = next(self._parent)
      except StopIteration:
        if (self._pending or self._pending_failed) and not self._exhausted:
          # Report drops at the very end as an empty (zero-token) element.
          self._exhausted = True
          element = _empty_element(self._pending, self._pending_failed)
          self._pending = self._pending_failed = 0
          return element
        raise
      if element.get("failed", False):
        self._pending_failed += 1
        continue
      if element.get("dropped", False):
        self._pending += 1
        continue
      element = dict(element)
      element["num_dropped"] = element.get("num_dropped", 0) + self._pending
      element["num_failed"] = element.get("num_failed", 0) + self._pending_failed
      self._pending = self._pending_failed = 0
      return element

  def get_state(self):
    return {
        "parent": self._parent.get_state(),
        "pending": self._pending,
        "pending_failed": self._pending_failed,
        "exhausted": self._exhausted,
    }

  def set_state(self, state):
    self._parent.set_state(state["parent"])
    self._pending = state["pending"]
    self._pending_failed = state.get("pending_failed", 0)
    self._exhausted = state["exhausted"]


class CountDropsIterDataset(grain.IterDataset):

  def __iter__(self):
    return _CountDropsIterator(self._parent.__iter__())

  def __str__(self):
    return "CountDropsIterDataset"


def _finalize_row(row: dict[str, Any]) -> dict[str, Any]:
  """Grain's packed row → our names; per-row counters summed to scalars."""
  out = {k: np.asarray(row[k], dtype=np.int32) for k in SEQUENCE_FEATURES}
  out["segment_ids"] = np.asarray(row["input_ids_segment_ids"], np.int32)
  out["positions"] = np.asarray(row["input_ids_positions"], np.int32)
  for k in COUNTER_FEATURES:
    out[k] = np.int32(sum(int(v) for v in row[k]))
  return out


def pack(
    examples: grain.IterDataset,
    *,
    seq_len: int,
    packing: str = "first_fit",
    num_packing_bins: int = 8,
) -> grain.IterDataset:
  """Packs shifted examples (see `shift_example`) into rows of `seq_len`.

  Every example must already have at most `seq_len` (input, target) pairs.
  `num_packing_bins` rows are filled at a time; first-fit puts each example in
  the first row with room, best-fit in the fullest row with room; 'none' puts
  one example per row. A packed group is emitted when an example fits nowhere.
  """
  if packing not in PACKING_MODES:
    raise ValueError(f"packing={packing!r}: expected one of {PACKING_MODES}")
  if seq_len < 1 or num_packing_bins < 1:
    raise ValueError(
        f"seq_len={seq_len} and num_packing_bins={num_packing_bins} must be "
        "positive"
    )
  examples = CountDropsIterDataset(examples)
  packer = (
      grain_exp.BestFitPackIterDataset
      if packing == "best_fit"
      else grain_exp.FirstFitPackIterDataset
  )
  packed = packer(
      examples,
      length_struct={k: seq_len for k in SEQUENCE_FEATURES},
      num_packing_bins=num_packing_bins,
      shuffle_bins=False,  # examples are already shuffled
      meta_features=COUNTER_FEATURES,
      max_sequences_per_bin=1 if packing == "none" else None,
  )
  return packed.map(_finalize_row)
