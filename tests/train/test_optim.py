"""Schedule shape, weight-decay mask, and gradient accumulation == big batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sftdiff.models import decoder
from sftdiff.testing.models import tiny_config
from sftdiff import partitioning
from sftdiff.train import optim, steps, synthetic_data


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


@pytest.mark.slow
def test_gradient_accumulation_equals_big_batch():
  k, batch_size, seq = 4, 8, 32
  cfg = tiny_config("llama", vocab_size=256, dtype="float32")
  params0 = decoder.init_params(cfg, jax.random.key(1))
  batch = next(synthetic_data.synthetic_train_data(seq_len=seq, batch_size=batch_size,
                                                   seed=3).train)
  # Microbatch j takes rows j, j+k, ...: their trainable token counts differ, so a
  # mean of per-microbatch means would NOT equal the big-batch loss.
  per_micro = batch.loss_mask.reshape(batch_size // k, k, seq).sum(axis=(0, 2))
  assert len(set(per_micro.tolist())) > 1, per_micro
  pc = partitioning.PartitionConfig(ici_mesh_shape=(2, 1, 1))
  mesh = partitioning.make_mesh(pc, jax.devices()[:2])
  results = []
  for microbatches in (1, k):
    # Plain SGD: the update is the gradient itself (Adam's first step is ~sign(g),
    # which would amplify float noise in near-zero gradients).
    tx, schedule = optax.sgd(1.0), optax.constant_schedule(1.0)
    fns = steps.build(cfg, tx, schedule, mesh, pc.rules, microbatches=microbatches)
    state = fns.init_state(steps.put_on_mesh(params0, fns.param_shardings))
    state, metrics = fns.train_step(state, partitioning.global_batch(
        batch, fns.batch_sharding, batch_size))
    results.append((jax.device_get(state["params"]), jax.device_get(metrics)))
  (p1, m1), (pk, mk) = results
  assert float(m1["trainable_tokens"]) == float(mk["trainable_tokens"]) == batch.loss_mask.sum()
  np.testing.assert_allclose(float(mk["loss"]), float(m1["loss"]), rtol=1e-6)
  np.testing.assert_allclose(float(mk["grad_norm"]), float(m1["grad_norm"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(pk)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  moved = max(float(np.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(p1), jax.tree.leaves(params0)))
  assert moved > 1e-6  # the update is not trivially zero
