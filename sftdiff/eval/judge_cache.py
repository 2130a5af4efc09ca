"""Persistent SQLite cache of judge replies.

Keyed by (judge model, rubric version, full judge prompt, sampling params,
attempt), so re-running an evaluation makes no new judge calls. Each reply is
committed as soon as it arrives: a killed run loses no paid-for call.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from typing import Any, Sequence

from sftdiff import strict_json
from sftdiff.eval.output_errors import (OutputWriteError, describe_os_error,
                                        describe_sqlite_error)


def cache_key(judge: str, rubric_version: str, messages: Sequence[dict],
              params: dict[str, Any], attempt: int = 0) -> str:
  blob = strict_json.dumps({"judge": judge, "rubric_version": rubric_version,
                     "messages": list(messages), "params": params,
                     "attempt": attempt}, sort_keys=True, ensure_ascii=False)
  return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
  """A key -> reply table in one SQLite file (safe across threads)."""

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    try:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    except OSError as e:
      raise OutputWriteError(describe_os_error(self.path, e)) from e
    self._lock = threading.Lock()
    try:
      self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
      with self._lock:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, "
            "judge TEXT, rubric_version TEXT, reply TEXT, created REAL)")
        self._db.commit()
    except sqlite3.Error as e:
      raise OutputWriteError(describe_sqlite_error(self.path, e)) from e

  def get(self, key: str) -> str | None:
    with self._lock:
      row = self._db.execute("SELECT reply FROM replies WHERE key = ?",
                             (key,)).fetchone()
    return None if row is None else row[0]

  def put(self, key: str, reply: str, *, judge: str = "",
          rubric_version: str = "") -> None:
    with self._lock:
      try:
        self._db.execute(
            "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
            (key, judge, rubric_version, reply, time.time()))
        self._db.commit()
      except sqlite3.Error as e:
        self._db.rollback()
        raise OutputWriteError(describe_sqlite_error(self.path, e)) from e

  def __len__(self) -> int:
    with self._lock:
      return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

  def close(self) -> None:
    with self._lock:
      self._db.close()
