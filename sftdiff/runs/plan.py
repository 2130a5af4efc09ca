"""The run plan: RunSpecs → work units, each a train job and the eval job
that follows it. Pure and printable; every executor runs `Job.argv()` as is
(local study runner, XManager local/Vertex, GKE JobSet).

Which steps are evaluated is decided here, once, for every executor
(`eval_steps`): `final` (default) evaluates `checkpoints/<TRAIN_STEPS>`;
`all` evaluates every committed step and any `hf/` export of the run.

Identical runs (same `RunSpec.content_key()`: base, prompts, arm, seed,
steps, every override) train once: `dedupe` points them at one model dir and
`build_plan` makes one work unit for it, naming every arm that uses it.

With `multi_arm=MultiArmGrouping(max_arms=N)` (N > 1), units whose runs
differ only in ARM, SEED and MODEL_DIR (`groups.group_key`) share one train
job, `python -m sftdiff.train.multi_arm` with the shared flags and one
`--arm=` per run (`TrainGroup`), and one eval job after it, `python -m
sftdiff.eval` with the shared eval flags and one `--checkpoint_dir=` per run
(each evaluated exactly as its own eval job would, in one process: one
sampler compile per bucket for the group). Every unit keeps its own `train`
and `eval` jobs too: what the group runs for that run, and what a local
resume runs when the group cannot restart as one.

Gin overrides are merged in levels (`merge_levels`): a later level replaces
an earlier binding of the same NAME; one level binding a NAME twice with
different values is a conflict.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Iterable, Sequence

from sftdiff import gin_utils
from sftdiff import layout
from sftdiff.runs import groups as groups_lib
from sftdiff.runs.groups import MULTI_ARM_MODULE, MultiArmGrouping
from sftdiff.runs.spec import PlanError, RunSpec

TRAIN_MODULE = "sftdiff.train"
EVAL_MODULE = "sftdiff.eval"
TRAIN_GIN_FILES = ("runs/sft.gin",)
EVAL_GIN_FILES = ("runs/eval.gin",)
PLAN_MACROS = ("ARM", "SEED", "MODEL_DIR")
EVAL_STEPS = ("final", "all")

Bindings = tuple[tuple[str, str], ...]


def merge_levels(levels: Sequence[tuple[str, Iterable[tuple[str, str]]]],
                 *, reserved: Sequence[str] = ()) -> Bindings:
  """Merges binding levels (later wins); conflicts within a level raise."""
  merged: dict[str, str] = {}
  for level_name, bindings in levels:
    seen: dict[str, str] = {}
    for name, value in bindings:
      if name in reserved:
        raise PlanError(
            f"{level_name}: {name} is set by the launcher from the arm, seed "
            f"and --root_dir; it cannot be overridden ({name}={value})")
      if name in seen and seen[name] != value.strip():
        raise PlanError(
            f"{level_name}: conflicting overrides for {name}: {seen[name]} vs "
            f"{value.strip()}")
      seen[name] = value.strip()
    merged.update(seen)
  return tuple(merged.items())


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


def binding_args(bindings: Iterable[tuple[str, str]]) -> list[str]:
  return [f"--gin.{k}={v}" for k, v in bindings]


def arm_flag(own_args: Sequence[str]) -> str:
  """One arm's own train flags as the multi-arm trainer's `--arm=` value
  (it `shlex.split`s it back into exactly these tokens)."""
  return "--arm=" + " ".join(shell_quote(a) for a in own_args)


def gin_list(names: Sequence[str]) -> str:
  return "[" + ", ".join(repr(n) for n in names) + "]"


@dataclasses.dataclass(frozen=True)
class Job:
  """One binary invocation: `python -m <module> --gin_file=... --gin.K=V`.
  `resources` is the launcher's `Resources` (None: whatever runs it has)."""
  name: str
  module: str
  gin_files: tuple[str, ...]
  bindings: Bindings
  resources: Any = None
  env: Bindings = ()
  flags: tuple[str, ...] = ()   # the binary's own flags, after the gin ones

  def args(self) -> list[str]:
    """Flags only (no interpreter/module); each element is one argv token."""
    return ([f"--gin_file={f}" for f in self.gin_files] +
            binding_args(self.bindings) + list(self.flags))

  def argv(self, python: str = "python") -> list[str]:
    """What every executor runs."""
    return [python, "-m", self.module, *self.args()]

  def command_line(self, python: str = "python") -> str:
    """Shell-safe command line (env assignments first)."""
    env = [f"{k}={shell_quote(v)}" for k, v in self.env]
    return " ".join([*env, *(shell_quote(a) for a in self.argv(python))])


def eval_checkpoint_dir(run: RunSpec, eval_steps: str) -> str:
  """CHECKPOINT_DIR of the run's eval job."""
  if eval_steps == "all":
    return run.model_dir
  if run.train_steps is None:
    raise PlanError(
        f"run {run.name}: evaluating the final step needs TRAIN_STEPS among its "
        "overrides (e.g. --gin.TRAIN_STEPS=100), or evaluate every step "
        "(eval_steps='all')")
  return layout.step_dir(run.model_dir, run.train_steps)


def evaluated_checkpoints(run: RunSpec, eval_steps: str) -> list[str]:
  """The checkpoints the run's eval job evaluates, as found on disk now."""
  if eval_steps == "final":
    return [eval_checkpoint_dir(run, eval_steps)]
  out = [layout.step_dir(run.model_dir, s)
         for s in layout.committed_steps(run.model_dir)]
  final = run.train_steps and layout.step_dir(run.model_dir, run.train_steps)
  if final and final not in out:
    out.append(final)  # not committed yet: its metrics are missing too
  if layout.is_hf_dir(layout.hf_dir(run.model_dir)):
    out.append(layout.hf_dir(run.model_dir))
  return out


@dataclasses.dataclass(frozen=True)
class WorkUnit:
  """One distinct run: its train job, the eval job that follows it, and
  every run (arm × seed) it stands for (more than one after `dedupe`)."""
  run: RunSpec
  train: Job
  eval: Job | None
  eval_steps: str = "final"
  runs: tuple[RunSpec, ...] = ()

  @property
  def name(self) -> str:
    return f"{self.run.arm_name}-seed{self.run.seed}"

  @property
  def model_dir(self) -> str:
    return self.run.model_dir

  @property
  def tensorboard_dir(self) -> str:
    return layout.tensorboard_dir(self.run.model_dir)

  @property
  def aliases(self) -> list[str]:
    """The other runs this unit's training serves."""
    return [r.name for r in self.runs if r.name != self.run.name]

  def evaluated_checkpoints(self) -> list[str]:
    return evaluated_checkpoints(self.run, self.eval_steps)


@dataclasses.dataclass(frozen=True)
class TrainGroup:
  """One train job and the work units it trains: one unit (its own
  `sftdiff.train` job) or several (one `sftdiff.train.multi_arm` process
  training each unit's run as one arm); then `eval`, the job evaluating
  them: the unit's own, or one `sftdiff.eval` process for every unit
  (`--checkpoint_dir=` each). None when the plan evaluates nothing."""
  train: Job
  units: tuple[WorkUnit, ...]
  eval: Job | None = None

  @property
  def name(self) -> str:
    first = self.units[0].name
    return first if len(self.units) == 1 else f"{first}+{len(self.units) - 1}"

  @property
  def is_multi_arm(self) -> bool:
    return len(self.units) > 1


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
  """`work_units` in plan order; `groups` cover them, each unit in exactly one,
  and are what every executor runs (train job, then the units' evals)."""
  title: str
  work_units: tuple[WorkUnit, ...]
  groups: tuple[TrainGroup, ...] = ()

  def __post_init__(self):
    if not self.groups:  # one job per unit
      object.__setattr__(self, "groups", tuple(
          TrainGroup(train=wu.train, units=(wu,), eval=wu.eval)
          for wu in self.work_units))

  def group_of(self, wu: WorkUnit) -> TrainGroup:
    return next(g for g in self.groups if wu in g.units)


def dedupe(runs: Sequence[RunSpec]) -> list[RunSpec]:
  """The runs with every identical run (equal `content_key`) pointed at the
  model dir of the first: it trains once and each arm reads it."""
  first: dict[tuple, str] = {}
  out = []
  for run in runs:
    model_dir = first.setdefault(run.content_key(), run.model_dir)
    out.append(dataclasses.replace(run, model_dir=model_dir))
  return out


def build_plan(runs: Sequence[RunSpec], *, title: str,
               resources: Any = None,
               eval_resources: Any = None,
               env: Bindings = (),
               run_eval: bool = True,
               eval_gin_files: Sequence[str] = EVAL_GIN_FILES,
               eval_overrides: Sequence[tuple[str, str]] = (),
               benchmarks: Sequence[str] = (),
               eval_steps: str = "final",
               gin_search_paths: Sequence[str] | None = None,
               train_module: str = TRAIN_MODULE,
               eval_module: str = EVAL_MODULE,
               multi_arm: MultiArmGrouping | None = None,
               multi_arm_module: str = MULTI_ARM_MODULE) -> LaunchPlan:
  """One work unit per distinct run (see `dedupe`), eval after train when
  `run_eval`; units grouped into multi-arm train jobs by `multi_arm`. With
  `gin_search_paths`, relative gin files become absolute
  (`gin_utils.resolve_gin_files`), as a local executor needs."""
  if not runs:
    raise PlanError("the plan has no runs")
  if eval_steps not in EVAL_STEPS:
    raise PlanError(f"eval_steps={eval_steps!r}: expected one of {EVAL_STEPS}")
  names = [f"{r.arm_name}-seed{r.seed}" for r in runs]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise PlanError(f"run(s) given twice: {', '.join(dupes)}")
  by_dir: dict[str, list[RunSpec]] = {}
  for r in runs:
    by_dir.setdefault(r.model_dir, []).append(r)
  shared = sorted(d for d, rs in by_dir.items()
                  if len({r.content_key() for r in rs}) > 1)
  if shared:
    raise PlanError(f"runs share a model dir: {', '.join(shared)}")

  def resolved(files):
    if gin_search_paths is None:
      return tuple(files)
    return tuple(gin_utils.resolve_gin_files(files, gin_search_paths))

  eval_base = merge_levels([("--eval_gin", eval_overrides)],
                           reserved=("CHECKPOINT_DIR",))
  if benchmarks:
    eval_base = merge_levels([("--eval_gin", eval_base),
                              ("--benchmarks", [("BENCHMARKS", gin_list(benchmarks))])])
  units = []
  for same in by_dir.values():
    run = same[0]
    train = Job(name="train", module=train_module, gin_files=resolved(run.gin_files),
                bindings=merge_levels([(run.name, run.bindings())]),
                resources=resources, env=env)
    evaluation = None
    if run_eval:
      evaluation = Job(
          name="eval", module=eval_module, gin_files=resolved(eval_gin_files),
          bindings=(("CHECKPOINT_DIR", repr(eval_checkpoint_dir(run, eval_steps))),
                    *eval_base),
          resources=eval_resources or resources, env=env)
    units.append(WorkUnit(run=run, train=train, eval=evaluation,
                          eval_steps=eval_steps, runs=tuple(same)))
  train_groups = []
  max_arms = multi_arm.max_arms if multi_arm else 1
  for members in groups_lib.group(units, lambda wu: groups_lib.group_key(wu.run),
                                  max_arms):
    if len(members) == 1:
      train_groups.append(TrainGroup(train=members[0].train, units=tuple(members),
                                     eval=members[0].eval))
      continue
    run = members[0].run
    own = [binding_args(wu.run.bindings()[:len(PLAN_MACROS)]) for wu in members]
    train = Job(name="train", module=multi_arm_module, gin_files=resolved(run.gin_files),
                bindings=merge_levels([(run.name, run.overrides)]),
                resources=resources, env=env,
                flags=(*groups_lib.trainer_flags(multi_arm),
                       *(arm_flag(a) for a in own)))
    evaluation = None
    if run_eval:  # each unit's eval job, its CHECKPOINT_DIR binding as a flag
      evaluation = Job(
          name="eval", module=eval_module, gin_files=resolved(eval_gin_files),
          bindings=eval_base, resources=eval_resources or resources, env=env,
          flags=tuple(f"--checkpoint_dir={eval_checkpoint_dir(wu.run, eval_steps)}"
                      for wu in members))
    train_groups.append(TrainGroup(train=train, units=tuple(members), eval=evaluation))
  return LaunchPlan(title=title, work_units=tuple(units), groups=tuple(train_groups))


def format_commands(plan: LaunchPlan, python: str = "python") -> str:
  """Every job's exact command line, as a runnable shell script."""
  lines = ["#!/usr/bin/env bash", f"# {plan.title}", "set -euo pipefail"]
  for group in plan.groups:
    names = [wu.name + (f" (also {', '.join(wu.aliases)})" if wu.aliases else "")
             for wu in group.units]
    lines.append(f"# {', '.join(names)}" + (" (one multi-arm process)"
                                             if group.is_multi_arm else ""))
    lines.append(group.train.command_line(python))
    if group.eval:
      lines.append(group.eval.command_line(python))
  return "\n".join(lines) + "\n"


def plan_to_json(plan: LaunchPlan, python: str = "python") -> list[dict]:
  """The plan as JSON-able records: each unit's runs and exact argv
  (`train_argv` / `eval_argv`: the jobs that train and evaluate it, shared
  by its `train_group`)."""
  return [{"work_unit": wu.name, "runs": [r.name for r in wu.runs],
           "arm": wu.run.arm, "model_dir": wu.model_dir,
           "eval_steps": wu.eval_steps,
           "train_group": plan.group_of(wu).name,
           "train_argv": plan.group_of(wu).train.argv(python),
           "eval_argv": (plan.group_of(wu).eval.argv(python)
                         if plan.group_of(wu).eval else None)}
          for wu in plan.work_units]
