"""Every executor runs exactly the plan's argv, and evaluates the same steps.

The local study runner and XManager's local executor run the stand-in binary
(`fake_binary.py`), which records the flags it was given; the JobSet writer's
container commands are compared with the plan directly.
"""

import asyncio
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from sftdiff.launch import jobset
from sftdiff.runs import plan as plan_lib
from sftdiff.runs.resources import Resources, check
from sftdiff.runs.spec import RunSpec, runs_to_json
from sftdiff.study import runner as runner_lib

XM_LAUNCH = pathlib.Path(__file__).resolve().parents[2] / "launch" / "xm_launch.py"

ARMS = {"ref": "Source('orig')",
        "patch_in": "Patch(base='alt', patch='teacher', where='date_mentions')"}
STEPS = 6
BENCHES = ["b1", "b2"]


def _runs(gin_dir, root):
  return [RunSpec(arm_name=name, arm=arm, seed=0, gin_files=(str(gin_dir / "train.gin"),),
                  overrides=(("INITIAL_CHECKPOINT", "'/ckpt/o'"),
                             ("TRAIN_STEPS", str(STEPS))),
                  model_dir=str(root / name / "seed0"))
          for name, arm in ARMS.items()]


def _plan(gin_dir, root, module, eval_steps="final", **kw):
  return plan_lib.build_plan(
      _runs(gin_dir, root), title="t", eval_gin_files=[str(gin_dir / "eval.gin")],
      benchmarks=BENCHES, eval_steps=eval_steps, train_module=module,
      eval_module=module, **kw)


def _recorded(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _run_locally(plan, tmp_path, log):
  runner = runner_lib.LocalRunner(
      plan, study_dir=str(tmp_path / "study"), benchmarks=BENCHES, parallelism=1,
      env={"FAKE_BINARY_ARGV_LOG": str(log)}, log=lambda msg: None)
  result = runner.run()
  assert result.failures == [] and result.launches == 4
  return _recorded(log)


def test_local_runner_runs_exactly_the_plan_argv(gin_dir, tmp_path, fake_binary_env):
  plan = _plan(gin_dir, tmp_path / "runs", fake_binary_env)
  recorded = _run_locally(plan, tmp_path, tmp_path / "argv.jsonl")
  expected = [job.args() for wu in plan.work_units for job in (wu.train, wu.eval)]
  assert [r["args"] for r in recorded] == expected
  assert {r["python"] for r in recorded} == {sys.executable}
  launches = _recorded(tmp_path / "study" / "logs" / "launches.jsonl")
  assert [l["cmd"] for l in launches] == [
      job.argv(sys.executable) for wu in plan.work_units for job in (wu.train, wu.eval)]


def test_jobset_containers_run_exactly_the_plan_argv(gin_dir, tmp_path):
  plan = _plan(gin_dir, tmp_path / "runs", "sftdiff.train",
               resources=check(Resources("tpu_v5e", tpu_topology="4x4"), "gke"))
  docs = list(yaml.safe_load_all(jobset.render(plan, image="img", python="python3")))
  assert len(docs) == len(plan.work_units)
  for doc, wu in zip(docs, plan.work_units):
    train, evaluation = doc["spec"]["replicatedJobs"]
    assert train["template"]["spec"]["template"]["spec"]["containers"][0][
        "command"] == wu.train.argv("python3")
    assert evaluation["template"]["spec"]["template"]["spec"]["containers"][0][
        "command"] == wu.eval.argv("python3")


def test_xm_mock_jobs_run_exactly_the_plan_argv(gin_dir, tmp_path):
  xm_mock = pytest.importorskip("xmanager.xm_mock")
  from xmanager.xm import utils as xm_utils
  from sftdiff.launch import xm_jobs
  plan = _plan(gin_dir, tmp_path / "runs", "sftdiff.train")
  experiment = xm_mock.MockExperiment()

  async def launch():
    async with experiment:
      return await xm_jobs.launch(experiment, plan, xm_jobs.ExecutorOptions("local"))
  asyncio.run(launch())
  jobs = {j.name: j for j in experiment.launched_jobs}
  for wu in plan.work_units:
    for job in (wu.train, wu.eval):
      xm_job = jobs[f"{wu.name}-{job.name}"]
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


def _run_xm_local(gin_dir, root, module, eval_steps, tmp_path, log):
  runs_json = tmp_path / f"runs-{eval_steps}.json"
  runs_json.write_text(runs_to_json(_runs(gin_dir, root)))
  home = tmp_path / "home"
  home.mkdir(exist_ok=True)
  env = {**os.environ, "HOME": str(home), "FAKE_BINARY_ARGV_LOG": str(log)}
  r = subprocess.run(
      [sys.executable, str(XM_LAUNCH), f"--runs_json={runs_json}", "--executor=local",
       f"--train_module={module}", f"--eval_module={module}",
       f"--eval_gin_file={gin_dir / 'eval.gin'}", f"--benchmarks={','.join(BENCHES)}",
       f"--eval_steps={eval_steps}", "--nocheck_gin", "--title=same-steps"],
      capture_output=True, text=True, env=env, timeout=300)
  assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
  return _recorded(log)


@pytest.mark.slow
@pytest.mark.parametrize("eval_steps, steps", [("final", {STEPS}),
                                               ("all", {STEPS // 2, STEPS})])
def test_local_runner_and_xm_evaluate_the_same_steps(gin_dir, tmp_path, fake_binary_env,
                                                     eval_steps, steps):
  local_root, xm_root = tmp_path / "local", tmp_path / "xm"
  plan = _plan(gin_dir, local_root, fake_binary_env, eval_steps)
  local = _run_locally(plan, tmp_path, tmp_path / "local.jsonl")
  xm = _run_xm_local(gin_dir, xm_root, fake_binary_env, eval_steps, tmp_path,
                     tmp_path / "xm.jsonl")
  expected = {f"{arm}/seed0/checkpoints/{s}/eval/{b}/metrics.json"
              for arm in ARMS for s in steps for b in BENCHES}
  assert _evaluated(local_root) == expected
  assert _evaluated(xm_root) == expected
  # The same flags, up to the root directory.
  def flags(recorded, root):
    return sorted(json.dumps(r["args"]).replace(str(root), "<root>") for r in recorded)
  assert flags(local, local_root) == flags(xm, xm_root)
