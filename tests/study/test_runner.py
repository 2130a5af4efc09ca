"""The local runner: runs the plan's jobs, skips complete stages, reports
failures with their logs.

Uses the real train binary; the failing run fails in gin parsing (seconds),
the complete run has its final checkpoint and metrics on disk already.
"""

import json
import os

from sftdiff.runs import plan as plan_lib
from sftdiff.study import runner as runner_lib
from sftdiff.study import stages
from sftdiff.study.spec import RunSpec

BENCHES = ["toy_date_confusion"]


def _spec(tmp_path, name, overrides=()):
  return RunSpec(arm_name=name, arm="Source('alt')", seed=0,
                 gin_files=("runs/sft.gin",),
                 overrides=(("TRAIN_STEPS", "5"), *overrides),
                 model_dir=str(tmp_path / "runs" / name / "seed0"))


def _complete(spec, steps):
  ckpt = stages.final_checkpoint(spec, steps)
  for b in BENCHES:
    os.makedirs(os.path.dirname(stages.metrics_path(ckpt, b)), exist_ok=True)
    with open(stages.metrics_path(ckpt, b), "w") as f:
      json.dump({"date_confusion_rate": 0.5}, f)


def _runner(tmp_path, specs, **kw):
  plan = plan_lib.build_plan(specs, title="t", benchmarks=BENCHES,
                             eval_gin_files=["runs/eval.gin"], gin_search_paths=())
  return runner_lib.LocalRunner(plan, study_dir=str(tmp_path), benchmarks=BENCHES,
                                parallelism=2, log=lambda msg: None, **kw)


def test_pending_stages(tmp_path):
  done, fresh, half = (_spec(tmp_path, n) for n in ("done", "fresh", "half"))
  _complete(done, 5)
  os.makedirs(stages.final_checkpoint(half, 5))  # trained, not evaluated
  pending = dict((wu.run.arm_name, todo) for wu, todo in _runner(
      tmp_path, [done, fresh, half]).pending())
  assert pending == {"fresh": ["train", "eval"], "half": ["eval"]}


def test_failure_is_reported_with_its_log_and_others_skip(tmp_path):
  done = _spec(tmp_path, "done")
  _complete(done, 5)
  bad = _spec(tmp_path, "bad", [("NoSuchConfigurable.value", "1")])
  result = _runner(tmp_path, [done, bad]).run()
  assert result.skipped == 1 and result.launches == 1
  (failure,) = result.failures
  assert failure.run == "bad/seed0" and failure.stage == "train"
  assert failure.error == "exit status 2"
  assert failure.log == stages.log_path(bad, "train")
  log = open(failure.log).read()
  assert "NoSuchConfigurable" in log  # gin's own message, in the run's log
  launches = [json.loads(l) for l in open(tmp_path / "logs" / "launches.jsonl")]
  assert [(l["run"], l["stage"]) for l in launches] == [("bad/seed0", "train")]
  assert "sftdiff.train" in launches[0]["cmd"]


def test_child_env_drops_simulated_devices(tmp_path, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_foo=1")
  env = runner_lib.child_env(str(tmp_path))
  assert env["XLA_FLAGS"] == "--xla_foo=1"
  assert env["JAX_COMPILATION_CACHE_DIR"].startswith(str(tmp_path))
