"""Schedule shape and the weight-decay mask (gradient accumulation: test_steps.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sftdiff.models import decoder
from sftdiff.testing.models import tiny_config
from sftdiff.train import optim


def test_schedule_warmup_then_cosine_to_end():
  s = optim.learning_rate_schedule(100, peak_learning_rate=1.0, warmup_steps=10,
                                   decay="cosine", end_learning_rate_ratio=0.1)
  values = np.array([float(s(i)) for i in range(101)])
  assert values[0] == 0.0
  np.testing.assert_allclose(values[5], 0.5, rtol=1e-6)
  np.testing.assert_allclose(values[10], 1.0, rtol=1e-6)
  assert np.all(np.diff(values[:11]) > 0) and np.all(np.diff(values[10:]) <= 1e-7)
  np.testing.assert_allclose(values[55], 0.1 + 0.9 * 0.5, rtol=1e-5)  # cosine midpoint
  np.testing.assert_allclose(values[100], 0.1, rtol=1e-5)


def test_schedule_linear_and_constant():
  lin = optim.learning_rate_schedule(20, peak_learning_rate=2.0, warmup_steps=0,
                                     decay="linear")
  np.testing.assert_allclose([float(lin(i)) for i in (0, 10, 20)], [2.0, 1.0, 0.0], atol=1e-6)
  const = optim.learning_rate_schedule(20, peak_learning_rate=3.0, warmup_steps=4,
                                       decay="constant")
  np.testing.assert_allclose([float(const(i)) for i in (2, 4, 19)], [1.5, 3.0, 3.0])
  with pytest.raises(ValueError, match="decay='exp'"):
    optim.learning_rate_schedule(10, decay="exp")
  with pytest.raises(ValueError, match="warmup_steps=20"):
    optim.learning_rate_schedule(10, warmup_steps=20)


def _flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in path): v
          for path, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_weight_decay_mask_skips_norms_biases_embeddings():
  cfg = tiny_config("qwen3", attention_bias=True, tie_embeddings=False)
  params = jax.eval_shape(lambda: decoder.init_params(cfg, jax.random.key(0)))
  mask = _flat(optim.weight_decay_mask(params))
  assert mask["embed_tokens/embedding"] is False
  assert mask["final_norm/scale"] is False
  assert mask["layers_0/attn/q_norm/scale"] is False
  assert mask["layers_0/attn/q_proj/bias"] is False
  assert mask["layers_0/attn/q_proj/kernel"] is True
  assert mask["layers_0/mlp/down_proj/kernel"] is True
  assert mask["lm_head/kernel"] is True
  configured = _flat(optim.weight_decay_mask(params, decay_embeddings=True, decay_norms=True))
  assert configured["embed_tokens/embedding"] is True
  assert configured["final_norm/scale"] is True


def test_adamw_decay_only_touches_masked_params():
  params = {"embed_tokens": {"embedding": jnp.ones((4, 2))}, "norm": {"scale": jnp.ones(2)},
            "proj": {"kernel": jnp.ones((2, 2))}}
  tx, _ = optim.make_optimizer(10, weight_decay=0.5, clip_global_norm=None)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  # lr(0)=peak with no warmup; zero grads => the update is only the decay term.
  assert float(jnp.abs(updates["proj"]["kernel"]).max()) > 0
  assert float(jnp.abs(updates["norm"]["scale"]).max()) == 0
  assert float(jnp.abs(updates["embed_tokens"]["embedding"]).max()) == 0
