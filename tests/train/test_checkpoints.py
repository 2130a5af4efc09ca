"""Checkpoints end to end (in-process training): the model-dir layout, metrics,
keep-last-N, load_params, the HF export, orbax init, resume, and half-written
steps."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from sftdiff.models import hf_io
from sftdiff.train import checkpoints

STEPS = 8


def _run(helpers, model_dir, init_dir, steps, *extra):
  return helpers.run_in_process(helpers.train_args(model_dir, init_dir, steps, *extra))


def _leaves(params):
  return [np.asarray(x) for x in jax.tree.leaves(params)]


@pytest.mark.slow
def test_train_layout_metrics_export_resume(tmp_path, helpers, hf_init_dir):
  run = tmp_path / "run"
  last = _run(helpers, run, hf_init_dir, STEPS, "--gin.CheckpointConfig.export_hf=True",
              "--gin.LoggingConfig.eval_every=4", "--gin.CheckpointConfig.keep=2")
  # Layout the eval binary relies on.
  for name in ("config.gin", "model_config.json", "manifest.json", "metrics.jsonl",
               "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
               "hf/config.json", "hf/tokenizer.json"):
    assert (run / name).exists(), name
  assert f"TRAIN_STEPS = {STEPS}" in (run / "config.gin").read_text()
  assert list((run / "tb").glob("events.out.tfevents.*"))
  # Metrics: one line per step, the loss goes down, eval loss logged.
  rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == list(range(1, STEPS + 1))
  assert train_rows[-1]["loss"] < train_rows[0]["loss"] - 0.05
  assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in train_rows)
  assert [r["step"] for r in rows if "eval_loss" in r] == [4, 8]
  assert last["step"] == STEPS and np.isfinite(last["eval_loss"])
  # keep-last-2 (checkpoint every 2 steps).
  assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [6, 8]

  # load_params from the model dir, a step dir, and the HF export agree.
  cfg, params = checkpoints.load_params(run)
  _, params6 = checkpoints.load_params(run / "checkpoints" / "6")
  _, params_step6 = checkpoints.load_params(run, step=6)
  hf_cfg, hf_params = hf_io.load_hf_checkpoint(run / "hf")
  assert hf_cfg.num_layers == cfg.num_layers
  for a, b in zip(_leaves(params), _leaves(hf_params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(params6), _leaves(params_step6)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(_leaves(params), _leaves(params6)))

  # Resume: the same command with more steps continues from step 8.
  _run(helpers, run, hf_init_dir, STEPS + 2, "--gin.CheckpointConfig.keep=2")
  rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "loss" in r][-3:] == [STEPS, STEPS + 1, STEPS + 2]


@pytest.mark.slow
def test_hf_export_loads_in_transformers(tmp_path, helpers, hf_init_dir):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from sftdiff.models import decoder
  run = tmp_path / "run"
  _run(helpers, run, hf_init_dir, 2, "--gin.CheckpointConfig.export_hf=True")
  model = transformers.AutoModelForCausalLM.from_pretrained(run / "hf")
  tok = transformers.AutoTokenizer.from_pretrained(run / "hf")
  ids = tok("hello world, this is a test")["input_ids"]
  with torch.no_grad():
    theirs = model(torch.tensor([ids])).logits.numpy()
  cfg, params = checkpoints.load_params(run)
  n = len(ids)
  ours, _ = decoder.Decoder(cfg.replace(dtype="float32")).apply(
      {"params": params}, np.array([ids]), np.arange(n)[None], np.ones((1, n), np.int32))
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=2e-4, rtol=2e-3)


@pytest.mark.slow
def test_half_written_step_is_ignored(tmp_path, helpers, hf_init_dir):
  run = tmp_path / "run"
  _run(helpers, run, hf_init_dir, 4)
  ckpt_dir = run / "checkpoints"
  # What a kill during a save leaves behind: orbax's uncommitted temp directory.
  partial = ckpt_dir / "6.orbax-checkpoint-tmp-1234567"
  shutil.copytree(ckpt_dir / "4", partial)
  (partial / "state" / "manifest.ocdbt").write_bytes(b"truncated")
  _, params = checkpoints.load_params(run)  # step 4, not the partial 6
  _, params4 = checkpoints.load_params(run, step=4)
  for a, b in zip(_leaves(params), _leaves(params4)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(checkpoints.CheckpointNotFoundError, match="no step 6"):
    checkpoints.load_params(run, step=6)
  # Resuming continues from 4 and finishes; the partial directory is cleaned up.
  _run(helpers, run, hf_init_dir, 6)
  assert not partial.exists()
  assert sorted(int(p.name) for p in ckpt_dir.iterdir()) == [2, 4, 6]


@pytest.mark.slow
def test_initial_checkpoint_from_orbax_model_dir(tmp_path, helpers, hf_init_dir):
  first = tmp_path / "first"
  _run(helpers, first, hf_init_dir, 2)
  second = tmp_path / "second"
  # Learning rate 0: the final params are exactly the initial ones.
  _run(helpers, second, first, 1, "--gin.LEARNING_RATE=0.0")
  _, p_first = checkpoints.load_params(first)
  _, p_second = checkpoints.load_params(second)
  for a, b in zip(_leaves(p_first), _leaves(p_second)):
    np.testing.assert_array_equal(a, b)
  assert (second / "tokenizer" / "tokenizer.json").exists()


def test_bad_initial_checkpoint_is_named(tmp_path, helpers, hf_init_dir):
  empty = tmp_path / "empty"
  empty.mkdir()
  for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(pathlib.Path(hf_init_dir) / name, empty)
  with pytest.raises(checkpoints.CheckpointNotFoundError, match="INITIAL_CHECKPOINT=.*empty"):
    _run(helpers, tmp_path / "run", empty, 1)
