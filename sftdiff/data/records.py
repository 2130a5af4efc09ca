"""Canonical record schema for prompt sets and rollout sources, and its validation.

Canonical message (OpenAI chat shape): `{"role": "system"|"user"|"assistant"|"tool",
"content": str}` plus, where present, `tool_calls`, `tool_call_id`, `name`,
`reasoning_content` (kept and passed to the chat template). `content` may be
null with `tool_calls`; OpenAI text parts (`[{"type": "text", "text": ...}]`)
are joined; any other part is an error naming file:line. Prompt rows may carry
`tools` (kept on the prompt record).

Prompt record: `{prompt_id, messages, subset, meta}` — `messages` are the turns
before the trained reply.
Source record: `{prompt_id, completion, source, meta}` — `completion` is the list
of trailing assistant (and tool) turns that are trained.

Accepted input rows (one JSON object per JSONL line, or one Parquet row):
  * `{"messages": [...], "id"|"prompt_id": ..., "subset"|"source": ...}` — a
    whole conversation. For a source, the completion is the trailing run of
    assistant/tool turns after the last user/system turn (it must end with an
    assistant turn); the prompt is everything before it. For a prompt set, any
    trailing assistant/tool turns are dropped (a prompt set may be the prompt
    turns of a source's conversations).
  * `{"prompt_id": ..., "completion": str | message | [messages]}` — a
    completion keyed by prompt id (teacher rollouts). Sources only.
  * `{"prompt": str, ...}` — a single user turn. Prompt sets only.

`prompt_id` comes from the `prompt_id` (or `id`) field, else it is the content
hash of the prompt turns (`content_hash`); which one is recorded as provenance
(`'id_field'` / `'content_hash'`). `subset` comes from `subset`, else `source`,
else `'default'`.

Every validation problem raises `DataValidationError` whose message starts with
the location (`file.jsonl:12`, `file.parquet:row 3`, `task:split example 5`).
Readers apply an `on_error` policy: `'fail'` re-raises, `'skip'` counts the
problem in a `ReadReport` (by reason, with the first few locations) and moves on.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
from typing import Any, Iterable, Iterator, Mapping

ROLES = ("system", "user", "assistant", "tool")
ON_ERROR_POLICIES = ("fail", "skip")
PROVENANCE_ID_FIELD = "id_field"
PROVENANCE_CONTENT_HASH = "content_hash"
DEFAULT_SUBSET = "default"


class DataValidationError(ValueError):
  """A record is malformed; the message starts with its file and line/row."""

  def __init__(self, where: str, reason: str, detail: str):
    super().__init__(f"{where}: {detail}")
    self.where = where
    self.reason = reason


@dataclasses.dataclass
class ReadReport:
  """What a reader did: records kept, problems skipped (by reason), id provenance."""
  name: str
  records: int = 0
  skipped: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  examples: list[str] = dataclasses.field(default_factory=list)
  provenance: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)

  def skip(self, error: DataValidationError) -> None:
    self.skipped[error.reason] += 1
    if len(self.examples) < 5:
      self.examples.append(str(error))

  @property
  def num_skipped(self) -> int:
    return sum(self.skipped.values())

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "num_skipped": self.num_skipped, "skip_examples": self.examples,
            "prompt_id_provenance": dict(sorted(self.provenance.items()))}


def check_policy(on_error: str) -> None:
  if on_error not in ON_ERROR_POLICIES:
    raise ValueError(f"on_error={on_error!r}: must be one of {ON_ERROR_POLICIES}")


def content_hash(messages: list[dict[str, str]]) -> str:
  """Stable id of a prompt from its turns (role + content), 16 hex chars."""
  canonical = json.dumps([[m["role"], m["content"]] for m in messages],
                         ensure_ascii=False, separators=(",", ":"))
  return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()


def parse_json_line(line: str, where: str) -> dict[str, Any]:
  try:
    row = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataValidationError(where, "malformed_json",
                              f"malformed JSON ({e.msg} at column {e.colno})")
  if not isinstance(row, dict):
    raise DataValidationError(where, "malformed_json",
                              f"expected a JSON object, got {type(row).__name__}")
  return row


# Message keys kept and passed to the chat template (OpenAI chat shape).
MESSAGE_KEYS = ("tool_calls", "tool_call_id", "name", "reasoning_content")


def _text_content(content: Any, where: str, field: str) -> str | None:
  """A string, or OpenAI text parts joined; other parts are errors."""
  if content is None or isinstance(content, str):
    return content
  if isinstance(content, (list, tuple)):
    texts = []
    for j, part in enumerate(content):
      if not (isinstance(part, Mapping) and part.get("type") == "text"
              and isinstance(part.get("text"), str)):
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        raise DataValidationError(
            where, "non_text_content",
            f"{field}.content[{j}] is a {kind!r} part; only text parts "
            "({'type': 'text', 'text': ...}) can be trained on")
      texts.append(part["text"])
    return "".join(texts)
  raise DataValidationError(where, "missing_field",
                            f"{field}.content must be a string or text parts")


def validate_messages(messages: Any, where: str, *,
                      field: str = "messages") -> list[dict[str, Any]]:
  """Checks canonical messages; returns `{role, content}` dicts plus whichever
  of MESSAGE_KEYS a message has (absent keys stay absent: templates test
  `'tool_calls' in message`). `content` may be null only with `tool_calls`."""
  if not isinstance(messages, (list, tuple)) or not messages:
    raise DataValidationError(where, "missing_field",
                              f"field {field!r} must be a non-empty list of messages")
  out = []
  for i, m in enumerate(messages):
    if not isinstance(m, Mapping):
      raise DataValidationError(where, "missing_field",
                                f"{field}[{i}] is not an object")
    if m.get("role") is None:
      raise DataValidationError(where, "missing_field",
                                f"{field}[{i}] is missing field 'role'")
    role = m["role"]
    if role not in ROLES:
      raise DataValidationError(where, "unknown_role",
                                f"{field}[{i}] has unknown role {role!r} "
                                f"(expected one of {', '.join(ROLES)})")
    tool_calls = m.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, (list, tuple)):
      raise DataValidationError(where, "missing_field",
                                f"{field}[{i}].tool_calls must be a list")
    content = _text_content(m.get("content"), where, f"{field}[{i}]")
    if content is None and not tool_calls:
      raise DataValidationError(where, "missing_field",
                                f"{field}[{i}] is missing field 'content'")
    if (role == "assistant" and not (content or "").strip() and not tool_calls
        and not m.get("reasoning_content")):
      raise DataValidationError(where, "empty_assistant",
                                f"{field}[{i}] is an assistant turn with empty content")
    # null content with tool_calls renders as "" (templates concatenate it).
    message = {"role": role, "content": content if content is not None else ""}
    for key in MESSAGE_KEYS:
      if m.get(key) is not None:
        message[key] = list(m[key]) if key == "tool_calls" else m[key]
    out.append(message)
  return out


def split_conversation(messages: list[dict[str, str]]
                       ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
  """(prompt turns, trailing assistant/tool turns)."""
  cut = len(messages)
  while cut > 0 and messages[cut - 1]["role"] in ("assistant", "tool"):
    cut -= 1
  return messages[:cut], messages[cut:]


def _subset(row: Mapping[str, Any]) -> str:
  for key in ("subset", "source"):
    value = row.get(key)
    if value is not None and str(value):
      return str(value)
  return DEFAULT_SUBSET


def _prompt_id(row: Mapping[str, Any], prompt: list[dict[str, str]],
               where: str) -> tuple[str, str]:
  for key in ("prompt_id", "id"):
    value = row.get(key)
    if value is not None:
      if isinstance(value, float) or not str(value):
        raise DataValidationError(where, "missing_field",
                                  f"field {key!r} must be a non-empty string or int")
      return str(value), PROVENANCE_ID_FIELD
  if not prompt:
    raise DataValidationError(where, "missing_field",
                              "no 'prompt_id'/'id' field and no prompt turns to hash")
  return content_hash(prompt), PROVENANCE_CONTENT_HASH


_RESERVED = {"prompt_id", "id", "messages", "completion", "prompt", "subset",
             "tools"}


def _tools(row: Mapping[str, Any], where: str) -> list | None:
  tools = row.get("tools")
  if tools is None:
    return None
  if not isinstance(tools, (list, tuple)):
    raise DataValidationError(where, "missing_field",
                              "field 'tools' must be a list of tool schemas")
  return list(tools)


def _meta(row: Mapping[str, Any]) -> dict[str, Any]:
  meta = {k: v for k, v in row.items() if k not in _RESERVED}
  nested = meta.pop("meta", None)
  if isinstance(nested, Mapping):
    meta = {**nested, **meta}
  elif nested is not None:
    meta["meta"] = nested
  try:
    json.dumps(meta)
  except TypeError:
    meta = {k: str(v) for k, v in meta.items()}
  return meta


def to_source_record(row: Mapping[str, Any], source: str, where: str
                     ) -> tuple[dict[str, Any], str]:
  """Row -> (source record, prompt_id provenance); raises DataValidationError."""
  if "completion" in row:
    completion = row["completion"]
    if isinstance(completion, str):
      completion = [{"role": "assistant", "content": completion}]
    elif isinstance(completion, Mapping):
      completion = [completion]
    completion = validate_messages(completion, where, field="completion")
    prompt = []
    if row.get("messages") is not None:
      prompt = validate_messages(row["messages"], where)
  elif "messages" in row:
    messages = validate_messages(row["messages"], where)
    prompt, completion = split_conversation(messages)
  else:
    raise DataValidationError(where, "missing_field",
                              "missing field 'messages' (or 'completion')")
  if not completion or completion[-1]["role"] != "assistant":
    raise DataValidationError(where, "no_final_assistant",
                              "conversation does not end in an assistant turn")
  if any(m["role"] not in ("assistant", "tool") for m in completion):
    raise DataValidationError(where, "no_final_assistant",
                              "completion may only contain assistant/tool turns")
  prompt_id, provenance = _prompt_id(row, prompt, where)
  return ({"prompt_id": prompt_id, "prompt": prompt, "completion": completion,
           "source": source,
           "subset": _subset(row), "meta": _meta(row)}, provenance)


def to_prompt_record(row: Mapping[str, Any], where: str
                     ) -> tuple[dict[str, Any], str]:
  """Row -> (prompt record, prompt_id provenance); raises DataValidationError."""
  if "messages" in row:
    prompt, _ = split_conversation(validate_messages(row["messages"], where))
    if not prompt:
      raise DataValidationError(where, "missing_field",
                                "conversation has no prompt turns before the reply")
  elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
    prompt = [{"role": "user", "content": row["prompt"]}]
  else:
    raise DataValidationError(where, "missing_field",
                              "missing field 'messages' (or a non-empty 'prompt')")
  prompt_id, provenance = _prompt_id(row, prompt, where)
  record = {"prompt_id": prompt_id, "messages": prompt, "subset": _subset(row),
            "meta": _meta(row)}
  tools = _tools(row, where)
  if tools is not None:
    record["tools"] = tools
  return record, provenance


# SQLite page cache of the duplicate-id spill, in KiB.
SPILL_CACHE_KIB = 8192


class _SeenIds:
  """prompt_id -> where it was first seen, spilled to a temporary SQLite file,
  so memory stays bounded (SQLite's page cache) whatever the number of ids."""

  def __init__(self):
    import sqlite3
    import tempfile
    self._dir = tempfile.TemporaryDirectory(prefix="sftdiff_ids_")
    # tf.data may resume the generator that owns this on another thread (one
    # at a time).
    self._db = sqlite3.connect(f"{self._dir.name}/ids.sqlite",
                               isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=OFF", "synchronous=OFF",
                   f"cache_size=-{SPILL_CACHE_KIB}"):
      self._db.execute(f"PRAGMA {pragma}")
    self._db.execute("CREATE TABLE seen (prompt_id TEXT PRIMARY KEY, loc TEXT) "
                     "WITHOUT ROWID")
    self._db.execute("BEGIN")  # One open transaction: no commit per id.

  def first_seen(self, prompt_id: str, where: str) -> str | None:
    """None for a new id (remembered at `where`), else where it was first seen."""
    if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)",
                        (prompt_id, where)).rowcount:
      return None
    return self._db.execute("SELECT loc FROM seen WHERE prompt_id = ?",
                            (prompt_id,)).fetchone()[0]

  def close(self) -> None:
    self._db.close()
    self._dir.cleanup()


def validate_rows(rows: Iterable[tuple[str, Any]], *, kind: str, name: str,
                  on_error: str = "fail", report: ReadReport | None = None
                  ) -> Iterator[dict[str, Any]]:
  """Validates `(where, row)` pairs into records, applying the error policy.

  `kind` is `'source'` or `'prompts'`. A row may be an exception instance (a
  reader's parse error), which goes through the same policy. Duplicate
  prompt_ids within one source/prompt set are errors too; the ids seen are
  kept on disk (`_SeenIds`), so memory does not grow with the rows.
  """
  check_policy(on_error)
  if kind not in ("source", "prompts"):
    raise ValueError(f"kind must be 'source' or 'prompts', got {kind!r}")
  report = report if report is not None else ReadReport(name)
  seen = _SeenIds()
  try:
    for where, row in rows:
      try:
        if isinstance(row, DataValidationError):
          raise row
        if kind == "source":
          record, provenance = to_source_record(row, name, where)
        else:
          record, provenance = to_prompt_record(row, where)
        first = seen.first_seen(record["prompt_id"], where)
        if first is not None:
          raise DataValidationError(
              where, "duplicate_prompt_id",
              f"duplicate prompt_id {record['prompt_id']!r} in {name!r} "
              f"(first seen at {first})")
      except DataValidationError as e:
        if on_error == "fail":
          raise
        report.skip(e)
        continue
      report.records += 1
      report.provenance[provenance] += 1
      yield record
  finally:
    seen.close()
