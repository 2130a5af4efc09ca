"""The trainer's set-up before its loop (`trainer.prepare_run`): the model-dir
layout, the one manifest writer, the `TrainData` contract of `data_fn`, and the
grouped gin configs. (Steps: test_steps.py; checkpoints: test_checkpoints.py.)"""

import json
import os

import gin
import jax
import pytest

from sftdiff import gin_utils
from sftdiff import layout
from sftdiff import partitioning
from sftdiff.data.batch import Batch, TrainData
from sftdiff.train import run_config
from sftdiff.train import synthetic_data
from sftdiff.train import trainer


def _prepare(model_dir, init_dir, data_fn):
  pc = partitioning.PartitionConfig(ici_mesh_shape=(1, 1, 1))
  mesh = partitioning.make_mesh(pc, jax.devices()[:1])
  return trainer.prepare_run(
      str(model_dir), initial_checkpoint=str(init_dir), arm="synthetic", seed=3,
      batch_size=8, seq_len=32, data_fn=data_fn, tokenizer_dir=None, model_overrides=None,
      checkpoint_config=run_config.CheckpointConfig(), mesh=mesh, rules=pc.rules)


def test_prepare_run_lays_out_the_model_dir_and_writes_the_manifest(tmp_path, hf_init_dir):
  calls = []

  def data_fn(*args, **kwargs):
    calls.append(kwargs)
    return synthetic_data.synthetic_train_data(*args, vocab_size=64, **kwargs)

  run = _prepare(tmp_path / "run", hf_init_dir, data_fn)
  assert isinstance(run.data, TrainData) and isinstance(next(run.data.train), Batch)
  assert run.resume_step is None and run.host_params is not None
  # The data function only builds data: the trainer writes the manifest.
  assert "manifest_dir" not in calls[0]
  with open(layout.manifest_path(run.model_dir)) as f:
    assert json.load(f) == run.data.manifest == {"arm": "synthetic", "source": "synthetic",
                                                 "seed": 3}
  for path in (layout.model_config_path(run.model_dir),
               os.path.join(layout.tokenizer_dir(run.model_dir), "tokenizer.json"),
               os.path.join(run.model_dir, "config.gin")):
    assert os.path.exists(path), path
  run.ckpt.close()


def test_a_data_fn_that_is_not_train_data_is_named(tmp_path, hf_init_dir):
  def returns_a_dict(*args, **kwargs):
    del args, kwargs
    return {"train": iter(()), "manifest": {}}

  with pytest.raises(gin_utils.GinConfigError,
                     match="trainer.train.data_fn='returns_a_dict' returned a dict, not a "
                           "sftdiff.data.batch.TrainData"):
    _prepare(tmp_path / "run", hf_init_dir, returns_a_dict)
  assert not (tmp_path / "run" / "manifest.json").exists()


def test_grouped_configs_come_from_gin_bound_or_not():
  gin_utils.parse([], ["CheckpointConfig.save_every = 7", "LoggingConfig.eval_every = 3"])
  assert run_config.checkpoint_config(None) == run_config.CheckpointConfig(save_every=7)
  assert run_config.logging_config(None).eval_every == 3
  given = run_config.LoggingConfig(log_every=2)
  assert run_config.logging_config(given) is given
  gin.clear_config()
  gin_utils.parse([str(gin_utils.GIN_DIR / "runs" / "sft.gin")],
                  ["CheckpointConfig.keep = None"], finalize=False)
  bound = gin.get_bindings("trainer.train", resolve_references=True)
  assert bound["checkpoint_config"] == run_config.CheckpointConfig(keep=None)
  assert bound["logging_config"] == run_config.LoggingConfig(eval_every=100)


@pytest.mark.parametrize("make, message", [
    (lambda: run_config.CheckpointConfig(keep=0), "CheckpointConfig.keep = 0"),
    (lambda: run_config.CheckpointConfig(export_dtype="int8"), "export_dtype = 'int8'"),
    (lambda: run_config.LoggingConfig(log_every=0), "LoggingConfig.log_every = 0"),
    (lambda: run_config.LoggingConfig(eval_every=-1), "LoggingConfig.eval_every = -1"),
])
def test_bad_grouped_settings_are_named(make, message):
  with pytest.raises(gin_utils.GinConfigError, match=message):
    make()


def test_every_moved_setting_is_a_field_of_its_new_config():
  configs = {"CheckpointConfig": run_config.CheckpointConfig,
             "LoggingConfig": run_config.LoggingConfig}
  for old, new in run_config.MOVED.items():
    cls, field = new.split(".")
    assert field in configs[cls].__dataclass_fields__, (old, new)
  assert not set(run_config.MOVED) & set(trainer.train.__wrapped__.__code__.co_varnames)
