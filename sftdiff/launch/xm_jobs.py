"""A launch plan as XManager work units: one per train group (one run, or
several arms in one multi-arm process) for training and, when it finishes,
one for the group's evaluation (one eval process for all its runs). Works with any `xm.Experiment`
(`xm_local.create_experiment`, `xm_mock.MockExperiment` in tests).

Executors: `local` runs `python -m <binary>` with this interpreter through
`xm.binary` (no Docker, no Bazel); `vertex` builds a Python container of this
repository and asks Vertex AI for the plan's accelerators.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
from typing import Any, Callable

from xmanager import xm
from xmanager import xm_local

from sftdiff.launch.plan import Job, LaunchPlan, TrainGroup, WorkUnit
from sftdiff.runs.resources import GPUS, Resources

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# What a container needs of the repository. XManager's Python container copies
# its whole source directory into the build context, so it gets a staged copy
# of just these (not .venv/, runs/ or other outputs).
SOURCE_ITEMS = ("setup.py", "constraints.txt", "sftdiff", "gin", "launch")


@dataclasses.dataclass(frozen=True)
class ExecutorOptions:
  """What the executor needs beyond the plan."""
  executor: str = "local"
  python: str = sys.executable            # local: the interpreter to run
  vertex_base_image: str = "python:3.11-slim"
  vertex_tensorboard: str | None = None   # Vertex AI TensorBoard resource name
  stream_output: bool = True


def requirements(resources: Resources) -> xm.JobRequirements:
  kwargs: dict[str, Any] = {}
  if resources.accelerator not in ("cpu", "local"):
    kwargs[resources.accelerator] = resources.accelerator_count
  if resources.cpu:
    kwargs["cpu"] = resources.cpu
  if resources.ram_gib:
    kwargs["ram"] = resources.ram_gib * xm.GiB
  return xm.JobRequirements(**kwargs)


def make_executor(resources: Resources, options: ExecutorOptions,
                  tensorboard_dir: str | None = None) -> xm.Executor:
  if options.executor == "local":
    return xm_local.Local(experimental_stream_output=options.stream_output)
  if options.executor == "vertex":
    tensorboard = None
    if options.vertex_tensorboard:
      tensorboard = xm_local.TensorboardCapability(
          name=options.vertex_tensorboard, base_output_directory=tensorboard_dir)
    return xm_local.Vertex(requirements=requirements(resources),
                           tensorboard=tensorboard)
  raise ValueError(f"no XManager executor for --executor={options.executor} "
                   "(gke writes JobSet manifests instead)")


def check_source() -> None:
  """The Vertex container is built from a checkout; a wheel install has none."""
  missing = [i for i in SOURCE_ITEMS if not os.path.exists(os.path.join(REPO_ROOT, i))]
  if missing:
    from sftdiff.launch.plan import LaunchConfigError
    raise LaunchConfigError(
        f"--executor=vertex builds its container from a checkout of this "
        f"repository; {REPO_ROOT} lacks {', '.join(missing)} (a wheel install?): "
        "run the launcher from a checkout (python launch/xm_launch.py)")


def stage_source(parent: str) -> str:
  """Copies SOURCE_ITEMS of the repository to `<parent>/sftdiff`; returns it."""
  check_source()
  dest = os.path.join(parent, "sftdiff")
  os.makedirs(dest)
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
  for item in SOURCE_ITEMS:
    src = os.path.join(REPO_ROOT, item)
    if os.path.isdir(src):
      shutil.copytree(src, os.path.join(dest, item), ignore=ignore)
    else:
      shutil.copy2(src, dest)
  return dest


def _docker_instructions(resources: Resources, source_dir: str) -> list[str]:
  dirname = os.path.basename(source_dir)
  jax = {"gpu": "jax[cuda12]", "tpu": "jax[tpu]"}.get(
      "gpu" if resources.accelerator in GPUS else
      "tpu" if resources.accelerator.startswith("tpu") else "cpu", "jax")
  return [
      "ENV LANG=C.UTF-8",
      "RUN mkdir -p /workdir",
      "WORKDIR /workdir",
      f"COPY {dirname}/ /workdir/{dirname}",
      f"RUN python -m pip install --no-cache-dir -c /workdir/{dirname}/constraints.txt"
      f" -e /workdir/{dirname} '{jax}'",
      f"WORKDIR /workdir/{dirname}",
  ]


def packageable(module: str, resources: Resources, options: ExecutorOptions,
                source_dir: str | None = None) -> xm.Packageable:
  """How a binary (`sftdiff.train` / `sftdiff.eval`) gets onto the executor;
  `source_dir` (vertex): a `stage_source` copy of the repository."""
  if options.executor == "local":
    return xm.binary(executor_spec=xm_local.Local.Spec(), path=options.python,
                     args=["-m", module])
  if options.executor == "vertex":
    if source_dir is None:
      raise ValueError("vertex packaging needs a staged source dir (stage_source)")
    return xm.python_container(
        executor_spec=xm_local.Vertex.Spec(), path=source_dir,
        base_image=options.vertex_base_image,
        docker_instructions=_docker_instructions(resources, source_dir),
        entrypoint=xm.ModuleName(module), use_deep_module=True)
  raise ValueError(f"no XManager packaging for --executor={options.executor}")


def work_unit_args(wu: WorkUnit, stage: str, group: TrainGroup | None = None
                   ) -> dict[str, Any]:
  """Metadata shown per work unit (not passed to the binary); a multi-arm
  train unit lists every run it trains."""
  args = {"name": f"{wu.name}-{stage}", "arm": wu.run.arm_name, "seed": wu.run.seed,
          "stage": stage, "model_dir": wu.model_dir,
          "tensorboard_dir": wu.tensorboard_dir}
  if group is not None and group.is_multi_arm:
    args.update(name=f"{group.name}-{stage}",
                runs=[u.run.name for u in group.units],
                model_dirs=[u.model_dir for u in group.units])
  return args


def _generator(job: xm.Job) -> Callable:
  async def generator(work_unit, **metadata):
    del metadata  # recorded as the work unit's args by XManager
    await work_unit.add(job)
  return generator


def attach_artifacts(experiment: xm.Experiment, plan: LaunchPlan) -> int:
  """Model and TensorBoard dirs as experiment artifacts, where the backend
  has them (`create_artifact`, e.g. xm_cloud); returns how many were made."""
  create = getattr(experiment, "create_artifact", None)
  if create is None:
    return 0
  count = 0
  for wu in plan.work_units:
    create(title=f"{wu.name} model dir", url=wu.model_dir)
    create(title=f"{wu.name} TensorBoard", url=wu.tensorboard_dir)
    count += 2
  return count


@dataclasses.dataclass
class UnitOutcome:
  name: str
  error: BaseException | None = None
  stage: str = ""   # the stage that failed (train / eval)


async def launch(experiment: xm.Experiment, plan: LaunchPlan,
                 options: ExecutorOptions) -> list[UnitOutcome]:
  """Adds the plan's train groups to an entered experiment; a group's eval
  unit is added once its training has completed. One group failing does not
  stop the others; the outcome of each run it trains (or evaluates) carries
  the error (a grouped eval goes on past a failing checkpoint, so the
  others' metrics are written)."""
  modules: dict[str, Job] = {}
  for group in plan.groups:
    for job in (group.train, group.eval):
      if job is not None:
        modules.setdefault(job.module, job)
  with tempfile.TemporaryDirectory() as staging:
    source_dir = stage_source(staging) if options.executor == "vertex" else None
    executables = dict(zip(modules, experiment.package(
        [packageable(m, job.resources, options, source_dir)
         for m, job in modules.items()])))

  def xm_job(name: str, job: Job, tensorboard_dir: str) -> xm.Job:
    return xm.Job(executable=executables[job.module],
                  executor=make_executor(job.resources, options, tensorboard_dir),
                  name=f"{name}-{job.name}", args=job.args(),
                  env_vars=dict(job.env))

  async def evaluate(group: TrainGroup) -> list[UnitOutcome]:
    first = group.units[0]
    try:
      if group.eval is not None:
        unit = await experiment.add(
            _generator(xm_job(group.name, group.eval, first.tensorboard_dir)),
            args=work_unit_args(first, "eval", group))
        await unit.wait_until_complete()
    except Exception as e:  # pylint: disable=broad-except
      return [UnitOutcome(wu.name, e, "eval") for wu in group.units]
    return [UnitOutcome(wu.name) for wu in group.units]

  async def run(group: TrainGroup) -> list[UnitOutcome]:
    first = group.units[0]
    try:
      unit = await experiment.add(
          _generator(xm_job(group.name, group.train, first.tensorboard_dir)),
          args=work_unit_args(first, "train", group))
      await unit.wait_until_complete()
    except Exception as e:  # pylint: disable=broad-except
      return [UnitOutcome(wu.name, e, "train") for wu in group.units]
    return await evaluate(group)

  attach_artifacts(experiment, plan)
  outcomes = await asyncio.gather(*(run(g) for g in plan.groups))
  return [o for group_outcomes in outcomes for o in group_outcomes]
