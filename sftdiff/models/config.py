"""ModelConfig: one decoder-only architecture covering Llama 3, Qwen 3, Gemma 3
(text), OLMo 2 and OLMo 3. Conversion to/from Hugging Face `config.json` is in
`sftdiff.models.hf_io`.

Family-specific details (norm placement, QK-norm kind, (1+w) RMSNorm, embedding
scaling, activation) default from `family` when left as None, so a gin file only
binds sizes; any of them can still be overridden explicitly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import gin

FAMILIES = ("llama", "qwen3", "gemma3", "olmo2", "olmo3")
ATTENTION_IMPLS = ("xla", "xla_causal_blocks", "cudnn")
FULL, SLIDING = "full_attention", "sliding_attention"
ROPE_SCALING_TYPES = ("llama3", "yarn", "linear")

# family -> (norm_placement, qk_norm, norm_offset, embed_scale, activation)
_FAMILY_DEFAULTS = {
    "llama": ("pre", "none", False, False, "silu"),
    "qwen3": ("pre", "head", False, False, "silu"),
    "gemma3": ("sandwich", "head", True, True, "gelu_tanh"),
    "olmo2": ("post", "full", False, False, "silu"),
    "olmo3": ("post", "full", False, False, "silu"),
}


@gin.configurable(module="sftdiff")
@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of the decoder.

  Attributes:
    family: one of FAMILIES.
    norm_placement: 'pre' (Llama/Qwen: norm the sublayer input), 'post'
      (OLMo 2/3: norm the sublayer output before the residual add) or
      'sandwich' (Gemma 3: both).
    qk_norm: 'none', 'head' (RMSNorm over head_dim, per head: Qwen 3, Gemma 3)
      or 'full' (RMSNorm over the whole projected q / k: OLMo 2/3).
    norm_offset: RMSNorm multiplies by (1 + w) (Gemma) instead of w.
    embed_scale: multiply token embeddings by sqrt(hidden_size) (Gemma).
    activation: 'silu' or 'gelu_tanh' for the gated MLP.
    layer_types: per-layer 'full_attention' / 'sliding_attention'; None means
      all full.
    rope_theta: RoPE base of full-attention layers; rope_local_theta: base of
      sliding layers (Gemma 3's rope_local_base_freq; None = rope_theta).
    rope_scaling: HF-style dict (rope_type llama3 / yarn / linear + its
      parameters) applied to full-attention layers; stored as a sorted tuple
      of items so the config stays hashable.
    query_pre_attn_scalar: attention scale is its -1/2 power (None = head_dim).
    dtype: compute dtype; param_dtype: storage dtype of parameters.
    remat: rematerialise each layer in the backward pass (training memory).
    attention_impl: 'xla' (einsum attention, any backend), 'xla_causal_blocks'
      (the same in 64-query blocks that skip the keys after each block: ~40%
      less attention work at 256 tokens, 1.3x the toy train step on CPU;
      needs rows whose mask is causal in index order, as packed and padded
      rows are) or 'cudnn' (`jax.nn.dot_product_attention`'s fused cuDNN
      flash kernel: GPU only, bf16/fp16 compute, no logit soft-capping). The
      KV-cache decode path always uses 'xla'.
  """
  family: str = "llama"
  vocab_size: int = 256
  hidden_size: int = 64
  intermediate_size: int = 128
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  max_position_embeddings: int = 4096
  rope_theta: float = 10000.0
  rope_local_theta: float | None = None
  rope_scaling: Any = None
  norm_eps: float = 1e-6
  tie_embeddings: bool = False
  attention_bias: bool = False
  norm_placement: str | None = None
  qk_norm: str | None = None
  norm_offset: bool | None = None
  embed_scale: bool | None = None
  activation: str | None = None
  sliding_window: int | None = None
  layer_types: Any = None
  query_pre_attn_scalar: float | None = None
  attn_logit_softcapping: float | None = None
  final_logit_softcapping: float | None = None
  bos_token_id: int | None = None
  eos_token_id: Any = None
  pad_token_id: int | None = None
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  remat: bool = False
  attention_impl: str = "xla"

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"ModelConfig.family={self.family!r} is not one of {FAMILIES}")
    defaults = dict(zip(
        ("norm_placement", "qk_norm", "norm_offset", "embed_scale", "activation"),
        _FAMILY_DEFAULTS[self.family]))
    for name, value in defaults.items():
      if getattr(self, name) is None:
        object.__setattr__(self, name, value)
    if self.norm_placement not in ("pre", "post", "sandwich"):
      raise ValueError(f"ModelConfig.norm_placement={self.norm_placement!r} "
                       "must be 'pre', 'post' or 'sandwich'")
    if self.qk_norm not in ("none", "head", "full"):
      raise ValueError(f"ModelConfig.qk_norm={self.qk_norm!r} must be 'none', 'head' or 'full'")
    if self.activation not in ("silu", "gelu_tanh"):
      raise ValueError(f"ModelConfig.activation={self.activation!r} must be 'silu' or 'gelu_tanh'")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"ModelConfig.attention_impl={self.attention_impl!r} must be one of "
                       f"{ATTENTION_IMPLS}")
    if self.attention_impl == "cudnn" and (self.attn_logit_softcapping
                                           or self.dtype not in ("bfloat16", "float16")):
      raise ValueError("ModelConfig.attention_impl='cudnn' needs dtype bfloat16/float16 "
                       "and no attn_logit_softcapping")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"ModelConfig.num_heads={self.num_heads} is not a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")
    if self.layer_types is not None:
      types = tuple(self.layer_types)
      if len(types) != self.num_layers or any(t not in (FULL, SLIDING) for t in types):
        raise ValueError(
            f"ModelConfig.layer_types must list {self.num_layers} entries of "
            f"{FULL!r}/{SLIDING!r}, got {types}")
      object.__setattr__(self, "layer_types", types)
      if SLIDING in types and not self.sliding_window:
        raise ValueError("ModelConfig.layer_types has sliding layers but sliding_window is not set")
    if isinstance(self.rope_scaling, Mapping):
      object.__setattr__(self, "rope_scaling", tuple(sorted(self.rope_scaling.items())))
    if self.rope_scaling is not None:
      rope_type = self.rope_scaling_dict.get("rope_type")
      if rope_type not in ROPE_SCALING_TYPES:
        raise ValueError(f"ModelConfig.rope_scaling rope_type={rope_type!r} is not one of "
                         f"{ROPE_SCALING_TYPES}")
    if isinstance(self.eos_token_id, list):
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))

  # --- derived -------------------------------------------------------------
  @property
  def rope_scaling_dict(self) -> dict[str, Any]:
    return dict(self.rope_scaling or ())

  @property
  def resolved_layer_types(self) -> tuple[str, ...]:
    return self.layer_types or (FULL,) * self.num_layers

  def is_sliding(self, layer: int) -> bool:
    return self.resolved_layer_types[layer] == SLIDING

  @property
  def attention_scale(self) -> float:
    return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def num_params(self, *, include_embeddings: bool = True) -> int:
    """Exact parameter count (matches the initialised tree)."""
    h, d = self.hidden_size, self.head_dim
    q, kv = self.num_heads * d, self.num_kv_heads * d
    attn = h * q + 2 * h * kv + q * h
    if self.attention_bias:
      attn += q + 2 * kv + h
    qk_norm = {"none": 0, "head": 2 * d, "full": q + kv}[self.qk_norm]
    norms = {"pre": 2, "post": 2, "sandwich": 4}[self.norm_placement] * h
    layer = attn + qk_norm + 3 * h * self.intermediate_size + norms
    total = self.num_layers * layer + h  # + final norm
    if include_embeddings:
      total += self.vocab_size * h * (1 if self.tie_embeddings else 2)
    return total

  def flops_per_token(self, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B style.

    6 * N_matmul for the weight matmuls (N_matmul = every non-embedding
    parameter plus the LM head; the embedding lookup is not a matmul, and the
    norm scales counted along are negligible) plus the attention
    score/value matmuls: 12 * heads * head_dim * context per layer, where
    context is seq_len for full layers and min(seq_len, window) for sliding
    ones (no causal halving, as in PaLM's MFU definition).
    """
    n_matmul = self.num_params(include_embeddings=False) + self.vocab_size * self.hidden_size
    attention = 0
    for layer in range(self.num_layers):
      context = min(seq_len, self.sliding_window) if self.is_sliding(layer) else seq_len
      attention += 12 * self.num_heads * self.head_dim * context
    return 6.0 * n_matmul + attention


@gin.configurable(module="sftdiff")
def layer_pattern(num_layers: int, full_every: int) -> tuple[str, ...]:
  """Sliding-window layers with every `full_every`-th layer global (Gemma 3:
  6, OLMo 3: 4), as transformers builds `layer_types`. For gin:
  `ModelConfig.layer_types = @layer_pattern()`."""
  return tuple(FULL if (i + 1) % full_every == 0 else SLIDING for i in range(num_layers))


def rope_theta_for_layer(cfg: ModelConfig, layer: int) -> float:
  if cfg.is_sliding(layer) and cfg.rope_local_theta is not None:
    return cfg.rope_local_theta
  return cfg.rope_theta


def embed_multiplier(cfg: ModelConfig) -> float:
  return math.sqrt(cfg.hidden_size) if cfg.embed_scale else 1.0
