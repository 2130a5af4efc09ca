"""The vocabulary-chunked cross-entropy equals the plain full-logits loss:
value and every gradient, float32, on small models (tied and untied heads,
final soft-capping, a chunk that does not divide the vocabulary); bf16
compute agrees to bf16 precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sftdiff.data.batch import Batch
from sftdiff.models import decoder
from sftdiff.models.config import ModelConfig
from sftdiff.train import chunked_loss, steps

# float32 sums in another order (over vocabulary chunks, and the VJP written
# out instead of derived): the loss to 1e-5 relative (in practice bit-equal),
# each gradient tensor to 1e-5 relative plus 4e-6 of its largest entry (seen:
# <= 1.3e-6 of it, ~10 float32 ulps).
RTOL, ATOL_OF_MAX = 1e-5, 4e-6

CONFIGS = {
    "llama_untied": ModelConfig(family="llama", vocab_size=512, dtype="float32"),
    "gemma3_tied_softcap": ModelConfig(family="gemma3", vocab_size=512, tie_embeddings=True,
                                       final_logit_softcapping=30.0, dtype="float32"),
}


def _batch(vocab, b=3, l=37):
  rng = np.random.default_rng(0)
  ids = rng.integers(0, vocab, (b, l + 1))
  mask = (rng.random((b, l)) < 0.7).astype(np.int32)
  return Batch(input_ids=jnp.asarray(ids[:, :-1], jnp.int32),
               target_ids=jnp.asarray(ids[:, 1:], jnp.int32),
               loss_mask=jnp.asarray(mask),
               segment_ids=jnp.ones((b, l), jnp.int32),
               positions=jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("chunk", [64, 100, 512])
def test_chunked_loss_and_grads_equal_plain(name, chunk):
  cfg = CONFIGS[name]
  params = decoder.init_params(cfg, jax.random.key(1))
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)
  model = decoder.Decoder(cfg)
  batch = _batch(cfg.vocab_size)

  def value_and_grad(length):
    fn = jax.value_and_grad(lambda p: steps.token_loss_sums(model, p, batch, length),
                            has_aux=True)
    return jax.jit(fn)(params)

  (plain, tokens), plain_grads = value_and_grad(0)
  (chunked, chunked_tokens), chunked_grads = value_and_grad(chunk)
  assert float(tokens) == float(chunked_tokens) == float(batch.loss_mask.sum())
  np.testing.assert_allclose(chunked, plain, rtol=RTOL)
  flat_plain = jax.tree_util.tree_leaves_with_path(plain_grads)
  flat_chunked = jax.tree.leaves(chunked_grads)
  assert len(flat_plain) == len(flat_chunked)
  for (path, want), got in zip(flat_plain, flat_chunked):
    assert float(jnp.abs(want).max()) > 0, path  # every param gets a gradient
    np.testing.assert_allclose(got, want, rtol=RTOL,
                               atol=ATOL_OF_MAX * float(jnp.abs(want).max()),
                               err_msg=jax.tree_util.keystr(path))


def test_chunked_loss_never_builds_full_logits():
  """XLA's temp memory of the backward pass drops by full-logits buffers."""
  cfg = CONFIGS["gemma3_tied_softcap"].replace(vocab_size=4096)
  params = decoder.init_params(cfg, jax.random.key(1))
  model = decoder.Decoder(cfg)
  batch = _batch(cfg.vocab_size, b=4, l=128)

  def temp_bytes(length):
    fn = jax.jit(jax.grad(lambda p: steps.token_loss_sums(model, p, batch, length)[0]))
    return fn.lower(params).compile().memory_analysis().temp_size_in_bytes

  full_logits = 4 * 128 * cfg.vocab_size * 4
  plain, chunked = temp_bytes(0), temp_bytes(256)
  # The plain backward pass holds several full-logit-sized float32 buffers
  # (logits, softmax, their gradient); the chunked one saves at least two.
  assert plain >= 2 * full_logits
  assert plain - chunked >= 2 * full_logits, (plain, chunked)


def test_bf16_compute_agrees_to_bf16_precision():
  cfg = CONFIGS["gemma3_tied_softcap"].replace(dtype="bfloat16")
  params = decoder.init_params(cfg, jax.random.key(1))
  model = decoder.Decoder(cfg)
  batch = _batch(cfg.vocab_size)

  def value_and_grad(chunk):
    fn = jax.value_and_grad(lambda p: steps.token_loss_sums(model, p, batch, chunk)[0])
    return jax.jit(fn)(params)

  plain, plain_grads = value_and_grad(0)
  chunked, chunked_grads = value_and_grad(100)
  np.testing.assert_allclose(chunked, plain, rtol=1e-2)
  want = plain_grads["embed_tokens"]["embedding"]
  got = chunked_grads["embed_tokens"]["embedding"]
  # bf16 logits/gradients: relative error of the whole tensor ~ bf16 epsilon
  assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < 2e-2


def test_loss_vocab_chunk_applies_to_large_vocabularies_only():
  assert chunked_loss.loss_vocab_chunk(262144) == 0  # off by default
  assert chunked_loss.loss_vocab_chunk(262144, chunk=16384) == 16384  # Gemma 3
  assert chunked_loss.loss_vocab_chunk(640, chunk=16384) == 0  # toy models keep the plain loss
  assert chunked_loss.loss_vocab_chunk(640, chunk=64, min_vocab_size=0) == 64


@pytest.mark.parametrize("kwargs", [{"chunk": -1}, {"min_vocab_size": -1}])
def test_loss_vocab_chunk_rejects_negative(kwargs):
  with pytest.raises(ValueError, match="sftdiff.loss_vocab_chunk"):
    chunked_loss.loss_vocab_chunk(1000, **kwargs)
