"""Day-one mistakes with `sftdiff.train`: each exits 2 before any compute,
with a short message naming the binding, macro or file, and no traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest


def _train(helpers, args, *, tmp_path):
  return subprocess.run([sys.executable, "-m", "sftdiff.train", *args], cwd=tmp_path,
                        env=helpers.subprocess_env(num_devices=1), capture_output=True,
                        text=True, timeout=300)


def _args(helpers, tmp_path, init_dir, *extra, drop=()):
  args = helpers.train_args(tmp_path / "run", init_dir, 2)
  return [a for a in args if not a.startswith(tuple(drop))] + list(extra)


def _assert_config_error(proc, *needles):
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  error = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert error, proc.stderr[-3000:]
  for needle in needles:
    assert needle in proc.stderr, (needle, proc.stderr[-3000:])
  return error[0]


def test_misspelt_macro_names_it_and_the_closest_name(helpers, tmp_path, hf_init_dir):
  proc = _train(helpers, _args(helpers, tmp_path, hf_init_dir, "--gin.LEARNING_RATEE=3e-3"),
                tmp_path=tmp_path)
  _assert_config_error(proc, "unknown gin macro LEARNING_RATEE", "closest: LEARNING_RATE")
  assert not (tmp_path / "run").exists()


def test_misspelt_parameter_names_it(helpers, tmp_path, hf_init_dir):
  proc = _train(helpers, _args(helpers, tmp_path, hf_init_dir,
                               "--gin.LoggingConfig.log_evry=3"), tmp_path=tmp_path)
  _assert_config_error(proc, "has no parameter log_evry", "closest: log_every")


@pytest.mark.parametrize("old, new", [("checkpoint_every", "CheckpointConfig.save_every"),
                                      ("log_every", "LoggingConfig.log_every"),
                                      ("use_wandb", "LoggingConfig.use_wandb")])
def test_a_flat_trainer_setting_names_its_new_binding(helpers, tmp_path, hf_init_dir,
                                                       old, new):
  proc = _train(helpers, _args(helpers, tmp_path, hf_init_dir, f"--gin.trainer.train.{old}=3"),
                tmp_path=tmp_path)
  _assert_config_error(proc, f"binding 'trainer.train.{old} = 3'",
                       f"trainer.train.{old} moved to {new}")
  assert not (tmp_path / "run").exists()


def test_a_bad_grouped_setting_is_named_before_the_run_starts(helpers, tmp_path, hf_init_dir):
  proc = _train(helpers, _args(helpers, tmp_path, hf_init_dir,
                               "--gin.CheckpointConfig.save_every=0"), tmp_path=tmp_path)
  _assert_config_error(proc, "CheckpointConfig.save_every = 0: must be an int >= 1")
  assert not (tmp_path / "run").exists()


def test_unquoted_string_macro_names_the_macro(helpers, tmp_path, hf_init_dir):
  args = _args(helpers, tmp_path, hf_init_dir, f"--gin.MODEL_DIR={tmp_path}/run",
               drop=["--gin.MODEL_DIR="])
  proc = _train(helpers, args, tmp_path=tmp_path)
  _assert_config_error(proc, "MODEL_DIR", "strings need quotes",
                       f"--gin.MODEL_DIR=\"'{tmp_path}/run'\"")


def test_unquoted_string_in_a_gin_file_names_file_line_and_macro(helpers, tmp_path,
                                                                 hf_init_dir):
  mine = tmp_path / "mine.gin"
  mine.write_text("# my settings\nSEQ_LEN = 32\nTOKENIZER_DIR = /data/tok\n")
  proc = _train(helpers, _args(helpers, tmp_path, hf_init_dir, f"--gin_file={mine}"),
                tmp_path=tmp_path)
  _assert_config_error(proc, f"{mine}:3", "TOKENIZER_DIR", "TOKENIZER_DIR = '/data/tok'")


def test_missing_initial_checkpoint_says_it_does_not_exist(helpers, tmp_path):
  proc = _train(helpers, _args(helpers, tmp_path, tmp_path / "no_such_base"),
                tmp_path=tmp_path)
  _assert_config_error(proc, f"INITIAL_CHECKPOINT='{tmp_path / 'no_such_base'}'",
                       "does not exist")
  assert "tokenizer" not in proc.stderr
  assert not (tmp_path / "run").exists()


def test_arm_syntax_error_is_named(helpers, tmp_path, hf_init_dir):
  args = _args(helpers, tmp_path, hf_init_dir, "--gin.ARM=\"Patch(base='alt', patch=\"",
               drop=["--gin.ARM=", "--gin.trainer.train.data_fn", "--gin.synthetic"])
  proc = _train(helpers, args, tmp_path=tmp_path)
  line = _assert_config_error(proc, "ARM", "Patch(base='alt', patch=")
  assert "not a valid expression" in line
  assert not (tmp_path / "run").exists()


@pytest.fixture
def broken_init(tmp_path, hf_init_dir):
  d = tmp_path / "init"
  shutil.copytree(hf_init_dir, d)
  return d


def test_unreadable_tokenizer_is_named_before_compute(helpers, tmp_path, broken_init):
  (broken_init / "tokenizer.json").write_text("{not json")
  proc = _train(helpers, _args(helpers, tmp_path, broken_init), tmp_path=tmp_path)
  _assert_config_error(proc, str(broken_init / "tokenizer.json"), "cannot load")
  assert not (tmp_path / "run").exists()


def test_missing_chat_template_is_named_before_compute(helpers, tmp_path, broken_init):
  config_path = broken_init / "tokenizer_config.json"
  config = json.loads(config_path.read_text())
  config.pop("chat_template", None)
  config_path.write_text(json.dumps(config))
  (broken_init / "chat_template.jinja").unlink(missing_ok=True)
  proc = _train(helpers, _args(helpers, tmp_path, broken_init), tmp_path=tmp_path)
  _assert_config_error(proc, str(broken_init), "has no chat template")
  assert "--gin.chat_tokenizer.chat_template=" in proc.stderr  # says how to choose one


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_output_disk_names_the_file(helpers, tmp_path, hf_init_dir):
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.gin").symlink_to("/dev/full")  # every write: ENOSPC
  proc = _train(helpers, _args(helpers, tmp_path, hf_init_dir), tmp_path=tmp_path)
  _assert_config_error(proc, str(run / "config.gin"), "No space left on device")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_dir_names_it(helpers, tmp_path, hf_init_dir):
  parent = tmp_path / "ro"
  parent.mkdir()
  parent.chmod(0o555)
  try:
    args = _args(helpers, tmp_path, hf_init_dir, f"--gin.MODEL_DIR='{parent}/run'",
                 drop=["--gin.MODEL_DIR="])
    proc = _train(helpers, args, tmp_path=tmp_path)
  finally:
    parent.chmod(0o755)
  _assert_config_error(proc, str(parent / "run"), "Permission denied")


def test_verbosity_shows_the_traceback(helpers, tmp_path):
  proc = _train(helpers, [*_args(helpers, tmp_path, tmp_path / "nope"), "--verbosity=1"],
                tmp_path=tmp_path)
  assert proc.returncode == 2
  assert "Traceback" in proc.stderr and "does not exist" in proc.stderr
