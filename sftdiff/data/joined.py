"""The joined store: one record per prompt with every source's completion.

`build_store(prompt_set, sources, store_dir)` reads each SeqIO task once, joins
the sources to the prompt set by `prompt_id`, labels every record with every
stored filter, and materialises the result under
`store_dir/<fingerprint>/`:

  records.array_record  one JSON record per prompt (random access, Grain-ready):
                        {prompt_id, prompt (messages), subset,
                         completions: {source: [messages]}}
  index.parquet         columns for vectorised selection: prompt_id, subset,
                        id_hash (uint64 blake2b of prompt_id), label:<filter>,
                        refusal@<source> (bool)
  meta.json             fingerprint inputs, coverage, skip counts, provenance

The fingerprint hashes the inputs (each spec's files' paths, sizes and mtimes,
or task names), the policies, and every stored filter's name and version, so a
store is rebuilt only when one of them changes. `meta.json` is written last and
the directory is moved into place atomically, so a half-built store is never
reused.

Coverage policy `missing` for prompts lacking some source's completion:
`'fail'` (error listing counts per source), `'drop_prompt'` (drop the prompt),
or `'fallback:<source>'` (use that source's completion) — all counted in
`meta.json["coverage"]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from sftdiff.data import filters as filters_lib
from sftdiff.data import records as records_lib
from sftdiff.data import sources as sources_lib

STORE_VERSION = "1"
RECORDS_FILE = "records.array_record"
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"


class CoverageError(ValueError):
  """Some prompts lack a source's completion under `missing='fail'`."""


def id_hash(prompt_ids: Sequence[str]) -> np.ndarray:
  """uint64 blake2b hash of each prompt_id (the per-prompt randomness key)."""
  return np.array([int.from_bytes(hashlib.blake2b(p.encode("utf-8"), digest_size=8)
                                  .digest(), "little") for p in prompt_ids],
                  dtype=np.uint64)


def check_missing_policy(missing: str, sources: Sequence[str]) -> str | None:
  """Returns the fallback source (or None); raises on a bad policy."""
  if missing in ("fail", "drop_prompt"):
    return None
  if missing.startswith("fallback:"):
    fallback = missing.split(":", 1)[1]
    if fallback not in sources:
      raise ValueError(f"missing={missing!r}: fallback source {fallback!r} is not "
                       f"one of the sources {list(sources)}")
    return fallback
  raise ValueError(f"missing={missing!r}: expected 'fail', 'drop_prompt' or "
                   "'fallback:<source>'")


def fingerprint(prompt_set: sources_lib.SourceSpec,
                sources: Sequence[sources_lib.SourceSpec], *, missing: str,
                on_error: str, filters: Mapping[str, filters_lib.Filter]
                ) -> tuple[str, dict[str, Any]]:
  inputs = {
      "store_version": STORE_VERSION,
      "prompt_set": {"uri": prompt_set.uri(), "fingerprint": prompt_set.fingerprint()},
      "sources": {s.name: {"uri": s.uri(), "fingerprint": s.fingerprint()}
                  for s in sources},
      "missing": missing, "on_error": on_error,
      "filters": {n: f.version for n, f in filters.items()},
      "refusal_version": filters_lib.REFUSAL_VERSION,
  }
  digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
  return digest[:16], inputs


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
    with open(os.path.join(path, META_FILE)) as f:
      self.meta: dict[str, Any] = json.load(f)
    self._reader = None
    self._columns: dict[str, np.ndarray] = {}

  # Readers are not picklable; Grain workers reopen them.
  def __getstate__(self):
    return {"path": self.path, "meta": self.meta}

  def __setstate__(self, state):
    self.path, self.meta = state["path"], state["meta"]
    self._reader, self._columns = None, {}

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
    import pyarrow.parquet as pq
    # ParquetFile.read (not read_table) avoids importing pyarrow.dataset.
    index = pq.ParquetFile(os.path.join(self.path, INDEX_FILE))
    wanted = list(names) if names is not None else index.schema_arrow.names
    todo = [n for n in wanted if n not in self._columns]
    if todo:
      table = index.read(columns=todo)
      for n in todo:
        self._columns[n] = _to_numpy(table.column(n))
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
    if self._reader is None:
      from array_record.python import array_record_module
      # Random access (as Grain's ArrayRecordDataSource): no readahead — the
      # default 16 MB buffer per read would dominate shuffled reads.
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
    return [json.loads(b) for b in self._open().read([int(i) for i in indices])]

  def __iter__(self) -> Iterator[dict[str, Any]]:
    for start in range(0, len(self), 1024):
      chunk = self._open().read(start, min(start + 1024, len(self)))
      yield from (json.loads(b) for b in chunk)


def _coverage_error(lacking: Mapping[str, list[str]], n: int) -> CoverageError:
  lines = [f"  {s}: {len(ids)} of {n} prompts lack a completion, e.g. {ids[:3]}"
           for s, ids in lacking.items() if ids]
  return CoverageError("sources do not cover the prompt set (missing='fail'):\n"
                       + "\n".join(lines) + "\nset missing='drop_prompt' or "
                       "'fallback:<source>' to proceed (counted in meta.json)")


def build_store(prompt_set: sources_lib.SourceSpec,
                sources: Sequence[sources_lib.SourceSpec], store_dir: str, *,
                missing: str = "fail", on_error: str = "fail",
                force: bool = False) -> JoinedStore:
  """Builds (or reuses) the joined store for these inputs; returns it."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  from array_record.python import array_record_module

  names = [s.name for s in sources]
  if not names or len(set(names)) != len(names):
    raise ValueError(f"sources must be non-empty with unique names, got {names}")
  fallback = check_missing_policy(missing, names)
  records_lib.check_policy(on_error)
  stored_filters = filters_lib.registered()
  fp, inputs = fingerprint(prompt_set, sources, missing=missing,
                           on_error=on_error, filters=stored_filters)
  final = os.path.join(store_dir, fp)
  if os.path.exists(os.path.join(final, META_FILE)) and not force:
    return JoinedStore(final)

  # Nested fields stay JSON strings until a record is written: compact memory.
  prompts, prompt_report = sources_lib.read_records(prompt_set, on_error=on_error,
                                                    decode=False)
  completions: dict[str, dict[str, str]] = {}
  reports = {}
  for spec in sources:
    recs, reports[spec.name] = sources_lib.read_records(spec, on_error=on_error,
                                                        decode=False)
    completions[spec.name] = {r["prompt_id"]: r["completion"] for r in recs}
    del recs

  prompt_ids = {p["prompt_id"] for p in prompts}
  lacking = {s: [p["prompt_id"] for p in prompts if p["prompt_id"] not in c]
             for s, c in completions.items()}
  if missing == "fail" and any(lacking.values()):
    raise _coverage_error(lacking, len(prompts))
  coverage = {
      "policy": missing,
      "prompts_in": len(prompts),
      "lacking": {s: len(ids) for s, ids in lacking.items()},
      "unmatched_completions": {s: len(set(c) - prompt_ids)
                                for s, c in completions.items()},
      "dropped_prompts": 0, "fallback_filled": {s: 0 for s in names},
  }

  os.makedirs(store_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{fp}.", dir=store_dir)
  writer = array_record_module.ArrayRecordWriter(
      os.path.join(tmp, RECORDS_FILE), "group_size:1")
  kept_ids, kept_subsets, joined = [], [], []
  label_cols: dict[str, list[np.ndarray]] = {}

  def flush():
    cols = filters_lib.label_columns(joined, names, stored_filters)
    for k, v in cols.items():
      label_cols.setdefault(k, []).append(v)
    joined.clear()

  try:
    for p in prompts:
      pid = p["prompt_id"]
      comps = {}
      for s in names:
        c = completions[s].get(pid)
        if c is None and fallback is not None:
          c = completions[fallback].get(pid)
          if c is not None:
            coverage["fallback_filled"][s] += 1
        if c is None:
          break
        comps[s] = c
      if len(comps) < len(names):
        coverage["dropped_prompts"] += 1
        continue
      record = {"prompt_id": pid, "prompt": json.loads(p["messages"]),
                "subset": p["subset"],
                "completions": {s: json.loads(c) for s, c in comps.items()}}
      # Same bytes as json.dumps(record), without re-encoding the messages.
      encoded = "".join([
          '{"prompt_id": ', json.dumps(pid, ensure_ascii=False), ', "prompt": ',
          p["messages"], ', "subset": ', json.dumps(p["subset"], ensure_ascii=False),
          ', "completions": {',
          ", ".join(f"{json.dumps(s)}: {c}" for s, c in comps.items()), "}}"])
      writer.write(encoded.encode("utf-8"))
      kept_ids.append(pid)
      kept_subsets.append(p["subset"])
      joined.append(record)
      if len(joined) >= 4096:
        flush()
    flush()
    writer.close()
    if not kept_ids:
      raise CoverageError(f"the joined store would be empty: {coverage}")
    filter_checks = {}
    for name, f in stored_filters.items():
      if f.check is not None:
        filter_checks[name] = f.check(set(kept_ids))
    table = {"prompt_id": pa.array(kept_ids, pa.string()),
             "subset": pa.array(kept_subsets, pa.string()),
             "id_hash": pa.array(id_hash(kept_ids), pa.uint64())}
    for k, parts in label_cols.items():
      table[k] = pa.array(np.concatenate(parts) if parts else np.zeros(0, bool))
    pq.write_table(pa.table(table), os.path.join(tmp, INDEX_FILE))
    subsets, subset_counts = np.unique(np.asarray(kept_subsets), return_counts=True)
    provenance = dict(prompt_report.provenance)
    meta = {
        "fingerprint": fp, "inputs": inputs, "num_prompts": len(kept_ids),
        "sources": names, "filters": {n: f.version for n, f in stored_filters.items()},
        "filter_descriptions": {n: f.description for n, f in stored_filters.items()},
        "filter_checks": filter_checks,
        "subsets": [str(s) for s in subsets],
        "subset_counts": {str(s): int(c) for s, c in zip(subsets, subset_counts)},
        "coverage": coverage,
        "prompt_id_provenance": {
            "prompt_set": provenance,
            "sources": {s: dict(r.provenance) for s, r in reports.items()}},
        "read_reports": {"prompt_set": prompt_report.to_json(),
                         **{s: r.to_json() for s, r in reports.items()}},
    }
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True)
    try:
      os.rename(tmp, final)
    except OSError:  # Built concurrently or forced: replace the old one.
      if force and os.path.exists(final):
        shutil.rmtree(final)
        os.rename(tmp, final)
      else:
        shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return JoinedStore(final)


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
