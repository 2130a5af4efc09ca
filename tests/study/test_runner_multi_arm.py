"""The local runner with runs grouped into multi-arm train jobs: which jobs it
runs on resume, and (real trainer, tiny model) that grouped training in loop
mode gives the same params as one process per run, also after the grouped
job is killed and the runner resumes it."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sftdiff import layout
from sftdiff.runs import plan as plan_lib
from sftdiff.runs.spec import RunSpec
from sftdiff.study import runner as runner_lib
from sftdiff.study import stages

REPO = pathlib.Path(__file__).resolve().parents[2]
ARMS = (("a", "synthetic", 0), ("b", "synthetic_b", 1), ("c", "synthetic", 2))
GROUPED = plan_lib.MultiArmGrouping(max_arms=3, mode="loop")


def _runs(root, init_dir, steps, every):
  overrides = (
      ("partitioning.PartitionConfig.num_devices", "1"),
      ("INITIAL_CHECKPOINT", repr(str(init_dir))), ("TRAIN_STEPS", str(steps)),
      ("BATCH_SIZE", "8"), ("SEQ_LEN", "32"), ("LEARNING_RATE", "1e-3"),
      ("trainer.train.data_fn", "@synthetic_train_data"),
      ("synthetic_train_data.vocab_size", "256"),
      ("CheckpointConfig.save_every", str(every)),
      ("LoggingConfig.log_every", "1"), ("LoggingConfig.eval_every", "0"),
      ("LoggingConfig.report_mfu", "False"))
  return [RunSpec(arm_name=name, arm=arm, seed=seed,
                  gin_files=(str(REPO / "gin" / "runs" / "sft.gin"),),
                  overrides=overrides, model_dir=str(root / name / "seed0"))
          for name, arm, seed in ARMS]


def _plan(runs, multi_arm=None):
  return plan_lib.build_plan(runs, title="t", run_eval=False, multi_arm=multi_arm)


def _runner(plan, study_dir):
  return runner_lib.LocalRunner(plan, study_dir=str(study_dir), benchmarks=[],
                                parallelism=2, log=lambda msg: None,
                                env={"JAX_PLATFORMS": "cpu"})


def _commit(model_dir, *steps):
  for step in steps:
    os.makedirs(layout.step_dir(model_dir, step))
    pathlib.Path(layout.step_dir(model_dir, step), layout.COMMIT_MARKERS[0]).write_text("")


def _jobs(runner):
  return [(t.stage, t.job) for t in runner.tasks()]


def test_resume_reruns_the_group_only_when_its_members_are_at_one_step(tmp_path):
  runs = _runs(tmp_path / "runs", "/init", steps=6, every=2)
  plan = _plan(runs, GROUPED)
  (group,) = plan.groups
  assert group.train.module == plan_lib.MULTI_ARM_MODULE
  runner = _runner(plan, tmp_path)
  assert _jobs(runner) == [("train", group.train)]          # fresh
  for wu in plan.work_units:
    _commit(wu.model_dir, 2, 4)
  assert _jobs(runner) == [("train", group.train)]          # stopped together at 4
  _commit(plan.work_units[0].model_dir, 6)                  # one arm finished
  assert _jobs(runner) == [("train", wu.train) for wu in plan.work_units[1:]]
  _commit(plan.work_units[1].model_dir, 6)
  assert _jobs(runner) == [("train", plan.work_units[2].train)]
  # Members at different steps, none finished: each resumes alone.
  other = _plan(_runs(tmp_path / "other", "/init", steps=6, every=2), GROUPED)
  _commit(other.work_units[0].model_dir, 2)
  assert _jobs(_runner(other, tmp_path)) == [("train", wu.train) for wu in other.work_units]


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  d = tmp_path_factory.mktemp("init")
  write_test_tokenizer(str(d))
  write_random_hf_checkpoint(d, "llama", vocab_size=ChatTokenizer.from_dir(str(d)).vocab_size)
  return d


def _params(model_dir, step):
  from sftdiff.train import checkpoints
  _, params = checkpoints.load_params(model_dir, step=step)
  return [np.asarray(x) for x in jax.tree.leaves(params)]


def _losses(model_dir):
  rows = [json.loads(l) for l in (pathlib.Path(model_dir) / "metrics.jsonl").read_text()
          .splitlines()]
  return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _assert_same_params(plan, reference, step):
  for wu, ref in zip(plan.work_units, reference.work_units, strict=True):
    for x, y in zip(_params(wu.model_dir, step), _params(ref.model_dir, step), strict=True):
      np.testing.assert_array_equal(x, y)


def _launches(study_dir):
  return [json.loads(l) for l in (study_dir / "logs" / "launches.jsonl").read_text()
          .splitlines()]


@pytest.mark.slow
def test_grouped_loop_mode_equals_one_process_per_run_also_after_a_kill(tmp_path, init_dir):
  steps = 30
  alone = _plan(_runs(tmp_path / "alone", init_dir, steps, every=2))
  result = _runner(alone, tmp_path / "s_alone").run()
  assert result.failures == [] and result.launches == len(ARMS)

  together = _plan(_runs(tmp_path / "together", init_dir, steps, every=2), GROUPED)
  result = _runner(together, tmp_path / "s_together").run()
  assert result.failures == [] and result.launches == 1
  (launch,) = _launches(tmp_path / "s_together")
  assert launch["cmd"][2] == plan_lib.MULTI_ARM_MODULE
  assert launch["runs"] == [wu.run.name for wu in together.work_units]
  _assert_same_params(together, alone, steps)
  for wu, ref in zip(together.work_units, alone.work_units):
    assert _losses(wu.model_dir) == _losses(ref.model_dir)
  # The runs really differ (own arm and seed).
  assert not np.array_equal(_params(together.work_units[0].model_dir, steps)[0],
                            _params(together.work_units[1].model_dir, steps)[0])

  # The grouped job killed (SIGKILL: no checkpoint on the way out) once every
  # arm has committed a step; the runner then finishes what is left.
  killed = _plan(_runs(tmp_path / "killed", init_dir, steps, every=2), GROUPED)
  (group,) = killed.groups
  log = open(tmp_path / "killed.log", "w")
  proc = subprocess.Popen(group.train.argv(sys.executable), stdout=log,
                          stderr=subprocess.STDOUT,
                          env=runner_lib.child_env(str(tmp_path / "s_killed"),
                                                   {"JAX_PLATFORMS": "cpu"}))
  while proc.poll() is None and not all(layout.committed_steps(wu.model_dir)
                                        for wu in killed.work_units):
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
  assert not all(stages.train_done(wu.run) for wu in killed.work_units)
  runner = _runner(killed, tmp_path / "s_killed")
  planned = runner.tasks()
  result = runner.run()
  assert result.failures == [] and result.launches == len(planned)
  assert [l["cmd"] for l in _launches(tmp_path / "s_killed")] == [
      t.job.argv(sys.executable) for t in planned]
  _assert_same_params(killed, alone, steps)
