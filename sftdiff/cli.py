"""The one error path of every sftdiff binary (train, eval, data, study, launch).

A configuration or input error — a bad gin binding, a missing file, an ARM
that does not parse, an output directory that cannot be written — exits with
status 2 and a one- or two-line `error: ...` message that names it. The
traceback is printed only when `--verbosity` is given. Anything else is a bug
and keeps Python's traceback (and status 1).
"""

from __future__ import annotations

import errno
import sys
import traceback

from absl import flags

# Input/configuration errors by qualified class name, so that checking for
# them imports nothing (an exception of a class whose module was never
# imported cannot have been raised). Subclasses count too.
USER_ERRORS = frozenset({
    "sftdiff.gin_utils.GinConfigError",
    "sftdiff.cli.InputError",
    "sftdiff.data.arms.ArmError",
    "sftdiff.data.records.DataValidationError",
    "sftdiff.data.filters.FilterError",
    "sftdiff.data.store_build.CoverageError",
    "sftdiff.data.chat.MessageFormatError",
    "sftdiff.data.tokenizer.TokenizerFormatError",
    "sftdiff.data.tokenizer.ChatTemplateError",
    "sftdiff.models.hf_io.UnsupportedModelError",
    "sftdiff.models.hf_io.CheckpointFormatError",
    "sftdiff.train.checkpoints.CheckpointNotFoundError",
    "sftdiff.eval.benchmarks.rubric.RubricFileError",
    "sftdiff.study.expansion.StudyConfigError",
    "sftdiff.runs.spec.PlanError",
    "sftdiff.runs.resources.UnsupportedAcceleratorError",
})
# OS errors that mean "this path cannot be used", not a bug.
_PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                          errno.EDQUOT, errno.ENOENT, errno.ENOTDIR, errno.EISDIR})

# Raised by our own code with a message instead of an errno.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                PermissionError)


class InputError(ValueError):
  """A path or input the user gave is unusable; the message names it."""


def unwrap(e: BaseException) -> BaseException:
  """The exception gin wrapped in its message-augmenting proxy (raised from a
  configurable: the proxy drops e.g. OSError's errno), else `e`."""
  getattr_fn = type(e).__dict__.get("__getattr__")
  if type(e).__dict__.get("__doc__", "") and "proxy" in (type(e).__doc__ or ""):
    for cell in getattr(getattr_fn, "__closure__", None) or ():
      if isinstance(cell.cell_contents, BaseException):
        return cell.cell_contents
  return e


def _path_error(e: BaseException) -> bool:
  return isinstance(e, OSError) and (
      e.errno in _PATH_ERRNOS or isinstance(e, _PATH_ERRORS))


def is_user_error(e: BaseException) -> bool:
  if _path_error(e):
    return True
  return any(f"{c.__module__}.{c.__qualname__}" in USER_ERRORS
             for c in type(e).__mro__)


def describe(e: BaseException) -> str:
  if _path_error(e) and e.filename:
    return f"cannot use {e.filename}: {e.strerror or e}"
  # gin and others append context lines; two lines keep it readable.
  return "\n".join(str(e).strip().splitlines()[:2])


def _verbose() -> bool:
  try:
    return flags.FLAGS["verbosity"].present > 0
  except (KeyError, flags.UnparsedFlagAccessError):
    return False


def exit_on_user_error(e: BaseException, *, prefix: str = "") -> None:
  """Exits 2 with a short message if `e` is a user error; returns otherwise."""
  if not is_user_error(e):
    return
  if _verbose():
    traceback.print_exception(e)
  print(f"error: {prefix}{describe(e)}", file=sys.stderr)
  sys.exit(2)


def guarded(main):
  """Wraps an absl main so user errors exit 2 with one message."""
  def _main(argv):
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except
      exit_on_user_error(unwrap(e))
      raise
  return _main
