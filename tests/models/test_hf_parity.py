"""Parity of the JAX decoder with transformers (torch CPU, float32) for every
family: logits on a left-padded batch, 20 greedy tokens through our KV cache,
and export back to transformers (single file and sharded)."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sftdiff.models import decoder, hf_io  # noqa: E402

VOCAB = 128
NEW_TOKENS = 20
SLIDING, FULL = "sliding_attention", "full_attention"
_COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
               bos_token_id=None, eos_token_id=None, pad_token_id=0)


def _hf_config(family):
  if family == "llama":  # llama3 rope scaling with a short original context
    return transformers.LlamaConfig(
        num_hidden_layers=2, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=16), **_COMMON)
  if family == "qwen3":  # tied embeddings
    return transformers.Qwen3Config(
        num_hidden_layers=2, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0), **_COMMON)
  if family == "gemma3":  # sliding window 8, local/global bases, tied, query scalar
    return transformers.Gemma3TextConfig(
        num_hidden_layers=3, layer_types=[SLIDING, SLIDING, FULL], sliding_window=8,
        query_pre_attn_scalar=24, tie_word_embeddings=True,
        rope_parameters={SLIDING: dict(rope_type="default", rope_theta=10000.0),
                         FULL: dict(rope_type="default", rope_theta=1000000.0)}, **_COMMON)
  if family == "olmo2":
    return transformers.Olmo2Config(
        num_hidden_layers=2, rope_parameters=dict(rope_type="default", rope_theta=500000.0),
        **_COMMON)
  if family == "olmo3":  # sliding window 8 on two of three layers
    return transformers.Olmo3Config(
        num_hidden_layers=3, layer_types=[SLIDING, SLIDING, FULL], sliding_window=8,
        **_COMMON)
  if family == "olmo3_yarn":  # YaRN on the global layer, as OLMo 3 ships
    return transformers.Olmo3Config(
        num_hidden_layers=3, layer_types=[SLIDING, SLIDING, FULL], sliding_window=8,
        rope_parameters={SLIDING: dict(rope_type="default", rope_theta=100000.0),
                         FULL: dict(rope_type="yarn", rope_theta=100000.0, factor=8.0,
                                    original_max_position_embeddings=16,
                                    attention_factor=1.2, beta_fast=32.0, beta_slow=1.0)},
        **_COMMON)
  if family == "gemma3_linear":  # linear RoPE scaling on global layers (Gemma 3 4B+)
    return transformers.Gemma3TextConfig(
        num_hidden_layers=2, layer_types=[SLIDING, FULL], sliding_window=8,
        rope_parameters={SLIDING: dict(rope_type="default", rope_theta=10000.0),
                         FULL: dict(rope_type="linear", rope_theta=1000000.0, factor=8.0)},
        **_COMMON)
  if family == "qwen3_bias":  # attention_bias on q/k/v/o
    return transformers.Qwen3Config(
        num_hidden_layers=2, attention_bias=True, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0), **_COMMON)
  raise ValueError(family)


FAMILIES = ["llama", "qwen3", "gemma3", "olmo2", "olmo3"]


@functools.lru_cache(maxsize=None)
def _hf_model(family):
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(
      _hf_config(family), attn_implementation="eager", dtype=torch.float32)
  with torch.no_grad():  # perturb every weight so norms (ones / zeros) are not trivial
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.1)
  return model.eval()


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
  cache = {}

  def get(family):
    if family not in cache:
      path = tmp_path_factory.mktemp(f"hf_{family}")
      _hf_model(family).save_pretrained(path, safe_serialization=True)
      cache[family] = path
    return cache[family]
  return get


def _batch():
  """Two prompts of 14 tokens, the second left-padded by 5."""
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, VOCAB, size=(2, 14)).astype(np.int64)
  mask = np.ones_like(tokens)
  mask[1, :5] = 0
  tokens[1, :5] = 0
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
  return tokens, mask, positions


def _hf_logits(model, tokens, mask, positions):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(positions))
  return out.logits.float().numpy()


def _load(path):
  return hf_io.load_hf_checkpoint(path, param_dtype="float32", dtype="float32")


def _greedy(cfg, params, tokens, mask, positions, steps):
  """Prefill then one token at a time through the KV cache; returns the new
  tokens [B, steps] and the logits of each decode call [B, steps, V]."""
  model = decoder.Decoder(cfg)
  apply = jax.jit(lambda p, t, pos, seg, c: model.apply({"params": p}, t, pos, seg, c))
  cache = decoder.init_cache(cfg, tokens.shape[0], tokens.shape[1] + steps)
  logits, cache = apply(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask),
                        cache)
  step_logits, new_tokens = [logits[:, -1]], []
  position = jnp.asarray(positions[:, -1:])
  segment = jnp.ones((tokens.shape[0], 1), jnp.int32)
  for _ in range(steps):
    token = jnp.argmax(step_logits[-1], axis=-1)[:, None]
    new_tokens.append(token)
    position = position + 1
    logits, cache = apply(params, token, position, segment, cache)
    step_logits.append(logits[:, -1])
  return np.concatenate(new_tokens, 1), np.stack(step_logits[:-1], 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_and_greedy_match_transformers(family, hf_dirs):
  model = _hf_model(family)
  cfg, params = _load(hf_dirs(family))
  assert cfg.family == family
  tokens, mask, positions = _batch()

  ours, _ = decoder.Decoder(cfg).apply({"params": params}, tokens, positions, mask)
  theirs = _hf_logits(model, tokens, mask, positions)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(ours)[real], theirs[real], atol=1e-4, rtol=0)

  with torch.no_grad():
    generated = model.generate(
        input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
  expected = generated[:, tokens.shape[1]:].numpy()
  new_tokens, step_logits = _greedy(cfg, params, tokens, mask, positions, NEW_TOKENS)
  np.testing.assert_array_equal(new_tokens, expected)

  # Decoding through the cache gives the same logits as one full forward pass.
  full_tokens = np.concatenate([tokens, new_tokens], 1)
  full_mask = np.concatenate([mask, np.ones_like(new_tokens)], 1)
  full_positions = np.maximum(np.cumsum(full_mask, -1) - 1, 0)
  full, _ = decoder.Decoder(cfg).apply({"params": params}, full_tokens, full_positions, full_mask)
  start = tokens.shape[1] - 1
  np.testing.assert_allclose(step_logits, np.asarray(full)[:, start:start + NEW_TOKENS],
                             atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["olmo3_yarn", "gemma3_linear", "qwen3_bias"])
def test_variants_match_transformers(variant, hf_dirs):
  cfg, params = _load(hf_dirs(variant))
  if variant == "qwen3_bias":
    assert cfg.attention_bias and "bias" in params["layers_0"]["attn"]["o_proj"]
  else:
    assert cfg.rope_scaling_dict["rope_type"] in variant
  tokens, mask, positions = _batch()
  ours, _ = decoder.Decoder(cfg).apply({"params": params}, tokens, positions, mask)
  theirs = _hf_logits(_hf_model(variant), tokens, mask, positions)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(ours)[real], theirs[real], atol=1e-4, rtol=0)


def test_sliding_window_is_exercised(hf_dirs):
  """The gemma3/olmo3 configs are only a real test if the window truncates
  context: a prompt longer than the window changes sliding layers' output."""
  cfg, params = _load(hf_dirs("gemma3"))
  assert cfg.sliding_window == 8 and cfg.layer_types[0] == SLIDING
  tokens, mask, positions = _batch()
  windowed, _ = decoder.Decoder(cfg).apply({"params": params}, tokens, positions, mask)
  unwindowed_cfg = cfg.replace(sliding_window=10_000)
  unwindowed, _ = decoder.Decoder(unwindowed_cfg).apply({"params": params}, tokens, positions,
                                                         mask)
  diff = np.abs(np.asarray(windowed) - np.asarray(unwindowed)).max(-1)
  real = mask.astype(bool)
  assert diff[real & (positions < 8)].max() < 1e-5  # inside the window nothing changes
  assert diff[real & (positions >= 8)].min() > 1e-3  # beyond it, the window matters


@pytest.mark.parametrize("family", ["llama", "gemma3_linear", "olmo3_yarn"])
def test_export_round_trip_loads_in_transformers(family, hf_dirs, tmp_path):
  cfg, params = _load(hf_dirs(family))
  tokens, mask, positions = _batch()
  expected = _hf_logits(_hf_model(family), tokens, mask, positions)

  files = hf_io.save_hf_checkpoint(tmp_path / "single", cfg, params)
  assert files == ["model.safetensors"]
  sharded = hf_io.save_hf_checkpoint(tmp_path / "sharded", cfg, params, max_shard_bytes=40_000)
  assert len(sharded) >= 2
  index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
  assert sorted(set(index["weight_map"].values())) == sorted(sharded)

  real = mask.astype(bool)
  for sub in ("single", "sharded"):
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / sub, attn_implementation="eager", dtype=torch.float32).eval()
    assert type(reloaded) is type(_hf_model(family))
    got = _hf_logits(reloaded, tokens, mask, positions)
    np.testing.assert_allclose(got[real], expected[real], atol=1e-5, rtol=0)
    cfg_again, params_again = _load(tmp_path / sub)
    assert cfg_again == cfg
    jax.tree.map(np.testing.assert_array_equal, params_again, params)


def test_bfloat16_export_and_import(hf_dirs, tmp_path):
  cfg, params = _load(hf_dirs("qwen3"))
  hf_io.save_hf_checkpoint(tmp_path, cfg, params, dtype="bfloat16")
  assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
  cfg_bf16, params_bf16 = hf_io.load_hf_checkpoint(tmp_path)
  assert cfg_bf16.param_dtype == "float32"
  leaf = params_bf16["layers_0"]["attn"]["q_proj"]["kernel"]
  assert leaf.dtype == np.float32
  rounded = np.asarray(params["layers_0"]["attn"]["q_proj"]["kernel"]).astype(jnp.bfloat16)
  np.testing.assert_array_equal(leaf, rounded.astype(np.float32))
  _, params_as_bf16 = hf_io.load_hf_checkpoint(tmp_path, param_dtype="bfloat16")
  assert params_as_bf16["embed_tokens"]["embedding"].dtype == jnp.bfloat16
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
  assert reloaded.config.tie_word_embeddings
