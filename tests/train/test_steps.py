"""The jitted step functions (steps.build): a `Batch` in, the loss normalised
over the whole batch's trainable tokens, gradient accumulation == big batch."""

import jax
import numpy as np
import optax
import pytest

from sftdiff import partitioning
from sftdiff.data.batch import Batch
from sftdiff.models import decoder
from sftdiff.testing.models import tiny_config
from sftdiff.train import steps, synthetic_data

SEQ, ROWS = 16, 4


@pytest.fixture(scope="module")
def tiny():
  cfg = tiny_config("llama", vocab_size=64, dtype="float32")
  params = decoder.init_params(cfg, jax.random.key(0))
  pc = partitioning.PartitionConfig(ici_mesh_shape=(1, 1, 1))
  mesh = partitioning.make_mesh(pc, jax.devices()[:1])
  fns = steps.build(cfg, optax.sgd(0.1), optax.constant_schedule(0.1), mesh, pc.rules)
  batch = synthetic_data.make_batch(0, 0, range(ROWS), SEQ, 64)
  return cfg, params, fns, batch


def test_train_and_eval_steps_take_a_batch_and_normalise_by_trainable_tokens(tiny):
  cfg, params, fns, batch = tiny
  assert isinstance(batch, Batch)
  on_mesh = partitioning.global_batch(batch, fns.batch_sharding, ROWS)
  assert isinstance(on_mesh, Batch) and isinstance(on_mesh.input_ids, jax.Array)
  loss_sum, tokens = fns.eval_step(steps.put_on_mesh(params, fns.param_shardings), on_mesh)
  # The reference: per-token cross-entropy by hand over the masked targets.
  logits, _ = decoder.Decoder(cfg).apply({"params": params}, batch.input_ids, batch.positions,
                                         batch.segment_ids)
  ce = optax.softmax_cross_entropy_with_integer_labels(np.asarray(logits, np.float32),
                                                       batch.target_ids)
  want = float(np.sum(np.asarray(ce) * batch.loss_mask))
  assert float(tokens) == batch.loss_mask.sum() > 0
  np.testing.assert_allclose(float(loss_sum), want, rtol=1e-5)
  state = fns.init_state(steps.put_on_mesh(params, fns.param_shardings))
  _, metrics = fns.train_step(state, on_mesh)
  np.testing.assert_allclose(float(metrics["loss"]), want / float(tokens), rtol=1e-5)
  assert float(metrics["trainable_tokens"]) == float(tokens)


def test_global_batch_names_a_feature_with_the_wrong_rows(tiny):
  _, _, fns, batch = tiny
  with pytest.raises(ValueError, match=r"feature '\.input_ids' has 4 rows; the global "
                                       r"batch size is 8"):
    partitioning.global_batch(batch, fns.batch_sharding, 8)


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
