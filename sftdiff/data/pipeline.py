"""Grain pipeline: conversation records → packed, batched training arrays.

    records (MapDataset of {'messages', 'prompt_id', ...})
      → shuffle (seeded, reshuffled every epoch) → shard by process
      → repeat → chat format + assistant-only mask (over-long: truncate/drop)
      → pack (first-fit / best-fit / none) → batch → [multiprocess prefetch]
      → statistics (PipelineStats)

Every process shuffles with the same seed and takes every `shard_count`-th
record of each epoch's permutation, so shards are disjoint and complete per
epoch. Batches are `sftdiff.data.batch.Batch`es of numpy arrays, each int32
[batch_size, seq_len] (the features are described there). A final short batch
(finite epochs) is padded with empty rows so shapes stay static.

The iterator is checkpointable: `it.get_state()` / `it.set_state()`, or with
orbax next to the model, e.g.

    mngr.save(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(it), ...))
    mngr.restore(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(it), ...))
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl import flags
import grain
import numpy as np

from sftdiff.data import batch as batch_lib
from sftdiff.data import chat
from sftdiff.data import packing as packing_lib
from sftdiff.data import tokenizer as tokenizer_lib

@dataclasses.dataclass
class PipelineStats:
  """What the pipeline has emitted so far (restored with the iterator)."""

  batches: int = 0
  rows: int = 0
  examples: int = 0  # packed into rows (truncated ones included)
  truncated: int = 0
  dropped: int = 0  # over-long, removed by overlong='drop'
  failed: int = 0  # per-record errors skipped under on_error='skip'
  tokens: int = 0  # non-padding input positions
  trainable_tokens: int = 0  # positions whose target is trained

  def as_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)


# Per-record failures (counted by these reasons in the manifest).
RECORD_ERRORS = (
    chat.MessageFormatError,
    chat.MaskError,
    tokenizer_lib.ChatTemplateError,
)


def failure_reason(error: Exception) -> str:
  return {chat.MessageFormatError: "message_format",
          chat.MaskError: "mask",
          tokenizer_lib.ChatTemplateError: "template"}.get(type(error), "tokenization")


def record_turns(record: dict[str, Any], train_all_assistant: bool
                 ) -> list[int] | None:
  """Indices of the assistant messages to train: the completion's (messages
  from `num_prompt_turns` on), or every one with `train_all_assistant`."""
  n = record.get("num_prompt_turns")
  if train_all_assistant or n is None:
    return None
  return list(range(int(n), len(record["messages"])))


def tokenize_record(tokenizer, record: dict[str, Any], *, max_len, overlong,
                    train_all_assistant: bool = False):
  """A pipeline record → TokenizedExample | None (see chat)."""
  tools = record.get("tools")
  return chat.tokenize_with_assistant_mask(
      tokenizer, record["messages"], max_len=max_len, overlong=overlong,
      trained_turns=record_turns(record, train_all_assistant),
      tools=list(tools) if tools is not None else None)


class TokenizeRecord:
  """Record → shifted example (see packing.shift_example), DROPPED or FAILED.

  A record's `num_prompt_turns` (if present) says where the trained
  completion starts. A per-record error re-raises (naming the record) under
  `on_error='fail'` and becomes FAILED (counted) under `'skip'`.
  A class (not a closure) so that multiprocess workers can pickle it.
  """

  def __init__(
      self, tokenizer: tokenizer_lib.ChatTokenizer, max_len: int, overlong: str,
      on_error: str = "fail", train_all_assistant: bool = False,
  ):
    self._tokenizer = tokenizer
    self._max_len = max_len
    self._overlong = overlong
    self._on_error = on_error
    self._train_all = train_all_assistant

  def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(record, dict) or "messages" not in record:
      raise chat.MessageFormatError(
          f"pipeline record {_describe(record)}: expected a dict with "
          "'messages'"
      )
    try:
      example = tokenize_record(
          self._tokenizer, record, max_len=self._max_len,
          overlong=self._overlong, train_all_assistant=self._train_all)
    except RECORD_ERRORS as e:
      if self._on_error == "skip":
        return dict(packing_lib.FAILED)
      raise type(e)(f"pipeline record {_describe(record)}: {e}") from e
    if example is None:
      return dict(packing_lib.DROPPED)
    return packing_lib.shift_example(example)


def _describe(record) -> str:
  if not isinstance(record, dict):
    return f"of type {type(record).__name__}"
  keys = ("prompt_id", "source", "subset")
  return " ".join(f"{k}={record[k]!r}" for k in keys if k in record) or "?"


class _PadBatch:
  """Pads a short final batch with empty rows (segment 0, loss_mask 0)."""

  def __init__(self, batch_size: int):
    self._batch_size = batch_size

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = self._batch_size - len(batch["input_ids"])
    if missing == 0:
      return batch
    return {
        k: np.concatenate(
            [v, np.zeros((missing,) + v.shape[1:], dtype=v.dtype)]
        )
        for k, v in batch.items()
    }


class _StatsIterator(grain.DatasetIterator):
  """Accumulates the per-row counters into PipelineStats; yields `Batch`es."""

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)
    self.stats = PipelineStats()

  def __next__(self) -> batch_lib.Batch:
    batch = next(self._parent)
    s = self.stats
    s.batches += 1
    s.rows += int(np.sum(batch["segment_ids"].max(axis=1) > 0))
    s.examples += int(batch["num_examples"].sum())
    s.truncated += int(batch["num_truncated"].sum())
    s.dropped += int(batch["num_dropped"].sum())
    s.failed += int(batch["num_failed"].sum())
    s.tokens += int(np.count_nonzero(batch["segment_ids"]))
    s.trainable_tokens += int(batch["loss_mask"].sum())
    return batch_lib.Batch.from_features(batch)

  def get_state(self):
    return {"parent": self._parent.get_state(), "stats": self.stats.as_dict()}

  def set_state(self, state):
    self._parent.set_state(state["parent"])
    self.stats = PipelineStats(**{"failed": 0, **state["stats"]})

  def close(self):
    close = getattr(self._parent, "close", None)
    if close is not None:
      close()


class StatsIterDataset(grain.IterDataset):

  def __iter__(self) -> _StatsIterator:
    return _StatsIterator(self._parent.__iter__())

  def __str__(self):
    return "StatsIterDataset"


def make_batches(
    records: grain.MapDataset,
    tokenizer: tokenizer_lib.ChatTokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    packing: str = "first_fit",
    overlong: str = "truncate",
    num_epochs: int | None = None,
    worker_count: int = 0,
    num_packing_bins: int | None = None,
    on_error: str = "fail",
    train_all_assistant: bool = False,
) -> grain.IterDataset:
  """Packed training `Batch`es; `iter()` of it has `.stats` (PipelineStats).

  `num_epochs=None` repeats forever. `num_packing_bins` (default batch_size)
  rows are packed together; more bins pack tighter. `worker_count=0` runs in
  process; N>0 runs N prefetch processes, each packing its own slice of the
  stream (deterministic for a given N, but N changes the batches).
  """
  if not isinstance(records, grain.MapDataset):
    raise TypeError(
        f"make_batches: records must be a grain.MapDataset, got "
        f"{type(records).__name__}"
    )
  if len(records) == 0:
    raise ValueError("make_batches: records is empty")
  if not 0 <= shard_index < shard_count:
    raise ValueError(
        f"make_batches: shard_index={shard_index} must be in "
        f"[0, shard_count={shard_count})"
    )
  if len(records) < shard_count:
    raise ValueError(
        f"make_batches: {len(records)} records cannot fill {shard_count} shards"
    )
  if batch_size < 1 or seq_len < 1:
    raise ValueError(
        f"make_batches: batch_size={batch_size} and seq_len={seq_len} must be "
        "positive"
    )
  if overlong not in chat.OVERLONG_POLICIES:
    raise ValueError(
        f"make_batches: overlong={overlong!r}: expected one of "
        f"{chat.OVERLONG_POLICIES}"
    )
  if packing not in packing_lib.PACKING_MODES:
    raise ValueError(
        f"make_batches: packing={packing!r}: expected one of "
        f"{packing_lib.PACKING_MODES}"
    )
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"make_batches: num_epochs={num_epochs} must be >= 1")
  if worker_count < 0:
    raise ValueError(f"make_batches: worker_count={worker_count} must be >= 0")
  if on_error not in ("fail", "skip"):
    raise ValueError(f"make_batches: on_error={on_error!r}: expected 'fail' "
                     "or 'skip'")

  # repeat() re-seeds the upstream shuffle every epoch; the slice takes this
  # process's share of each epoch's permutation.
  ds = records.shuffle(seed=seed)[shard_index::shard_count]
  ds = ds.repeat(num_epochs)
  # seq_len + 1 tokens give seq_len (input, target) pairs.
  ds = ds.map(TokenizeRecord(tokenizer, seq_len + 1, overlong, on_error,
                            train_all_assistant))
  rows = packing_lib.pack(
      ds.to_iter_dataset(),
      seq_len=seq_len,
      packing=packing,
      num_packing_bins=num_packing_bins or batch_size,
  )
  batches = rows.batch(batch_size, drop_remainder=False).map(
      _PadBatch(batch_size)
  )
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():
      # Grain's workers read absl flags; outside an absl app (tests, scripts)
      # use their defaults instead of failing.
      flags.FLAGS.mark_as_parsed()
    batches = batches.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=worker_count)
    )
  return StatsIterDataset(batches)
