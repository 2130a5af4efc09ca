"""`python -m sftdiff.data` subcommands, run as subprocesses on the example data."""

import json
import os
import subprocess
import sys

import pytest

from sftdiff.data import example_data
from sftdiff.testing.tokenizer import write_test_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("cli"))
  example_data.write_example_rollouts(d)
  write_test_tokenizer(os.path.join(d, "tok"))
  return d


def _run(data_dir, *args, ok=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "sftdiff.data", *args, "--gin_file=data/example.gin",
       f"--gin.DATA_DIR='{data_dir}'"], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=240)
  if ok:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.mark.slow
def test_build_then_overlaps(data_dir):
  out = _run(data_dir, "build").stdout
  assert "12 prompts, sources alt, teacher" in out
  assert "subsets: {'chat': 6, 'code': 4, 'safety': 2}" in out
  out = _run(data_dir, "overlaps").stdout
  assert "covered by any filter: 12 (100.0%)" in out
  assert any(l.split()[:2] == ["date_mentions", "4"] for l in out.splitlines())


@pytest.mark.slow
def test_arms_prints_and_writes_manifests(data_dir, tmp_path):
  out = _run(data_dir, "arms", "--gin_file=arms/filter_four_date_mentions.gin",
             "--standard_filter=roleplay", "--teacher=teacher", "--alt=alt",
             "--subset_sweep", f"--output_dir={tmp_path}",
             f"--tokenizer_dir={data_dir}/tok").stdout
  names = sorted(os.listdir(tmp_path))
  assert names == sorted([
      "patch_in_date_mentions", "patch_out_date_mentions", "drop_date_mentions",
      "random_date_mentions", "patch_in_roleplay", "patch_out_roleplay",
      "drop_roleplay", "random_roleplay", "patch_in_subset_chat",
      "patch_in_subset_code", "patch_in_subset_safety"])
  with open(tmp_path / "drop_date_mentions" / "manifest.json") as f:
    m = json.load(f)
  assert m["selected"] == 8 and m["counts"]["teacher"]["_total"] == 8
  assert m["trainable_tokens"]["teacher"] > 0
  with open(tmp_path / "random_roleplay" / "manifest.json") as f:
    assert json.load(f)["arm"] == "Random(a='teacher', b='alt', p=0.25, seed=0)"
  assert '"drop_date_mentions": {' in out


@pytest.mark.slow
def test_preview_shows_the_loss_mask(data_dir):
  out = _run(data_dir, "preview", "--gin_file=arms/patch_in_date_mentions.gin",
             f"--tokenizer_dir={data_dir}/tok", "--num_examples=2").stdout
  assert "=== p01 (subset chat, source teacher" in out
  assert f"[[{example_data.teacher_reply('p01')}<|im_end|>]]" in out
  assert f"[[{example_data.alt_reply('p02')}<|im_end|>]]" in out
  assert "[[What day is today?" not in out  # prompts are not trained


@pytest.mark.slow
def test_errors_exit_cleanly(data_dir):
  bad = _run(data_dir, "arms", "--gin.ARM=\"Drop(base='alt', where='dates')\"",
             ok=False)
  assert bad.returncode == 2
  assert "error: arm 'ARM': arm Drop(base='alt', where='dates'): unknown filter" in bad.stderr
  assert "Traceback" not in bad.stderr
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  missing = subprocess.run([sys.executable, "-m", "sftdiff.data", "build",
                            "--gin_file=data/example.gin"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=240)
  assert missing.returncode == 2 and "DATA_DIR" in missing.stderr
  usage = _run(data_dir, "frobnicate", ok=False)
  assert usage.returncode == 2 and "usage: python -m sftdiff.data" in usage.stderr


def test_old_rollouts_spelling_points_to_the_eval_binary(data_dir):
  # Rollouts run the sampler, so they live with eval; the data binary must
  # not import upward into eval (tests/test_import_direction.py).
  moved = _run(data_dir, "rollouts", ok=False)
  assert moved.returncode == 2, moved.stderr[-2000:]
  assert "use `python -m sftdiff.eval rollouts`" in moved.stderr
  assert "Traceback" not in moved.stderr


