"""The model-directory layout (sftdiff.layout): paths and the committed-step test."""

import os
import subprocess
import sys

from sftdiff import layout


def test_paths(tmp_path):
  m = str(tmp_path / "m")
  assert layout.step_dir(m, 7) == f"{m}/checkpoints/7"
  assert layout.metrics_path(layout.step_dir(m, 7), "b") == f"{m}/checkpoints/7/eval/b/metrics.json"
  assert layout.tokenizer_dir(m) == f"{m}/tokenizer"
  assert layout.manifest_path(m) == f"{m}/manifest.json"
  assert layout.model_config_path(m) == f"{m}/model_config.json"
  assert layout.hf_dir(m) == f"{m}/hf"
  assert layout.is_step_dir(layout.step_dir(m, 3)) and not layout.is_step_dir(m)


def test_committed_steps_need_the_commit_marker_and_the_final_name(tmp_path):
  m = tmp_path / "m"
  for name, marker in [("2", True), ("4", False), ("6.orbax-checkpoint-tmp-1", True),
                       ("8", True)]:
    d = m / "checkpoints" / name
    d.mkdir(parents=True)
    if marker:
      (d / "commit_success.txt").write_text("")
  assert layout.committed_steps(m) == [2, 8]
  assert not layout.is_committed_step(m / "checkpoints" / "4")
  assert layout.committed_steps(tmp_path / "none") == []
  assert layout.missing_metrics([layout.step_dir(m, 2)], ["b"]) == [
      (layout.step_dir(m, 2), "b")]


def test_hf_dir_needs_config_and_weights(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  assert not layout.is_hf_dir(tmp_path)
  (tmp_path / "model.safetensors").write_text("")
  assert layout.is_hf_dir(tmp_path)


def test_layout_and_plan_import_no_jax():
  code = ("import sys, sftdiff.layout, sftdiff.runs.plan, sftdiff.runs.spec; "
          "bad = [m for m in ('jax', 'orbax', 'xmanager') if m in sys.modules]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                 env={**os.environ})
