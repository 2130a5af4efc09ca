"""`python -m sftdiff.eval rollouts` reaches `sftdiff.eval.rollouts.main`."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_eval_binary_dispatches_rollouts():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  # An extra positional argument is rejected by rollouts.main itself, which
  # proves the dispatch without generating anything.
  proc = subprocess.run([sys.executable, "-m", "sftdiff.eval", "rollouts", "extra"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "rollouts: unexpected arguments ['extra']" in proc.stderr
