"""Rotary position embeddings (HF "rotate_half" layout) with llama3 / yarn /
linear frequency scaling, matching transformers' modeling_rope_utils."""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np


def inverse_frequencies(head_dim: int, theta: float,
                        scaling: Mapping[str, Any] | None = None) -> tuple[np.ndarray, float]:
  """Returns (inv_freq [head_dim // 2] float32, attention_factor).

  attention_factor multiplies cos and sin (1 except for yarn)."""
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  base_freqs = np.float32(theta) ** exponents
  inv_freq = (1.0 / base_freqs).astype(np.float32)
  if not scaling:
    return inv_freq, 1.0
  kind = scaling["rope_type"]
  factor = float(scaling["factor"])
  if kind == "linear":
    return (inv_freq / factor).astype(np.float32), 1.0
  if kind == "llama3":
    old_len = scaling["original_max_position_embeddings"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32), 1.0
  if kind == "yarn":
    return _yarn(head_dim, theta, base_freqs, factor, scaling)
  raise ValueError(f"unsupported rope_type {kind!r}")


def _yarn(dim, theta, base_freqs, factor, scaling):
  original = scaling["original_max_position_embeddings"]
  attention_factor = scaling.get("attention_factor")
  mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")

  def get_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

  if attention_factor is None:
    if mscale and mscale_all_dim:
      attention_factor = get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
    else:
      attention_factor = get_mscale(factor)
  beta_fast = scaling.get("beta_fast") or 32
  beta_slow = scaling.get("beta_slow") or 1

  def correction_dim(rotations):
    return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

  low, high = correction_dim(beta_fast), correction_dim(beta_slow)
  if scaling.get("truncate", True):
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dim - 1)
  if low == high:
    high += 0.001
  ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
  extrapolation_weight = 1 - ramp
  inv_freq = ((1.0 / (factor * base_freqs)) * (1 - extrapolation_weight)
              + (1.0 / base_freqs) * extrapolation_weight)
  return inv_freq.astype(np.float32), float(attention_factor)


def apply_rope(x_BxLxNxD: jnp.ndarray, positions_BxL: jnp.ndarray,
               inv_freq: np.ndarray, attention_factor: float = 1.0) -> jnp.ndarray:
  """Rotates x by its positions; computed in float32, returned in x's dtype."""
  angles_BxLxF = positions_BxL.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  angles_BxLxD = jnp.concatenate([angles_BxLxF, angles_BxLxF], axis=-1)[:, :, None, :]
  cos = jnp.cos(angles_BxLxD) * attention_factor
  sin = jnp.sin(angles_BxLxD) * attention_factor
  x = x_BxLxNxD.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return (x * cos + rotated * sin).astype(x_BxLxNxD.dtype)
