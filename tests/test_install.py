"""A wheel install runs every documented command from outside the checkout.

Builds the wheel, installs it (not editable) into a fresh venv, and runs the
console script from a directory that is not the repository. To stay fast and
offline the new venv reuses this venv's already-installed dependencies (a
`.pth` line naming their site-packages; pip then finds every pin satisfied and
`--no-index` forbids downloading anything); sftdiff itself and its gin files
come only from the wheel.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ("setup.py", "README.md", "sftdiff", "gin")


def _run(cmd, *, cwd, env, timeout=600, ok=True):
  proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)
  if ok:
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
  return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(venv bin dir, env, cwd outside the checkout) of a wheel install."""
  tmp = tmp_path_factory.mktemp("install")
  src = tmp / "src"  # a copy, so the build leaves nothing in the checkout
  src.mkdir()
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
  for item in SOURCE:
    if (REPO / item).is_dir():
      shutil.copytree(REPO / item, src / item, ignore=ignore)
    else:
      shutil.copy2(REPO / item, src / item)
  base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-q", "-w", tmp / "dist", src], cwd=tmp, env=base_env)
  wheel, = (tmp / "dist").glob("sftdiff-*.whl")

  venv = tmp / "venv"
  _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=base_env)
  py = venv / "bin" / "python"
  site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
              cwd=tmp, env=base_env).stdout.strip()
  # This venv's dependencies, after the new venv's own site-packages (a plain
  # path line: its .pth files, e.g. an editable sftdiff's finder, do not run).
  pathlib.Path(site, "reuse_test_deps.pth").write_text(
      sysconfig.get_paths()["purelib"] + "\n")
  _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-index",
        "-c", REPO / "constraints.txt", wheel], cwd=tmp, env=base_env)

  outside = tmp / "elsewhere"
  outside.mkdir()
  env = {**base_env, "HOME": str(tmp / "home"), "JAX_PLATFORMS": "cpu",
         "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": f"{venv / 'bin'}{os.pathsep}"
         f"{base_env.get('PATH', '')}"}
  where = _run([py, "-c", "import sftdiff, sftdiff.gin_utils as g; "
                "print(sftdiff.__file__); print(g.GIN_DIR)"], cwd=outside, env=env)
  module_file, gin_dir = where.stdout.split()
  assert module_file.startswith(site) and gin_dir.startswith(site), where.stdout
  assert not str(REPO) in where.stdout
  return venv / "bin", env, outside


@pytest.mark.slow
def test_wheel_runs_help_train_eval_study_and_launcher(installed):
  bin_dir, env, cwd = installed
  sftdiff = bin_dir / "sftdiff"

  helped = _run([sftdiff, "--help"], cwd=cwd, env=env)
  for command in ("train", "eval", "data", "study", "launch", "toyworld"):
    assert re.search(rf"^  {command} +\S", helped.stdout, re.M), helped.stdout

  world_root = cwd / "worlds"
  built = _run([sftdiff, "toyworld", f"--root={world_root}", "--preset=tiny"],
               cwd=cwd, env=env)
  world = re.search(r"^world: (.+)$", built.stdout, re.M).group(1)

  # gin files by their shipped relative names: found only in the wheel.
  model_dir = cwd / "run"
  _run([sftdiff, "train", "--gin_file=runs/sft.gin", "--gin_file=data/toyworld.gin",
        f"--gin.DATA_DIR='{world}'", f"--gin.MODEL_DIR='{model_dir}'",
        f"--gin.INITIAL_CHECKPOINT='{world}/bases/orig'",
        "--gin.ARM=\"Source('teacher')\"", "--gin.TRAIN_STEPS=2", "--gin.SEED=0",
        "--gin.BATCH_SIZE=4", "--gin.SEQ_LEN=128", "--gin.LoggingConfig.report_mfu=False",
        "--gin.LoggingConfig.eval_every=0", "--gin.CheckpointConfig.async_save=False"],
       cwd=cwd, env=env)
  assert (model_dir / "checkpoints" / "2").is_dir()

  _run([sftdiff, "eval", "--gin_file=runs/eval.gin", f"--gin.CHECKPOINT_DIR='{model_dir}'",
        "--gin.BENCHMARKS=['toy_date_confusion']", "--gin.JUDGE_KIND='none'",
        "--gin.LIMIT_PROMPTS=2"], cwd=cwd, env=env)
  assert (model_dir / "results.jsonl").stat().st_size > 0

  study_dir = cwd / "study"
  planned = _run([sftdiff, "study", "--gin_file=studies/toyworld_quick.gin",
                  f"--gin.STUDY_DIR='{study_dir}'", "--dry_run"], cwd=cwd, env=env)
  assert "reference_orig/seed0" in planned.stdout
  assert "patch_in_date_mentions/seed0" in planned.stdout
  assert not study_dir.exists()  # a dry run builds and writes nothing

  # The launcher as a wheel runs it, on a shipped study that has an `include`.
  assert "include 'studies/toyworld_base.gin'" in (
      REPO / "gin" / "studies" / "toyworld_quick.gin").read_text()
  launched = _run([bin_dir / "python", "-m", "sftdiff.launch",
                   "--study_gin_file=studies/toyworld_quick.gin",
                   f"--study_gin=STUDY_DIR='{study_dir}'",
                   "--study_gin=StudyConfig.world='tiny'",
                   f"--study_gin=StudyConfig.world_root='{world_root}'",
                   "--eval_gin=JUDGE_KIND='none'", "--dry_run"], cwd=cwd, env=env)
  assert "gin check:" in launched.stdout
  assert "-m sftdiff.train" in launched.stdout and "-m sftdiff.eval" in launched.stdout
