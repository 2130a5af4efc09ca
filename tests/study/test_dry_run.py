"""`sftdiff.study --dry_run` plans a toyworld study without building its world,
and every run's gin (the study's overrides included) is checked first."""

import subprocess
import sys


def _study(tmp_path, *args):
  return subprocess.run(
      [sys.executable, "-m", "sftdiff.study", "--gin_file=studies/toyworld_quick.gin",
       f"--gin.STUDY_DIR='{tmp_path / 'study'}'", *args],
      cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_dry_run_prints_the_plan_and_builds_nothing(tmp_path):
  proc = _study(tmp_path, "--dry_run")
  assert proc.returncode == 0, proc.stderr[-3000:]
  runs = [l.split()[0] for l in proc.stdout.splitlines() if "/seed" in l]
  assert len(runs) == 17 and "reference_orig/seed0" in runs and "sweep_chat/seed0" in runs
  assert "Random(a='teacher', b='alt', p=<|date_mentions|/N>, seed=0)" in proc.stdout
  assert not (tmp_path / "study").exists()  # no world, no store, no files


def test_misspelt_train_override_fails_at_expansion(tmp_path):
  proc = _study(tmp_path, "--dry_run",
                "--gin.StudyConfig.train_overrides={'LEARNING_RATEE': 3e-3}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "LEARNING_RATEE" in proc.stderr and "closest: LEARNING_RATE" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "study").exists()


def test_misspelt_eval_override_fails_at_expansion(tmp_path):
  proc = _study(tmp_path, "--gin.StudyConfig.eval_overrides={'JUDGE_KINDD': 'none'}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "JUDGE_KINDD" in proc.stderr and "closest: JUDGE_KIND" in proc.stderr
  assert not (tmp_path / "study").exists()  # failed before building anything


def test_study_dir_unset_is_named(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "sftdiff.study",
                         "--gin_file=studies/toyworld_quick.gin", "--dry_run"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "STUDY_DIR" in proc.stderr
