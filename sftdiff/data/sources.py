"""Rollout sources and prompt sets as SeqIO tasks.

A `SourceSpec` names where records live:

  `jsonl:PATH`                  JSON lines (PATH: file, glob, or directory of
                                *.jsonl / *.json shards, plain or .gz/.bz2/.xz)
  `parquet:PATH`                Parquet in the Hugging Face datasets layout
                                (`messages` column of {role, content} structs;
                                PATH: file, glob, or directory searched recursively)
  `tfds:NAME[:VERSION][/SPLIT]` a TFDS dataset (read through `seqio.TfdsDataSource`)
  `seqio:TASK[/SPLIT]`          an already registered SeqIO task

For JSONL and Parquet, a plain Python reader validates the rows (so errors name
the file and line/row, see `records.py`; files are decoded by
`jsonl_files.py`: BOM, compression, bad bytes) as the registered task's
`FunctionDataSource` serves them (`tf.data.Dataset.from_generator`, policy
'fail'). TFDS datasets and existing tasks are validated as they are read
(errors name `task:split example N`). Every spec is registered as a SeqIO task
named `sftdiff.<role>.<name>.<fp>` (`task_name()`); `stream_records` reads a
TFDS/SeqIO task's dataset exactly once with `as_numpy_iterator()`, and a
file-backed spec's validated rows directly (same features; faster, and errors
propagate unwrapped), and streams the records
(memory does not grow with their number; the read report is complete once the
stream is exhausted), `read_records` collects them in a list. SeqIO is
tf.data-only: the joined store is where random access happens.

Features of the tasks this module registers (all tf.string; JSON where nested):
sources `prompt_id, prompt, completion, subset, meta`; prompt sets
`prompt_id, messages, subset, meta`. An existing SeqIO task / TFDS dataset must
provide `messages` (JSON string or a {role, content} sequence feature), or
`completion` for sources, plus optional `prompt_id`/`id` and `subset`/`source`.

Nothing is left out silently: a file in a spec's directory/glob that is not of
its kind is counted as skipped (`ignored_file`) under either policy; an empty
file is an `empty_file` error (counted under `skip`); a shard in a
compression that cannot be read is an `unsupported_compression` error.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Any, Iterator

from absl import logging

from sftdiff.data import jsonl_files
from sftdiff.data import records as records_lib

KINDS = ("jsonl", "parquet", "tfds", "seqio")
ROLES = ("source", "prompts")
_FILE_EXT = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}


def _is_data_file(path: str, kind: str) -> bool:
  """Whether a file found in a directory/glob is one of `kind`'s shards:
  `.jsonl`/`.json`, optionally `.gz`/`.bz2`/`.xz`; `.parquet`. A shard in
  another compression (`.jsonl.zst`) counts too, so that reading it fails
  loudly instead of the shard being left out."""
  name = os.path.basename(path).lower()
  if kind == "parquet":
    return name.endswith(".parquet")
  stem, ext = os.path.splitext(name)
  if ext in _FILE_EXT[kind]:
    return True
  return os.path.splitext(stem)[1] in _FILE_EXT[kind]


@dataclasses.dataclass(frozen=True)
class SourceSpec:
  """Where a source's (or prompt set's) records come from.

  Attributes:
    name: the source name used in arms (`'alt'`, `'teacher_o'`) or the prompt
      set's name.
    kind: one of `KINDS`.
    location: a path for jsonl/parquet, a TFDS name[:version], or a task name.
    split: split to read (TFDS and SeqIO).
    role: `'source'` (completions) or `'prompts'` (a prompt set).
    tfds_data_dir: TFDS data directory (None: TFDS's default).
  """
  name: str
  kind: str
  location: str
  split: str = "train"
  role: str = "source"
  tfds_data_dir: str | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"source {self.name!r}: unknown kind {self.kind!r} "
                       f"(expected one of {', '.join(KINDS)})")
    if self.role not in ROLES:
      raise ValueError(f"source {self.name!r}: role must be one of {ROLES}")

  def as_prompts(self, name: str | None = None) -> "SourceSpec":
    """The prompt turns of this source's conversations, as a prompt set."""
    return dataclasses.replace(self, name=name or self.name, role="prompts")

  def uri(self) -> str:
    split = f"/{self.split}" if self.kind in ("tfds", "seqio") else ""
    return f"{self.kind}:{self.location}{split}"

  def _listing(self) -> tuple[list[str], list[str]]:
    """(data files, other files) behind a jsonl/parquet spec, sorted."""
    path = os.path.expanduser(self.location)
    if os.path.isdir(path):
      found = [os.path.join(root, f) for root, _, names in os.walk(path)
               for f in names]
    elif any(ch in path for ch in "*?["):
      found = [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
    else:
      # A file named explicitly is read whatever its name.
      return ([path] if os.path.exists(path) else []), []
    data = [p for p in found if _is_data_file(p, self.kind)]
    return sorted(data), sorted(set(found) - set(data))

  def files(self) -> list[str]:
    """The files behind a jsonl/parquet spec (sorted); errors if there are none.

    In a directory or glob, the files whose names are not the kind's (see
    `_is_data_file`) are not read; `ignored_files()` lists them and the read
    report counts them (reason `ignored_file`).
    """
    if self.kind not in _FILE_EXT:
      return []
    data, other = self._listing()
    if not data:
      seen = f" (found only: {', '.join(other[:5])})" if other else ""
      raise FileNotFoundError(
          f"source {self.name!r}: no {self.kind} files at {self.location!r}{seen}")
    return data

  def ignored_files(self) -> list[str]:
    """Files in the spec's directory/glob that are not read (not its kind)."""
    return self._listing()[1] if self.kind in _FILE_EXT else []

  def fingerprint(self) -> str:
    """Hash of what the records depend on: files' paths/sizes/mtimes or task names."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
    for path in self.files():
      st = os.stat(path)
      h.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for path in self.ignored_files():  # Counted in the read report.
      h.update(f"ignored\0{os.path.abspath(path)}\n".encode())
    return h.hexdigest()[:16]

  def task_name(self) -> str:
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in self.name)
    return f"sftdiff.{self.role}.{safe}.{self.fingerprint()[:8]}"


def parse_uri(name: str, uri: str, *, role: str = "source",
              base_dir: str | None = None,
              tfds_data_dir: str | None = None) -> SourceSpec:
  """`'jsonl:alt.jsonl'` -> SourceSpec; relative paths resolve against base_dir."""
  kind, sep, rest = uri.partition(":")
  if not sep or kind not in KINDS or not rest:
    raise ValueError(
        f"source {name!r}: cannot parse {uri!r}; expected one of "
        "'jsonl:PATH', 'parquet:PATH', 'tfds:NAME[:VERSION][/SPLIT]', 'seqio:TASK[/SPLIT]'")
  split = "train"
  if kind in ("tfds", "seqio") and "/" in rest:
    rest, split = rest.rsplit("/", 1)
  elif kind in _FILE_EXT and base_dir and not os.path.isabs(os.path.expanduser(rest)):
    rest = os.path.join(base_dir, rest)
  return SourceSpec(name=name, kind=kind, location=rest, split=split, role=role,
                    tfds_data_dir=tfds_data_dir if kind == "tfds" else None)


# ----------------------------------------------------------------- raw readers


_UNSUPPORTED_COMPRESSION = "unsupported_compression"


def _jsonl_rows(path: str) -> Iterator[tuple[str, Any]]:
  stem, ext = os.path.splitext(path.lower())
  if (ext not in _FILE_EXT["jsonl"] + jsonl_files.COMPRESSED_SUFFIXES
      and os.path.splitext(stem)[1] in _FILE_EXT["jsonl"]):
    yield path, records_lib.DataValidationError(
        path, _UNSUPPORTED_COMPRESSION,
        f"cannot read {ext!r} files (JSON lines are read plain, .gz, .bz2 "
        "or .xz); decompress it or remove it from the directory")
    return
  yield from jsonl_files.jsonl_rows(path)


def _parquet_rows(path: str) -> Iterator[tuple[str, Any]]:
  import pyarrow as pa
  import pyarrow.parquet as pq
  row = 0
  try:
    batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
    for batch in batches:
      try:
        items = batch.to_pylist()
      except UnicodeDecodeError:
        items = None
      for i in range(batch.num_rows):
        where = f"{path}:row {row}"
        row += 1
        if items is not None:
          yield where, items[i]
          continue
        try:  # Find the row with the bad bytes.
          yield where, batch.slice(i, 1).to_pylist()[0]
        except UnicodeDecodeError as e:
          yield where, records_lib.DataValidationError(
              where, "undecodable_bytes", f"a string column is not UTF-8 ({e})")
  except (pa.ArrowException, OSError) as e:
    if isinstance(e, OSError) and e.errno is not None:
      raise  # A path problem (missing, permissions): not the file's content.
    where = f"{path}:row {row}" if row else path
    yield where, records_lib.DataValidationError(
        where, "unreadable_file", f"not a readable Parquet file ({e})")
    return
  if not row:
    yield path, jsonl_files.empty_file_error(path)


def raw_rows(spec: SourceSpec, report: records_lib.ReadReport | None = None
             ) -> Iterator[tuple[str, Any]]:
  """`(where, row)` for every row of a jsonl/parquet spec, in file order.

  Files of the spec's directory/glob that are not its kind are counted in
  `report` as skipped (reason `ignored_file`), whatever the error policy,
  and logged.
  """
  if report is not None:
    for path in spec.ignored_files():
      logging.warning("source %r: not reading %s (not a %s file)", spec.name,
                      path, spec.kind)
      report.skip(records_lib.DataValidationError(
          path, "ignored_file", f"not read: not a {spec.kind} file"))
  reader = _jsonl_rows if spec.kind == "jsonl" else _parquet_rows
  for path in spec.files():
    yield from reader(path)


# ------------------------------------------------------------- SeqIO plumbing

_SOURCE_FEATURES = ("prompt_id", "prompt", "completion", "subset", "meta")
_PROMPT_FEATURES = ("prompt_id", "messages", "subset", "meta", "tools")


def _encode(record: dict[str, Any], role: str) -> dict[str, str]:
  dump = lambda x: json.dumps(x, ensure_ascii=False)
  if role == "source":
    return {"prompt_id": record["prompt_id"], "prompt": dump(record.get("prompt", [])),
            "completion": dump(record["completion"]), "subset": record["subset"],
            "meta": dump(record["meta"])}
  return {"prompt_id": record["prompt_id"], "messages": dump(record["messages"]),
          "subset": record["subset"], "meta": dump(record["meta"]),
          "tools": dump(record.get("tools"))}  # "null": the prompt offers no tools


_CHUNK = 1024  # records per tf.data element yielded by a file task's generator


class _ValidatedFileDatasetFn:
  """SeqIO dataset_fn of a file-backed task: validate files in Python, stream
  the rows via tf.data, for users who read the task by name.

  Rows are validated as tf.data pulls them (`from_generator`, `_CHUNK` records
  at a time, policy 'fail': the task serves only valid rows), so nothing is
  materialised. `stream_records` does not go through here: it reads the same
  validated rows directly (see its docstring).
  """

  def __init__(self, spec: SourceSpec):
    self.spec = spec

  def _chunks(self) -> Iterator[dict[str, list[str]]]:
    spec = self.spec
    names = _SOURCE_FEATURES if spec.role == "source" else _PROMPT_FEATURES
    columns: dict[str, list[str]] = {k: [] for k in names}
    for encoded in _validated_file_rows(spec, "fail", records_lib.ReadReport(spec.name)):
      for k, v in encoded.items():
        columns[k].append(v)
      if len(columns["prompt_id"]) == _CHUNK:
        yield columns
        columns = {k: [] for k in names}
    if columns["prompt_id"]:
      yield columns

  def __call__(self, split: str, shuffle_files: bool, seed: int | None = None):
    import tensorflow as tf
    del split, shuffle_files, seed
    self.spec.files()  # Missing files fail here, not inside tf.data.
    names = _SOURCE_FEATURES if self.spec.role == "source" else _PROMPT_FEATURES
    signature = {k: tf.TensorSpec([None], tf.string) for k in names}
    return tf.data.Dataset.from_generator(self._chunks,
                                          output_signature=signature).unbatch()


def _validated_file_rows(spec: SourceSpec, on_error: str,
                         report: records_lib.ReadReport) -> Iterator[dict[str, str]]:
  """A file-backed spec's validated rows, encoded as its task's features."""
  for record in records_lib.validate_rows(
      raw_rows(spec, report), kind=spec.role, name=spec.name, on_error=on_error,
      report=report):
    yield _encode(record, spec.role)


def register_task(spec: SourceSpec) -> str:
  """Registers `spec` as a SeqIO task (idempotent); returns the task's name."""
  import seqio
  if spec.kind == "seqio":
    if spec.location not in seqio.TaskRegistry.names():
      raise ValueError(
          f"source {spec.name!r}: SeqIO task {spec.location!r} is not registered; "
          "import the module that registers it (DataConfig.import_modules)")
    return spec.location
  name = spec.task_name()
  if name in seqio.TaskRegistry.names():
    return name
  if spec.kind == "tfds":
    data_source = seqio.TfdsDataSource(tfds_name=spec.location,
                                       tfds_data_dir=spec.tfds_data_dir,
                                       splits=[spec.split])
  else:
    data_source = seqio.FunctionDataSource(_ValidatedFileDatasetFn(spec),
                                           splits=[spec.split])
  seqio.TaskRegistry.add(name, source=data_source, output_features={})
  return name


def _text(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):
    return _text(value.tolist())
  if isinstance(value, list):
    return [_text(v) for v in value]
  if isinstance(value, dict):
    return {k: _text(v) for k, v in value.items()}
  return value


def _external_row(example: dict[str, Any]) -> dict[str, Any]:
  """A numpy example of an external task/TFDS dataset -> a raw row dict."""
  row = {k: _text(v) for k, v in example.items()}
  for key in ("messages", "completion"):
    value = row.get(key)
    if isinstance(value, str) and value[:1] in "[{":
      try:
        row[key] = json.loads(value)
      except json.JSONDecodeError:
        pass  # Validation reports it as a bad message list.
    elif isinstance(value, dict) and "role" in value and "content" in value:
      row[key] = [{"role": r, "content": c}
                  for r, c in zip(value["role"], value["content"])]
  return row


def _located_external_row(where: str, example: dict[str, Any]
                          ) -> tuple[str, Any]:
  try:
    return where, _external_row(example)
  except UnicodeDecodeError as e:
    return where, records_lib.DataValidationError(
        where, "undecodable_bytes", f"a string feature is not UTF-8 ({e})")


_JSON_FIELDS = ("prompt", "completion", "messages", "meta", "tools")


def _own_records(examples: Iterator[dict[str, str]], spec: SourceSpec,
                 decode: bool) -> Iterator[dict[str, Any]]:
  for ex in examples:
    if decode:
      ex = {k: (json.loads(v) if k in _JSON_FIELDS else v) for k, v in ex.items()}
    if ex.get("tools") in (None, "null"):  # records without tools keep their shape
      ex.pop("tools", None)
    if spec.role == "source":
      ex["source"] = spec.name
    yield ex


class RecordStream:
  """A spec's validated records, one at a time; `report` once exhausted."""

  def __init__(self, records: Iterator[dict[str, Any]], report: records_lib.ReadReport):
    self._records = records
    self._report = report
    self._done = False

  def __iter__(self) -> "RecordStream":
    return self

  def __next__(self) -> dict[str, Any]:
    try:
      return next(self._records)
    except StopIteration:
      self._done = True
      raise

  @property
  def report(self) -> records_lib.ReadReport:
    if not self._done:
      raise RuntimeError("the read report is complete only once the stream "
                         "is exhausted")
    return self._report


def stream_records(spec: SourceSpec, *, on_error: str = "fail",
                   decode: bool = True) -> RecordStream:
  """Streams the validated records of the spec's SeqIO task (read once).

  Memory does not grow with the number of records. With `decode=False` the
  nested fields (`prompt`, `completion`, `messages`, `meta`) stay JSON
  strings — the joined store writes them as they are.

  File-backed specs (jsonl, parquet) are registered as tasks too, but their
  rows are read here directly, under this call's `on_error`: the same rows and
  features as the task serves, ~3x faster than through `tf.data` (measured,
  docs/performance.md), and a validation error propagates as itself
  (`DataValidationError` naming file:line) instead of wrapped by tf.data.
  """
  import seqio
  records_lib.check_policy(on_error)
  task_name = register_task(spec)
  if spec.kind in _FILE_EXT:
    spec.files()  # Missing files fail before the first record is asked for.
    report = records_lib.ReadReport(spec.name)
    examples = _validated_file_rows(spec, on_error, report)
    return RecordStream(_own_records(examples, spec, decode), report)
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(sequence_length=None, split=spec.split, shuffle=False)
  report = records_lib.ReadReport(spec.name)
  # External features may be ragged (TFDS sequences): read unbatched.
  rows = (_located_external_row(f"{task_name}:{spec.split} example {i}", ex)
          for i, ex in enumerate(ds.as_numpy_iterator()))
  out = records_lib.validate_rows(rows, kind=spec.role, name=spec.name,
                                  on_error=on_error, report=report)
  if not decode:
    out = ({k: (json.dumps(v, ensure_ascii=False) if k in _JSON_FIELDS else v)
            for k, v in r.items()} for r in out)
  return RecordStream(out, report)


def read_records(spec: SourceSpec, *, on_error: str = "fail", decode: bool = True
                 ) -> tuple[list[dict[str, Any]], records_lib.ReadReport]:
  """Reads the spec's SeqIO task once into a list (see `stream_records`)."""
  stream = stream_records(spec, on_error=on_error, decode=decode)
  return list(stream), stream.report
