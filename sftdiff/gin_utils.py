"""T5X-style gin plumbing shared by every sftdiff binary.

Each binary is an absl app with `--gin_file` (repeatable), `--gin.NAME=VALUE`
overrides (repeatable, via `--gin_bindings` too) and `--gin_search_paths`.
Config errors (missing required macro, unknown binding, bad value) surface
before any compute as a `GinConfigError` that carries gin's own message.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Sequence

from absl import flags
import gin

REPO_GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / "gin"

_GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Gin files to parse, in order (relative to --gin_search_paths).")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Individual gin bindings, e.g. \"MODEL_DIR='/tmp/x'\".")
_GIN_SEARCH_PATHS = flags.DEFINE_list(
    "gin_search_paths", [], "Directories searched for relative --gin_file paths "
    "(the repository's gin/ directory is always searched last).")


class GinConfigError(ValueError):
  """A gin file or binding is wrong; the message names it."""


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """Turns T5X-style `--gin.NAME=VALUE` into `--gin_bindings=NAME=VALUE`."""
  out = []
  for arg in argv:
    if arg.startswith("--gin.") and "=" in arg:
      name, value = arg[len("--gin."):].split("=", 1)
      out.append(f"--gin_bindings={name} = {value}")
    else:
      out.append(arg)
  return out


def search_paths(extra: Sequence[str] = ()) -> list[str]:
  return [*extra, os.getcwd(), str(REPO_GIN_DIR)]


def resolve_gin_files(gin_files: Sequence[str],
                      gin_search_paths: Sequence[str] = ()) -> list[str]:
  """Relative gin files as absolute paths found along the search paths.

  Resolved here rather than by gin because gin's fallback reader treats
  `runs/sft.gin` as a file of package `runs` and crashes when the working
  directory has a plain `runs/` folder on sys.path (as `python -m` puts it).
  Files not found stay as given, so gin's error names them.
  """
  out = []
  for f in gin_files:
    if not (os.path.isabs(f) or "://" in f):
      for d in search_paths(gin_search_paths):
        candidate = os.path.join(d, f)
        if os.path.isfile(candidate):
          f = os.path.abspath(candidate)
          break
    out.append(f)
  return out


def parse(gin_files: Sequence[str], bindings: Sequence[str],
          gin_search_paths: Sequence[str] = (), *, finalize: bool = True) -> None:
  """Parses gin files + bindings, raising GinConfigError with gin's message."""
  for path in search_paths(gin_search_paths):
    gin.add_config_file_search_path(path)
  try:
    gin.parse_config_files_and_bindings(
        resolve_gin_files(gin_files, gin_search_paths), list(bindings),
        finalize_config=finalize,
        skip_unknown=False)
  except (ValueError, KeyError, SyntaxError, TypeError, IOError) as e:
    raise GinConfigError(f"gin configuration error: {e}") from e


def parse_from_flags(*, finalize: bool = True) -> None:
  parse(_GIN_FILES.value, _GIN_BINDINGS.value, _GIN_SEARCH_PATHS.value,
        finalize=finalize)


def query_macro(name: str):
  """Value of a gin macro; fails with a clear message if it was never bound."""
  try:
    return gin.query_parameter(f"%{name}")
  except ValueError as e:
    raise GinConfigError(
        f"required gin macro {name} is not set; bind it with "
        f"--gin.{name}=... or in a gin file") from e


def require_macros(names: Sequence[str]) -> None:
  """Checks that required macros are bound (T5X's REQUIRED placeholders).

  A gin file declares a required macro as `NAME = %gin.REQUIRED`; gin itself
  raises only when the value is used, which may be late. This checks up front.
  """
  missing = []
  for name in names:
    try:
      value = gin.query_parameter(f"%{name}")
    except ValueError:
      missing.append(name)
      continue
    if value is gin.REQUIRED or repr(value) == "%gin.REQUIRED":
      missing.append(name)
  if missing:
    raise GinConfigError(
        "required gin macro(s) not set: " + ", ".join(missing) +
        ". Set each with --gin.NAME=VALUE (strings need quotes: "
        "--gin.MODEL_DIR=\"'/path'\") or in a --gin_file.")


def write_operative_config(directory: str | os.PathLike,
                           filename: str = "config.gin") -> pathlib.Path:
  """Writes the full config (every parameter gin set) into `directory`."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / filename
  path.write_text(gin.config_str())
  return path


def run(main) -> None:
  """absl.app.run with `--gin.NAME=VALUE` support and clean config errors."""
  from absl import app

  def _main(argv):
    try:
      return main(argv)
    except GinConfigError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  app.run(_main, argv=rewrite_gin_args(sys.argv))
