"""Checks every job's gin before anything is launched: the files and bindings
parse (unknown names and bad values included), no required macro is left
unset, and the binary's own `check_config()` (if its `__main__` has one, like
the trainer's macro type checks) passes — the same checks the binary runs
first (`sftdiff.gin_utils`).

The binary's module is imported first so its configurables are registered;
each job is parsed in a clean gin config, which is cleared again afterwards.
"""

from __future__ import annotations

import importlib
from typing import Callable, Sequence

from absl import flags
import gin
from gin import config as gin_config

from sftdiff import gin_utils
from sftdiff.runs.plan import Job, LaunchPlan
from sftdiff.runs.spec import PlanError


class GinCheckError(PlanError):
  """A job's gin does not parse or leaves a required macro unset."""


def import_binary(module: str) -> Callable[[], object] | None:
  """Imports a binary's package and its `__main__` (registers configurables);
  returns the binary's own post-parse check (`check_config`), if it has one."""
  check = None
  for name in (module, f"{module}.__main__"):
    try:
      imported = importlib.import_module(name)
    except ModuleNotFoundError as e:
      if name.endswith("__main__") and e.name == name:
        continue  # a plain module binary has no __main__ submodule
      raise GinCheckError(
          f"cannot check gin for {module}: importing {name} failed ({e}); "
          "install the package (pip install -e .) or pass --nocheck_gin") from e
    except flags.Error as e:  # e.g. the binary defines a flag the launcher has
      raise GinCheckError(
          f"cannot check gin for {module}: importing {name} in the launcher "
          f"failed ({e}); pass --nocheck_gin") from e
    check = getattr(imported, "check_config", check)
  return check if callable(check) else None


def declared_required_macros() -> list[str]:
  """Macros the parsed files declare as `NAME = %gin.REQUIRED` and left so."""
  # gin has no public listing of macros; they are bindings of `gin.macro`.
  return sorted(name for (name, selector), params in gin_config._CONFIG.items()
                if selector == "gin.macro"
                and repr(params.get("value")) == "%gin.REQUIRED")


def check_job(job: Job, *, label: str, required: Sequence[str] = (),
              search_paths: Sequence[str] = (),
              binary_check: Callable[[], object] | None = None) -> None:
  """Parses one job's gin in a clean config; raises GinCheckError naming it."""
  bindings = [f"{k} = {v}" for k, v in job.bindings]
  # Resolved like the binary's search would; gin's own fallback mistakes
  # `runs/sft.gin` for a package when a `runs/` folder is on sys.path.
  files = gin_utils.resolve_gin_files(job.gin_files, search_paths)
  gin.clear_config()
  try:
    with gin_utils.quiet_gin_file_search():
      gin_utils.parse(files, bindings, search_paths, finalize=False,
                      known_macros=required)
    missing = sorted(set(declared_required_macros()) |
                     {m for m in required if not _is_bound(m)})
    if missing:
      raise GinCheckError(
          f"{label}: required gin macro(s) not set: {', '.join(missing)} "
          f"(gin files {list(job.gin_files)}); bind each with "
          "--gin.NAME=VALUE, --arm_override=ARM:NAME=VALUE or in a gin file")
    if binary_check is not None:
      binary_check()  # e.g. the trainer's macro type checks
  except gin_utils.GinConfigError as e:
    raise GinCheckError(f"{label}: {e}") from None
  finally:
    gin.clear_config()


def _is_bound(name: str) -> bool:
  try:
    value = gin.query_parameter(f"%{name}")
  except ValueError:
    return False
  return repr(value) != "%gin.REQUIRED"


def check_plan(plan: LaunchPlan, *, search_paths: Sequence[str] = ()) -> int:
  """Checks every job of the plan; returns how many jobs were checked."""
  checked = 0
  checks = {module: import_binary(module)
            for module in sorted({j.module for wu in plan.work_units
                                  for j in (wu.train, wu.eval) if j is not None})}
  for wu in plan.work_units:
    for job in (wu.train, wu.eval):
      if job is None:
        continue
      check_job(job, label=f"work unit {wu.name} ({job.name}: {job.module})",
                required=gin_utils.REQUIRED_MACROS.get(job.module, ()),
                search_paths=search_paths, binary_check=checks[job.module])
      checked += 1
  return checked
