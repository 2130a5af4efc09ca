"""Cross-entropy without the full [B, L, V] float32 logits.

The plain loss materialises logits [B, L, V] in float32 and, for the
backward pass, their gradient of the same size: at a 262k vocabulary and
B x L = 512 that is 0.5 GB each, several times over. Here the LM head is
applied to one slice of `chunk_length` positions at a time inside a scan,
and each slice is rematerialised in the backward pass, so at most one
slice's [B, C, V] logits (and their gradient) exist at once. Slicing the
sequence axis keeps the batch axis, hence its sharding, intact.
"""

from __future__ import annotations

import gin
import jax
import jax.numpy as jnp

from sftdiff.models import decoder


@gin.configurable(module="sftdiff")
def loss_chunk_length(length: int = 0) -> int:
  """Sequence positions per LM-head slice of the training loss; 0 (default) =
  the plain full-logits loss. Bind e.g. `sftdiff.loss_chunk_length.length =
  128` in gin. Off by default because it pays only when batch x length tokens
  well exceed the hidden size: the scan keeps its own [V, E] float32 head
  gradient beside the embedding's (Gemma 3 270M, XLA temp memory of the
  backward pass: 2 x 256 tokens plain 1.13 GB, chunk 128 1.75 GB; 4 x 1024
  tokens plain 18.9 GB, chunk 128 12.4 GB; docs/performance.md)."""
  if length < 0:
    raise ValueError(f"sftdiff.loss_chunk_length.length={length} must be >= 0")
  return length


def token_cross_entropies(config, params, hidden_BxLxE, targets_BxL, chunk_length: int):
  """Per-token cross-entropy [B, L] (float32) of the Decoder's LM head on
  `hidden_BxLxE`, computed `chunk_length` positions at a time."""
  b, l, e = hidden_BxLxE.shape
  c = min(chunk_length, l)
  pad = -l % c
  if pad:  # padded positions get target 0 and are sliced off below
    hidden_BxLxE = jnp.pad(hidden_BxLxE, ((0, 0), (0, pad), (0, 0)))
    targets_BxL = jnp.pad(targets_BxL, ((0, 0), (0, pad)))
  n = (l + pad) // c
  hidden_NxBxCxE = hidden_BxLxE.reshape(b, n, c, e).swapaxes(0, 1)
  targets_NxBxC = targets_BxL.reshape(b, n, c).swapaxes(0, 1)

  @jax.checkpoint
  def chunk(head_params, hidden_BxCxE, targets_BxC):
    logits_BxCxV = decoder.lm_head_logits(config, head_params, hidden_BxCxE)
    target_BxC = jnp.take_along_axis(logits_BxCxV, targets_BxC[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits_BxCxV, axis=-1) - target_BxC

  head_params = ({"embed_tokens": params["embed_tokens"]} if config.tie_embeddings
                 else {"lm_head": params["lm_head"]})
  losses_NxBxC = jax.lax.map(lambda xs: chunk(head_params, *xs), (hidden_NxBxCxE, targets_NxBxC))
  return losses_NxBxC.swapaxes(0, 1).reshape(b, n * c)[:, :l]
