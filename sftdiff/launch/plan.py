"""Launch plan: runs (arms × seeds) → work units, each a train job and the
eval job that follows it. Pure and printable: `launch/xm_launch.py` turns a
plan into XManager jobs or JobSet manifests, `--dry_run` prints it.

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
import json
import os
import re
import shlex
from typing import Iterable, Mapping, Sequence

from sftdiff import strict_json
from sftdiff import gin_utils
from sftdiff.launch.resources import Resources
from sftdiff.study.spec import RunSpec

TRAIN_MODULE = "sftdiff.train"
EVAL_MODULE = "sftdiff.eval"
TRAIN_GIN_FILES = ("runs/sft.gin",)
EVAL_GIN_FILES = ("runs/eval.gin",)
PLAN_MACROS = ("ARM", "SEED", "MODEL_DIR")
TRAIN_REQUIRED_MACROS = ("MODEL_DIR", "INITIAL_CHECKPOINT", "ARM", "TRAIN_STEPS",
                         "SEED")
EVAL_REQUIRED_MACROS = ("CHECKPOINT_DIR",)

_BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(/[A-Za-z_][A-Za-z0-9_.]*)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_HINT = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)

Bindings = tuple[tuple[str, str], ...]


class LaunchConfigError(ValueError):
  """The launch request is wrong; the message names the flag, arm or binding."""


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


def merge_levels(levels: Sequence[tuple[str, Iterable[tuple[str, str]]]],
                 *, reserved: Sequence[str] = ()) -> Bindings:
  """Merges binding levels (later wins); conflicts within a level raise."""
  merged: dict[str, str] = {}
  for level_name, bindings in levels:
    seen: dict[str, str] = {}
    for name, value in bindings:
      if name in reserved:
        raise LaunchConfigError(
            f"{level_name}: {name} is set by the launcher from the arm, seed "
            f"and --root_dir; it cannot be overridden ({name}={value})")
      if name in seen and seen[name] != value.strip():
        raise LaunchConfigError(
            f"{level_name}: conflicting overrides for {name}: {seen[name]} vs "
            f"{value.strip()}")
      seen[name] = value.strip()
    merged.update(seen)
  return tuple(merged.items())


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


def resolve_gin_files(files: Sequence[str], search_paths: Sequence[str]) -> tuple[str, ...]:
  """Relative gin files as absolute paths along `search_paths`, as the binary
  resolves them (see `gin_utils.resolve_gin_files`)."""
  return tuple(gin_utils.resolve_gin_files(files, search_paths))


def shell_quote(arg: str) -> str:
  """POSIX-shell quoting that keeps gin strings readable: `--gin.X="'a b'"`
  rather than shlex's `'--gin.X='"'"'a b'"'"''` (same meaning)."""
  quoted = shlex.quote(arg)
  if quoted == arg or "'" not in arg:
    return quoted
  if not any(c in arg for c in '"$`\\!'):
    name, sep, value = arg.partition("=")
    if sep and arg.startswith("-") and shlex.quote(name) == name:
      return f'{name}="{value}"'
    return f'"{arg}"'
  return quoted


@dataclasses.dataclass(frozen=True)
class Job:
  """One binary invocation: `python -m <module> --gin_file=... --gin.K=V`."""
  name: str
  module: str
  gin_files: tuple[str, ...]
  bindings: Bindings
  resources: Resources
  env: Bindings = ()

  def args(self) -> list[str]:
    """Flags only (no interpreter/module); each element is one argv token."""
    return ([f"--gin_file={f}" for f in self.gin_files] +
            [f"--gin.{k}={v}" for k, v in self.bindings])

  def argv(self, python: str = "python") -> list[str]:
    return [python, "-m", self.module, *self.args()]

  def command_line(self, python: str = "python") -> str:
    """Shell-safe command line (env assignments first)."""
    env = [f"{k}={shell_quote(v)}" for k, v in self.env]
    return " ".join([*env, *(shell_quote(a) for a in self.argv(python))])


@dataclasses.dataclass(frozen=True)
class WorkUnit:
  """One arm × seed: its train job and the eval job that follows it."""
  run: RunSpec
  train: Job
  eval: Job | None

  @property
  def name(self) -> str:
    return f"{self.run.arm_name}-seed{self.run.seed}"

  @property
  def model_dir(self) -> str:
    return self.run.model_dir

  @property
  def tensorboard_dir(self) -> str:
    return os.path.join(self.run.model_dir, "tb")


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
  title: str
  work_units: tuple[WorkUnit, ...]


def gin_list(names: Sequence[str]) -> str:
  return "[" + ", ".join(repr(n) for n in names) + "]"


def build_plan(runs: Sequence[RunSpec], *, title: str,
               resources: Resources = Resources(),
               eval_resources: Resources | None = None,
               env: Bindings = (),
               run_eval: bool = True,
               eval_gin_files: Sequence[str] = EVAL_GIN_FILES,
               eval_overrides: Sequence[tuple[str, str]] = (),
               benchmarks: Sequence[str] = (),
               train_module: str = TRAIN_MODULE,
               eval_module: str = EVAL_MODULE) -> LaunchPlan:
  """One work unit per run (arm × seed), eval after train when `run_eval`."""
  if not runs:
    raise LaunchConfigError("the plan has no runs")
  names = [f"{r.arm_name}-seed{r.seed}" for r in runs]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise LaunchConfigError(f"run(s) given twice: {', '.join(dupes)}")
  dirs = [r.model_dir for r in runs]
  shared = sorted({d for d in dirs if dirs.count(d) > 1})
  if shared:
    raise LaunchConfigError(f"runs share a model dir: {', '.join(shared)}")
  eval_base = merge_levels([("--eval_gin", eval_overrides)],
                           reserved=("CHECKPOINT_DIR",))
  if benchmarks:
    eval_base = merge_levels([("--eval_gin", eval_base),
                              ("--benchmarks", [("BENCHMARKS", gin_list(benchmarks))])])
  units = []
  for run in runs:
    train = Job(name="train", module=train_module, gin_files=tuple(run.gin_files),
                bindings=merge_levels([(run.name, run.bindings())]),
                resources=resources, env=env)
    evaluation = None
    if run_eval:
      evaluation = Job(
          name="eval", module=eval_module, gin_files=tuple(eval_gin_files),
          bindings=(("CHECKPOINT_DIR", repr(run.model_dir)), *eval_base),
          resources=eval_resources or resources, env=env)
    units.append(WorkUnit(run=run, train=train, eval=evaluation))
  return LaunchPlan(title=title, work_units=tuple(units))


def format_table(plan: LaunchPlan) -> str:
  """The plan as an aligned text table, one row per work unit."""
  header = ("work unit", "ARM", "overrides", "model dir", "resources", "eval")
  rows = [header]
  for wu in plan.work_units:
    overrides = " ".join(f"{k}={v}" for k, v in wu.run.overrides) or "-"
    rows.append((wu.name, wu.run.arm, overrides, wu.model_dir,
                 wu.train.resources.describe(), "yes" if wu.eval else "no"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = [f"experiment: {plan.title} ({len(plan.work_units)} work units)"]
  for i, row in enumerate(rows):
    lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if i == 0:
      lines.append("  ".join("-" * w for w in widths))
  return "\n".join(lines)


def format_commands(plan: LaunchPlan, python: str = "python") -> str:
  """Every job's exact command line, as a runnable shell script."""
  lines = ["#!/usr/bin/env bash", f"# {plan.title}", "set -euo pipefail"]
  for wu in plan.work_units:
    lines.append(f"# {wu.name}")
    lines.append(wu.train.command_line(python))
    if wu.eval:
      lines.append(wu.eval.command_line(python))
  return "\n".join(lines) + "\n"


def runs_to_json(runs: Sequence[RunSpec]) -> str:
  return strict_json.dumps([dataclasses.asdict(r) for r in runs], indent=1)


def runs_from_json(text: str, *, source: str) -> list[RunSpec]:
  """RunSpecs from `runs_to_json` output; errors name `source` and the entry."""
  try:
    items = json.loads(text)
  except json.JSONDecodeError as e:
    raise LaunchConfigError(f"{source}: not JSON: {e}") from None
  if not isinstance(items, list):
    raise LaunchConfigError(f"{source}: expected a JSON list of runs")
  runs = []
  fields = {f.name for f in dataclasses.fields(RunSpec)}
  for i, item in enumerate(items):
    if not isinstance(item, dict) or set(item) != fields:
      got = sorted(item) if isinstance(item, dict) else type(item).__name__
      raise LaunchConfigError(f"{source}[{i}]: a run needs exactly the fields "
                              f"{sorted(fields)}; got {got}")
    try:
      runs.append(RunSpec(
          arm_name=item["arm_name"], arm=item["arm"], seed=int(item["seed"]),
          gin_files=tuple(item["gin_files"]),
          overrides=tuple((str(k), str(v)) for k, v in item["overrides"]),
          model_dir=item["model_dir"]))
    except (TypeError, ValueError) as e:
      raise LaunchConfigError(f"{source}[{i}]: {e}") from None
  return runs
