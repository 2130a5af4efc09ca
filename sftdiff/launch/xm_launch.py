r"""Launches a study with XManager: one work unit per arm × seed running
`python -m sftdiff.train` with that arm's gin overrides, then its evaluation.

Run as `python -m sftdiff.launch` (or `sftdiff launch`, or the checkout's
`launch/xm_launch.py` shim), so it works from a wheel install too.

  # Print the plan and every command line; launch nothing.
  python -m sftdiff.launch --dry_run --root_dir=/tmp/runs \
      --arm="ref=Source('orig')" --arm="patch=Patch(base='alt', patch='teacher', where='date_mentions')" \
      --seeds=0,1 --gin.INITIAL_CHECKPOINT="'/ckpt/base'" --gin.TRAIN_STEPS=100

  # A study gin file instead of --arm flags; or a RunSpec list (--runs_json).
  python -m sftdiff.launch --study_gin_file=studies/toyworld_quick.gin ...

Executors (`--executor`): local (this machine, this Python), vertex (Vertex
AI; GPUs, TPU v2/v3), gke (writes JobSet manifests for TPU v4/v5e/v5p/v6e
slices; `--gke_apply` runs `kubectl apply -f` on them). See docs/launch.md.
Every check (arms, overrides, accelerators, each job's gin) runs before
anything is launched; a bad request exits with status 2 and says why.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from absl import flags
from absl import logging

from sftdiff import gin_utils
from sftdiff.launch import jobset, plan as plan_lib
from sftdiff.runs import gin_check, resources as res

_EXECUTOR = flags.DEFINE_enum("executor", "local", list(res.EXECUTORS),
                              "Where the jobs run.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False,
                             "Print the plan and command lines; launch nothing.")
_TITLE = flags.DEFINE_string("title", None, "Experiment title (default: the "
                             "study's name, else 'sftdiff').")
# What to run: exactly one of --arm, --runs_json, --study_gin_file.
_ARMS = flags.DEFINE_multi_string("arm", [], "NAME=ARM, e.g. \"ref=Source('orig')\".")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds of every --arm.")
_ROOT_DIR = flags.DEFINE_string("root_dir", None, "With --arm: model dirs are "
                                "<root_dir>/<arm>/seed<seed>.")
_RUNS_JSON = flags.DEFINE_string("runs_json", None, "A JSON list of RunSpecs "
                                 "(sftdiff.launch.runs_to_json).")
_STUDY_GIN_FILES = flags.DEFINE_multi_string("study_gin_file", [], "Study gin "
                                             "file(s) expanded by sftdiff.study.")
_STUDY_BINDINGS = flags.DEFINE_multi_string("study_gin", [], "NAME=VALUE "
                                            "bindings for the study gin.")
_ONLY_ARMS = flags.DEFINE_list("only_arms", [], "Launch only these arms.")
_ARM_OVERRIDES = flags.DEFINE_multi_string(
    "arm_override", [], "ARM:NAME=VALUE, a gin binding for one arm's training "
    "(replaces a --gin.NAME binding for that arm).")
# Eval after training.
_EVAL = flags.DEFINE_bool("eval", True, "Evaluate each run after it trains.")
_EVAL_GIN_FILES = flags.DEFINE_multi_string("eval_gin_file", [], "Eval gin "
                                            "files (default runs/eval.gin).")
_EVAL_BINDINGS = flags.DEFINE_multi_string("eval_gin", [], "NAME=VALUE for eval.")
_BENCHMARKS = flags.DEFINE_list("benchmarks", [], "Bound to BENCHMARKS for eval.")
_EVAL_STEPS = flags.DEFINE_enum("eval_steps", None, list(plan_lib.EVAL_STEPS),
                                "final: the TRAIN_STEPS checkpoint; all: every "
                                "committed step and hf/ export (default: the "
                                "study's StudyConfig.eval_steps, else final).")
# Resources and environment.
_ACCELERATOR = flags.DEFINE_string("accelerator", "cpu", "cpu, local, a GPU "
                                   "(h100, a100, ...) or a TPU (tpu_v5e, ...).")
_ACCELERATOR_COUNT = flags.DEFINE_integer("accelerator_count", 0,
                                          "Accelerators per job (GPU / TPU v2-3).")
_TPU_TOPOLOGY = flags.DEFINE_string("tpu_topology", None, "GKE TPU slice "
                                    "topology, e.g. 2x4 or 4x4.")
_EVAL_TPU_TOPOLOGY = flags.DEFINE_string("eval_tpu_topology", None, "Slice "
                                         "topology for eval (default: training's).")
_CPU = flags.DEFINE_float("cpu", None, "vCPUs per host.")
_RAM_GIB = flags.DEFINE_float("ram_gib", None, "RAM per host in GiB.")
_ENV = flags.DEFINE_multi_string("env", [], "NAME=VALUE env var of every job "
                                 "(not for secrets).")
_TRAIN_MODULE = flags.DEFINE_string("train_module", plan_lib.TRAIN_MODULE,
                                    "Module run with python -m for training.")
_EVAL_MODULE = flags.DEFINE_string("eval_module", plan_lib.EVAL_MODULE,
                                   "Module run with python -m for eval.")
# Several arms per training process (sftdiff.runs.groups.MultiArmGrouping).
_MULTI_ARM_MAX = flags.DEFINE_integer(
    "multi_arm_max", None, "Train up to this many runs that differ only in arm and "
    "seed in one process (python -m sftdiff.train.multi_arm); 1: one process per "
    "run (default: the study's MultiArmGrouping.max_arms, else 1).")
_MULTI_ARM_MODE = flags.DEFINE_enum(
    "multi_arm_mode", None, ["auto", "loop", "vmap"], "The multi-arm trainer's mode "
    "(default: the study's MultiArmGrouping.mode, else auto: loop on CPU, vmap on "
    "accelerators).")
_MULTI_ARM_AXIS = flags.DEFINE_string(
    "multi_arm_axis", None, "vmap: the mesh axis the arms map onto (e.g. data); "
    "every group's arm count must divide over it.")
_MULTI_ARM_MODULE = flags.DEFINE_string("multi_arm_module", plan_lib.MULTI_ARM_MODULE,
                                        "Module run with python -m for multi-arm training.")
_CHECK_GIN = flags.DEFINE_bool("check_gin", True, "Parse every job's gin "
                               "before launching.")
# Executor specifics.
_VERTEX_BASE_IMAGE = flags.DEFINE_string("vertex_base_image", "python:3.11-slim",
                                         "Base image of the Vertex container.")
_VERTEX_TENSORBOARD = flags.DEFINE_string("vertex_tensorboard", None, "Vertex AI "
                                          "TensorBoard resource name.")
_IMAGE = flags.DEFINE_string("image", None, "gke: container image holding this "
                             "repository (see launch/Dockerfile).")
_JOBSET_OUT = flags.DEFINE_string("jobset_out", None, "gke: manifest path "
                                  "(default <title>.jobset.yaml).")
_GKE_APPLY = flags.DEFINE_bool("gke_apply", False, "gke: kubectl apply -f the "
                               "manifests after writing them.")
_GKE_MAX_RESTARTS = flags.DEFINE_integer("gke_max_restarts", 3, "gke: JobSet "
                                         "restarts (preemptions) before failing.")
_GKE_SECRET_ENV = flags.DEFINE_multi_string("gke_secret_env", [], "gke: "
                                            "NAME=SECRET:KEY from a k8s Secret.")
_PLAN_OUT = flags.DEFINE_string("plan_out", None, "Also write the runs JSON "
                                "(<plan_out>.runs.json) and commands "
                                "(<plan_out>.sh).")


def _bindings(items, where):
  return [plan_lib.parse_binding(b, where=where) for b in items]


def _per_arm_overrides():
  per_arm: dict[str, list] = {}
  for item in _ARM_OVERRIDES.value:
    arm, sep, binding = item.partition(":")
    if not sep or not arm:
      raise plan_lib.LaunchConfigError(
          f"--arm_override={item!r} is not ARM:NAME=VALUE")
    per_arm.setdefault(arm, []).append(
        plan_lib.parse_binding(binding, where=f"--arm_override={item}"))
  return per_arm


def _runs_from_study():
  import sftdiff.study as study_lib
  missing = [n for n in ("load_study", "catalog_for", "expand")
             if not hasattr(study_lib, n)]
  if missing:
    raise plan_lib.LaunchConfigError(
        f"--study_gin_file needs sftdiff.study.{', '.join(missing)}, which this "
        "checkout lacks; use --arm or --runs_json")
  bindings = [f"{k} = {v}" for k, v in _bindings(_STUDY_BINDINGS.value, "--study_gin")]
  try:
    study = study_lib.load_study(_STUDY_GIN_FILES.value, bindings,
                                 flags.FLAGS.gin_search_paths)
    grouping = plan_lib.MultiArmGrouping()  # as the study gin binds it
    runs = study_lib.expand(study, study_lib.catalog_for(study))
  except study_lib.StudyConfigError as e:
    raise plan_lib.LaunchConfigError(f"--study_gin_file: {e}") from None
  return runs, study, grouping


def _collect_runs():
  sources = [bool(_ARMS.value), bool(_RUNS_JSON.value), bool(_STUDY_GIN_FILES.value)]
  if sum(sources) != 1:
    raise plan_lib.LaunchConfigError(
        "give exactly one of --arm (with --root_dir), --runs_json or "
        "--study_gin_file")
  study, grouping = None, None
  if _ARMS.value:
    if not _ROOT_DIR.value:
      raise plan_lib.LaunchConfigError("--arm needs --root_dir")
    root = _ROOT_DIR.value
    if _EXECUTOR.value == "local" and "://" not in root:
      root = os.path.abspath(root)
    try:
      seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
      raise plan_lib.LaunchConfigError(
          f"--seeds={','.join(_SEEDS.value)} must be integers") from None
    # T5X style: with --arm, --gin_file lists the train gin files in full.
    runs = plan_lib.runs_from_arms(
        [plan_lib.parse_arm(a) for a in _ARMS.value], seeds, root_dir=root,
        gin_files=flags.FLAGS.gin_file or plan_lib.TRAIN_GIN_FILES)
  elif _RUNS_JSON.value:
    try:
      with open(_RUNS_JSON.value) as f:
        text = f.read()
    except OSError as e:
      raise plan_lib.LaunchConfigError(f"--runs_json: {e}") from None
    runs = plan_lib.runs_from_json(text, source=_RUNS_JSON.value)
  else:
    runs, study, grouping = _runs_from_study()
  return runs, study, grouping


def _grouping(study_grouping) -> plan_lib.MultiArmGrouping:
  """The flags over the study's MultiArmGrouping (or the defaults)."""
  base = study_grouping or plan_lib.MultiArmGrouping(max_arms=1, mode="auto",
                                                     arm_axis=None)
  return plan_lib.MultiArmGrouping(
      max_arms=base.max_arms if _MULTI_ARM_MAX.value is None else _MULTI_ARM_MAX.value,
      mode=_MULTI_ARM_MODE.value or base.mode,
      arm_axis=_MULTI_ARM_AXIS.value or base.arm_axis)


def make_plan() -> plan_lib.LaunchPlan:
  runs, study, study_grouping = _collect_runs()
  runs = plan_lib.select_arms(runs, _ONLY_ARMS.value)
  plan_lib.check_arm_specs(runs)
  common = _bindings(flags.FLAGS.gin_bindings, "--gin")
  # With a study or runs JSON, --gin_file adds files after each run's own.
  extra_files = [] if _ARMS.value else flags.FLAGS.gin_file
  runs = plan_lib.apply_overrides(runs, common, _per_arm_overrides(),
                                  extra_gin_files=extra_files)
  runs = plan_lib.dedupe(runs)
  train_res = res.check(res.Resources(
      accelerator=_ACCELERATOR.value, accelerator_count=_ACCELERATOR_COUNT.value,
      tpu_topology=_TPU_TOPOLOGY.value, cpu=_CPU.value, ram_gib=_RAM_GIB.value),
      _EXECUTOR.value)
  eval_res = train_res
  if _EVAL_TPU_TOPOLOGY.value:
    eval_res = res.check(res.Resources(
        accelerator=_ACCELERATOR.value, tpu_topology=_EVAL_TPU_TOPOLOGY.value,
        cpu=_CPU.value, ram_gib=_RAM_GIB.value), _EXECUTOR.value)
  eval_files = list(_EVAL_GIN_FILES.value) or list(
      getattr(study, "eval_gin_files", plan_lib.EVAL_GIN_FILES))
  eval_overrides = [(k, str(v)) for k, v in _study_eval_overrides(study)]
  eval_overrides = plan_lib.merge_levels(
      [("study eval_overrides", eval_overrides),
       ("--eval_gin", _bindings(_EVAL_BINDINGS.value, "--eval_gin"))])
  benchmarks = list(_BENCHMARKS.value) or list(getattr(study, "benchmarks", ()))
  title = _TITLE.value or getattr(study, "name", None) or "sftdiff"
  return plan_lib.build_plan(
      runs, title=title, resources=train_res, eval_resources=eval_res,
      env=plan_lib.parse_env(_ENV.value), run_eval=_EVAL.value,
      eval_gin_files=eval_files, eval_overrides=eval_overrides,
      benchmarks=benchmarks,
      eval_steps=_EVAL_STEPS.value or getattr(study, "eval_steps", "final"),
      # A local executor gets absolute gin files (gin_utils.resolve_gin_files).
      gin_search_paths=(flags.FLAGS.gin_search_paths
                        if _EXECUTOR.value == "local" else None),
      train_module=_TRAIN_MODULE.value,
      eval_module=_EVAL_MODULE.value,
      multi_arm=_grouping(study_grouping),
      multi_arm_module=_MULTI_ARM_MODULE.value)


def _study_eval_overrides(study):
  if study is None:
    return []
  from sftdiff.study.config import gin_literal
  return [(k, gin_literal(v)) for k, v in dict(study.eval_overrides).items()]


def _write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _check_executor_flags() -> None:
  if _EXECUTOR.value == "vertex" and not _DRY_RUN.value:
    from sftdiff.launch import xm_jobs
    xm_jobs.check_source()
  if _EXECUTOR.value == "gke" and not _IMAGE.value:
    raise plan_lib.LaunchConfigError(
        "--executor=gke needs --image (a container with this repository; "
        "docs/launch.md shows how to build it from launch/Dockerfile)")
  if _EXECUTOR.value != "gke" and (_IMAGE.value or _GKE_APPLY.value
                                   or _GKE_SECRET_ENV.value or _JOBSET_OUT.value):
    raise plan_lib.LaunchConfigError(
        "--image, --jobset_out, --gke_apply and --gke_secret_env apply to "
        f"--executor=gke, not --executor={_EXECUTOR.value}")


def _launch_gke(plan) -> int:
  text = jobset.render(plan, image=_IMAGE.value, max_restarts=_GKE_MAX_RESTARTS.value,
                       secret_env=jobset.parse_secret_env(_GKE_SECRET_ENV.value))
  if _DRY_RUN.value:
    print(text)
    return 0
  out = _JOBSET_OUT.value or f"{jobset.k8s_name(plan.title, max_len=63)}.jobset.yaml"
  _write(out, text)
  print(f"wrote {len(plan.groups)} JobSet(s) to {out}; apply with:\n"
        f"  kubectl apply -f {out}")
  if _GKE_APPLY.value:
    return subprocess.call(["kubectl", "apply", "-f", out])
  return 0


def _launch_xm(plan) -> int:
  from xmanager import xm_local
  from sftdiff.launch import xm_jobs

  options = xm_jobs.ExecutorOptions(
      executor=_EXECUTOR.value, vertex_base_image=_VERTEX_BASE_IMAGE.value,
      vertex_tensorboard=_VERTEX_TENSORBOARD.value)

  async def run():
    outcomes = None
    try:
      async with xm_local.create_experiment(experiment_title=plan.title) as experiment:
        print(f"experiment {experiment.experiment_id}: {plan.title}", flush=True)
        outcomes = await xm_jobs.launch(experiment, plan, options)
    except Exception:  # pylint: disable=broad-except
      # On exit XManager re-raises a failed local job; it is already in outcomes.
      if outcomes is None or not any(o.error for o in outcomes):
        raise
    return outcomes

  outcomes = asyncio.run(run())
  failed = [o for o in outcomes if o.error is not None]
  for o in failed:
    print(f"work unit {o.name} failed in {o.stage}: {o.error}", file=sys.stderr)
  print(f"{len(outcomes) - len(failed)}/{len(outcomes)} work units finished")
  return 1 if failed else 0


def main(argv) -> int:
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # XManager's DB setup is chatty
  if len(argv) > 1:
    raise plan_lib.LaunchConfigError(f"unexpected arguments: {argv[1:]}")
  try:
    _check_executor_flags()
    plan = make_plan()
    if _CHECK_GIN.value:
      checked = gin_check.check_plan(plan, search_paths=flags.FLAGS.gin_search_paths)
      print(f"gin check: {checked} job(s) parse with all required macros set")
    if _PLAN_OUT.value:
      _write(f"{_PLAN_OUT.value}.runs.json",
             plan_lib.runs_to_json([wu.run for wu in plan.work_units]))
      _write(f"{_PLAN_OUT.value}.sh", plan_lib.format_commands(plan))
    print(plan_lib.format_table(plan))
    if _EXECUTOR.value == "gke":
      return _launch_gke(plan)
    if _DRY_RUN.value:
      print()
      print(plan_lib.format_commands(plan, python=sys.executable), end="")
      return 0
  except (plan_lib.LaunchConfigError, res.UnsupportedAcceleratorError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return _launch_xm(plan)


def run() -> None:
  # gin_utils.run turns --gin.NAME=VALUE into --gin_bindings and maps
  # configuration errors to exit 2; sys.exit carries main's status.
  gin_utils.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
  run()
