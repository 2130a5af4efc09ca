"""Config errors fail before any compute: exit 2 with gin's message."""

import importlib
import subprocess
import sys

import pytest

from sftdiff import gin_utils

main = importlib.import_module("sftdiff.train.__main__")


def _configure(files, bindings):
  gin_utils.parse(files, bindings)
  return main.check_config()


def test_missing_required_macro_exits_2_before_compute(tmp_path, helpers):
  args = [a for a in helpers.train_args(tmp_path / "run", tmp_path / "none", 3)
          if not a.startswith("--gin.TRAIN_STEPS")]
  proc = subprocess.run([sys.executable, "-m", "sftdiff.train", *args], cwd=helpers.REPO,
                        env=helpers.subprocess_env(), capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "TRAIN_STEPS" in proc.stderr
  assert not (tmp_path / "run").exists()  # nothing written, nothing computed


def test_missing_macro_in_process_names_it(tmp_path, helpers):
  files, bindings = helpers.gin_bindings(helpers.train_args(tmp_path, tmp_path, 3))
  bindings = [b for b in bindings if not b.startswith("SEED")]
  with pytest.raises(gin_utils.GinConfigError, match="SEED"):
    _configure(files, bindings)


def test_unknown_binding_names_it(tmp_path, helpers):
  files, bindings = helpers.gin_bindings(helpers.train_args(tmp_path, tmp_path, 3))
  with pytest.raises(gin_utils.GinConfigError, match="no_such_param"):
    _configure(files, bindings + ["trainer.train.no_such_param = 3"])


@pytest.mark.parametrize("binding,name", [("TRAIN_STEPS = 'ten'", "TRAIN_STEPS"),
                                          ("MODEL_DIR = 3", "MODEL_DIR"),
                                          ("BATCH_SIZE = 0", "BATCH_SIZE")])
def test_type_error_names_the_macro(tmp_path, helpers, binding, name):
  files, bindings = helpers.gin_bindings(helpers.train_args(tmp_path, tmp_path, 3))
  with pytest.raises(gin_utils.GinConfigError, match=name):
    _configure(files, bindings + [binding])


def test_valid_config_returns_model_dir(tmp_path, helpers):
  files, bindings = helpers.gin_bindings(helpers.train_args(tmp_path / "m", tmp_path, 3))
  assert _configure(files, bindings) == str(tmp_path / "m")


def test_bad_model_override_is_named(tmp_path, helpers, hf_init_dir):
  args = helpers.train_args(tmp_path / "run", hf_init_dir, 2,
                            "--gin.trainer.train.model_overrides={'num_layers': 1}")
  with pytest.raises(ValueError, match="model_overrides.*num_layers"):
    helpers.run_in_process(args)
