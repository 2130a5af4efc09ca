"""Real subprocesses: SIGTERM checkpoints then exits 143; SIGKILL at an
arbitrary step + rerun of the same command == an uninterrupted run, bit for bit."""

import json
import os
import pathlib
import signal
import time

import jax
import numpy as np
import pytest

from sftdiff.train import checkpoints

TIMEOUT_S = 400


def _committed_steps(model_dir):
  d = pathlib.Path(model_dir) / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _wait_for(predicate, proc, what, timeout=TIMEOUT_S):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      pytest.fail(f"training exited ({proc.returncode}) before {what}")
    time.sleep(0.05)
  proc.kill()
  pytest.fail(f"timed out waiting for {what}")


def _metric_steps(model_dir):
  path = pathlib.Path(model_dir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(l)["step"] for l in path.read_text().splitlines() if l.endswith("}")]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, helpers, hf_init_dir):
  run = tmp_path / "run"
  # No periodic checkpoints: the only one must come from the SIGTERM.
  args = helpers.train_args(run, hf_init_dir, 100000, every=100000)
  proc = helpers.start_train(args, tmp_path / "log.txt")
  _wait_for(lambda: len(_metric_steps(run)) >= 2, proc, "two training steps")
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=TIMEOUT_S) == 143, (tmp_path / "log.txt").read_text()[-3000:]
  steps = _committed_steps(run)
  assert len(steps) == 1 and steps[0] >= 2
  assert steps[0] == _metric_steps(run)[-1]  # the step it was at, not a periodic one
  cfg, params = checkpoints.load_params(run)
  assert cfg.num_layers >= 1 and all(np.isfinite(np.asarray(x)).all()
                                     for x in jax.tree.leaves(params))


@pytest.mark.slow
def test_sigkill_resume_is_bit_identical(tmp_path, helpers, hf_init_dir):
  steps, kill_after = 24, 6
  killed, reference = tmp_path / "killed", tmp_path / "reference"
  # 8 devices (data parallel): sharded arrays through save/restore.
  args = helpers.train_args(killed, hf_init_dir, steps, every=3, devices=8)
  proc = helpers.start_train(args, tmp_path / "log1.txt")
  _wait_for(lambda: any(s >= kill_after for s in _committed_steps(killed)), proc,
            f"a checkpoint beyond step {kill_after}")
  assert proc.poll() is None, "finished before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  at_kill = _committed_steps(killed)
  assert max(at_kill) < steps, at_kill
  proc = helpers.start_train(args, tmp_path / "log2.txt")  # the same command
  assert proc.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "log2.txt").read_text()[-3000:]
  assert min(s for s in _metric_steps(killed) if s > max(at_kill)) == max(at_kill) + 1

  helpers.run_in_process(helpers.train_args(reference, hf_init_dir, steps, every=3,
                                            devices=8))
  _, resumed = checkpoints.load_params(killed)
  _, uninterrupted = checkpoints.load_params(reference)
  leaves_a, leaves_b = jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)
  assert len(leaves_a) == len(leaves_b)
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
