"""sftdiff.partitioning: the Partitioner (mesh + rules), the one rule list in gin,
and sharded training equal to 1-device training (f32 compute) on several meshes."""

import jax
import numpy as np
import pytest

from sftdiff.models import decoder
from sftdiff.testing.models import tiny_config
from sftdiff import partitioning
from sftdiff.train import optim, steps, synthetic_data

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


def _every_logical_name(tree):
  specs = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  return {n for spec in specs for entry in spec for n in
          ((entry,) if isinstance(entry, str) else tuple(entry or ()))}


@pytest.mark.parametrize("gin_file", ["runs/sft.gin", "runs/eval.gin"])
def test_sft_and_eval_gin_bind_the_one_rule_list(gin_file):
  import gin
  from sftdiff import gin_utils
  import sftdiff.eval.run  # noqa: F401  registers run_eval and its configs
  import sftdiff.train.trainer  # noqa: F401  registers trainer.train
  gin.clear_config()
  try:
    gin_utils.parse([gin_file], [], finalize=False)
    bound = gin.query_parameter("partitioning.PartitionConfig.logical_axis_rules")
  finally:
    gin.clear_config()
  assert partitioning.normalise_rules(bound) == partitioning.default_rules()
  assert partitioning.PartitionConfig().rules == partitioning.default_rules()


def test_rule_list_names_every_logical_axis_the_decoder_uses():
  names = {r[0] for r in partitioning.default_rules()}
  for family in ("llama", "qwen3", "gemma3", "olmo2"):
    cfg = tiny_config(family, vocab_size=64)
    assert _every_logical_name(decoder.logical_axes(cfg)) <= names, family
  # KV cache and OLMo's full-width QK-norm axes (see models/decoder.py).
  assert {"cache_length", "heads_kv", "kv_heads_kv"} <= names


def test_partitioner_shards_by_rules_and_jits_under_its_context():
  mesh = partitioning.make_mesh(partitioning.PartitionConfig(ici_mesh_shape=(2, 2, 2)))
  p = partitioning.Partitioner(mesh)
  assert p.rules == partitioning.default_rules()
  P = jax.sharding.PartitionSpec
  assert p.sharding(P("embed", "mlp")).spec == P("fsdp", "tensor")
  assert p.batch_sharding.spec == P(("data", "fsdp"), None)
  assert p.batch_divisor == 4
  x = jax.device_put(np.arange(64, dtype=np.float32).reshape(8, 8), p.batch_sharding)

  def double_constrained(x_BxL):
    # Under the partitioner's context the logical constraint resolves to the mesh.
    import flax.linen as nn
    return nn.with_logical_constraint(x_BxL * 2, ("batch", "mlp"))

  # No out_shardings: the output layout comes from the activation constraint,
  # which only the partitioner's context resolves to the mesh.
  jitted = p.jit(double_constrained, in_shardings=(p.batch_sharding,))
  out = jitted(x)
  np.testing.assert_array_equal(np.asarray(out), np.arange(64).reshape(8, 8) * 2)
  assert out.sharding.spec == P(("data", "fsdp"), "tensor")
  assert "sharding" in jitted.lower(jax.ShapeDtypeStruct((8, 8), np.float32)).as_text()
  # A bare jit of the same function has no rules: the constraint is a no-op.
  y = jax.device_put(np.ones((8, 8), np.float32), p.batch_sharding)
  bare = jax.jit(double_constrained)(y)
  assert "tensor" not in jax.tree.leaves(tuple(bare.sharding.spec))


def test_partitioner_from_config_and_bad_rules():
  pc = partitioning.PartitionConfig(ici_mesh_shape=(8, 1, 1),
                                    logical_axis_rules=[("batch", "data")])
  p = partitioning.Partitioner.from_config(pc)
  assert p.rules == (("batch", "data"),) and dict(p.mesh.shape)["data"] == 8
  with pytest.raises(ValueError, match=r"logical_axis_rules\[0\].*'model'"):
    partitioning.Partitioner(p.mesh, [("embed", "model")])
