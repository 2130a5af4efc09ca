"""Tiny model configs and random Hugging Face checkpoints for tests (no torch)."""

from __future__ import annotations

import pathlib

import jax

from sftdiff.models.config import FULL, SLIDING, ModelConfig
from sftdiff.models.decoder import init_params
from sftdiff.models.hf_io import save_hf_checkpoint

_TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
             num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=512,
             dtype="float32", param_dtype="float32")

_FAMILY_TINY = {
    "llama": dict(rope_theta=500000.0, norm_eps=1e-5,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                    high_freq_factor=4.0, original_max_position_embeddings=64)),
    "qwen3": dict(rope_theta=1000000.0, tie_embeddings=True),
    "gemma3": dict(num_layers=3, rope_theta=1000000.0, rope_local_theta=10000.0,
                   tie_embeddings=True, sliding_window=8, query_pre_attn_scalar=16,
                   layer_types=(SLIDING, SLIDING, FULL)),
    "olmo2": dict(rope_theta=500000.0, norm_eps=1e-5),
    "olmo3": dict(num_layers=3, rope_theta=500000.0, norm_eps=1e-5, sliding_window=8,
                  layer_types=(SLIDING, SLIDING, FULL)),
}


def tiny_config(family: str = "llama", **overrides) -> ModelConfig:
  """A few-layer, 64-wide float32 config of `family`; gemma3/olmo3 get an
  8-token sliding window on two of three layers."""
  if family not in _FAMILY_TINY:
    raise ValueError(f"tiny_config: unknown family {family!r}; one of {sorted(_FAMILY_TINY)}")
  return ModelConfig(family=family, **{**_TINY, **_FAMILY_TINY[family], **overrides})


def write_random_hf_checkpoint(directory, family: str = "llama", seed: int = 0,
                               **overrides) -> ModelConfig:
  """Writes a randomly initialised tiny model as a Hugging Face checkpoint
  (config.json + model.safetensors) and returns its config. Pass
  `vocab_size=tokenizer_vocab` to match a test tokenizer."""
  cfg = tiny_config(family, **overrides)
  params = init_params(cfg, jax.random.PRNGKey(seed))
  save_hf_checkpoint(pathlib.Path(directory), cfg, params)
  return cfg
