"""Checkpoint import errors (each names its problem), config round trips and
the torch-free random checkpoint helper."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sftdiff.models import hf_io
from sftdiff.models.hf_io import CheckpointFormatError
from sftdiff.testing.models import tiny_config, write_random_hf_checkpoint

FAMILIES = ["llama", "qwen3", "gemma3", "olmo2", "olmo3"]


@pytest.fixture
def ckpt(tmp_path):
  write_random_hf_checkpoint(tmp_path, "qwen3", tie_embeddings=False, vocab_size=64)
  return tmp_path


def _edit_tensors(directory, fn):
  path = directory / "model.safetensors"
  tensors = load_file(str(path))
  fn(tensors)
  save_file(tensors, str(path), metadata={"format": "pt"})


def _edit_config(directory, **changes):
  path = directory / "config.json"
  d = json.loads(path.read_text())
  d.update(changes)
  path.write_text(json.dumps(d))


def test_random_checkpoint_round_trips(ckpt):
  cfg, params = hf_io.load_hf_checkpoint(ckpt, dtype="float32")
  assert cfg == tiny_config("qwen3", tie_embeddings=False, vocab_size=64)
  assert params["embed_tokens"]["embedding"].shape == (64, 64)
  assert params["lm_head"]["kernel"].shape == (64, 64)
  assert params["layers_1"]["attn"]["q_proj"]["kernel"].shape == (64, 4, 16)


def test_missing_directory_and_config(tmp_path):
  with pytest.raises(CheckpointFormatError, match=r"does not exist"):
    hf_io.load_hf_checkpoint(tmp_path / "nope")
  with pytest.raises(CheckpointFormatError, match=rf"no config.json in checkpoint directory {tmp_path}"):
    hf_io.load_hf_checkpoint(tmp_path)


def test_unsupported_model_type(ckpt):
  _edit_config(ckpt, model_type="mistral")
  with pytest.raises(CheckpointFormatError) as e:
    hf_io.load_hf_checkpoint(ckpt)
  message = str(e.value)
  assert "unsupported model_type 'mistral'" in message and "config.json" in message
  for supported in ("llama", "qwen3", "gemma3_text", "olmo2", "olmo3"):
    assert supported in message


def test_multimodal_gemma3_is_named(ckpt):
  _edit_config(ckpt, model_type="gemma3")
  with pytest.raises(CheckpointFormatError, match=r"'gemma3'.*multimodal.*gemma3_text"):
    hf_io.load_hf_checkpoint(ckpt)


def test_missing_weights_file(ckpt):
  (ckpt / "model.safetensors").unlink()
  with pytest.raises(CheckpointFormatError,
                     match=r"no model.safetensors or model.safetensors.index.json"):
    hf_io.load_hf_checkpoint(ckpt)


def test_missing_tensor(ckpt):
  _edit_tensors(ckpt, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
  with pytest.raises(CheckpointFormatError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight"):
    hf_io.load_hf_checkpoint(ckpt)


def test_misshaped_tensor(ckpt):
  def shrink(t):
    t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((16, 64), np.float32)
  _edit_tensors(ckpt, shrink)
  with pytest.raises(CheckpointFormatError,
                     match=r"tensor model\.layers\.0\.self_attn\.k_proj\.weight has shape "
                           r"\(16, 64\), expected \(32, 64\)"):
    hf_io.load_hf_checkpoint(ckpt)


def test_unexpected_tensors_are_listed(ckpt):
  def add(t):
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.zeros(8, np.float32)
    t["model.layers.7.mlp.up_proj.weight"] = np.zeros((2, 2), np.float32)
  _edit_tensors(ckpt, add)
  with pytest.raises(CheckpointFormatError) as e:
    hf_io.load_hf_checkpoint(ckpt)
  assert "unexpected tensors" in str(e.value)
  assert "model.layers.0.self_attn.rotary_emb.inv_freq" in str(e.value)
  assert "model.layers.7.mlp.up_proj.weight" in str(e.value)


def test_index_naming_a_missing_shard(tmp_path):
  cfg = tiny_config("llama", vocab_size=64)
  from sftdiff.models.decoder import init_params
  files = hf_io.save_hf_checkpoint(tmp_path, cfg, init_params(cfg, jax.random.PRNGKey(0)),
                                   max_shard_bytes=50_000)
  assert len(files) > 1 and (tmp_path / "model.safetensors.index.json").exists()
  assert hf_io.load_hf_checkpoint(tmp_path, dtype="float32")[0] == cfg
  (tmp_path / files[-1]).unlink()
  with pytest.raises(CheckpointFormatError, match=rf"names shard {files[-1]}, which does not exist"):
    hf_io.load_hf_checkpoint(tmp_path)


def test_missing_config_field(ckpt):
  d = json.loads((ckpt / "config.json").read_text())
  del d["hidden_size"]
  (ckpt / "config.json").write_text(json.dumps(d))
  with pytest.raises(CheckpointFormatError, match=r"config.json: missing field 'hidden_size'"):
    hf_io.load_hf_checkpoint(ckpt)


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_config_round_trip(family):
  cfg = tiny_config(family)
  d = hf_io.to_hf_config(cfg)
  assert d["model_type"] == hf_io.FAMILY_TO_HF[family]
  again = hf_io.from_hf_config(json.loads(json.dumps(d)), dtype=cfg.dtype,
                                    param_dtype=cfg.param_dtype)
  assert again == cfg


def test_hf_config_new_style_rope_parameters():
  d = {"model_type": "gemma3_text", "vocab_size": 32, "hidden_size": 16,
       "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
       "num_key_value_heads": 1, "head_dim": 8, "sliding_window": 4,
       "layer_types": ["sliding_attention", "full_attention"],
       "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                           "full_attention": {"rope_type": "linear", "rope_theta": 100.0,
                                              "factor": 2.0}}}
  cfg = hf_io.from_hf_config(d)
  assert (cfg.rope_theta, cfg.rope_local_theta) == (100.0, 10.0)
  assert cfg.rope_scaling_dict["rope_type"] == "linear" and cfg.tie_embeddings
  assert cfg.query_pre_attn_scalar == 256 and cfg.norm_offset and cfg.embed_scale
  with pytest.raises(hf_io.UnsupportedModelError, match=r"rope_type 'longrope'"):
    hf_io.from_hf_config({**d, "rope_parameters": {"rope_type": "longrope"}})


def test_model_config_validation_names_the_field():
  with pytest.raises(ValueError, match=r"ModelConfig.family='gpt2'"):
    hf_io.ModelConfig(family="gpt2")
  with pytest.raises(ValueError, match=r"ModelConfig.layer_types"):
    hf_io.ModelConfig(num_layers=2, layer_types=["full_attention"])
  with pytest.raises(ValueError, match=r"sliding_window is not set"):
    hf_io.ModelConfig(num_layers=1, layer_types=["sliding_attention"])


def test_flops_per_token_formula():
  cfg = tiny_config("olmo3")  # 3 layers, two sliding (window 8)
  h, v = cfg.hidden_size, cfg.vocab_size
  n_matmul = cfg.num_params() - v * h  # untied: count the head, not the lookup
  attention = 12 * cfg.num_heads * cfg.head_dim * (8 + 8 + 100)
  assert cfg.flops_per_token(100) == 6 * n_matmul + attention


def test_tied_checkpoint_with_a_different_lm_head(tmp_path):
  write_random_hf_checkpoint(tmp_path, "qwen3", vocab_size=64)  # tied
  _edit_tensors(tmp_path, lambda t: t.update(
      {"lm_head.weight": t["model.embed_tokens.weight"].copy()}))
  hf_io.load_hf_checkpoint(tmp_path)  # an identical copy of the embedding is accepted
  _edit_tensors(tmp_path, lambda t: t.update(
      {"lm_head.weight": t["model.embed_tokens.weight"] + 1.0}))
  with pytest.raises(CheckpointFormatError,
                     match=r"tie_word_embeddings=true but lm_head.weight differs"):
    hf_io.load_hf_checkpoint(tmp_path)


def test_index_naming_a_tensor_its_shard_lacks(tmp_path):
  cfg = tiny_config("llama", vocab_size=64)
  from sftdiff.models.decoder import init_params
  files = hf_io.save_hf_checkpoint(tmp_path, cfg, init_params(cfg, jax.random.PRNGKey(0)),
                                   max_shard_bytes=50_000)
  index_path = tmp_path / "model.safetensors.index.json"
  index = json.loads(index_path.read_text())
  index["weight_map"]["model.norm.weight"] = files[0] if index["weight_map"][
      "model.norm.weight"] != files[0] else files[1]
  index_path.write_text(json.dumps(index))
  with pytest.raises(CheckpointFormatError,
                     match=r"tensor model.norm.weight is listed in model.safetensors.index.json "
                           r"but not stored in this shard"):
    hf_io.load_hf_checkpoint(tmp_path)
