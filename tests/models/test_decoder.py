"""Decoder semantics that transformers parity does not cover: packing, right
padding with the KV cache, dtypes, remat, logical axes and sharded execution."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sftdiff.models import decoder
from sftdiff.testing.models import tiny_config

FAMILIES = ["llama", "qwen3", "gemma3", "olmo2", "olmo3"]


@functools.partial(jax.jit, static_argnums=0)
def _forward(cfg, params, tokens, positions, segments, cache):
  return decoder.Decoder(cfg).apply({"params": params}, tokens, positions, segments, cache)


def _run(cfg, params, tokens, positions, segments, cache=None):
  return _forward(cfg, params, jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32),
                  jnp.asarray(segments, jnp.int32), cache)


@pytest.mark.parametrize("family", ["llama", "gemma3", "olmo3"])
def test_packed_row_equals_examples_alone(family):
  cfg = tiny_config(family)
  params = decoder.init_params(cfg, jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  a, b = rng.integers(1, cfg.vocab_size, 11), rng.integers(1, cfg.vocab_size, 9)
  packed = np.concatenate([a, b, [0, 0]])[None]
  positions = np.concatenate([np.arange(11), np.arange(9), [0, 0]])[None]
  segments = np.array([[1] * 11 + [2] * 9 + [0, 0]])
  logits, cache = _run(cfg, params, packed, positions, segments)
  assert cache is None and logits.shape == (1, 22, cfg.vocab_size)
  # Each example alone, padded to one shape so both share one compilation.
  alone = []
  for example in (a, b):
    n = len(example)
    row = np.pad(example, (0, 11 - n))[None]
    seg = (np.arange(11) < n).astype(int)[None]
    logits_alone, _ = _run(cfg, params, row, np.arange(11)[None] * seg, seg)
    alone.append(logits_alone[0, :n])
  alone_a, alone_b = alone
  np.testing.assert_allclose(logits[0, :11], alone_a, atol=1e-5)
  np.testing.assert_allclose(logits[0, 11:20], alone_b, atol=1e-5)
  # Without segment ids, b would see a: the check above is not vacuous.
  leaky, _ = _run(cfg, params, packed, positions, np.ones_like(segments))
  assert np.abs(np.asarray(leaky[0, 11:20]) - np.asarray(alone_b)).max() > 1e-3


def test_right_padded_prefill_then_cached_decode():
  cfg = tiny_config("olmo3")  # sliding layers + cache gap slots
  params = decoder.init_params(cfg, jax.random.PRNGKey(2))
  rng = np.random.default_rng(1)
  lengths = [12, 7]
  tokens = np.zeros((2, 12), np.int32)
  segments = np.zeros((2, 12), np.int32)
  for row, n in enumerate(lengths):
    tokens[row, :n] = rng.integers(1, cfg.vocab_size, n)
    segments[row, :n] = 1
  positions = np.tile(np.arange(12), (2, 1)) * segments
  cache = decoder.init_cache(cfg, 2, 20)
  prefill, cache = _run(cfg, params, tokens, positions, segments, cache)
  assert int(cache.index) == 12
  next_tokens = rng.integers(1, cfg.vocab_size, (2, 3))
  step_logits = []
  for step in range(3):
    pos = np.array([[lengths[0] + step], [lengths[1] + step]])
    logits, cache = _run(cfg, params, next_tokens[:, step:step + 1], pos, np.ones((2, 1), int),
                         cache)
    step_logits.append(logits[:, 0])
  assert int(cache.index) == 15
  for row, n in enumerate(lengths):
    seq = np.concatenate([tokens[row, :n], next_tokens[row]])[None]
    alone, _ = _run(cfg, params, seq, np.arange(n + 3)[None], np.ones((1, n + 3), int))
    np.testing.assert_allclose(prefill[row, :n], alone[0, :n], atol=1e-5)
    np.testing.assert_allclose(np.stack([s[row] for s in step_logits]), alone[0, n:],
                               atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_param_count_dtypes_and_logical_axes(family):
  cfg = tiny_config(family, dtype="bfloat16")
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  leaves = jax.tree.leaves(params)
  assert sum(x.size for x in leaves) == cfg.num_params()
  assert {x.dtype for x in leaves} == {jnp.dtype("float32")}
  axes = decoder.logical_axes(cfg)
  shapes = jax.tree.map(lambda x: x.shape, params)
  allowed = {"vocab", "embed", "heads", "kv_heads", "kv", "mlp", "heads_kv", "kv_heads_kv"}
  for shape, spec in zip(jax.tree.leaves(shapes, is_leaf=lambda s: isinstance(s, tuple)),
                         jax.tree.leaves(axes, is_leaf=lambda s: isinstance(s, PartitionSpec))):
    assert len(spec) == len(shape) and set(spec) <= allowed, (spec, shape)


def test_bfloat16_compute_with_float32_params():
  cfg = tiny_config("gemma3", dtype="bfloat16")
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  tokens = jnp.arange(10).reshape(2, 5) + 1
  pos, seg = jnp.tile(jnp.arange(5), (2, 1)), jnp.ones((2, 5), jnp.int32)
  logits, _ = _run(cfg, params, tokens, pos, seg)
  assert logits.dtype == jnp.float32
  f32, _ = _run(cfg.replace(dtype="float32"), params, tokens, pos, seg)
  np.testing.assert_allclose(logits, f32, atol=0.05)
  cache = decoder.init_cache(cfg, 2, 8)
  assert cache.k[0].dtype == jnp.bfloat16


def test_remat_matches_and_gradients_reach_every_param():
  cfg = tiny_config("gemma3")
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  tokens = jnp.arange(16).reshape(2, 8) % cfg.vocab_size + 1
  pos, seg = jnp.tile(jnp.arange(8), (2, 1)), jnp.ones((2, 8), jnp.int32)

  def loss(p, c):
    logits, _ = decoder.Decoder(c).apply({"params": p}, tokens, pos, seg)
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  grad_fn = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  value, grads = grad_fn(params, cfg)
  value_remat, grads_remat = grad_fn(params, cfg.replace(remat=True))
  np.testing.assert_allclose(value, value_remat, rtol=1e-6)
  for g, gr in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_remat)):
    assert np.abs(np.asarray(g)).max() > 0
    np.testing.assert_allclose(g, gr, atol=1e-6)


def test_sharded_forward_over_mesh_matches_single_device():
  cfg = tiny_config("qwen3")
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  tokens = jnp.arange(32).reshape(4, 8) % cfg.vocab_size
  pos, seg = jnp.tile(jnp.arange(8), (4, 1)), jnp.ones((4, 8), jnp.int32)
  expected, _ = _run(cfg, params, tokens, pos, seg)
  devices = np.array(jax.devices()[:8]).reshape(2, 2, 2)
  mesh = Mesh(devices, ("data", "fsdp", "tensor"))
  rules = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"),
           ("heads", "tensor"), ("kv_heads", "tensor"), ("vocab", "tensor"))
  shardings = nn.logical_to_mesh_sharding(decoder.logical_axes(cfg), mesh, rules)
  sharded_params = jax.device_put(params, shardings)
  assert sharded_params["embed_tokens"]["embedding"].sharding.spec == PartitionSpec(
      "tensor", "fsdp")
  with mesh, nn.logical_axis_rules(rules):
    logits, _ = jax.jit(
        lambda p: decoder.Decoder(cfg).apply({"params": p}, tokens, pos, seg))(sharded_params)
  assert isinstance(logits.sharding, NamedSharding)
  np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_forward_traced_under_mesh_with_trainer_rules_applies_constraints():
  """jax.set_mesh + the trainer's logical rules (as the trainer and sampler
  trace): multi-dimensional q/k/v/o kernels must not break tracing, the
  activation constraints must reach the jaxpr and HLO, and logits match."""
  from sftdiff import partitioning
  cfg = tiny_config("qwen3", attention_bias=True)  # head QK-norm and q/k/v/o biases
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  tokens = jnp.arange(32).reshape(4, 8) % cfg.vocab_size
  pos, seg = jnp.tile(jnp.arange(8), (4, 1)), jnp.ones((4, 8), jnp.int32)
  expected, _ = _run(cfg, params, tokens, pos, seg)
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), partitioning.MESH_AXES)
  rules = partitioning.PartitionConfig().rules
  sharded_params = jax.device_put(
      params, partitioning.logical_to_sharding(decoder.logical_axes(cfg), mesh, rules))
  forward = lambda p: decoder.Decoder(cfg).apply({"params": p}, tokens, pos, seg)[0]
  with partitioning.tracing_context(mesh, rules, True):
    jaxpr = str(jax.make_jaxpr(forward)(sharded_params))
    jitted = jax.jit(forward)
    hlo = jitted.lower(sharded_params).as_text()
    logits = jitted(sharded_params)
  # Every layer constrains its q/k/v, attention output, MLP hidden and residuals.
  assert jaxpr.count("sharding_constraint") >= 7 * cfg.num_layers, jaxpr
  # ... and survive lowering (StableHLO/Shardy `sdy.sharding_constraint`, or GSPMD's
  # `custom_call @Sharding` with older partitioners).
  assert max(hlo.count("sharding_constraint"), hlo.count("@Sharding")) >= 7 * cfg.num_layers
  # Without the mesh the same trace has no constraints: the check is not vacuous.
  with partitioning.tracing_context(mesh, rules, False):
    assert "sharding_constraint" not in str(jax.make_jaxpr(forward)(sharded_params))
  np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_init_is_deterministic():
  cfg = tiny_config("llama")
  a = decoder.init_params(cfg, jax.random.PRNGKey(3))
  b = decoder.init_params(cfg, jax.random.PRNGKey(3))
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_bad_inputs_are_named():
  cfg = tiny_config("llama")
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  model = decoder.Decoder(cfg)
  ones = jnp.ones((1, 4), jnp.int32)
  with pytest.raises(ValueError, match=r"must all be \[batch, length\].*'positions': \(1, 3\)"):
    model.apply({"params": params}, ones, ones[:, :3], ones)
  cache = decoder.init_cache(cfg, 1, 6)
  _, cache = model.apply({"params": params}, ones, ones, ones, cache)
  with pytest.raises(ValueError, match=r"overflows the cache \(max_len 6\)"):
    model.apply({"params": params}, ones, ones, ones, cache)


def test_attention_impl_is_validated():
  with pytest.raises(ValueError, match=r"attention_impl='flash' must be one of"):
    tiny_config("llama").replace(attention_impl="flash")
  with pytest.raises(ValueError, match=r"'cudnn' needs dtype bfloat16/float16"):
    tiny_config("llama").replace(dtype="float32", attention_impl="cudnn")


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_causal_blocks_attention_matches_xla_on_packed_rows(family):
  # 151 tokens: blocks of 64, 64 and 23; gemma3 adds sliding layers and soft-capping.
  cfg = tiny_config(family, max_position_embeddings=256)
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  def row(lengths):
    seg = np.concatenate([np.full(n, i + 1) for i, n in enumerate(lengths)] + [np.zeros(9)])
    return np.concatenate([np.arange(n) for n in lengths] + [np.zeros(9)]), seg
  (pos_a, seg_a), (pos_b, seg_b) = row([40, 70, 32]), row([12, 7, 100, 23])
  pos, seg = np.stack([pos_a, pos_b]).astype(np.int32), np.stack([seg_a, seg_b]).astype(np.int32)
  tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(1), seg.shape, 1, cfg.vocab_size))

  def loss_and_grad(impl):
    def loss(p):
      logits, _ = decoder.Decoder(cfg.replace(attention_impl=impl)).apply(
          {"params": p}, tokens, pos, seg)
      return jnp.sum(jnp.where(seg[..., None] > 0, jax.nn.log_softmax(logits), 0.0)[..., 0])
    return jax.jit(jax.value_and_grad(loss))(params)

  (ref_loss, ref_grads), (loss, grads) = loss_and_grad("xla"), loss_and_grad("xla_causal_blocks")
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.max(jnp.abs(want))) + 1e-7)
  # The blocks are not the whole row: with a key after its query visible (a
  # mask that is not causal in index order) the two differ.
  reversed_pos = np.where(seg > 0, 200 - np.arange(151), 0).astype(np.int32)
  outs = [decoder.Decoder(cfg.replace(attention_impl=impl)).apply(
      {"params": params}, tokens, reversed_pos, seg)[0] for impl in ("xla", "xla_causal_blocks")]
  assert float(jnp.max(jnp.abs(outs[0] - outs[1]))) > 1e-3


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs a GPU")
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_cudnn_attention_matches_xla_on_packed_rows(family):
  cfg = tiny_config(family).replace(dtype="bfloat16", num_heads=4, num_kv_heads=2,
                                    head_dim=64)
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  seg = jnp.array([[1] * 9 + [2] * 15 + [0] * 8] * 2, jnp.int32)
  pos = jnp.array([list(range(9)) + list(range(15)) + [0] * 8] * 2, jnp.int32)
  tokens = jax.random.randint(jax.random.PRNGKey(1), seg.shape, 1, cfg.vocab_size)
  ref, _ = decoder.Decoder(cfg).apply({"params": params}, tokens, pos, seg)
  out, _ = decoder.Decoder(cfg.replace(attention_impl="cudnn")).apply(
      {"params": params}, tokens, pos, seg)
  valid = np.asarray(seg) > 0
  np.testing.assert_allclose(np.asarray(out)[valid], np.asarray(ref)[valid], atol=0.1, rtol=0.05)
