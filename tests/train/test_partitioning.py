"""Sharded training equals 1-device training (f32 compute) on several meshes."""

import jax
import numpy as np
import pytest

from sftdiff.models import decoder
from sftdiff.testing.models import tiny_config
from sftdiff.train import optim, partitioning, steps, synthetic_data

STEPS, BATCH, SEQ = 3, 8, 32


def _train_losses(mesh_shape, cfg, params0, batches):
  pc = partitioning.PartitionConfig(ici_mesh_shape=mesh_shape)
  devices = jax.devices()[:int(np.prod(mesh_shape))]
  mesh = partitioning.make_mesh(pc, devices)
  tx, schedule = optim.make_optimizer(10)
  fns = steps.build(cfg, tx, schedule, mesh, pc.rules)
  state = fns.init_state(steps.put_on_mesh(params0, fns.param_shardings))
  losses = []
  for local in batches:
    state, metrics = fns.train_step(state, partitioning.global_batch(
        local, fns.batch_sharding, BATCH))
    losses.append(float(metrics["loss"]))
  return losses, state


@pytest.fixture(scope="module")
def setup():
  cfg = tiny_config("llama", vocab_size=256, dtype="float32")
  params0 = decoder.init_params(cfg, jax.random.key(0))
  data = synthetic_data.synthetic_train_data(seq_len=SEQ, batch_size=BATCH, seed=0)
  batches = [next(data.train) for _ in range(STEPS)]
  reference, _ = _train_losses((1, 1, 1), cfg, params0, batches)
  return cfg, params0, batches, reference


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (1, 4, 2), (2, 2, 2)])
def test_sharded_loss_matches_single_device(setup, mesh_shape):
  cfg, params0, batches, reference = setup
  losses, state = _train_losses(mesh_shape, cfg, params0, batches)
  assert reference[-1] < reference[0]  # it trains
  np.testing.assert_allclose(losses, reference, rtol=2e-5)
  # Params really are laid out by the rules: the q kernel's embed dim over fsdp,
  # heads over tensor.
  q = state["params"]["layers_0"]["attn"]["q_proj"]["kernel"]
  assert q.sharding.spec[:2] == ("fsdp", "tensor")
  assert len(q.sharding.device_set) == int(np.prod(mesh_shape))


def test_mesh_shape_errors_are_clear():
  with pytest.raises(ValueError, match="ici_mesh_shape=.*needs 12 devices"):
    partitioning.make_mesh(partitioning.PartitionConfig(ici_mesh_shape=(3, 4, 1)))
  with pytest.raises(ValueError, match="at most one entry may be -1"):
    partitioning.make_mesh(partitioning.PartitionConfig(ici_mesh_shape=(-1, -1, 1)))
  with pytest.raises(ValueError, match="mesh axis 'model'"):
    partitioning.PartitionConfig(logical_axis_rules=[("embed", "model")]).rules


def test_minus_one_takes_remaining_devices():
  mesh = partitioning.make_mesh(partitioning.PartitionConfig(ici_mesh_shape=(2, -1, 2)))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert partitioning.batch_divisor(mesh, partitioning.PartitionConfig().rules) == 4
