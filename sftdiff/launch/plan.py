"""Launcher input: arms, seeds, runs JSON and flag overrides → RunSpecs for
the one run plan (`sftdiff.runs.plan`, re-exported here), plus its table.

Gin overrides come in levels; a later level replaces an earlier binding of the
same NAME (that is what a per-arm override is for), but one level binding the
same NAME twice with different values is a conflict:

  1. the run's own overrides (from the study expansion),
  2. launcher-wide `--gin.NAME=VALUE`,
  3. per-arm `--arm_override=ARM:NAME=VALUE`.

`ARM`, `SEED` and `MODEL_DIR` come from the arm, the seed and the root dir and
cannot be overridden.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Mapping, Sequence

from sftdiff.runs.plan import (EVAL_GIN_FILES, EVAL_MODULE, EVAL_STEPS, MULTI_ARM_MODULE, PLAN_MACROS,  # noqa: F401  re-exported
                               TRAIN_GIN_FILES, TRAIN_MODULE, Bindings, Job,
                               LaunchPlan, MultiArmGrouping, TrainGroup, WorkUnit,
                               build_plan, dedupe, format_commands, gin_list,
                               merge_levels, shell_quote)
from sftdiff.runs.spec import PlanError, RunSpec, runs_from_json, runs_to_json  # noqa: F401

LaunchConfigError = PlanError  # the launcher's name for the plan's errors

_BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(/[A-Za-z_][A-Za-z0-9_.]*)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_HINT = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)


@dataclasses.dataclass(frozen=True)
class Arm:
  """An arm given directly (without a study): its name and ARM string."""
  name: str
  spec: str


def parse_binding(text: str, *, where: str) -> tuple[str, str]:
  """`NAME=VALUE` → (NAME, VALUE); VALUE is a gin literal, kept verbatim."""
  name, sep, value = text.partition("=")
  name, value = name.strip(), value.strip()
  if not sep or not value:
    raise LaunchConfigError(f"{where}: {text!r} is not NAME=VALUE")
  if not _BINDING_NAME.match(name):
    raise LaunchConfigError(f"{where}: {name!r} is not a gin binding name")
  return name, value


def parse_arm(text: str) -> Arm:
  """`--arm=NAME=ARMSTRING`, e.g. `ref=Source('orig')`."""
  name, sep, spec = text.partition("=")
  if not sep or not name.strip() or not spec.strip():
    raise LaunchConfigError(f"--arm={text!r} is not NAME=ARM (e.g. "
                            "--arm=\"ref=Source('orig')\")")
  return Arm(name.strip(), spec.strip())


def parse_env(items: Iterable[str]) -> Bindings:
  env = []
  for item in items:
    name, sep, value = item.partition("=")
    if not sep or not _ENV_NAME.match(name):
      raise LaunchConfigError(f"--env={item!r} is not NAME=VALUE")
    if _SECRET_HINT.search(name):
      raise LaunchConfigError(
          f"--env={name}=...: secrets must not go into flags, plans or "
          "manifests; export it in the launching shell (local) or use "
          f"--gke_secret_env={name}=SECRET_NAME:KEY (gke)")
    env.append((name, value))
  return merge_levels([("--env", env)])


def runs_from_arms(arms: Sequence[Arm], seeds: Sequence[int], *, root_dir: str,
                   gin_files: Sequence[str] = TRAIN_GIN_FILES) -> list[RunSpec]:
  """Arms × seeds as RunSpecs, model dirs `<root_dir>/<arm>/seed<seed>`."""
  if not arms:
    raise LaunchConfigError("no arms: give --arm=NAME=ARM, --study_gin_file or "
                            "--runs_json")
  if not seeds:
    raise LaunchConfigError("--seeds is empty")
  if len(set(seeds)) != len(seeds):
    raise LaunchConfigError(f"--seeds has duplicates: {list(seeds)}")
  names = [a.name for a in arms]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise LaunchConfigError(f"arm name(s) given twice: {', '.join(dupes)}")
  runs = []
  for arm in arms:
    for seed in seeds:
      try:
        runs.append(RunSpec(
            arm_name=arm.name, arm=arm.spec, seed=int(seed),
            gin_files=tuple(gin_files), overrides=(),
            model_dir=os.path.join(root_dir, arm.name, f"seed{seed}")))
      except ValueError as e:
        raise LaunchConfigError(f"--arm={arm.name}: {e}") from None
  return runs


def check_arm_specs(runs: Sequence[RunSpec]) -> None:
  """Each run's ARM string parses as an arm (sftdiff.data.arms syntax)."""
  from sftdiff.data import arms as arms_lib
  for spec in dict.fromkeys((r.arm_name, r.arm) for r in runs):
    try:
      arms_lib.parse_arm(spec[1])
    except arms_lib.ArmError as e:
      raise LaunchConfigError(f"arm {spec[0]}: {e}") from None


def select_arms(runs: Sequence[RunSpec], only: Sequence[str]) -> list[RunSpec]:
  """Keeps runs of the named arms (all if `only` is empty)."""
  if not only:
    return list(runs)
  known = list(dict.fromkeys(r.arm_name for r in runs))
  unknown = [a for a in only if a not in known]
  if unknown:
    raise LaunchConfigError(f"--only_arms: unknown arm(s) {', '.join(unknown)}; "
                            f"the study's arms are {', '.join(known)}")
  return [r for r in runs if r.arm_name in only]


def apply_overrides(runs: Sequence[RunSpec], common: Sequence[tuple[str, str]],
                    per_arm: Mapping[str, Sequence[tuple[str, str]]],
                    *, extra_gin_files: Sequence[str] = ()) -> list[RunSpec]:
  """Runs with launcher-wide and per-arm overrides (levels 2, 3) folded in."""
  known = {r.arm_name for r in runs}
  unknown = sorted(set(per_arm) - known)
  if unknown:
    raise LaunchConfigError(
        f"--arm_override names unknown arm(s) {', '.join(unknown)}; arms: "
        f"{', '.join(sorted(known))}")
  out = []
  for run in runs:
    overrides = merge_levels(
        [(f"study overrides of {run.arm_name}", run.overrides),
         ("--gin", common),
         (f"--arm_override={run.arm_name}:...", per_arm.get(run.arm_name, ()))],
        reserved=PLAN_MACROS)
    out.append(dataclasses.replace(
        run, overrides=overrides,
        gin_files=tuple(dict.fromkeys((*run.gin_files, *extra_gin_files)))))
  return out


def format_table(plan: LaunchPlan) -> str:
  """The plan as an aligned text table, one row per work unit (with
  multi-arm jobs, `trained by`: the job that trains it)."""
  grouped = any(g.is_multi_arm for g in plan.groups)
  header = ("work unit", "ARM", "overrides", "model dir", "resources", "eval",
            *(("trained by",) if grouped else ()))
  rows = [header]
  for wu in plan.work_units:
    overrides = " ".join(f"{k}={v}" for k, v in wu.run.overrides) or "-"
    group = plan.group_of(wu)
    rows.append((wu.name, wu.run.arm, overrides, wu.model_dir,
                 wu.train.resources.describe() if wu.train.resources else "-",
                 "yes" if wu.eval else "no",
                 *((group.name if group.is_multi_arm else "-",) if grouped else ())))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  jobs = f", {len(plan.groups)} train jobs" if grouped else ""
  lines = [f"experiment: {plan.title} ({len(plan.work_units)} work units{jobs})"]
  for i, row in enumerate(rows):
    lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if i == 0:
      lines.append("  ".join("-" * w for w in widths))
  return "\n".join(lines)
