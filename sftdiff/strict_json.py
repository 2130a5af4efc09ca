"""Strict JSON for every file sftdiff writes: no bare NaN/Infinity.

Python's `json` writes `NaN` and `Infinity`, which no other JSON reader
accepts. Non-finite floats are written as null; where the reason matters the
writer says so in a sibling field (e.g. `"ci": null, "ci_reason": "..."`).
JAX-free and dependency-free so every layer can use it.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any


def finite_or_none(value: Any) -> Any:
  """`value`, or None when it is a non-finite float."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def sanitize(obj: Any) -> Any:
  """A copy of `obj` with every non-finite float replaced by None.

  numpy scalars/arrays are converted to Python values on the way.
  """
  if isinstance(obj, float):
    return finite_or_none(obj)
  if isinstance(obj, dict):
    return {k: sanitize(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [sanitize(v) for v in obj]
  tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
  if tolist is not None and type(obj).__module__ == "numpy":
    return sanitize(tolist())
  return obj


def dumps(obj: Any, **kwargs) -> str:
  return json.dumps(sanitize(obj), allow_nan=False, **kwargs)


def _reject_constant(name: str):
  raise ValueError(f"non-standard JSON constant {name!r}")


def loads(text: str | bytes) -> Any:
  """json.loads that rejects NaN / Infinity / -Infinity."""
  return json.loads(text, parse_constant=_reject_constant)


def load(path: str | os.PathLike) -> Any:
  return loads(pathlib.Path(path).read_text(encoding="utf-8"))


def dump(obj: Any, path: str | os.PathLike, *, indent: int | None = 2,
         sort_keys: bool = False) -> None:
  """Writes `obj` to `path` atomically (temp file + rename)."""
  path = pathlib.Path(path)
  text = dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
