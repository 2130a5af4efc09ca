"""T5X-style gin plumbing shared by every sftdiff binary.

Each binary is an absl app with `--gin_file` (repeatable), `--gin.NAME=VALUE`
overrides (repeatable, via `--gin_bindings` too) and `--gin_search_paths`.
Config errors (missing required macro, unknown binding, bad value) surface
before any compute as a `GinConfigError` whose one- or two-line message names
the binding, file and line.

The shipped configs live in the repository's `gin/` directory, which setup.py
maps into the wheel as `sftdiff/gin/` (package data); `GIN_DIR` is whichever
of the two this installation has.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.resources
# gin's package-path file reader calls importlib.util without importing it;
# a gin file not found on the search path must fail with gin's IOError.
import importlib.util  # noqa: F401  pylint: disable=unused-import
import inspect
import logging
import os
import pathlib
import re
import sys
from typing import Iterable, Sequence

from absl import flags
import gin



def _gin_dir() -> pathlib.Path:
  """The shipped gin configs: `sftdiff/gin/` in a wheel, else the checkout's
  `gin/` (source tree on PYTHONPATH, or an editable install)."""
  packaged = importlib.resources.files("sftdiff") / "gin"
  if isinstance(packaged, pathlib.Path) and packaged.is_dir():
    return packaged
  return pathlib.Path(__file__).resolve().parent.parent / "gin"


GIN_DIR = _gin_dir()

# The macros each binary requires before any compute (T5X's REQUIRED), by
# module: the binary checks them (`require_macros`) and the plan's gin check
# (`sftdiff.runs.gin_check`) checks every job against the same list.
REQUIRED_MACROS = {
    "sftdiff.train": ("MODEL_DIR", "INITIAL_CHECKPOINT", "ARM", "TRAIN_STEPS", "SEED"),
    "sftdiff.eval": ("CHECKPOINT_DIR", "BENCHMARKS"),
    "sftdiff.serve": ("CHECKPOINT",),
    "sftdiff.study": ("STUDY_DIR",),
}
REPO_GIN_DIR = GIN_DIR  # the older name

_GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Gin files to parse, in order (relative to --gin_search_paths).")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Individual gin bindings, e.g. \"MODEL_DIR='/tmp/x'\".")
_GIN_SEARCH_PATHS = flags.DEFINE_list(
    "gin_search_paths", [], "Directories searched for relative --gin_file paths "
    "(searched first; then the working directory, then the shipped gin/ configs).")


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
          gin_search_paths: Sequence[str] = (), *, finalize: bool = True,
          known_macros: Iterable[str] = ()) -> None:
  """Parses gin files, then bindings; raises GinConfigError naming the culprit.

  Files first, then each binding on its own (so an error names it). A binding
  must set a configurable's parameter (gin checks those) or a macro that a gin
  file declares or uses, that another binding uses, or that the binary reads
  (`known_macros`); anything else is a typo and fails, naming close matches.
  """
  for path in search_paths(gin_search_paths):
    gin.add_config_file_search_path(path)
  _guard_gin_package_reader()
  try:
    with quiet_gin_file_search():
      gin.parse_config_files_and_bindings(
          resolve_gin_files(gin_files, gin_search_paths), None,
          finalize_config=False, skip_unknown=False)
  except Exception as e:  # gin raises many types; all are config errors here
    raise GinConfigError(describe_gin_error(e)) from e
  known = bound_macros() | set(known_macros)
  for binding in bindings:
    try:
      gin.parse_config_files_and_bindings(None, [binding], finalize_config=False,
                                          skip_unknown=False)
    except Exception as e:  # pylint: disable=broad-except
      raise GinConfigError(describe_gin_error(e, binding=binding)) from e
  check_binding_names(bindings, known)
  if finalize:
    try:
      gin.finalize()
    except Exception as e:  # pylint: disable=broad-except
      raise GinConfigError(describe_gin_error(e)) from e


def _not_gin_search(record: logging.LogRecord) -> bool:
  return record.module != "resource_reader"


def _package_file_exists_or_false(exists_fn):
  """gin's package-resource check for `include 'runs/eval.gin'` imports `runs`
  as a package; a plain `runs/` folder in the working directory (a study's
  output, on sys.path under `python -m`) is a namespace package without an
  origin and the check raises TypeError instead of answering False."""
  def exists(path):
    try:
      return exists_fn(path)
    except TypeError:
      return False
  exists.guarded = True
  return exists


def _guard_gin_package_reader():
  readers = gin.config._FILE_READERS  # pylint: disable=protected-access
  for i, (reader, exists_fn) in enumerate(readers):
    if reader is not open and not getattr(exists_fn, "guarded", False):
      readers[i] = (reader, _package_file_exists_or_false(exists_fn))


@contextlib.contextmanager
def quiet_gin_file_search():
  """Drops gin's log line per search-path miss of an `include` (an include
  that is found nowhere still fails, naming the file)."""
  root = logging.getLogger()
  root.addFilter(_not_gin_search)
  try:
    yield
  finally:
    root.removeFilter(_not_gin_search)


_BINDING_NAME = re.compile(r"\s*([\w./]+)\s*=")


def binding_name(binding: str) -> str | None:
  """`NAME` of a `NAME = VALUE` binding (None for include/import lines)."""
  m = _BINDING_NAME.match(binding)
  return m.group(1) if m else None


def bound_macros() -> set[str]:
  """Macros bound so far (gin keeps them as bindings of `gin.macro`)."""
  from gin import config as gin_config
  return {scope for (scope, selector) in gin_config._CONFIG  # pylint: disable=protected-access
          if selector == "gin.macro"}


def referenced_macros() -> set[str]:
  """Macros some binding's value uses (`%NAME`)."""
  from gin import config as gin_config
  return {ref.config_key[0] for ref in gin_config.iterate_references(
              gin_config._CONFIG)  # pylint: disable=protected-access
          if ref.config_key[1] == "gin.macro"}


def check_binding_names(bindings: Sequence[str], known: Iterable[str]) -> None:
  """Every macro a binding sets must be known or referenced (see `parse`)."""
  known = set(known) | referenced_macros()
  for binding in bindings:
    name = binding_name(binding)
    if name is None or "." in name or "/" in name or name in known:
      continue
    raise GinConfigError(
        f"binding '{binding.strip()}': unknown gin macro {name} (no gin file, "
        f"binding or binary uses it){_closest(name, known)}")


def _closest(name: str, candidates: Iterable[str]) -> str:
  close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
  return f"; closest: {', '.join(close)}" if close else ""


# A configurable's renamed/moved parameters: {configurable's full selector:
# {old parameter: its new binding}}; `register_moved` fills it.
_MOVED: dict[str, dict[str, str]] = {}


def register_moved(fn, moved: dict[str, str]) -> None:
  """Old bindings of `fn`'s parameters in `moved` fail naming their new one."""
  _MOVED[f"{fn.__module__}.{fn.__name__}"] = dict(moved)


def _moved_to(selector: str, parameter: str) -> str | None:
  from gin import config as gin_config
  try:
    full = gin_config._REGISTRY.get_match(selector).selector  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except
    return None
  return _MOVED.get(full, {}).get(parameter)


def _configurable_parameters(selector: str) -> list[str]:
  from gin import config as gin_config
  try:
    configurable = gin_config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    fn = configurable.wrapped
    fn = fn.__init__ if inspect.isclass(fn) else fn
    return [p for p in inspect.signature(fn).parameters if p != "self"]
  except Exception:  # pylint: disable=broad-except
    return []


def _all_selectors() -> list[str]:
  from gin import config as gin_config
  return [s for s in gin_config._REGISTRY._selector_map  # pylint: disable=protected-access
          if s != "gin.macro"]


def describe_gin_error(e: BaseException, *, binding: str | None = None) -> str:
  """gin's exception as one or two lines naming the binding/file/line."""
  where = f"binding '{binding}'" if binding else "gin configuration"
  msg = str(e.args[0]) if e.args else str(e)
  location = e.args[1] if len(e.args) > 1 else None
  if hasattr(location, "line_num"):
    line = (location.line_content or "").strip()
    if location.filename:
      where = f"{location.filename}:{location.line_num}"
    name = binding_name(line)
    if isinstance(e, SyntaxError) and name:
      value = line.split("=", 1)[1].strip()
      hint = (f"--gin.{name}=\"'{value}'\"" if binding else f"{name} = '{value}'")
      return (f"{where}: cannot parse the value of {name} ({value!r}); "
              f"strings need quotes: {hint}")
    return f"{where}: {msg.splitlines()[0]} ({line})"
  m = re.match(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
  if m and _moved_to(m.group(1), m.group(2)):
    return (f"{where}: {m.group(1)}.{m.group(2)} moved to "
            f"{_moved_to(m.group(1), m.group(2))}; bind that instead")
  if m:
    return (f"{where}: configurable {m.group(1)} has no parameter "
            f"{m.group(2)}{_closest(m.group(2), _configurable_parameters(m.group(1)))}")
  m = re.match(r"No configurable matching '([^']+)'", msg)
  if m:
    return (f"{where}: no configurable named {m.group(1)}"
            f"{_closest(m.group(1), _all_selectors())}")
  if isinstance(e, OSError) or msg.startswith("Unable to open file"):
    return f"{where}: {msg.splitlines()[0]} (searched {', '.join(search_paths())})"
  return f"{where}: " + " ".join(msg.split("\n")[:2])


def parse_from_flags(*, finalize: bool = True, known_macros: Iterable[str] = (),
                     extra_bindings: Iterable[str] = ()) -> None:
  """The --gin_file/--gin_bindings/--gin.X flags, plus `extra_bindings` last."""
  parse(_GIN_FILES.value, [*_GIN_BINDINGS.value, *extra_bindings],
        _GIN_SEARCH_PATHS.value, finalize=finalize, known_macros=known_macros)


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
  try:
    path.write_text(gin.config_str())
  except OSError as e:  # e.g. a full disk, which does not name the file
    raise OSError(e.errno, e.strerror, str(path)) from e
  return path


def run(main) -> None:
  """absl.app.run with `--gin.NAME=VALUE` support and the one error path of
  `sftdiff.cli` (configuration/input errors exit 2 with a short message)."""
  from absl import app
  from sftdiff import cli

  app.run(cli.guarded(main), argv=rewrite_gin_args(sys.argv))
