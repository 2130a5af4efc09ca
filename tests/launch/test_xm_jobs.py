"""The plan as XManager work units, checked with `xmanager.xm_mock` (no cloud)."""

import asyncio

import gin
import pytest

from sftdiff.launch import plan as plan_lib
from sftdiff.launch import xm_jobs
from sftdiff.runs.resources import Resources

xm = pytest.importorskip("xmanager.xm")
from xmanager import xm_local  # noqa: E402
from xmanager import xm_mock  # noqa: E402
from xmanager.xm import utils as xm_utils  # noqa: E402

ARMS = [plan_lib.Arm("ref", "Source('orig')"),
        plan_lib.Arm("patch_out_roleplay",
                     "Patch(base='teacher', patch='alt', where='roleplay')"),
        plan_lib.Arm("drop_roleplay", "Drop(base='teacher', where='roleplay')")]
SEEDS = [0, 1]


def _plan(gin_dir, resources=Resources(), run_eval=True):
  runs = plan_lib.runs_from_arms(ARMS, SEEDS, root_dir="/runs",
                                 gin_files=[str(gin_dir / "train.gin")])
  runs = plan_lib.apply_overrides(
      runs, [("INITIAL_CHECKPOINT", "'/ckpt/o'"), ("TRAIN_STEPS", "5")],
      {"drop_roleplay": [("LEARNING_RATE", "1e-4")]})
  return plan_lib.build_plan(runs, title="study-x", resources=resources,
                             run_eval=run_eval,
                             eval_gin_files=[str(gin_dir / "eval.gin")])


def _launch(experiment, plan, options):
  async def run():
    async with experiment:
      return await xm_jobs.launch(experiment, plan, options)
  return asyncio.run(run())


def test_mock_experiment_gets_one_train_and_eval_unit_per_arm_and_seed(gin_dir):
  plan = _plan(gin_dir)
  experiment = xm_mock.MockExperiment()
  outcomes = _launch(experiment, plan, xm_jobs.ExecutorOptions("local"))
  assert [o.error for o in outcomes] == [None] * 6
  jobs = experiment.launched_jobs
  assert len(jobs) == len(ARMS) * len(SEEDS) * 2
  assert experiment.work_unit_count == 12
  by_name = {j.name: j for j in jobs}
  expected = {f"{a.name}-seed{s}-{stage}" for a in ARMS for s in SEEDS
              for stage in ("train", "eval")}
  assert set(by_name) == expected
  for wu in plan.work_units:
    train = by_name[f"{wu.name}-train"]
    # Exactly the plan's flags, one argv token each, in order.
    assert train.args.to_list(xm_utils.ARGV_ESCAPER) == wu.train.args()
    assert isinstance(train.executor, xm_local.Local)
    evaluation = by_name[f"{wu.name}-eval"]
    assert evaluation.args.to_list(xm_utils.ARGV_ESCAPER) == [
        f"--gin_file={gin_dir / 'eval.gin'}",
        f"--gin.CHECKPOINT_DIR='{wu.model_dir}/checkpoints/5'"]
    # Every arm's bindings parse with gin, and bind what the arm says.
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        list(wu.train.gin_files), [f"{k} = {v}" for k, v in wu.train.bindings])
    assert gin.query_parameter("%ARM") == wu.run.arm
    assert gin.query_parameter("%SEED") == wu.run.seed
    assert gin.query_parameter("%MODEL_DIR") == wu.model_dir
    assert gin.query_parameter("%LEARNING_RATE") == (
        1e-4 if wu.run.arm_name == "drop_roleplay" else 1e-3)
    gin.clear_config()
  # Work-unit metadata names the arm, seed and stage; it is not passed as flags.
  args = experiment.launched_jobs_args
  assert {(a["arm"], a["seed"], a["stage"]) for a in args} == {
      (a.name, s, st) for a in ARMS for s in SEEDS for st in ("train", "eval")}
  assert all(a["name"].startswith(f"{a['arm']}-seed{a['seed']}") for a in args)
  assert all(not any("stage" in f for f in j.args.to_list(xm_utils.ARGV_ESCAPER))
             for j in jobs)


def test_eval_waits_for_training(gin_dir):
  """An eval unit is added only after its training unit completed."""
  order = []

  class Recording(xm_mock.MockExperiment):
    def add(self, job, args=None, **kw):
      order.append((args["name"], "added"))
      return super().add(job, args, **kw)

  plan = _plan(gin_dir)
  _launch(Recording(), plan, xm_jobs.ExecutorOptions("local"))
  names = [n for n, _ in order]
  for wu in plan.work_units:
    assert names.index(f"{wu.name}-train") < names.index(f"{wu.name}-eval")


def test_no_eval_launches_training_only(gin_dir):
  experiment = xm_mock.MockExperiment()
  _launch(experiment, _plan(gin_dir, run_eval=False), xm_jobs.ExecutorOptions("local"))
  assert sorted(j.name for j in experiment.launched_jobs) == sorted(
      f"{a.name}-seed{s}-train" for a in ARMS for s in SEEDS)


def test_vertex_jobs_ask_for_the_plan_accelerators(gin_dir):
  plan = _plan(gin_dir, Resources("h100", 8, cpu=32, ram_gib=256))
  options = xm_jobs.ExecutorOptions(
      "vertex", vertex_tensorboard="projects/p/locations/l/tensorboards/1")
  experiment = xm_mock.MockExperiment()
  _launch(experiment, plan, options)
  job = experiment.launched_jobs[0]
  assert isinstance(job.executor, xm_local.Vertex)
  req = job.executor.requirements.task_requirements
  assert req[xm.ResourceType.H100] == 8
  assert req[xm.ResourceType.CPU] == 32
  assert req[xm.ResourceType.RAM] == 256 * xm.GiB
  tb = job.executor.tensorboard
  assert tb.name == "projects/p/locations/l/tensorboards/1"
  assert tb.base_output_directory.endswith("/tb")


def test_vertex_container_gets_a_staged_copy_of_the_repository(tmp_path):
  options = xm_jobs.ExecutorOptions("vertex")
  source = xm_jobs.stage_source(str(tmp_path))
  staged = {p.name for p in (tmp_path / "sftdiff").iterdir()}
  assert staged == {"setup.py", "constraints.txt", "sftdiff", "gin", "launch"}
  assert (tmp_path / "sftdiff" / "gin" / "runs" / "sft.gin").is_file()
  assert (tmp_path / "sftdiff" / "sftdiff" / "launch" / "plan.py").is_file()
  assert not list((tmp_path / "sftdiff").rglob("__pycache__"))
  pkg = xm_jobs.packageable("sftdiff.train", Resources("h100", 8), options, source)
  spec = pkg.executable_spec
  assert spec.path == source and spec.entrypoint.module_name == "sftdiff.train"
  assert any("jax[cuda12]" in step for step in spec.docker_instructions)
  assert "COPY sftdiff/ /workdir/sftdiff" in spec.docker_instructions


def test_local_packaging_runs_this_python_with_the_module(gin_dir, python):
  pkg = xm_jobs.packageable("sftdiff.eval", Resources(),
                            xm_jobs.ExecutorOptions("local", python=python))
  assert pkg.executable_spec.path == python
  assert pkg.args.to_list(xm_utils.ARGV_ESCAPER) == ["-m", "sftdiff.eval"]


def test_artifacts_attached_where_the_experiment_supports_them(gin_dir):
  plan = _plan(gin_dir)
  assert xm_jobs.attach_artifacts(xm_mock.MockExperiment(), plan) == 0

  class WithArtifacts(xm_mock.MockExperiment):
    def __init__(self):
      super().__init__()
      self.artifacts = []

    def create_artifact(self, **kwargs):
      self.artifacts.append(kwargs)

  experiment = WithArtifacts()
  _launch(experiment, plan, xm_jobs.ExecutorOptions("local"))
  urls = {a["url"] for a in experiment.artifacts}
  assert urls == {d for wu in plan.work_units for d in (wu.model_dir, wu.tensorboard_dir)}
  assert {"ref-seed0 model dir", "ref-seed0 TensorBoard"} <= {
      a["title"] for a in experiment.artifacts}


def test_a_failing_unit_does_not_stop_the_others(gin_dir):
  class FailsOne(xm_mock.MockExperiment):
    def add(self, job, args=None, **kw):
      if args["name"] == "ref-seed1-train":
        raise RuntimeError("boom")
      return super().add(job, args, **kw)

  experiment = FailsOne()
  outcomes = _launch(experiment, _plan(gin_dir), xm_jobs.ExecutorOptions("local"))
  failed = [(o.name, o.stage, str(o.error)) for o in outcomes if o.error]
  assert failed == [("ref-seed1", "train", "boom")]
  assert len(experiment.launched_jobs) == 10
