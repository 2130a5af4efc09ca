"""Real weights: Gemma 3 270M converted from GGUF by `sftdiff.models.convert`,
checked against transformers (its own GGUF loader for the conversion, torch
float32 for the forward pass and greedy decoding).

All tests share one xdist group (`make test` runs `--dist loadgroup`), so two
of these ~2-3 GB processes never run at once."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sftdiff.data.tokenizer import ChatTokenizer  # noqa: E402
from sftdiff.eval.sampler import Sampler  # noqa: E402
from sftdiff.eval.types import Request, SamplingParams  # noqa: E402
from sftdiff.models import decoder, hf_io  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

MIXED_TEXTS = [
    "Hello world, 你好  x\n\ny",
    "<start_of_turn>user\nWhat's 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "def f(x):\n    return x**2  # ok\t\ttab",
    "Ünïcødé ñ 😀 🤖 <table><tr><td>1</td></tr></table>",
    "   leading spaces and trailing   ",
    "Москва — столица России. 東京は日本の首都です。 नमस्ते",
    "a" * 50 + " " + "1234567890" * 3,
]
TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes "
        "Gutenberg combined movable metal type, oil-based ink and a wooden press. ")


@functools.lru_cache(maxsize=None)
def _hf_model(path):
  return transformers.AutoModelForCausalLM.from_pretrained(
      str(path), dtype=torch.float32, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def tokenizer(gemma3_hf_dir):
  return ChatTokenizer.from_dir(gemma3_hf_dir)


@pytest.fixture(scope="module")
def ours(gemma3_hf_dir):
  return hf_io.load_hf_checkpoint(gemma3_hf_dir, param_dtype="float32", dtype="float32")


def test_conversion_equals_transformers_gguf_loader(gemma3_gguf, gemma3_hf_dir):
  """Every tensor equals transformers' own GGUF dequantization (norms
  included: both undo llama.cpp's stored 1 + w)."""
  pytest.importorskip("accelerate")
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(gemma3_gguf.parent), gguf_file=gemma3_gguf.name, dtype=torch.float32)
  ref = reference.state_dict()
  got = _hf_model(gemma3_hf_dir).state_dict()
  assert set(ref) == set(got)
  for name in ref:
    np.testing.assert_array_equal(got[name].numpy(), ref[name].numpy(), err_msg=name)
  cfg_ref, cfg_got = reference.config, _hf_model(gemma3_hf_dir).config
  for field in ("vocab_size", "hidden_size", "num_hidden_layers", "head_dim", "sliding_window",
                "layer_types", "query_pre_attn_scalar", "rope_parameters"):
    assert getattr(cfg_got, field) == getattr(cfg_ref, field), field


def test_tokenizer_matches_transformers(gemma3_gguf, gemma3_hf_dir, tokenizer):
  from_gguf = transformers.AutoTokenizer.from_pretrained(
      str(gemma3_gguf.parent), gguf_file=gemma3_gguf.name)
  from_dir = transformers.AutoTokenizer.from_pretrained(str(gemma3_hf_dir))
  for text in MIXED_TEXTS:
    want = from_gguf(text, add_special_tokens=False).input_ids
    assert tokenizer.encode(text) == want, text
    assert from_dir(text, add_special_tokens=False).input_ids == want, text
    assert tokenizer.decode(want, skip_special_tokens=False) == text
  assert from_dir("hi").input_ids[0] == from_gguf("hi").input_ids[0] == 2  # <bos>
  assert tokenizer.token_to_id("<end_of_turn>") in tokenizer.stop_ids


def _padded_batch(tokenizer):
  """Three rows right-padded to 640: one of 600 tokens (past the 512-token
  sliding window), one of 40, one of 7."""
  long_ids = tokenizer.encode(TEXT * 30, add_special_tokens=True)[:600]
  rows = [long_ids, tokenizer.encode(TEXT[:200], add_special_tokens=True)[:40],
          tokenizer.encode("Paris is the capital of", add_special_tokens=True)]
  length = 640
  tokens = np.zeros((len(rows), length), np.int64)
  mask = np.zeros_like(tokens)
  for i, ids in enumerate(rows):
    tokens[i, :len(ids)], mask[i, :len(ids)] = ids, 1
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0) * mask
  return tokens, mask, positions


def _our_logits(cfg, params, tokens, mask, positions):
  model = decoder.Decoder(cfg)
  fn = jax.jit(lambda p, t, pos, seg: model.apply({"params": p}, t, pos, seg)[0])
  return np.asarray(fn(params, jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32),
                       jnp.asarray(mask, jnp.int32)))


def test_float32_logits_match_transformers_past_sliding_window(gemma3_hf_dir, ours, tokenizer):
  cfg, params = ours
  assert cfg.sliding_window == 512
  tokens, mask, positions = _padded_batch(tokenizer)
  with torch.no_grad():
    want = _hf_model(gemma3_hf_dir)(
        input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
        position_ids=torch.tensor(positions)).logits.numpy()
  got = _our_logits(cfg, params, tokens, mask, positions)
  real = mask.astype(bool)
  diff = np.abs(got[real] - want[real])
  assert diff.max() <= 2e-4, f"max abs diff {diff.max()}"
  np.testing.assert_array_equal(got[real].argmax(-1), want[real].argmax(-1))
  # bf16 compute (float32 params): teacher-forced top-1 agreement >= 99%.
  got_bf16 = _our_logits(cfg.replace(dtype="bfloat16"), params, tokens, mask, positions)
  agree = np.mean(got_bf16[real].argmax(-1) == want[real].argmax(-1))
  assert agree >= 0.99, f"bf16 top-1 agreement {agree:.4f}"


def test_greedy_32_tokens_match_generate(gemma3_hf_dir, ours, tokenizer):
  cfg, params = ours
  prompts = ["Write one sentence about the sea.", "List three prime numbers.",
             "What is the capital of Italy?"]
  requests = [Request(messages=({"role": "user", "content": p},)) for p in prompts]
  got = Sampler(cfg, params, tokenizer).generate(
      requests, SamplingParams(max_new_tokens=32, temperature=0.0))
  stops = set(tokenizer.stop_ids)
  model = _hf_model(gemma3_hf_dir)
  for request, completions in zip(requests, got):
    ids = tokenizer.encode_prompt(list(request.messages))
    with torch.no_grad():
      out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                           max_new_tokens=32, do_sample=False, eos_token_id=sorted(stops),
                           pad_token_id=tokenizer.pad_id)
    want = []
    for t in out[0, len(ids):].tolist():
      if t in stops:
        break
      want.append(t)
    assert list(completions[0].token_ids) == want, request
  assert sum(len(c[0].token_ids) for c in got) >= 32  # not all empty replies


def test_sft_three_steps_from_converted_dir(gemma3_hf_dir, tmp_path):
  """The real trainer binary: 3 steps on fixed synthetic rows (ids < 2000,
  a learnable next-id rule), loss falls, the checkpoint commits,
  `load_params` round-trips and the HF export reloads in transformers."""
  import json
  import os
  import pathlib
  import subprocess
  import sys

  from sftdiff.train import checkpoints

  repo = pathlib.Path(__file__).resolve().parents[2]
  model_dir = tmp_path / "run"
  args = [f"--gin_file={repo / 'gin' / 'runs' / 'sft.gin'}",
          "--gin.partitioning.PartitionConfig.num_devices=1",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.INITIAL_CHECKPOINT='{gemma3_hf_dir}'",
          "--gin.ARM='synthetic'", "--gin.TRAIN_STEPS=3", "--gin.SEED=0",
          "--gin.BATCH_SIZE=2", "--gin.SEQ_LEN=64", "--gin.LEARNING_RATE=1e-4",
          "--gin.trainer.train.data_fn=@synthetic_train_data",
          "--gin.synthetic_train_data.vocab_size=2000",
          "--gin.trainer.train.model_overrides={'dtype': 'float32'}",
          "--gin.CheckpointConfig.save_every=3", "--gin.LoggingConfig.log_every=1",
          "--gin.LoggingConfig.eval_every=0", "--gin.LoggingConfig.report_mfu=False",
          "--gin.CheckpointConfig.async_save=False", "--gin.CheckpointConfig.export_hf=True"]
  env = {**os.environ, "PYTHONPATH": str(repo), "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "sftdiff.train", *args], cwd=repo, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  losses = [json.loads(line)["loss"] for line in (model_dir / "metrics.jsonl").open()]
  assert len(losses) == 3 and losses[-1] < losses[0], losses

  cfg, params = checkpoints.load_params(model_dir)
  assert cfg.vocab_size == 262144 and checkpoints.resolve_step_dir(model_dir)[1].name == "3"
  exported_cfg, exported = hf_io.load_hf_checkpoint(model_dir / "hf", param_dtype="float32",
                                                    dtype="float32")
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(exported),
                               jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, np.asarray(want), err_msg=jax.tree_util.keystr(path))

  tokens = np.array([[2, 818, 5279, 529, 7001, 563]], np.int64)  # <bos> + ids
  mask = np.ones_like(tokens)
  positions = np.arange(tokens.shape[1])[None]
  with torch.no_grad():
    want = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_dir / "hf"), dtype=torch.float32, attn_implementation="eager")(
            input_ids=torch.tensor(tokens)).logits.numpy()
  got = _our_logits(exported_cfg, exported, tokens, mask, positions)
  assert np.abs(got - want).max() <= 2e-4
