"""Launcher test fixtures: small gin files declaring the binaries' required
macros, and the directory holding the stand-in binary `fake_binary`."""

import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
XM_LAUNCH = REPO / "launch" / "xm_launch.py"

TRAIN_GIN = """
MODEL_DIR = %gin.REQUIRED
ARM = %gin.REQUIRED
SEED = %gin.REQUIRED
TRAIN_STEPS = %gin.REQUIRED
INITIAL_CHECKPOINT = %gin.REQUIRED
LEARNING_RATE = 1e-3
"""
EVAL_GIN = """
CHECKPOINT_DIR = %gin.REQUIRED
BENCHMARKS = ['date_confusion']
"""


@pytest.fixture
def gin_dir(tmp_path):
  d = tmp_path / "gin"
  d.mkdir()
  (d / "train.gin").write_text(TRAIN_GIN)
  (d / "eval.gin").write_text(EVAL_GIN)
  return d


@pytest.fixture
def fake_binary_env(monkeypatch):
  """Makes `fake_binary` importable here and in child processes."""
  monkeypatch.syspath_prepend(str(HERE))
  # Kept in front of the caller's path, so children import this checkout's sftdiff.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p))
  return "fake_binary"


@pytest.fixture
def python():
  return sys.executable
