"""Write failures that name the file and say why (disk full, read-only).

A full disk otherwise surfaces as sqlite's "disk I/O error" or a bare
`OSError` naming no file. `OutputWriteError` is a configuration-class error
(the binary exits 2 with its one-line message).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3

from sftdiff import gin_utils

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (a read-only location?)",
    errno.EPERM: "operation not permitted (a read-only location?)",
}


class OutputWriteError(gin_utils.GinConfigError):
  """An output file could not be written; the message names it and why."""


def _path_state(path) -> str:
  """Why writes under `path` may fail, from the file system's own state."""
  d = os.path.dirname(os.path.abspath(path))
  while d and not os.path.exists(d):
    d = os.path.dirname(d)
  try:
    if os.statvfs(d).f_flag & os.ST_RDONLY:
      return "the file system is read-only"
    if shutil.disk_usage(d).free == 0:
      return "the disk is full"
  except OSError:
    pass
  return ""


def describe_os_error(path, e: OSError) -> str:
  reason = _REASONS.get(e.errno) or _path_state(path) or e.strerror or str(e)
  return f"cannot write {os.fspath(path)}: {reason} ({e.strerror or e})"


def describe_sqlite_error(path, e: sqlite3.Error) -> str:
  text = str(e)
  if "full" in text:
    reason = "the disk is full"
  elif "readonly" in text or "read-only" in text:
    reason = "the file system is read-only or the file is not writable"
  else:
    reason = _path_state(path) or "a disk I/O error (full or read-only disk?)"
  return f"cannot write {os.fspath(path)}: {reason} (sqlite: {text})"


@contextlib.contextmanager
def writing(path):
  """Re-raises an OSError of a write to `path` as an OutputWriteError."""
  try:
    yield
  except OSError as e:
    raise OutputWriteError(describe_os_error(path, e)) from e
