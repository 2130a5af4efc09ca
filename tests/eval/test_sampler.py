"""Sampler: parity with transformers greedy, reproducibility, stops, buckets, mesh."""

import dataclasses

import jax
import pytest

from sftdiff.data.tokenizer import ChatTokenizer
from sftdiff.eval import sampler as sampler_mod
from sftdiff.eval.sampler import Sampler, SamplerConfig, bucket, truncate_at_stop_strings
from sftdiff.eval.types import Request, SamplingParams
from sftdiff.models.hf_io import load_hf_checkpoint
from sftdiff.testing.models import write_random_hf_checkpoint
from sftdiff.testing.tokenizer import write_test_tokenizer

PROMPTS = ["What year is it?",
           "Please write a short poem about the sea and the waves calling you.",
           "Hi"]
MAX_NEW = 10


def _requests(texts, **kw):
  return [Request([{"role": "user", "content": t}], **kw) for t in texts]


_MODELS = {}


def _make_model(name, tmp_path_factory):
  """`name` is a family, or `gemma3_one_kv_head` (the cache drops its kv axis)."""
  if name not in _MODELS:
    family, kw = (("gemma3", {"num_kv_heads": 1}) if name == "gemma3_one_kv_head"
                  else (name, {}))
    d = tmp_path_factory.mktemp(f"m_{name}")
    write_test_tokenizer(str(d))
    tok = ChatTokenizer.from_dir(str(d))
    write_random_hf_checkpoint(d, family, vocab_size=tok.vocab_size, seed=1, **kw)
    cfg, params = load_hf_checkpoint(d, dtype="float32")
    _MODELS[name] = (d, cfg, params, tok)
  return _MODELS[name]


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request, tmp_path_factory):
  return _make_model(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
  return _make_model("llama", tmp_path_factory)


_SAMPLERS = {}
_HF = {}


def _sampler(model, **config):
  """Samplers are cached per (model, config): each one compiles its buckets once."""
  d, cfg, params, tok = model
  key = (str(d), tuple(sorted(config.items())))
  if key not in _SAMPLERS:
    _SAMPLERS[key] = Sampler(cfg, params, tok, sampler_config=SamplerConfig(**config))
  return _SAMPLERS[key]


def _hf_greedy(d, tok, texts):
  if (str(d), tuple(texts)) not in _HF:
    _HF[(str(d), tuple(texts))] = _hf_greedy_uncached(d, tok, texts)
  return _HF[(str(d), tuple(texts))]


def _hf_greedy_uncached(d, tok, texts):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  m = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
  out = []
  for r in _requests(texts):
    ids = tok.encode_prompt(r.messages)
    g = m.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                   do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=list(tok.stop_ids),
                   pad_token_id=tok.pad_id)
    new = [t for t in g[0, len(ids):].tolist()]
    stop = next((i for i, t in enumerate(new) if t in tok.stop_ids), None)
    out.append(tuple(new[:stop]))
  return out


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_greedy_matches_transformers(model, padding_side):
  d, cfg, params, tok = model
  sampler = _sampler(model, padding_side=padding_side)
  got = sampler.generate(_requests(PROMPTS), SamplingParams(max_new_tokens=MAX_NEW, temperature=0.0))
  want = _hf_greedy(d, tok, PROMPTS)
  assert [c[0].token_ids for c in got] == want
  assert all(c[0].text == tok.decode(c[0].token_ids) for c in got)


def test_sampling_reproducible_and_independent_of_batch(llama):
  model = llama
  _, cfg, params, tok = model
  sampler = _sampler(model, min_prompt_bucket=32)
  sp = SamplingParams(max_new_tokens=MAX_NEW, temperature=1.0, top_p=0.9, top_k=40)
  alone = sampler.generate([Request(_requests(PROMPTS[:1])[0].messages, n=3, seed=7)], sp)[0]
  mixed_reqs = [Request(r.messages, n=2, seed=i) for i, r in enumerate(_requests(PROMPTS))]
  mixed_reqs.insert(1, Request(_requests(PROMPTS[:1])[0].messages, n=3, seed=7))
  mixed = sampler.generate(mixed_reqs, sp)[1]
  assert [c.token_ids for c in alone] == [c.token_ids for c in mixed]
  again = sampler.generate([Request(_requests(PROMPTS[:1])[0].messages, n=3, seed=7)], sp)[0]
  assert alone == again
  # The n samples differ from one another, and another seed gives others.
  assert len({c.token_ids for c in alone}) > 1
  other = sampler.generate([Request(_requests(PROMPTS[:1])[0].messages, n=3, seed=8)], sp)[0]
  assert [c.token_ids for c in other] != [c.token_ids for c in alone]


def test_stop_ids_stop_early_and_stop_strings_truncate(llama):
  model = llama
  _, cfg, params, tok = model
  greedy = SamplingParams(max_new_tokens=MAX_NEW, temperature=0.0)
  base = _sampler(model, padding_side="left").generate(_requests(PROMPTS[:1]), greedy)[0][0]
  assert base.finish_reason == "length" and len(base.token_ids) == MAX_NEW
  stop_tok = base.token_ids[3]
  first = base.token_ids.index(stop_tok)
  tok2 = dataclasses.replace(tok, stop_ids=tuple(tok.stop_ids) + (stop_tok,))
  s2 = Sampler(cfg, params, tok2)
  out = s2.generate(_requests(PROMPTS[:1]), greedy)[0][0]
  assert out.token_ids == base.token_ids[:first] and out.finish_reason == "stop"
  # Stop strings: truncate at the earliest match.
  text = base.text
  needle = text[len(text) // 2:len(text) // 2 + 2]
  sp = dataclasses.replace(greedy, stop_strings=(needle, "\x00never"))
  got = _sampler(model, padding_side="left").generate(_requests(PROMPTS[:1]), sp)[0][0]
  assert got.text == text[:text.find(needle)] and got.finish_reason == "stop"
  assert truncate_at_stop_strings("abcSTOPdef", ["def", "STOP"]) == ("abc", True)


def test_bucketing_bounds_compiles(llama):
  _, cfg, params, tok = llama
  # A fresh jit (it is otherwise shared per model config across tests), so the
  # counts below do not depend on which tests ran before in this process.
  sampler_mod._compiled_generate.cache_clear()
  sampler = Sampler(cfg, params, tok, sampler_config=SamplerConfig(max_batch_size=4))
  texts = [("word " * k).strip() for k in range(1, 12)]
  first = SamplingParams(max_new_tokens=5, temperature=0.7)
  sampler.generate(_requests(texts), first)
  first_keys = sampler.bucket_shapes(_requests(texts), first)
  # 11 prompts in batches of 4: one compile per distinct bucket, not per batch.
  assert sampler.num_compiles == len(first_keys) < 3
  # Other prompts, lengths and sampling settings within the same buckets:
  # no new compilation.
  others = [t.replace("word", "more") for t in reversed(texts)]
  second = SamplingParams(max_new_tokens=9, temperature=0.0, top_p=0.5, top_k=3)
  assert sampler.bucket_shapes(_requests(others), second) <= first_keys
  sampler.generate(_requests(others), second)
  assert sampler.num_compiles == len(first_keys)
  # A prompt past the largest bucket so far compiles exactly one more.
  sampler.generate(_requests(["word " * 40]), SamplingParams(max_new_tokens=5))
  assert sampler.num_compiles == len(first_keys) + 1
  assert bucket(17, 16, 1) == 32 and bucket(3, 16, 1) == 16 and bucket(64, 16, 1) == 64


def test_prompt_bucket_ladder():
  assert [bucket(n, 16, 2) for n in (3, 17, 25, 33, 49, 73, 129)] == [16, 24, 32, 48, 64, 96, 192]
  assert [bucket(n, 16, 4) for n in (17, 73, 100, 128)] == [20, 80, 112, 128]
  # At most `per_octave` sizes per octave: a bounded number of compiles.
  assert len({bucket(n, 16, 2) for n in range(1, 1025)}) == 1 + 2 * 6
  with pytest.raises(ValueError, match="prompt_buckets_per_octave"):
    SamplerConfig(prompt_buckets_per_octave=3)


def test_greedy_rows_identical_across_bucket_ladders(model):
  """The finer ladder only removes padding: greedy rows equal the power-of-two
  buckets' (prompts of several lengths, both padding sides)."""
  _, cfg, params, tok = model
  no_stop = dataclasses.replace(tok, stop_ids=())
  texts = PROMPTS + [("sea " * k).strip() for k in (9, 15, 23)]
  sp = SamplingParams(max_new_tokens=MAX_NEW, temperature=0.0)
  for side in ("left", "right"):
    rows = []
    for per_octave in (1, 2, 4):
      sampler = Sampler(cfg, params, no_stop, sampler_config=SamplerConfig(
          padding_side=side, prompt_buckets_per_octave=per_octave, max_batch_size=2))
      rows.append([c[0].token_ids for c in sampler.generate(_requests(texts), sp)])
    assert rows[0] == rows[1] == rows[2], side
    assert all(len(r) == MAX_NEW for r in rows[0])


def test_sharded_over_mesh_matches_single_device(llama):
  model = llama
  _, cfg, params, tok = model
  from sftdiff import partitioning
  mesh = partitioning.make_mesh(partitioning.PartitionConfig(ici_mesh_shape=(4, 1, 2)))
  greedy = SamplingParams(max_new_tokens=MAX_NEW, temperature=0.0)
  sharded = Sampler(cfg, params, tok, mesh=mesh)
  got = sharded.generate(_requests(PROMPTS), greedy)
  want = _sampler(model, padding_side="left").generate(_requests(PROMPTS), greedy)
  assert [c[0].token_ids for c in got] == [c[0].token_ids for c in want]
  leaf = jax.tree.leaves(sharded.params)[0]
  assert len(leaf.sharding.device_set) == 8


def _per_step_greedy(cfg, params, prompt_ids, steps):
  """Reference: one uncached forward over the whole sequence per new token
  (right-padded to a fixed length, padding as segment 0: one compile)."""
  import jax.numpy as jnp
  import numpy as np
  from sftdiff.models.decoder import Decoder
  apply = jax.jit(lambda p, t, pos, seg: Decoder(cfg).apply({"params": p}, t, pos, seg)[0])
  width = len(prompt_ids) + steps
  ids = list(prompt_ids)
  for _ in range(steps):
    n = len(ids)
    tokens = np.zeros((1, width), np.int32)
    tokens[0, :n] = ids
    seg = (np.arange(width) < n).astype(np.int32)[None]
    logits = apply(params, tokens, np.arange(width)[None] * seg, seg)
    ids.append(int(jnp.argmax(logits[0, n - 1])))
  return tuple(ids[len(prompt_ids):])


@pytest.fixture(scope="module", params=["llama", "gemma3", "gemma3_one_kv_head"])
def decode_model(request, tmp_path_factory):
  return _make_model(request.param, tmp_path_factory)


def test_compiled_decode_loop_equals_per_step_recompute(decode_model):
  """The jitted while-loop decode with the KV cache (both padding sides, a
  batch of prompts of different lengths) gives, token for token, the greedy
  rows of recomputing the uncached model once per step."""
  d, cfg, params, tok = decode_model
  from sftdiff.models.decoder import init_cache
  assert init_cache(cfg, 1, 4).k[0].ndim == (3 if cfg.num_kv_heads == 1 else 4)
  no_stop = dataclasses.replace(tok, stop_ids=())
  reqs = _requests(PROMPTS)
  want = [_per_step_greedy(cfg, params, Sampler(cfg, params, no_stop).encode(r), MAX_NEW)
          for r in reqs]
  for side in ("left", "right"):
    sampler = Sampler(cfg, params, no_stop, sampler_config=SamplerConfig(padding_side=side))
    got = sampler.generate(reqs, SamplingParams(max_new_tokens=MAX_NEW, temperature=0.0))
    assert [c[0].token_ids for c in got] == want, side


def test_row_keys_are_the_documented_fold_ins():
  """Keys built inside the jit equal fold_in(fold_in(PRNGKey(0), seed), sample)."""
  import numpy as np
  from sftdiff.eval.sampler import row_keys
  seeds, samples = [0, 7, 123456789, 0xFFFFFFFF], [0, 3, 1, 2]
  got = row_keys(np.array(seeds, np.uint32), np.array(samples, np.int32))
  want = [jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), s), i)
          for s, i in zip(seeds, samples)]
  assert np.array_equal(np.asarray(got), np.stack([np.asarray(k) for k in want]))


def test_greedy_tokens_equals_argmax_with_ties():
  import numpy as np
  from sftdiff.eval.sampler import greedy_tokens
  rng = np.random.default_rng(0)
  for vocab in (512, 4096, 128256, 1000):
    logits = rng.integers(-3, 4, size=(5, vocab)).astype(np.float32)  # many ties
    logits[1, :] = 0.0
    logits[2, vocab - 1] = 9.0
    assert np.array_equal(np.asarray(greedy_tokens(jax.numpy.asarray(logits))),
                          logits.argmax(-1))
