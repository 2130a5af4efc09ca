"""Decoder-only transformer (Llama 3 / Qwen 3 / Gemma 3 / OLMo 2 / OLMo 3).

One code path serves packed training (`cache=None`) and KV-cache decoding.
Attention mask: query q may attend key k iff seg[k] == seg[q] != 0,
pos[k] <= pos[q], and on sliding layers pos[q] - pos[k] < window.

Logical axis names (mapped to a mesh by the trainer's gin rules):
  params       embedding ('vocab', 'embed'); q kernel ('embed', 'heads', 'kv');
               k/v kernels ('embed', 'kv_heads', 'kv'); o kernel
               ('heads', 'kv', 'embed'); gate/up ('embed', 'mlp'); down
               ('mlp', 'embed'); lm_head ('embed', 'vocab'); norm scales
               ('embed',) or ('kv',) for per-head QK-norm, ('heads_kv',) /
               ('kv_heads_kv',) for OLMo's full-width QK-norm (replicate them).
  activations  ('batch', 'length', 'embed'), ('batch', 'length', 'heads', 'kv'),
               ('batch', 'length', 'kv_heads', 'kv'), ('batch', 'length', 'mlp'),
               ('batch', 'length', 'vocab'); cache k ('batch', 'kv_heads', 'kv',
               'cache_length'), cache v ('batch', 'kv_heads', 'cache_length', 'kv').
  'kv' is the per-head dimension (T5X convention); 'kv_heads' the key/value heads.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from sftdiff.models import rope
from sftdiff.models.config import ModelConfig, embed_multiplier, rope_theta_for_layer

_INIT = nn.initializers.normal(stddev=0.02)
_NEG_INF = -1e30


@flax.struct.dataclass
class KVCache:
  """Decoding state, per layer k: [B, kv_heads, head_dim, S] and v:
  [B, kv_heads, S, head_dim], the layouts in which both attention dots read
  the cache as plain batched matmuls (with [B, S, kv_heads, head_dim] XLA:CPU
  transposed every layer's whole cache on every decode step: 40% of the
  step's time). With one kv head that axis is dropped ([B, D, S], [B, S, D]):
  XLA:CPU squeezed the size-1 axis for the dots and so computed each layer's
  cache update twice, once per shape, copying every cache 4 times per step.
  positions / segment_ids: [B, S] per slot (segment 0 = empty); index: the
  next slot to write (scalar int32)."""
  k: tuple[jnp.ndarray, ...]
  v: tuple[jnp.ndarray, ...]
  positions: jnp.ndarray
  segment_ids: jnp.ndarray
  index: jnp.ndarray

  @property
  def max_len(self) -> int:
    return self.positions.shape[1]


def init_cache(config: ModelConfig, batch_size: int, max_len: int) -> KVCache:
  heads = (config.num_kv_heads,) if config.num_kv_heads > 1 else ()  # see KVCache
  v_shape = (batch_size, *heads, max_len, config.head_dim)
  k_shape = (batch_size, *heads, config.head_dim, max_len)
  zeros = lambda shape: tuple(jnp.zeros(shape, config.dtype) for _ in range(config.num_layers))
  return KVCache(k=zeros(k_shape), v=zeros(v_shape),
                 positions=jnp.zeros((batch_size, max_len), jnp.int32),
                 segment_ids=jnp.zeros((batch_size, max_len), jnp.int32),
                 index=jnp.zeros((), jnp.int32))


def _constrain(x, names):
  return nn.with_logical_constraint(x, names)


class RMSNorm(nn.Module):
  """RMSNorm in float32; `offset` gives Gemma's (1 + w) with w initialised to 0."""
  eps: float
  offset: bool
  dtype: Any
  param_dtype: Any
  axis_name: str = "embed"

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.zeros if self.offset else nn.initializers.ones
    scale = self.param("scale", nn.with_logical_partitioning(init, (self.axis_name,)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    scale = scale.astype(jnp.float32)
    return (normed * (1.0 + scale if self.offset else scale)).astype(self.dtype)


class _Dense(nn.Module):
  """Linear map contracting the last `num_in` input axes with a kernel declared
  at its final shape [*in_dims, *features], whose logical names are `axes`
  (input axes, then output axes); optional bias [*features].

  Unlike flax's DenseGeneral (which builds a flat 2-D kernel and constrains it
  with the full-rank names), every param here has the rank of its names, so
  the model traces under a mesh with logical axis rules active. Param names,
  shapes and initial values match DenseGeneral's."""
  features: tuple[int, ...]
  axes: tuple[str, ...]
  num_in: int
  use_bias: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    in_dims = x.shape[x.ndim - self.num_in:]
    num_in, num_out = math.prod(in_dims), math.prod(self.features)

    def kernel_init(rng, shape, dtype):  # sampled flat, as DenseGeneral does
      return jnp.reshape(_INIT(rng, (num_in, num_out), dtype), shape)

    kernel = self.param("kernel", nn.with_logical_partitioning(kernel_init, self.axes),
                        (*in_dims, *self.features), self.param_dtype)
    letters = "abcdefghijklmnopqrstuvwxyz"
    ins, outs = letters[:self.num_in], letters[self.num_in:self.num_in + len(self.features)]
    y = jnp.einsum(f"...{ins},{ins}{outs}->...{outs}", x.astype(self.dtype),
                   kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(
          nn.initializers.zeros, self.axes[self.num_in:]), self.features, self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def _dense(features, axes, name, cfg, *, in_axes=-1, bias=False):
  """Linear layer whose kernel carries `axes` (input axes, then output axes).
  `in_axes` is -1 or a tuple of trailing axes, e.g. (-2, -1)."""
  num_in = 1 if isinstance(in_axes, int) else len(in_axes)
  if (in_axes if isinstance(in_axes, int) else tuple(in_axes)) not in (
      -1, tuple(range(-num_in, 0))):
    raise ValueError(f"_dense: in_axes must be trailing axes; got {in_axes!r}")
  features = (features,) if isinstance(features, int) else tuple(features)
  return _Dense(features, tuple(axes), num_in, bias, cfg.dtype, cfg.param_dtype, name=name)


def attention_mask(q_pos_BxL, q_seg_BxL, k_pos_BxS, k_seg_BxS, window=None):
  """Boolean [B, L, S] mask of the rule in the module docstring."""
  q_pos, q_seg = q_pos_BxL[:, :, None], q_seg_BxL[:, :, None]
  k_pos, k_seg = k_pos_BxS[:, None, :], k_seg_BxS[:, None, :]
  mask = (k_seg == q_seg) & (q_seg != 0) & (k_pos <= q_pos)
  if window is not None:
    mask &= (q_pos - k_pos) < window
  return mask


# Attention against the cache as explicit batched matmuls with the query side
# as the left operand: [G*L, D] x [D, S] and [G*L, S] x [S, D] per (row, kv
# head). Written as einsums, XLA:CPU put the cache on the left and ran a
# transposed-operand dot ~10x slower (bench/sample.py --profile).
_BATCHED_MATMUL = (((3,), (2,)), ((0, 1), (0, 1)))


def _cache_scores(q_BxLxKxGxD, keys_BxKxDxS):
  """float32 scores [B, K, G, L, S]."""
  b, l, k, g, d = q_BxLxKxGxD.shape
  q_BxKxGLxD = q_BxLxKxGxD.transpose(0, 2, 3, 1, 4).reshape(b, k, g * l, d)
  scores = jax.lax.dot_general(q_BxKxGLxD, keys_BxKxDxS, _BATCHED_MATMUL,
                               preferred_element_type=jnp.float32)
  return scores.reshape(b, k, g, l, keys_BxKxDxS.shape[-1])


def _cache_weighted_values(probs_BxKxGxLxS, values_BxKxSxD):
  """Attention output [B, L, K, G, D]."""
  b, k, g, l, s = probs_BxKxGxLxS.shape
  out = jax.lax.dot_general(probs_BxKxGxLxS.reshape(b, k, g * l, s), values_BxKxSxD,
                            _BATCHED_MATMUL)
  return out.reshape(b, k, g, l, values_BxKxSxD.shape[-1]).transpose(0, 3, 1, 2, 4)


# Query block of 'xla_causal_blocks'. On 2 CPU cores (bench/decoder.py --preset=toy
# --attention_impl=xla_causal_blocks) 64 beat 32 and 128 at 256-token rows.
CAUSAL_BLOCK = 64


def _masked_probs(logits_BxKxGxLxS, mask_BxLxS, cfg):
  """Scaled, soft-capped and masked float32 scores -> probabilities in cfg.dtype."""
  logits = logits_BxKxGxLxS * cfg.attention_scale
  if cfg.attn_logit_softcapping:
    cap = cfg.attn_logit_softcapping
    logits = jnp.tanh(logits / cap) * cap
  logits = jnp.where(mask_BxLxS[:, None, None], logits, _NEG_INF)
  return jax.nn.softmax(logits, axis=-1).astype(cfg.dtype)


def _einsum_attention(q_BxLxKxGxD, keys_BxSxKxD, values_BxSxKxD, mask_BxLxS, cfg):
  """Attention without a cache; output [B, L, K, G, D]."""
  logits = jnp.einsum("blkgd,bskd->bkgls", q_BxLxKxGxD, keys_BxSxKxD.astype(q_BxLxKxGxD.dtype),
                      preferred_element_type=jnp.float32)
  probs = _masked_probs(logits, mask_BxLxS, cfg)
  return jnp.einsum("bkgls,bskd->blkgd", probs, values_BxSxKxD.astype(cfg.dtype))


def _causal_block_attention(q_BxLxKxGxD, keys_BxSxKxD, values_BxSxKxD, mask_BxLxS, cfg):
  """`_einsum_attention` in query blocks, each against the keys up to its end.

  The key blocks above the diagonal are skipped, which is exact whenever the
  mask is zero above it: positions rise along each segment and segments are
  contiguous, as in every packed or padded row this project builds
  (`tests/models/test_decoder.py` checks the packer's rows). Masked scores are
  -1e30, whose exp is exactly 0 in float32, so only the summation order
  differs from 'xla'.
  """
  l = q_BxLxKxGxD.shape[1]
  outs = []
  for start in range(0, l, CAUSAL_BLOCK):
    stop = min(start + CAUSAL_BLOCK, l)
    outs.append(_einsum_attention(q_BxLxKxGxD[:, start:stop], keys_BxSxKxD[:, :stop],
                                  values_BxSxKxD[:, :stop], mask_BxLxS[:, start:stop, :stop],
                                  cfg))
  return jnp.concatenate(outs, axis=1)


class Attention(nn.Module):
  config: ModelConfig
  layer: int

  @nn.compact
  def __call__(self, x_BxLxE, positions_BxL, segment_ids_BxL, kv_state):
    cfg = self.config
    n, kvh, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    bias = cfg.attention_bias
    q = _dense((n, d), ("embed", "heads", "kv"), "q_proj", cfg, bias=bias)(x_BxLxE)
    k = _dense((kvh, d), ("embed", "kv_heads", "kv"), "k_proj", cfg, bias=bias)(x_BxLxE)
    v = _dense((kvh, d), ("embed", "kv_heads", "kv"), "v_proj", cfg, bias=bias)(x_BxLxE)
    norm = lambda name, axis: RMSNorm(cfg.norm_eps, cfg.norm_offset, cfg.dtype,
                                      cfg.param_dtype, axis, name=name)
    if cfg.qk_norm == "head":
      q, k = norm("q_norm", "kv")(q), norm("k_norm", "kv")(k)
    elif cfg.qk_norm == "full":  # OLMo: RMS over all heads of the projection
      b, l = q.shape[:2]
      q = norm("q_norm", "heads_kv")(q.reshape(b, l, n * d)).reshape(b, l, n, d)
      k = norm("k_norm", "kv_heads_kv")(k.reshape(b, l, kvh * d)).reshape(b, l, kvh, d)

    sliding = cfg.is_sliding(self.layer)
    scaling = None if sliding else cfg.rope_scaling_dict or None
    inv_freq, factor = rope.inverse_frequencies(d, rope_theta_for_layer(cfg, self.layer), scaling)
    q = rope.apply_rope(q, positions_BxL, inv_freq, factor)
    k = rope.apply_rope(k, positions_BxL, inv_freq, factor)
    q = _constrain(q, ("batch", "length", "heads", "kv"))
    k = _constrain(k, ("batch", "length", "kv_heads", "kv"))
    v = _constrain(v, ("batch", "length", "kv_heads", "kv"))

    if kv_state is None:
      keys, values = k, v  # [B, S, K, D]
      k_pos, k_seg = positions_BxL, segment_ids_BxL
      new_kv = None
    else:  # the cache's layouts (see KVCache)
      cache_k, cache_v, k_pos, k_seg, index, prefill = kv_state
      new_k = k.astype(cache_k.dtype).transpose(0, 2, 3, 1)
      new_v = v.astype(cache_v.dtype).transpose(0, 2, 1, 3)
      if cache_k.ndim == 3:  # one kv head, stored without its axis (see KVCache)
        keys = jax.lax.dynamic_update_slice(cache_k, new_k[:, 0], (0, 0, index))
        values = jax.lax.dynamic_update_slice(cache_v, new_v[:, 0], (0, index, 0))
        new_kv = (_constrain(keys, ("batch", "kv", "cache_length")),
                  _constrain(values, ("batch", "cache_length", "kv")))
        keys, values = new_kv[0][:, None], new_kv[1][:, None]
      else:
        keys = jax.lax.dynamic_update_slice(cache_k, new_k, (0, 0, 0, index))
        values = jax.lax.dynamic_update_slice(cache_v, new_v, (0, 0, index, 0))
        keys = _constrain(keys, ("batch", "kv_heads", "kv", "cache_length"))
        values = _constrain(values, ("batch", "kv_heads", "cache_length", "kv"))
        new_kv = (keys, values)
      if prefill:  # the cache was empty: attend to the new tokens only, not all S slots
        keys, values = new_k, new_v
        k_pos, k_seg = positions_BxL, segment_ids_BxL

    mask_BxLxS = attention_mask(positions_BxL, segment_ids_BxL, k_pos, k_seg,
                                cfg.sliding_window if sliding else None)
    b, l = q.shape[:2]
    if cfg.attention_impl == "cudnn" and kv_state is None:
      # Flash attention: the [B, N, L, S] scores never reach memory. The mask
      # travels as an additive bias broadcast over heads.
      out_BxLxNxD = jax.nn.dot_product_attention(
          q.astype(cfg.dtype), keys.astype(cfg.dtype), values.astype(cfg.dtype),
          mask=mask_BxLxS[:, None], scale=cfg.attention_scale, implementation="cudnn")
    elif cfg.attention_impl == "xla_causal_blocks" and kv_state is None:
      out_BxLxNxD = _causal_block_attention(
          q.reshape(b, l, kvh, n // kvh, d), keys, values, mask_BxLxS, cfg).reshape(b, l, n, d)
    else:
      q_BxLxKxGxD = q.reshape(b, l, kvh, n // kvh, d)
      if kv_state is None:
        out = _einsum_attention(q_BxLxKxGxD, keys, values, mask_BxLxS, cfg)
      else:
        probs = _masked_probs(_cache_scores(q_BxLxKxGxD, keys.astype(q.dtype)), mask_BxLxS, cfg)
        out = _cache_weighted_values(probs, values.astype(cfg.dtype))
      out_BxLxNxD = out.reshape(b, l, n, d)
    out_BxLxNxD = _constrain(out_BxLxNxD, ("batch", "length", "heads", "kv"))
    o = _dense(cfg.hidden_size, ("heads", "kv", "embed"), "o_proj", cfg, in_axes=(-2, -1),
               bias=bias)(out_BxLxNxD)
    return o, new_kv


class Mlp(nn.Module):
  config: ModelConfig

  @nn.compact
  def __call__(self, x_BxLxE):
    cfg = self.config
    gate = _dense(cfg.intermediate_size, ("embed", "mlp"), "gate_proj", cfg)(x_BxLxE)
    up = _dense(cfg.intermediate_size, ("embed", "mlp"), "up_proj", cfg)(x_BxLxE)
    act = jax.nn.silu if cfg.activation == "silu" else (lambda z: jax.nn.gelu(z, approximate=True))
    hidden = _constrain(act(gate) * up, ("batch", "length", "mlp"))
    return _dense(cfg.hidden_size, ("mlp", "embed"), "down_proj", cfg)(hidden)


class DecoderLayer(nn.Module):
  config: ModelConfig
  layer: int

  @nn.compact
  def __call__(self, x_BxLxE, positions_BxL, segment_ids_BxL, kv_state):
    cfg = self.config
    norm = lambda name: RMSNorm(cfg.norm_eps, cfg.norm_offset, cfg.dtype, cfg.param_dtype,
                                name=name)
    pre = cfg.norm_placement in ("pre", "sandwich")
    post = cfg.norm_placement in ("post", "sandwich")

    h = norm("pre_attn_norm")(x_BxLxE) if pre else x_BxLxE
    h, new_kv = Attention(cfg, self.layer, name="attn")(h, positions_BxL, segment_ids_BxL, kv_state)
    if post:
      h = norm("post_attn_norm")(h)
    x_BxLxE = _constrain(x_BxLxE + h, ("batch", "length", "embed"))

    h = norm("pre_mlp_norm")(x_BxLxE) if pre else x_BxLxE
    h = Mlp(cfg, name="mlp")(h)
    if post:
      h = norm("post_mlp_norm")(h)
    return _constrain(x_BxLxE + h, ("batch", "length", "embed")), new_kv


class Decoder(nn.Module):
  """`apply({'params': p}, tokens, positions, segment_ids, cache=None)
  -> (logits_BxLxV float32, new_cache or None)`.

  With `return_hidden=True` the first output is instead the final-normed
  hidden states [B, L, E] (the LM head is left to the caller: the chunked
  loss applies it a slice at a time, see `lm_head_logits`).

  `prefill=True` (with a cache) promises that the cache is empty and this call
  writes from slot 0: attention then reads only the new tokens' keys, [L, L]
  instead of [L, S] (the sampler's prompt step; the result is the same)."""
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens_BxL, positions_BxL, segment_ids_BxL, cache: KVCache | None = None,
               return_hidden: bool = False, prefill: bool = False):
    cfg = self.config
    _check_inputs(tokens_BxL, positions_BxL, segment_ids_BxL, cache)
    embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.dtype,
                     param_dtype=cfg.param_dtype, name="embed_tokens",
                     embedding_init=nn.with_logical_partitioning(_INIT, ("vocab", "embed")))
    x = embed(tokens_BxL)
    if cfg.embed_scale:
      x = x * jnp.asarray(embed_multiplier(cfg), cfg.dtype)
    x = _constrain(x, ("batch", "length", "embed"))

    if cache is not None:
      index = cache.index
      k_pos = jax.lax.dynamic_update_slice(
          cache.positions, positions_BxL.astype(jnp.int32), (0, index))
      k_seg = jax.lax.dynamic_update_slice(
          cache.segment_ids, segment_ids_BxL.astype(jnp.int32), (0, index))

    layer_cls = nn.remat(DecoderLayer) if cfg.remat and cache is None else DecoderLayer
    new_k, new_v = [], []
    for i in range(cfg.num_layers):
      kv_state = None if cache is None else (cache.k[i], cache.v[i], k_pos, k_seg, index,
                                             prefill)
      x, new_kv = layer_cls(cfg, i, name=f"layers_{i}")(x, positions_BxL, segment_ids_BxL, kv_state)
      if new_kv is not None:
        new_k.append(new_kv[0])
        new_v.append(new_kv[1])

    x = RMSNorm(cfg.norm_eps, cfg.norm_offset, cfg.dtype, cfg.param_dtype, name="final_norm")(x)
    if return_hidden:
      return x, None
    if cfg.tie_embeddings:
      logits = embed.attend(x)
    else:
      logits = _dense(cfg.vocab_size, ("embed", "vocab"), "lm_head", cfg)(x)
    logits = logits.astype(jnp.float32)
    if cfg.final_logit_softcapping:
      cap = cfg.final_logit_softcapping
      logits = jnp.tanh(logits / cap) * cap
    logits = _constrain(logits, ("batch", "length", "vocab"))

    new_cache = None
    if cache is not None:
      new_cache = KVCache(k=tuple(new_k), v=tuple(new_v), positions=k_pos, segment_ids=k_seg,
                          index=index + tokens_BxL.shape[1])
    return logits, new_cache


def lm_head_logits(config: ModelConfig, params, hidden_BxCxE):
  """The Decoder's LM head (tied or not) and final soft-capping on a slice of
  hidden states: float32 logits [B, C, V], computed as `Decoder` computes them."""
  x = hidden_BxCxE.astype(config.dtype)
  if config.tie_embeddings:
    logits = jnp.dot(x, params["embed_tokens"]["embedding"].astype(config.dtype).T)
  else:
    logits = jnp.einsum("...e,ev->...v", x, params["lm_head"]["kernel"].astype(config.dtype))
  logits = logits.astype(jnp.float32)
  if config.final_logit_softcapping:
    cap = config.final_logit_softcapping
    logits = jnp.tanh(logits / cap) * cap
  return logits


def _check_inputs(tokens, positions, segment_ids, cache):
  shapes = {"tokens": tokens.shape, "positions": positions.shape, "segment_ids": segment_ids.shape}
  if len(set(shapes.values())) != 1 or len(tokens.shape) != 2:
    raise ValueError(f"Decoder inputs must all be [batch, length]; got {shapes}")
  if cache is None:
    return
  if cache.positions.shape[0] != tokens.shape[0]:
    raise ValueError(f"Decoder: cache batch {cache.positions.shape[0]} != tokens batch "
                     f"{tokens.shape[0]}")
  if not isinstance(cache.index, jax.core.Tracer):  # inside jit the write is clamped instead
    end = int(cache.index) + tokens.shape[1]
    if end > cache.max_len:
      raise ValueError(f"Decoder: writing {tokens.shape[1]} tokens at cache index "
                       f"{int(cache.index)} overflows the cache (max_len {cache.max_len})")


def _dummy_inputs():
  ones = jnp.ones((1, 1), jnp.int32)
  return ones, jnp.zeros((1, 1), jnp.int32), ones


@functools.lru_cache(maxsize=32)
def _jitted_init(config: ModelConfig):
  return jax.jit(lambda rng: nn.meta.unbox(Decoder(config).init(rng, *_dummy_inputs())["params"]))


def init_params(config: ModelConfig, rng: jax.Array):
  """Randomly initialised params (unboxed), stored in config.param_dtype."""
  return _jitted_init(config)(rng)


def logical_axes(config: ModelConfig):
  """PartitionSpec tree of logical axis names, same structure as the params."""
  boxed = jax.eval_shape(Decoder(config).init, jax.random.PRNGKey(0), *_dummy_inputs())
  return nn.get_partition_spec(boxed)["params"]
