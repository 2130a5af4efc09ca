"""Cross-entropy without the full [tokens, vocab] float32 logits.

The plain loss materialises logits [B, L, V] in float32 and, in the
backward pass, the softmax, its gradient and a transposed copy of it, each
as large (Gemma 3 at 262k vocab, 2 x 256 tokens: 0.5 GB apiece). Here the
LM head runs over `chunk` vocabulary entries at a time: the forward pass
keeps a running logsumexp, the backward pass (a custom VJP) recomputes each
chunk's logits and writes that chunk's rows of the head gradient in place,
so the largest loss temporary is one [tokens, chunk] block and the head
gradient exists once (the tied embedding's lookup gradient is added into it).

Same ops and casts as the Decoder's head (`config.dtype` matmul, float32
logits, final soft-capping), so the loss and gradients equal the plain
loss's up to float32 summation order.
"""

from __future__ import annotations

import functools

import gin
import jax
import jax.numpy as jnp


@gin.configurable(module="sftdiff")
def loss_vocab_chunk(vocab_size: int, *, chunk: int = 0,
                     min_vocab_size: int = 65536) -> int:
  """Vocabulary entries per LM-head chunk of the training loss for a model
  with `vocab_size` entries; 0 = the plain full-logits loss.

  Off by default: the backward pass recomputes the head matmul, about 20%
  more step FLOPs for Gemma 3 270M at 2 x 256 tokens, and it was not shown to
  be no slower (docs/real_model.md). Bind `sftdiff.loss_vocab_chunk.chunk =
  16384` to turn it on for vocabularies of at least `min_vocab_size` (Llama
  3, Qwen 3, Gemma 3: there the full logits are the step's largest tensors);
  smaller ones (the toy models) keep the plain loss and its exact numbers.
  `min_vocab_size = 0` applies it to every model."""
  if chunk < 0:
    raise ValueError(f"sftdiff.loss_vocab_chunk.chunk={chunk} must be >= 0")
  if min_vocab_size < 0:
    raise ValueError(f"sftdiff.loss_vocab_chunk.min_vocab_size={min_vocab_size} must be >= 0")
  return chunk if chunk and vocab_size >= min_vocab_size else 0


def head_matrix(config, params) -> tuple[jax.Array, int]:
  """(the LM head's weight, its vocabulary axis): the tied embedding [V, E]
  (axis 0) or the untied kernel [E, V] (axis 1)."""
  if config.tie_embeddings:
    return params["embed_tokens"]["embedding"], 0
  return params["lm_head"]["kernel"], 1


def token_cross_entropies(config, params, hidden_BxLxE, targets_BxL, chunk: int):
  """Per-token cross-entropy [B, L] (float32) of the Decoder's LM head on
  `hidden_BxLxE`, `chunk` vocabulary entries at a time."""
  b, l, e = hidden_BxLxE.shape
  weight, vocab_axis = head_matrix(config, params)
  losses_N = _chunked_ce(hidden_BxLxE.reshape(b * l, e), weight, targets_BxL.reshape(b * l),
                         min(chunk, weight.shape[vocab_axis]), vocab_axis,
                         jnp.dtype(config.dtype).name, config.final_logit_softcapping or 0.0)
  return losses_N.reshape(b, l)


def _chunk_starts(vocab: int, chunk: int):
  """Chunk k covers [start_k, start_k + chunk); the last one is moved back to
  end at `vocab`, and `new_from_k` = k * chunk marks where its new columns begin
  (the ones before were counted by chunk k - 1)."""
  count = -(-vocab // chunk)
  news = jnp.arange(count, dtype=jnp.int32) * chunk
  return jnp.minimum(news, vocab - chunk), news


def _chunk_logits(x_NxE, weight, start, chunk, vocab_axis, dtype, softcap):
  """(float32 logits [N, chunk] of vocabulary entries start.., pre-cap tanh or None)."""
  w = jax.lax.dynamic_slice_in_dim(weight, start, chunk, axis=vocab_axis).astype(dtype)
  z = jnp.dot(x_NxE.astype(dtype), w.T if vocab_axis == 0 else w).astype(jnp.float32)
  if not softcap:
    return z, None
  tanh = jnp.tanh(z / softcap)
  return tanh * softcap, tanh


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _chunked_ce(x_NxE, weight, targets_N, chunk, vocab_axis, dtype, softcap):
  return _forward(x_NxE, weight, targets_N, chunk, vocab_axis, dtype, softcap)[0]


def _forward(x_NxE, weight, targets_N, chunk, vocab_axis, dtype, softcap):
  vocab = weight.shape[vocab_axis]
  n = x_NxE.shape[0]
  columns_C = jnp.arange(chunk, dtype=jnp.int32)

  def step(carry, start_new):
    max_N, sum_N, target_N = carry
    start, new_from = start_new
    logits_NxC, _ = _chunk_logits(x_NxE, weight, start, chunk, vocab_axis, dtype, softcap)
    new_C = start + columns_C >= new_from
    logits_NxC = jnp.where(new_C, logits_NxC, -jnp.inf)
    new_max_N = jnp.maximum(max_N, logits_NxC.max(axis=1))
    sum_N = sum_N * jnp.exp(max_N - new_max_N) + jnp.exp(
        logits_NxC - new_max_N[:, None]).sum(axis=1)
    hit_NxC = new_C & (start + columns_C == targets_N[:, None])
    target_N = target_N + jnp.where(hit_NxC, logits_NxC, 0.0).sum(axis=1)
    return (new_max_N, sum_N, target_N), None

  init = (jnp.full((n,), -jnp.inf, jnp.float32), jnp.zeros((n,), jnp.float32),
          jnp.zeros((n,), jnp.float32))
  (max_N, sum_N, target_N), _ = jax.lax.scan(step, init, _chunk_starts(vocab, chunk))
  lse_N = max_N + jnp.log(sum_N)
  return lse_N - target_N, (x_NxE, weight, targets_N, lse_N)


def _backward(chunk, vocab_axis, dtype, softcap, residuals, d_losses_N):
  x_NxE, weight, targets_N, lse_N = residuals
  vocab = weight.shape[vocab_axis]
  columns_C = jnp.arange(chunk, dtype=jnp.int32)
  x = x_NxE.astype(dtype)

  def step(carry, start_new):
    dx_NxE, d_weight = carry
    start, new_from = start_new
    logits_NxC, tanh_NxC = _chunk_logits(x_NxE, weight, start, chunk, vocab_axis, dtype,
                                         softcap)
    ids_C = start + columns_C
    # d loss / d logits = softmax - onehot; every column is exact (the
    # logsumexp is global), so the moved-back last chunk may rewrite its
    # overlap rows of d_weight, but dx must count each column once.
    d_logits_NxC = d_losses_N[:, None] * (
        jnp.exp(logits_NxC - lse_N[:, None]) - (ids_C == targets_N[:, None]))
    if softcap:
      d_logits_NxC = d_logits_NxC * (1.0 - tanh_NxC * tanh_NxC)
    d_logits_NxC = d_logits_NxC.astype(dtype)
    w = jax.lax.dynamic_slice_in_dim(weight, start, chunk, axis=vocab_axis).astype(dtype)
    counted_NxC = jnp.where(ids_C >= new_from, d_logits_NxC, 0)
    dx_NxE = dx_NxE + jnp.dot(counted_NxC, w if vocab_axis == 0 else w.T).astype(jnp.float32)
    d_w = (jnp.dot(d_logits_NxC.T, x) if vocab_axis == 0 else jnp.dot(x.T, d_logits_NxC))
    d_weight = jax.lax.dynamic_update_slice_in_dim(d_weight, d_w.astype(weight.dtype), start,
                                                   axis=vocab_axis)
    return (dx_NxE, d_weight), None

  init = (jnp.zeros(x_NxE.shape, jnp.float32), jnp.zeros_like(weight))
  (dx_NxE, d_weight), _ = jax.lax.scan(step, init, _chunk_starts(vocab, chunk))
  return dx_NxE.astype(x_NxE.dtype), d_weight, None


_chunked_ce.defvjp(lambda *args: _forward(*args), _backward)
