"""Every executor runs exactly the plan's argv, and evaluates the same steps,
with one process per run and with runs grouped into multi-arm train jobs
(and one eval process per group).

The local study runner and XManager's local executor run the stand-in binary
(`fake_binary.py`, which also stands in for the multi-arm trainer), which
records the flags it was given; the JobSet writer's container commands are
compared with the plan directly.
"""

import asyncio
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest
import yaml

from sftdiff.launch import jobset
from sftdiff.runs import plan as plan_lib
from sftdiff.runs.resources import Resources, check
from sftdiff.runs.spec import RunSpec, runs_to_json
from sftdiff.study import runner as runner_lib
from sftdiff.study import stages

XM_LAUNCH = pathlib.Path(__file__).resolve().parents[2] / "launch" / "xm_launch.py"

ARMS = {"ref": "Source('orig')",
        "patch_in": "Patch(base='alt', patch='teacher', where='date_mentions')",
        "teacher": "Source('teacher')"}
STEPS = 6
BENCHES = ["b1", "b2"]
# Off, and on: the three runs differ only in ARM, so 2 + 1 arms per train job.
GROUPINGS = {"one_per_run": None,
             "grouped": plan_lib.MultiArmGrouping(max_arms=2, mode="loop")}
grouping = pytest.mark.parametrize("multi_arm", GROUPINGS.values(), ids=GROUPINGS.keys())


def _runs(gin_dir, root):
  return [RunSpec(arm_name=name, arm=arm, seed=0, gin_files=(str(gin_dir / "train.gin"),),
                  overrides=(("INITIAL_CHECKPOINT", "'/ckpt/o'"),
                             ("TRAIN_STEPS", str(STEPS))),
                  model_dir=str(root / name / "seed0"))
          for name, arm in ARMS.items()]


def _plan(gin_dir, root, module, eval_steps="final", multi_arm=None, **kw):
  kw.setdefault("multi_arm_module", module)
  plan = plan_lib.build_plan(
      _runs(gin_dir, root), title="t", eval_gin_files=[str(gin_dir / "eval.gin")],
      benchmarks=BENCHES, eval_steps=eval_steps, train_module=module,
      eval_module=module, multi_arm=multi_arm, **kw)
  assert len(plan.groups) == (2 if multi_arm else 3)
  return plan


def _jobs(plan):
  """Each group's train job, then its eval job: what executors run."""
  return [job for g in plan.groups for job in (g.train, g.eval)]


def _recorded(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _run_locally(plan, tmp_path, log):
  runner = runner_lib.LocalRunner(
      plan, study_dir=str(tmp_path / "study"), benchmarks=BENCHES, parallelism=1,
      env={"FAKE_BINARY_ARGV_LOG": str(log)}, log=lambda msg: None)
  result = runner.run()
  assert result.failures == [] and result.launches == len(_jobs(plan))
  return _recorded(log)


def test_grouped_plan_trains_each_arm_as_its_own_train_job_would():
  runs = _runs(pathlib.Path("/gin"), pathlib.Path("/runs"))
  plan = _plan(pathlib.Path("/gin"), pathlib.Path("/runs"), "sftdiff.train",
               multi_arm=GROUPINGS["grouped"], multi_arm_module="sftdiff.train.multi_arm")
  first, second = plan.groups
  assert [wu.run for wu in first.units] == runs[:2] and second.units[0].run == runs[2]
  assert second.train == second.units[0].train  # alone: its own sftdiff.train job
  args = first.train.args()
  assert first.train.module == "sftdiff.train.multi_arm"
  shared = [a for a in args if not a.startswith(("--arm=", "--multi_arm_mode="))]
  own = [shlex.split(a[len("--arm="):]) for a in args if a.startswith("--arm=")]
  assert "--multi_arm_mode=loop" in args
  for wu, arm_args in zip(first.units, own, strict=True):
    # The shared flags then the arm's own: exactly its single-arm flags, reordered.
    assert sorted(shared + arm_args) == sorted(wu.train.args())
    assert arm_args == [f"--gin.ARM={wu.run.arm!r}", "--gin.SEED=0",
                        f"--gin.MODEL_DIR={wu.model_dir!r}"]
  json_plan = plan_lib.plan_to_json(plan)
  assert [r["train_group"] for r in json_plan] == [first.name, first.name, second.name]
  assert json_plan[1]["train_argv"] == first.train.argv()
  assert json_plan[1]["eval_argv"] == first.eval.argv()


def test_grouped_eval_evaluates_each_run_as_its_own_eval_job_would():
  plan = _plan(pathlib.Path("/gin"), pathlib.Path("/runs"), "sftdiff.train",
               multi_arm=GROUPINGS["grouped"], multi_arm_module="sftdiff.train.multi_arm")
  first, second = plan.groups
  assert second.eval == second.units[0].eval  # alone: its own eval job
  assert first.eval.module == second.eval.module
  shared = [a for a in first.eval.args() if not a.startswith("--checkpoint_dir=")]
  dirs = [a[len("--checkpoint_dir="):] for a in first.eval.args()
          if a.startswith("--checkpoint_dir=")]
  assert dirs == [f"{wu.model_dir}/checkpoints/{STEPS}" for wu in first.units]
  for wu, d in zip(first.units, dirs, strict=True):
    # The shared flags + CHECKPOINT_DIR=<dir> (as sftdiff.eval binds it): its own eval job.
    assert sorted([*shared, f"--gin.CHECKPOINT_DIR={d!r}"]) == sorted(wu.eval.args())


@grouping
def test_local_runner_runs_exactly_the_plan_argv(gin_dir, tmp_path, fake_binary_env,
                                                 multi_arm):
  plan = _plan(gin_dir, tmp_path / "runs", fake_binary_env, multi_arm=multi_arm)
  recorded = _run_locally(plan, tmp_path, tmp_path / "argv.jsonl")
  assert [r["args"] for r in recorded] == [job.args() for job in _jobs(plan)]
  assert {r["python"] for r in recorded} == {sys.executable}
  launches = _recorded(tmp_path / "study" / "logs" / "launches.jsonl")
  assert [l["cmd"] for l in launches] == [job.argv(sys.executable) for job in _jobs(plan)]
  for wu in plan.work_units:  # every run trained by its group, then evaluated
    assert json.loads((pathlib.Path(wu.model_dir) / "macros.json").read_text())[
        "ARM"] == wu.run.arm
  if multi_arm:
    assert launches[0]["runs"] == [wu.run.name for wu in plan.groups[0].units]


@grouping
def test_jobset_containers_run_exactly_the_plan_argv(gin_dir, tmp_path, multi_arm):
  plan = _plan(gin_dir, tmp_path / "runs", "sftdiff.train", multi_arm=multi_arm,
               resources=check(Resources("tpu_v5e", tpu_topology="4x4"), "gke"))
  docs = list(yaml.safe_load_all(jobset.render(plan, image="img", python="python3")))
  assert len(docs) == len(plan.groups)
  for doc, group in zip(docs, plan.groups):
    commands = {j["name"]: j["template"]["spec"]["template"]["spec"]["containers"][0][
        "command"] for j in doc["spec"]["replicatedJobs"]}
    assert commands == {"train": group.train.argv("python3"),
                        "eval": group.eval.argv("python3")}
    for j in doc["spec"]["replicatedJobs"][1:]:
      assert j["dependsOn"] == [{"name": "train", "status": "Complete"}]


@grouping
def test_xm_mock_jobs_run_exactly_the_plan_argv(gin_dir, tmp_path, multi_arm):
  xm_mock = pytest.importorskip("xmanager.xm_mock")
  from xmanager.xm import utils as xm_utils
  from sftdiff.launch import xm_jobs
  plan = _plan(gin_dir, tmp_path / "runs", "sftdiff.train", multi_arm=multi_arm,
               multi_arm_module="sftdiff.train.multi_arm")
  experiment = xm_mock.MockExperiment()

  async def launch():
    async with experiment:
      return await xm_jobs.launch(experiment, plan, xm_jobs.ExecutorOptions("local"))
  outcomes = asyncio.run(launch())
  assert sorted(o.name for o in outcomes) == sorted(wu.name for wu in plan.work_units)
  jobs = {j.name: j for j in experiment.launched_jobs}
  assert len(jobs) == len(_jobs(plan))
  named = [(f"{g.name}-{job.name}", job) for g in plan.groups for job in (g.train, g.eval)]
  for name, job in named:
    xm_job = jobs[name]
    # xm.binary(path=python, args=['-m', module]) + the job's flags = argv.
    packaged = xm_jobs.packageable(job.module, job.resources,
                                   xm_jobs.ExecutorOptions("local"))
    argv = [packaged.executable_spec.path, *packaged.args.to_list(xm_utils.ARGV_ESCAPER),
            *xm_job.args.to_list(xm_utils.ARGV_ESCAPER)]
    assert argv == job.argv(sys.executable)


def _evaluated(root):
  """Eval outputs under `root`, relative to it."""
  out = set()
  for d, _, files in os.walk(root):
    if "metrics.json" in files:
      out.add(os.path.relpath(os.path.join(d, "metrics.json"), root))
  return out


def _run_xm_local(gin_dir, root, module, eval_steps, tmp_path, log, multi_arm):
  runs_json = tmp_path / f"runs-{eval_steps}.json"
  grouped = ([f"--multi_arm_max={multi_arm.max_arms}", f"--multi_arm_mode={multi_arm.mode}",
              f"--multi_arm_module={module}"] if multi_arm else [])
  runs_json.write_text(runs_to_json(_runs(gin_dir, root)))
  home = tmp_path / "home"
  home.mkdir(exist_ok=True)
  env = {**os.environ, "HOME": str(home), "FAKE_BINARY_ARGV_LOG": str(log)}
  r = subprocess.run(
      [sys.executable, str(XM_LAUNCH), f"--runs_json={runs_json}", "--executor=local",
       f"--train_module={module}", f"--eval_module={module}",
       f"--eval_gin_file={gin_dir / 'eval.gin'}", f"--benchmarks={','.join(BENCHES)}",
       f"--eval_steps={eval_steps}", "--nocheck_gin", "--title=same-steps", *grouped],
      capture_output=True, text=True, env=env, timeout=300)
  assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
  return _recorded(log)


@pytest.mark.slow
@grouping
@pytest.mark.parametrize("eval_steps, steps", [("final", {STEPS}),
                                               ("all", {STEPS // 2, STEPS})])
def test_local_runner_and_xm_evaluate_the_same_steps(gin_dir, tmp_path, fake_binary_env,
                                                     eval_steps, steps, multi_arm):
  local_root, xm_root = tmp_path / "local", tmp_path / "xm"
  plan = _plan(gin_dir, local_root, fake_binary_env, eval_steps, multi_arm)
  local = _run_locally(plan, tmp_path, tmp_path / "local.jsonl")
  xm = _run_xm_local(gin_dir, xm_root, fake_binary_env, eval_steps, tmp_path,
                     tmp_path / "xm.jsonl", multi_arm)
  expected = {f"{arm}/seed0/checkpoints/{s}/eval/{b}/metrics.json"
              for arm in ARMS for s in steps for b in BENCHES}
  assert _evaluated(local_root) == expected
  assert _evaluated(xm_root) == expected
  # The same flags, up to the root directory.
  def flags(recorded, root):
    return sorted(json.dumps(r["args"]).replace(str(root), "<root>") for r in recorded)
  assert flags(local, local_root) == flags(xm, xm_root)


def _commit(step_dir):
  os.makedirs(step_dir)
  pathlib.Path(step_dir, "commit_success.txt").write_text("")


def test_runner_runs_the_group_eval_only_when_no_member_is_evaluated(gin_dir, tmp_path):
  plan = _plan(gin_dir, tmp_path / "runs", "sftdiff.train", multi_arm=GROUPINGS["grouped"])
  first = plan.groups[0]
  runner = runner_lib.LocalRunner(plan, study_dir=str(tmp_path / "study"),
                                  benchmarks=BENCHES, log=lambda msg: None)
  fresh = [(t.stage, t.job) for t in runner.tasks()]
  assert fresh[:2] == [("train", first.train), ("eval", first.eval)]
  for wu in first.units:
    _commit(f"{wu.model_dir}/checkpoints/{STEPS}")
  done = first.units[0].evaluated_checkpoints()[0]
  for b in BENCHES:  # the first member evaluated: the other gets its own eval job
    os.makedirs(f"{done}/eval/{b}")
    pathlib.Path(f"{done}/eval/{b}/metrics.json").write_text("{}")
  assert [(t.stage, t.job) for t in runner.tasks()][:1] == [("eval", first.units[1].eval)]


def test_a_member_failing_training_leaves_the_others_own_evals(gin_dir, tmp_path,
                                                               fake_binary_env):
  plan = _plan(gin_dir, tmp_path / "runs", fake_binary_env, multi_arm=GROUPINGS["grouped"])
  ok, broken = plan.groups[0].units
  _commit(f"{ok.model_dir}/checkpoints/{STEPS // 2}")  # different steps: trained apart
  pathlib.Path(broken.model_dir).parent.mkdir(parents=True)
  pathlib.Path(broken.model_dir).write_text("not a directory")  # its training fails
  log = tmp_path / "argv.jsonl"
  runner = runner_lib.LocalRunner(
      plan, study_dir=str(tmp_path / "study"), benchmarks=BENCHES, parallelism=1,
      env={"FAKE_BINARY_ARGV_LOG": str(log)}, log=lambda msg: None)
  result = runner.run()
  assert [(f.run, f.stage) for f in result.failures] == [(broken.run.name, "train")]
  recorded = [r["args"] for r in _recorded(log)]
  assert ok.eval.args() in recorded  # its own eval job, not the group's
  assert plan.groups[0].eval.args() not in recorded
  assert stages.eval_done(ok.run, BENCHES)
