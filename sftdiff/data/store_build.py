"""The joined store, write side: `build_store(prompt_set, sources, store_dir)`
reads each SeqIO task once, joins the sources to the prompt set by
`prompt_id`, labels every record with every stored filter, and materialises the
result under `store_dir/<fingerprint>/` (layout and reader:
`sftdiff.data.store`).

The fingerprint hashes the inputs (each spec's files' paths, sizes and mtimes,
or task names), the policies, and every stored filter's name and version, so a
store is rebuilt only when one of them changes. `meta.json` is written last and
the directory is moved into place atomically, so a half-built store is never
reused.

Prompt check `prompt_mismatch` for source records that carry their own prompt
turns (whole conversations): their prompt's content hash (role + content of
each turn) must equal the prompt set's for that prompt_id, else `'fail'`
(error naming the first ids), `'keep'` (count and keep), or `'drop'` (drop
the prompt) — counted in `meta.json["prompt_mismatch"]` (and the manifest).
The default is `'keep'`: rollouts often carry a paraphrased or templated copy
of the prompt; the count says how many.

Coverage policy `missing` for prompts lacking some source's completion:
`'fail'` (error listing counts per source), `'drop_prompt'` (drop the prompt),
or `'fallback:<source>'` (use that source's completion) — all counted in
`meta.json["coverage"]`; the `fallback@<source>` columns say which prompts
were filled, so a manifest counts them under the source actually trained.

The build streams: each task's records go into an SQLite spill in the build
directory (one table per input, indexed by prompt_id); coverage is counted in
SQL; one LEFT JOIN query in prompt-set order feeds the records file, the
filter labels (in chunks of `_LABEL_CHUNK` records) and the index (a Parquet
row group per `_INDEX_ROW_GROUP` rows); the spill is deleted before the store
is moved into place. What grows with the number of prompts is on disk, except
ArrayRecord's in-memory chunk index: the writer keeps ~65 bytes per record
until it closes, each reader ~18 (see docs/performance.md, bench/data.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Iterator, Mapping, Sequence

from absl import logging
import numpy as np

from sftdiff import strict_json
from sftdiff.data import filters as filters_lib
from sftdiff.data import records as records_lib
from sftdiff.data import sources as sources_lib
from sftdiff.data.store import (INDEX_FILE, META_FILE, RECORDS_FILE, STORE_VERSION,
                                JoinedStore, id_hash)

class CoverageError(ValueError):
  """Some prompts lack a source's completion under `missing='fail'`."""


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


def _coverage_error(lacking: Mapping[str, int], examples: Mapping[str, list[str]],
                    n: int) -> CoverageError:
  lines = [f"  {s}: {count} of {n} prompts lack a completion, e.g. {examples[s]}"
           for s, count in lacking.items() if count]
  return CoverageError("sources do not cover the prompt set (missing='fail'):\n"
                       + "\n".join(lines) + "\nset missing='drop_prompt' or "
                       "'fallback:<source>' to proceed (counted in meta.json)")


# Records per filter-labelling chunk, and index rows per Parquet row group.
_LABEL_CHUNK = 512
_INDEX_ROW_GROUP = 65536


class _Spill:
  """The build's inputs on disk (SQLite), so memory does not grow with them.

  Tables: `prompts(ord, prompt_id, messages, subset)` in prompt-set order and
  `c<i>(prompt_id, completion)` per source, nested fields as JSON text.
  """

  def __init__(self, path: str, num_sources: int):
    import sqlite3
    self.path = path
    self.num_sources = num_sources
    self.db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF",
                   f"cache_size=-{records_lib.SPILL_CACHE_KIB}"):
      self.db.execute(f"PRAGMA {pragma}")
    self.db.execute("CREATE TABLE prompts (ord INTEGER PRIMARY KEY, "
                    "prompt_id TEXT NOT NULL, messages TEXT, subset TEXT, "
                    "prompt_hash TEXT, tools TEXT)")
    for i in range(num_sources):
      self.db.execute(f"CREATE TABLE c{i} (prompt_id TEXT NOT NULL, completion TEXT, "
                      "prompt_hash TEXT)")

  def _load(self, sql: str, rows: Iterator[tuple[str, ...]]) -> None:
    self.db.execute("BEGIN")
    self.db.executemany(sql, rows)
    self.db.execute("COMMIT")

  def add_prompts(self, records: Iterator[dict[str, Any]]) -> None:
    self._load("INSERT INTO prompts (prompt_id, messages, subset, prompt_hash, tools) "
               "VALUES (?, ?, ?, ?, ?)",
               ((r["prompt_id"], r["messages"], r["subset"],
                 _prompt_hash(r["messages"]), r.get("tools")) for r in records))
    # Unique: the readers reject duplicate prompt_ids already.
    self.db.execute("CREATE UNIQUE INDEX prompts_id ON prompts (prompt_id)")

  def add_completions(self, i: int, records: Iterator[dict[str, Any]]) -> None:
    self._load(f"INSERT INTO c{i} VALUES (?, ?, ?)",
               ((r["prompt_id"], r["completion"], _prompt_hash(r.get("prompt")))
                for r in records))
    self.db.execute(f"CREATE UNIQUE INDEX c{i}_id ON c{i} (prompt_id)")

  def count(self, sql: str) -> int:
    return self.db.execute(sql).fetchone()[0]

  def num_prompts(self) -> int:
    return self.count("SELECT COUNT(*) FROM prompts")

  def lacking(self, i: int, limit: int | None = None):
    """Prompts without a completion of source i: count, or the first ids."""
    where = (f"FROM prompts p WHERE NOT EXISTS "
             f"(SELECT 1 FROM c{i} c WHERE c.prompt_id = p.prompt_id)")
    if limit is None:
      return self.count(f"SELECT COUNT(*) {where}")
    return [r[0] for r in self.db.execute(
        f"SELECT p.prompt_id {where} ORDER BY p.ord LIMIT {int(limit)}")]

  def mismatched(self, i: int, limit: int | None = None):
    """Completions of source i whose own prompt turns differ from the prompt
    set's: count, or the first ids."""
    where = ("FROM c{i} c JOIN prompts p ON p.prompt_id = c.prompt_id "
             "WHERE c.prompt_hash IS NOT NULL AND c.prompt_hash != p.prompt_hash"
             ).format(i=i)
    if limit is None:
      return self.count(f"SELECT COUNT(*) {where}")
    return [r[0] for r in self.db.execute(
        f"SELECT p.prompt_id {where} ORDER BY p.ord LIMIT {int(limit)}")]

  def drop_mismatched(self, i: int) -> None:
    """Removes the prompts whose source-i prompt turns differ."""
    self.db.execute(
        f"DELETE FROM prompts WHERE prompt_id IN (SELECT c.prompt_id FROM c{i} c "
        "JOIN prompts p ON p.prompt_id = c.prompt_id WHERE c.prompt_hash IS NOT "
        "NULL AND c.prompt_hash != p.prompt_hash)")

  def unmatched(self, i: int) -> int:
    """Completions of source i for no prompt of the prompt set."""
    return self.count(f"SELECT COUNT(*) FROM c{i} c WHERE NOT EXISTS "
                      "(SELECT 1 FROM prompts p WHERE p.prompt_id = c.prompt_id)")

  def joined(self) -> Iterator[tuple[str | None, ...]]:
    """(prompt_id, messages, subset, tools, completion of each source or
    None), in prompt-set order."""
    cols = "".join(f", c{i}.completion" for i in range(self.num_sources))
    joins = "".join(f" LEFT JOIN c{i} ON c{i}.prompt_id = p.prompt_id"
                    for i in range(self.num_sources))
    return self.db.execute(f"SELECT p.prompt_id, p.messages, p.subset, p.tools{cols} "
                           f"FROM prompts p{joins} ORDER BY p.ord")

  def close(self) -> None:
    self.db.close()
    if os.path.exists(self.path):
      os.remove(self.path)


PROMPT_MISMATCH_POLICIES = ("fail", "keep", "drop")


def _prompt_hash(messages) -> str | None:
  """Content hash of prompt turns (JSON text or list); None without any."""
  if isinstance(messages, str):
    messages = json.loads(messages)
  if not messages:
    return None
  return records_lib.content_hash(list(messages))


def _index_schema(filters: Sequence[str], sources: Sequence[str]):
  import pyarrow as pa
  return pa.schema([("prompt_id", pa.string()), ("subset", pa.string()),
                    ("id_hash", pa.uint64())]
                   + [(f"label:{f}", pa.bool_()) for f in filters]
                   + [(f"refusal@{s}", pa.bool_()) for s in sources]
                   + [(f"fallback@{s}", pa.bool_()) for s in sources])


def _write_joined(spill: _Spill, directory: str, names: list[str],
                  fallback: str | None,
                  stored_filters: Mapping[str, filters_lib.Filter],
                  coverage: dict[str, Any]) -> tuple[int, dict[str, int]]:
  """Writes the records file and the index from the spill's joined rows.

  Applies the coverage policy per prompt (counting into `coverage`); returns
  the number of records written and the count per subset.
  """
  import pyarrow as pa
  import pyarrow.parquet as pq
  from array_record.python import array_record_module

  writer = array_record_module.ArrayRecordWriter(
      os.path.join(directory, RECORDS_FILE), "group_size:1")
  schema = _index_schema(list(stored_filters), names)
  index_writer = pq.ParquetWriter(os.path.join(directory, INDEX_FILE), schema)
  fallback_col = names.index(fallback) if fallback is not None else None
  num_kept = 0
  subset_counts: dict[str, int] = {}
  joined, batches = [], []
  filled_rows: list[set[str]] = []  # per joined record: sources filled by fallback

  def flush_chunk():
    cols = filters_lib.label_columns(joined, names, stored_filters)
    for s in names:
      cols[f"fallback@{s}"] = np.asarray([s in f for f in filled_rows], bool)
    ids = [r["prompt_id"] for r in joined]
    batches.append(pa.record_batch(
        [pa.array(ids, pa.string()), pa.array([r["subset"] for r in joined], pa.string()),
         pa.array(id_hash(ids), pa.uint64())]
        + [pa.array(cols[n], pa.bool_()) for n in schema.names[3:]],
        schema=schema))
    joined.clear()
    filled_rows.clear()

  def flush_index():
    if batches:
      index_writer.write_table(pa.Table.from_batches(batches, schema),
                               row_group_size=_INDEX_ROW_GROUP)
      batches.clear()

  for pid, messages, subset, tools, *found in spill.joined():
    tools = None if tools in (None, "null") else tools
    comps, filled = {}, set()
    for i, s in enumerate(names):
      c = found[i]
      if c is None and fallback_col is not None:
        c = found[fallback_col]
        if c is not None:
          filled.add(s)
      if c is None:
        break
      comps[s] = c
    if len(comps) < len(names):
      coverage["dropped_prompts"] += 1
      continue
    for s in filled:
      coverage["fallback_filled"][s] += 1
    # Same bytes as json.dumps(record), without re-encoding the messages.
    encoded = "".join([
        '{"prompt_id": ', json.dumps(pid, ensure_ascii=False), ', "prompt": ',
        messages, ', "subset": ', json.dumps(subset, ensure_ascii=False),
        ', "completions": {',
        ", ".join(f"{json.dumps(s)}: {c}" for s, c in comps.items()), "}",
        "" if tools is None else f', "tools": {tools}', "}"])
    writer.write(encoded.encode("utf-8"))
    num_kept += 1
    subset_counts[subset] = subset_counts.get(subset, 0) + 1
    joined.append({"prompt_id": pid, "prompt": json.loads(messages),
                   "subset": subset,
                   "completions": {s: json.loads(c) for s, c in comps.items()},
                   **({} if tools is None else {"tools": json.loads(tools)})})
    filled_rows.append(filled)
    if len(joined) == _LABEL_CHUNK:
      flush_chunk()
      if len(batches) * _LABEL_CHUNK >= _INDEX_ROW_GROUP:
        flush_index()
  if joined:
    flush_chunk()
  flush_index()
  writer.close()
  index_writer.close()
  return num_kept, subset_counts


def build_store(prompt_set: sources_lib.SourceSpec,
                sources: Sequence[sources_lib.SourceSpec], store_dir: str, *,
                missing: str = "fail", on_error: str = "fail",
                prompt_mismatch: str = "keep",
                force: bool = False) -> JoinedStore:
  """Builds (or reuses) the joined store for these inputs; returns it.

  Streams: each input is read once into an SQLite spill in the build
  directory, the joined records are read back from it in prompt-set order and
  written (records, labels, index) chunk by chunk, so memory does not grow
  with the number of prompts. The spill needs free disk in `store_dir` about
  the size of the inputs; it is deleted before the store is moved into place.
  """
  import pyarrow.parquet as pq

  names = [s.name for s in sources]
  if not names or len(set(names)) != len(names):
    raise ValueError(f"sources must be non-empty with unique names, got {names}")
  fallback = check_missing_policy(missing, names)
  records_lib.check_policy(on_error)
  if prompt_mismatch not in PROMPT_MISMATCH_POLICIES:
    raise ValueError(f"prompt_mismatch={prompt_mismatch!r}: must be one of "
                     f"{PROMPT_MISMATCH_POLICIES}")
  stored_filters = filters_lib.registered()
  fp, inputs = fingerprint(prompt_set, sources, missing=missing,
                           on_error=on_error, filters=stored_filters)
  if prompt_mismatch != "keep":  # Old stores keep their fingerprint.
    inputs["prompt_mismatch"] = prompt_mismatch
    fp = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
  final = os.path.join(store_dir, fp)
  if os.path.exists(os.path.join(final, META_FILE)) and not force:
    return JoinedStore(final)

  os.makedirs(store_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{fp}.", dir=store_dir)
  spill = None
  t0 = time.perf_counter()
  try:
    spill = _Spill(os.path.join(tmp, "spill.sqlite"), len(names))
    # Nested fields stay JSON strings until a record is written.
    stream = sources_lib.stream_records(prompt_set, on_error=on_error, decode=False)
    spill.add_prompts(stream)
    prompt_report = stream.report
    logging.info("store %s: read prompt set %s (%d records) in %.1f s", fp,
                 prompt_set.uri(), prompt_report.records, time.perf_counter() - t0)
    reports = {}
    for i, spec in enumerate(sources):
      t1 = time.perf_counter()
      stream = sources_lib.stream_records(spec, on_error=on_error, decode=False)
      spill.add_completions(i, stream)
      reports[spec.name] = stream.report
      logging.info("store %s: read source %s (%d records) in %.1f s", fp,
                   spec.uri(), reports[spec.name].records, time.perf_counter() - t1)
    t1 = time.perf_counter()

    mismatch = {"policy": prompt_mismatch,
                "count": {s: spill.mismatched(i) for i, s in enumerate(names)},
                "examples": {s: spill.mismatched(i, limit=3)
                             for i, s in enumerate(names)}}
    if prompt_mismatch == "fail" and any(mismatch["count"].values()):
      raise CoverageError(
          "source records carry prompt turns that differ from the prompt set's "
          "for the same prompt_id (prompt_mismatch='fail'; 'keep' counts and "
          "keeps them, 'drop' drops the prompts): " + "; ".join(
              f"{s}: {n}, e.g. {mismatch['examples'][s]}"
              for s, n in mismatch["count"].items() if n))
    if prompt_mismatch == "drop":
      for i in range(len(names)):
        spill.drop_mismatched(i)
    num_in = spill.num_prompts()
    lacking = {s: spill.lacking(i) for i, s in enumerate(names)}
    if missing == "fail" and any(lacking.values()):
      raise _coverage_error(
          lacking, {s: spill.lacking(i, limit=3) for i, s in enumerate(names)},
          num_in)
    coverage = {
        "policy": missing,
        "prompts_in": num_in,
        "lacking": lacking,
        "unmatched_completions": {s: spill.unmatched(i)
                                  for i, s in enumerate(names)},
        "dropped_prompts": 0, "fallback_filled": {s: 0 for s in names},
    }
    logging.info("store %s: coverage in %.1f s", fp, time.perf_counter() - t1)

    t1 = time.perf_counter()
    num_kept, subset_counts = _write_joined(spill, tmp, names, fallback,
                                            stored_filters, coverage)
    spill.close()
    logging.info("store %s: joined, labelled and wrote %d records in %.1f s "
                 "(build %.1f s)", fp, num_kept, time.perf_counter() - t1,
                 time.perf_counter() - t0)
    if not num_kept:
      skips = "; ".join(f"{name}: skipped {r.num_skipped} {dict(r.skipped)}"
                        for name, r in [(prompt_set.uri(), prompt_report),
                                        *reports.items()] if r.num_skipped)
      raise CoverageError(
          f"the joined store would be empty (prompt set {prompt_set.uri()}: "
          f"{num_in} prompts read{'; ' + skips if skips else ''}): {coverage}")
    filter_checks = {}
    checks = {n: f.check for n, f in stored_filters.items() if f.check is not None}
    if checks:
      kept_ids = set(pq.ParquetFile(os.path.join(tmp, INDEX_FILE)).read(
          columns=["prompt_id"]).column("prompt_id").to_pylist())
      filter_checks = {n: check(kept_ids) for n, check in checks.items()}
      del kept_ids
    provenance = dict(prompt_report.provenance)
    meta = {
        "fingerprint": fp, "inputs": inputs, "num_prompts": num_kept,
        "sources": names, "filters": {n: f.version for n, f in stored_filters.items()},
        "filter_descriptions": {n: f.description for n, f in stored_filters.items()},
        "filter_checks": filter_checks,
        "subsets": sorted(subset_counts),
        "subset_counts": subset_counts,
        "coverage": coverage,
        "prompt_mismatch": mismatch,
        "prompt_id_provenance": {
            "prompt_set": provenance,
            "sources": {s: dict(r.provenance) for s, r in reports.items()}},
        "read_reports": {"prompt_set": prompt_report.to_json(),
                         **{s: r.to_json() for s, r in reports.items()}},
    }
    strict_json.dump(meta, os.path.join(tmp, META_FILE), indent=1,
                     sort_keys=True)
    try:
      os.rename(tmp, final)
    except OSError:  # Built concurrently or forced: replace the old one.
      if force and os.path.exists(final):
        shutil.rmtree(final)
        os.rename(tmp, final)
      else:
        shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    if spill is not None:
      spill.db.close()
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return JoinedStore(final)


