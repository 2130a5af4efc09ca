"""The trainer's data entry point: arm spec -> manifest + Grain batch iterator.

Declaring data in gin (see `gin/data/example.gin`)::

    from sftdiff.data import train_data

    train_data.DataConfig.prompt_set = 'jsonl:prompts.jsonl'   # or 'source:alt'
    train_data.DataConfig.sources = {
        'alt': 'jsonl:alt.jsonl',
        'teacher_o': 'parquet:teacher_o/',          # HF layout, `messages` column
        'teacher_t2': 'tfds:my_rollouts:1.0.0/train',
        'teacher_t3': 'seqio:my_registered_task/train',
    }
    train_data.DataConfig.data_dir = %DATA_DIR      # relative paths resolve here
    train_data.DataConfig.store_dir = %STORE_DIR    # stores cached here (default
                                                    # <data_dir>/joined_store)
    train_data.DataConfig.missing = 'fail'          # | 'drop_prompt' | 'fallback:alt'
    train_data.DataConfig.on_error = 'fail'         # | 'skip' (counted)
    train_data.DataConfig.prompt_mismatch = 'keep'  # | 'fail' | 'drop' (counted)
    train_data.DataConfig.labels_files = {'my_filter': 'labels.jsonl'}
    # or with its policies (filters.register_labels_file's keywords):
    #   {'my_filter': {'path': 'labels.jsonl', 'unknown': 'ignore',
    #                  'unlabeled': 'false'}}
    train_data.DataConfig.regex_filters = {'mentions_paris': r'\\bparis\\b'}
    # or {'paris_reply': {'pattern': r'\\bparis\\b', 'field': 'completion:alt',
    #                     'ignore_case': False}}
    train_data.DataConfig.import_modules = ['my_project.data']  # @register_filter
                                                  # and SeqIO task registrations
    train_data.DataConfig.tfds_data_dir = '/path/to/tensorflow_datasets'

`prompt_set = 'source:<name>'` uses the prompt turns of that source's
conversations. The trainer calls::

    data = make_train_data(tokenizer, arm=ARM, seq_len=..., batch_size=...,
                           seed=SEED, shard_index=jax.process_index(),
                           shard_count=jax.process_count())
    batch = next(data.train)          # a Batch; checkpoint data.train with orbax (Grain)
    for batch in data.eval_batches(): ...
    data.manifest                     # the trainer writes MODEL_DIR/manifest.json

The held-out eval slice is the prompts with `arms.uniform(id_hash, 0,
salt=EVAL_SALT) < eval_fraction`: hash-based, independent of the arm and the
training seed, so every arm holds out the same prompts; the eval examples use
the arm's own choice of source. Arm names are checked before any data is read.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Iterator, Mapping, Sequence

import gin
import numpy as np

from sftdiff.data import arms as arms_lib
from sftdiff.data import batch as batch_lib
from sftdiff.data import filters as filters_lib
from sftdiff.data import store as store_lib
from sftdiff.data import store_build
from sftdiff.data import manifest as manifest_lib
from sftdiff.data import sources as sources_lib

EVAL_SALT = 0x5EED_E7A1


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the prompt set and the rollout sources are and how to join them."""
  prompt_set: str | None = None
  sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
  store_dir: str | None = None
  data_dir: str | None = None
  missing: str = "fail"
  on_error: str = "fail"
  # Source records whose own prompt turns differ from the prompt set's:
  # 'fail' | 'keep' (counted) | 'drop' (the prompt).
  prompt_mismatch: str = "keep"
  labels_files: Mapping[str, str] = dataclasses.field(default_factory=dict)
  regex_filters: Mapping[str, str] = dataclasses.field(default_factory=dict)
  import_modules: Sequence[str] = ()
  tfds_data_dir: str | None = None

  def _spec(self, name: str, uri: str, role: str = "source"):
    return sources_lib.parse_uri(name, uri, role=role, base_dir=self.data_dir,
                                 tfds_data_dir=self.tfds_data_dir)

  def source_specs(self) -> list[sources_lib.SourceSpec]:
    if not self.sources:
      raise ValueError("DataConfig.sources is empty: bind it in gin, e.g. "
                       "DataConfig.sources = {'alt': 'jsonl:alt.jsonl'}")
    return [self._spec(n, uri) for n, uri in self.sources.items()]

  def prompt_spec(self) -> sources_lib.SourceSpec:
    if not self.prompt_set:
      raise ValueError("DataConfig.prompt_set is not set: bind it in gin, e.g. "
                       "DataConfig.prompt_set = 'jsonl:prompts.jsonl' or 'source:alt'")
    if self.prompt_set.startswith("source:"):
      name = self.prompt_set.split(":", 1)[1]
      if name not in self.sources:
        raise ValueError(f"DataConfig.prompt_set={self.prompt_set!r}: no source "
                         f"{name!r} (sources: {', '.join(self.sources)})")
      return self._spec(name, self.sources[name]).as_prompts(f"prompts_of_{name}")
    return self._spec("prompts", self.prompt_set, role="prompts")

  def register_filters(self) -> list[str]:
    """Imports filter modules and registers labels/regex filters; returns names."""
    import os
    for module in self.import_modules:
      importlib.import_module(module)
    for name, value in self.labels_files.items():
      kwargs = _filter_kwargs("labels_files", name, value, "path",
                              ("unlabeled", "unknown"))
      path = os.path.expanduser(kwargs.pop("path"))
      if self.data_dir and not os.path.isabs(path):
        path = os.path.join(self.data_dir, path)
      filters_lib.register_labels_file(name, path, **kwargs)
    for name, value in self.regex_filters.items():
      kwargs = _filter_kwargs("regex_filters", name, value, "pattern",
                              ("field", "ignore_case"))
      ignore_case = kwargs.pop("ignore_case", True)
      if not isinstance(ignore_case, bool):
        raise filters_lib.FilterError(
            f"DataConfig.regex_filters[{name!r}]: ignore_case must be True or "
            f"False, got {ignore_case!r}")
      filters_lib.register_regex_filter(
          name, kwargs.pop("pattern"), field=kwargs.pop("field", "prompt"),
          flags=re.IGNORECASE if ignore_case else 0)
    return list(filters_lib.registered())

  def check_arm(self, arm: arms_lib.ArmLike) -> arms_lib.Arm:
    """Validates the arm's names against this config — reads no data."""
    stored = self.register_filters()
    return arms_lib.check_arm(arm, sources=list(self.sources), filters=stored)

  def resolved_store_dir(self) -> str:
    import os
    if self.store_dir:
      return self.store_dir
    if self.data_dir:
      return os.path.join(self.data_dir, "joined_store")
    raise ValueError("DataConfig.store_dir is not set: bind it in gin "
                     "(DataConfig.store_dir = '/path/to/stores') or set data_dir")

  def build(self, *, force: bool = False) -> store_lib.JoinedStore:
    self.register_filters()
    return self._build_registered(force=force)

  def _build_registered(self, *, force: bool = False) -> store_lib.JoinedStore:
    """`build` once `register_filters` has run."""
    return store_build.build_store(self.prompt_spec(), self.source_specs(),
                                  self.resolved_store_dir(), missing=self.missing,
                                  on_error=self.on_error,
                                  prompt_mismatch=self.prompt_mismatch, force=force)


def _filter_kwargs(field: str, name: str, value: Any, main: str,
                   policies: Sequence[str]) -> dict[str, Any]:
  """A `DataConfig.<field>` entry -> keyword arguments: a string is `main`;
  a dict names `main` and any of `policies`."""
  where = f"DataConfig.{field}[{name!r}]"
  if isinstance(value, str):
    return {main: value}
  if not isinstance(value, Mapping):
    raise filters_lib.FilterError(
        f"{where}: expected a string or a dict with {main!r}, got {value!r}")
  unknown = sorted(set(value) - {main, *policies})
  if unknown or not isinstance(value.get(main), str):
    raise filters_lib.FilterError(
        f"{where}: needs a string {main!r} and takes only "
        f"{', '.join(repr(p) for p in policies)}"
        + (f"; unknown key(s) {unknown}" if unknown else ""))
  return dict(value)


def eval_mask(id_hashes: np.ndarray, eval_fraction: float) -> np.ndarray:
  if not 0.0 <= eval_fraction < 1.0:
    raise ValueError(f"eval_fraction={eval_fraction} must be in [0, 1)")
  return arms_lib.uniform(id_hashes, 0, salt=EVAL_SALT) < eval_fraction


class ArmRecords:
  """Random-access training records of an arm: `{messages, prompt_id, source, subset}`.

  Picklable, so Grain workers can use it: what travels is the store's path and
  meta (each process opens its own reader) and the selection — the store
  indices (int32 below 2**31 prompts) and the chosen source per index (int16),
  6 bytes per selected prompt.
  """

  def __init__(self, store: store_lib.JoinedStore, indices: np.ndarray,
               chosen: np.ndarray):
    self._store = store
    index_dtype = np.int32 if len(store) < 2**31 else np.int64
    self._indices = np.asarray(indices).astype(index_dtype, copy=False)
    self._chosen = np.asarray(chosen, dtype=np.int16)[self._indices]
    self._sources = store.sources

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, i: int) -> dict[str, Any]:
    record = self._store[self._indices[i]]
    return manifest_lib.pipeline_record(record, self._sources[self._chosen[i]])


@dataclasses.dataclass
class ArmTrainData:
  """A `batch.TrainData` for one arm, plus the store and the selected records."""
  train: Iterator[batch_lib.Batch]  # grain.DatasetIterator (see pipeline.make_batches)
  manifest: dict[str, Any]
  store: store_lib.JoinedStore
  train_records: ArmRecords
  eval_records: ArmRecords
  _make_eval: Any = None

  def eval_batches(self) -> list[batch_lib.Batch]:
    """This process's batches of the held-out slice (one pass; [] if empty)."""
    return self._make_eval() if self._make_eval is not None else []


def select_arm(data: DataConfig, arm: arms_lib.ArmLike
               ) -> tuple[arms_lib.Arm, store_lib.JoinedStore, np.ndarray]:
  """Checks the arm's names (no data read; filters registered once), builds/
  reuses the store, checks the names only the prompt set knows, selects."""
  arm = data.check_arm(arm)
  store = data._build_registered()  # pylint: disable=protected-access
  _check_subsets(arm, store.subsets)
  chosen = arms_lib.select_checked(arm, store.selection_columns(), store.sources)
  return arm, store, chosen


def _check_subsets(arm: arms_lib.Arm, subsets) -> None:
  """`subset:<name>` filters name a subset of the prompt set (known once read)."""
  for name in arms_lib.filters_of(arm):
    if name.startswith("subset:"):
      try:
        filters_lib.check_name(name, sources=(), stored=(), subsets=subsets)
      except filters_lib.FilterError as e:
        raise arms_lib.ArmError(f"arm {arm}: {e}") from e


@gin.configurable(denylist=["tokenizer"])
def make_train_data(tokenizer, *, arm: str, seq_len: int, batch_size: int,
                    seed: int, shard_index: int = 0, shard_count: int = 1,
                    data: DataConfig | None = None,
                    store_dir: str | None = None,
                    sources: Mapping[str, str] | None = None,
                    eval_fraction: float = 0.02, packing: str = "first_fit",
                    overlong: str = "truncate", worker_count: int = 0,
                    num_epochs: int | None = None,
                    arm_name: str | None = None,
                    train_all_assistant: bool = False) -> ArmTrainData:
  """Builds the arm's mixture and its Grain pipeline (see module docstring).

  `store_dir` / `sources` override the DataConfig fields of the same name.
  Only the chosen source's completion turns are trained unless
  `train_all_assistant` (then the prompt's assistant turns too). Per-record
  tokenization failures follow `DataConfig.on_error` (counted by reason in
  the manifest under 'skip'). The manifest is returned, not written: the
  trainer writes it (the one writer of MODEL_DIR/manifest.json).
  """
  from sftdiff.data import pipeline

  data = data or DataConfig()
  overrides = {k: v for k, v in (("store_dir", store_dir), ("sources", sources))
               if v is not None}
  data = dataclasses.replace(data, **overrides)
  eval_mask(np.zeros(0, np.uint64), eval_fraction)  # Validates before data is read.
  arm, store, chosen = select_arm(data, arm)
  held_out = eval_mask(store.columns(["id_hash"])["id_hash"], eval_fraction)
  kept = chosen != arms_lib.DROP
  train_idx = np.flatnonzero(kept & ~held_out)
  eval_idx = np.flatnonzero(kept & held_out)
  if len(train_idx) == 0:
    raise arms_lib.ArmError(f"arm {arm}: every selected prompt is in the "
                            f"held-out slice (eval_fraction={eval_fraction})")
  manifest = manifest_lib.build_manifest(
      arm, store, chosen, arm_name=arm_name, tokenizer=tokenizer,
      max_len=seq_len + 1, overlong=overlong,
      split={"train": int(len(train_idx)), "eval": int(len(eval_idx)),
             "eval_fraction": eval_fraction},
      on_error=data.on_error, train_all_assistant=train_all_assistant)
  store.clear_columns()  # Keep only the selection in memory while training.

  train_records = ArmRecords(store, train_idx, chosen)
  eval_records = ArmRecords(store, eval_idx, chosen)
  import grain
  train = pipeline.make_batches(
      grain.MapDataset.source(train_records), tokenizer, seq_len=seq_len,
      batch_size=batch_size, seed=seed, shard_index=shard_index,
      shard_count=shard_count, packing=packing, overlong=overlong,
      num_epochs=num_epochs, worker_count=worker_count,
      on_error=data.on_error, train_all_assistant=train_all_assistant)

  def make_eval() -> list[batch_lib.Batch]:
    if len(eval_records) < shard_count:
      return []
    return list(pipeline.make_batches(
        grain.MapDataset.source(eval_records), tokenizer, seq_len=seq_len,
        batch_size=batch_size, seed=seed, shard_index=shard_index,
        shard_count=shard_count, packing=packing, overlong=overlong,
        num_epochs=1, worker_count=0, on_error=data.on_error,
        train_all_assistant=train_all_assistant))

  return ArmTrainData(train=iter(train), manifest=manifest, store=store,
                   train_records=train_records, eval_records=eval_records,
                   _make_eval=make_eval)
