"""The joined store, read side: one record per prompt with every source's
completion, as written by `sftdiff.data.store_build.build_store` under
`store_dir/<fingerprint>/`:

  records.array_record  one JSON record per prompt (random access, Grain-ready):
                        {prompt_id, prompt (messages), subset,
                         completions: {source: [messages]}}
  index.parquet         columns for vectorised selection: prompt_id, subset,
                        id_hash (uint64 blake2b of prompt_id), label:<filter>,
                        refusal@<source> (bool), fallback@<source> (bool:
                        that source's completion is the fallback's text)
  meta.json             fingerprint inputs, coverage, skip counts, provenance

`JoinedStore(path)` reads it: vectorised index columns, random access to
records (Grain-ready), and `coverage_summary(store)` for people.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from sftdiff import strict_json

STORE_VERSION = "2"  # 2: fallback@<source> index columns
RECORDS_FILE = "records.array_record"
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"



def id_hash(prompt_ids: Sequence[str]) -> np.ndarray:
  """uint64 blake2b hash of each prompt_id (the per-prompt randomness key)."""
  return np.array([int.from_bytes(hashlib.blake2b(p.encode("utf-8"), digest_size=8)
                                  .digest(), "little") for p in prompt_ids],
                  dtype=np.uint64)


def _to_numpy(column) -> np.ndarray:
  """Arrow column -> numpy from its buffers (Arrow's to_numpy imports pandas)."""
  import pyarrow as pa
  parts = []
  for chunk in column.chunks:
    if chunk.null_count:
      raise ValueError(f"store index column has {chunk.null_count} nulls")
    if pa.types.is_boolean(chunk.type):
      bits = np.unpackbits(np.frombuffer(chunk.buffers()[1], np.uint8),
                           bitorder="little")
      parts.append(bits[chunk.offset:chunk.offset + len(chunk)].astype(bool))
    elif pa.types.is_integer(chunk.type):
      dtype = np.dtype(chunk.type.to_pandas_dtype())
      parts.append(np.frombuffer(chunk.buffers()[1], dtype)[
          chunk.offset:chunk.offset + len(chunk)])
    else:
      parts.append(np.asarray(chunk.to_pylist(), dtype=object))
  if not parts:
    return np.zeros(0, dtype=object)
  return np.concatenate(parts)


class JoinedStore:
  """Read side of a built store: columns for selection, records by index."""

  def __init__(self, path: str):
    self.path = path
    self.meta: dict[str, Any] = strict_json.load(os.path.join(path, META_FILE))
    self._reader = None
    self._reader_lock = threading.Lock()
    self._columns: dict[str, np.ndarray] = {}

  # Readers are not picklable; Grain workers reopen them. Only the path and
  # meta travel: a worker holds no index columns.
  def __getstate__(self):
    return {"path": self.path, "meta": self.meta}

  def __setstate__(self, state):
    self.path, self.meta = state["path"], state["meta"]
    self._reader, self._columns = None, {}
    self._reader_lock = threading.Lock()

  @property
  def fingerprint(self) -> str:
    return self.meta["fingerprint"]

  @property
  def sources(self) -> list[str]:
    return list(self.meta["sources"])

  @property
  def filters(self) -> list[str]:
    return list(self.meta["filters"])

  @property
  def subsets(self) -> list[str]:
    return list(self.meta["subsets"])

  def __len__(self) -> int:
    return self.meta["num_prompts"]

  def columns(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Index columns as numpy arrays (only the named ones are read; cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    # ParquetFile.read (not read_table) avoids importing pyarrow.dataset.
    with pq.ParquetFile(os.path.join(self.path, INDEX_FILE)) as index:
      wanted = list(names) if names is not None else index.schema_arrow.names
      todo = [n for n in wanted if n not in self._columns]
      if todo:
        table = index.read(columns=todo)
        for n in todo:
          self._columns[n] = _to_numpy(table.column(n))
        del table
    if todo:
      # The columns are numpy copies: hand Arrow's freed read buffers back
      # (its allocator otherwise keeps ~35 MB per 1M prompts cached).
      pa.default_memory_pool().release_unused()
    return {n: self._columns[n] for n in wanted}

  def clear_columns(self) -> None:
    """Frees cached index columns (the pipeline needs only the selection)."""
    self._columns = {}

  def selection_columns(self) -> dict[str, np.ndarray]:
    """prompt_id, subset, id_hash and every label column."""
    return self.columns(["prompt_id", "subset", "id_hash"]
                        + [f"label:{f}" for f in self.filters]
                        + [f"refusal@{s}" for s in self.sources])

  def _open(self):
    # Grain's read threads all ask at once on a fresh process: one opens, the
    # others wait. (Each open decodes the whole footer, ~26 bytes per record,
    # into its thread's malloc arena: 16 racing opens cost 16 times that.)
    if self._reader is None:
      with self._reader_lock:
        if self._reader is None:
          from array_record.python import array_record_module
          # Random access (as Grain's ArrayRecordDataSource): no readahead —
          # the default 16 MB buffer per read would dominate shuffled reads.
          self._reader = array_record_module.ArrayRecordReader(
              os.path.join(self.path, RECORDS_FILE), "readahead_buffer_size:0",
              file_reader_buffer_size=32768)
    return self._reader

  def __getitem__(self, index: int) -> dict[str, Any]:
    # A range read: read([i]) costs O(num_records) per call (7 ms at 1M).
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"store index {index} out of range [0, {len(self)})")
    return json.loads(self._open().read(index, index + 1)[0])

  def read(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Records at `indices` (in that order)."""
    # Range reads only: read([i, ...]) allocates O(num_records) per call.
    idx = [int(i) for i in indices]
    if not idx:
      return []
    lo, hi = min(idx), max(idx) + 1
    if lo < 0 or hi > len(self):
      raise IndexError(f"store indices out of range [0, {len(self)})")
    reader = self._open()
    if hi - lo <= 4 * len(idx):  # Dense enough: one range read.
      block = reader.read(lo, hi)
      return [json.loads(block[i - lo]) for i in idx]
    return [json.loads(reader.read(i, i + 1)[0]) for i in idx]

  def __iter__(self) -> Iterator[dict[str, Any]]:
    for start in range(0, len(self), 1024):
      chunk = self._open().read(start, min(start + 1024, len(self)))
      yield from (json.loads(b) for b in chunk)


def coverage_summary(store: JoinedStore) -> str:
  """Human-readable coverage and skip report of a store."""
  m = store.meta
  cov = m["coverage"]
  lines = [f"store {store.path}", f"  fingerprint {m['fingerprint']}: "
           f"{m['num_prompts']} prompts, sources {', '.join(m['sources'])}",
           f"  coverage policy {cov['policy']}: {cov['prompts_in']} prompts in, "
           f"{cov['dropped_prompts']} dropped"]
  for s in m["sources"]:
    lines.append(f"  {s}: lacking {cov['lacking'][s]}, filled by fallback "
                 f"{cov['fallback_filled'][s]}, unmatched completions "
                 f"{cov['unmatched_completions'][s]}")
  for name, r in m["read_reports"].items():
    if r["num_skipped"]:
      lines.append(f"  {name}: skipped {r['num_skipped']} rows {r['skipped']}; "
                   f"e.g. {r['skip_examples'][0]}")
  lines.append(f"  subsets: {m['subset_counts']}")
  lines.append(f"  prompt_id provenance: {m['prompt_id_provenance']['prompt_set']}")
  return "\n".join(lines)
