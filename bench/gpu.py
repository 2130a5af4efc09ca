"""GPU benchmark: trainer throughput/MFU at ~1B parameters in bf16, and the sampler.

    python bench/gpu.py [--batch=8] [--seq_len=2048] [--steps=10]

On one GPU, in one run:
  peak     bf16 8192^3 matmul through JAX (the measured ceiling for MFU, beside
           the datasheet figure from `sftdiff.train.metrics`).
  train    `sftdiff.train.steps` (the trainer's jit step: AdamW, f32 params,
           bf16 compute, per-layer remat) on Llama 3.2 1B
           (gin/models/llama3_1b.gin, 1.24B parameters) vs the peer:
           `transformers` LlamaForCausalLM in torch, f32 params + bf16
           autocast, SDPA attention, gradient checkpointing, fused AdamW; same
           batch and sequence length. Prints tokens/s, MFU and the ratio.
  sample   `sftdiff.eval.sampler.Sampler` greedy decode vs `transformers`
           `generate` (bf16, same weights via an HF checkpoint), same batch,
           prompts and new tokens; the 1B body with the test tokenizer's vocabulary.

Data are random token rows, one segment per row, every token trained (both
sides see exactly the same tokens; the peer's attention is plain causal).
Each section is independent: a failure is printed and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from _load import LoadGuard  # noqa: E402


def llama_1b(**overrides):
  import gin
  from sftdiff.models.config import ModelConfig
  gin.clear_config()
  gin.parse_config_file(str(REPO / "gin" / "models" / "llama3_1b.gin"))
  cfg = ModelConfig()
  gin.clear_config()
  return cfg.replace(**overrides)


def random_batches(n, batch, seq_len, vocab, seed=0):
  from sftdiff.data.batch import Batch
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    ids = rng.integers(4, vocab, size=(batch, seq_len + 1), dtype=np.int32)
    out.append(Batch(input_ids=ids[:, :-1], target_ids=ids[:, 1:],
                     loss_mask=np.ones((batch, seq_len), np.int32),
                     segment_ids=np.ones((batch, seq_len), np.int32),
                     positions=np.broadcast_to(np.arange(seq_len, dtype=np.int32),
                                               (batch, seq_len)).copy()))
  return out


def bench_peak():
  import jax
  import jax.numpy as jnp
  n = 8192
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
  mm = jax.jit(jnp.matmul)
  mm(a, b).block_until_ready()
  for _ in range(3):
    mm(a, b).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(20):
    c = mm(a, b)
  c.block_until_ready()
  dt = (time.perf_counter() - t0) / 20
  return {"device": jax.devices()[0].device_kind, "jax": jax.__version__,
          "bf16_matmul_tflops": 2 * n ** 3 / dt / 1e12}


def bench_train_ours(args, cfg, batches):
  import jax
  import optax
  from sftdiff.models import decoder
  from sftdiff import partitioning
  from sftdiff.train import steps

  pc = partitioning.PartitionConfig(ici_mesh_shape=(1, 1, 1), num_devices=1)
  mesh = partitioning.make_mesh(pc)
  tx = optax.adamw(1e-4, b1=0.9, b2=0.95, weight_decay=0.0)
  fns = steps.build(cfg, tx, optax.constant_schedule(1e-4), mesh, pc.rules)
  params = decoder.init_params(cfg, jax.random.key(0))
  state = fns.init_state(steps.put_on_mesh(params, fns.param_shardings))
  del params
  t_compile = time.perf_counter()
  times = []
  for i, local in enumerate(batches):
    batch = partitioning.global_batch(local, fns.batch_sharding, args.batch)
    t0 = time.perf_counter()
    state, m = fns.train_step(state, batch)
    loss = float(m["loss"])  # syncs
    times.append(time.perf_counter() - t0)
    if i == 0:
      t_compile = time.perf_counter() - t_compile
  step_s = float(np.median(times[args.warmup:]))
  del state
  return {"step_s": step_s, "tokens_per_s": args.batch * args.seq_len / step_s,
          "first_step_s": t_compile, "final_loss": loss}


def _torch_device():
  import torch
  return "cuda" if torch.cuda.is_available() else "cpu"


def _sync():
  import torch
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def bench_train_torch(args, cfg, batches):
  import torch
  import transformers
  from sftdiff.models.hf_io import to_hf_config

  hf = to_hf_config(cfg)
  hf.pop("torch_dtype", None)
  config = transformers.LlamaConfig(**hf)
  config._attn_implementation = "sdpa"
  dev = _torch_device()
  model = transformers.LlamaForCausalLM(config).to(dev, torch.float32)
  model.gradient_checkpointing_enable()
  model.config.use_cache = False
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                          weight_decay=0.0, fused=dev == "cuda")
  times = []
  for b in batches:
    ids = torch.from_numpy(b.input_ids.astype(np.int64)).to(dev)
    labels = torch.from_numpy(b.target_ids.astype(np.int64)).to(dev)
    _sync()
    t0 = time.perf_counter()
    with torch.autocast(dev, dtype=torch.bfloat16):
      logits = model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss = float(loss)  # syncs
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times[args.warmup:]))
  del model, opt
  if dev == "cuda":
    torch.cuda.empty_cache()
  return {"step_s": step_s, "tokens_per_s": args.batch * args.seq_len / step_s,
          "final_loss": loss}


def bench_sample(args, workdir):
  import torch
  import transformers
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.models.hf_io import to_hf_config
  from sftdiff.testing.tokenizer import write_test_tokenizer
  sys.path.insert(0, str(REPO / "bench"))
  from sample import compare_decode  # pylint: disable=import-outside-toplevel

  write_test_tokenizer(workdir)
  tok = ChatTokenizer.from_dir(workdir)
  cfg = llama_1b(vocab_size=tok.vocab_size, bos_token_id=None, eos_token_id=tok.eos_id)
  hf = to_hf_config(cfg)
  hf.pop("torch_dtype", None)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf)).to(torch.bfloat16)
  model.save_pretrained(workdir, safe_serialization=True)
  del model
  return compare_decode(workdir, batch=args.sample_batch, prompt_len=args.prompt_len,
                        new_tokens=args.new_tokens, repeats=args.repeats, dtype="bfloat16")


def section(name, results, fn, *a, out=None):
  print(f"== {name}", flush=True)
  t0 = time.perf_counter()
  try:
    results[name] = fn(*a)
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    results[name] = {"error": traceback.format_exc(limit=3)}
  print(json.dumps(results[name], indent=1, default=str), f"({time.perf_counter() - t0:.0f} s)",
        flush=True)
  if out:  # after every section: a run cut short keeps what it measured
    with open(out, "w") as f:
      json.dump(results, f, indent=1, default=str)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq_len", type=int, default=2048)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--sample_batch", type=int, default=64)
  p.add_argument("--prompt_len", type=int, default=64)
  p.add_argument("--new_tokens", type=int, default=256)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--sections", default="peak,train,sample")
  p.add_argument("--variants", default="xla:remat,cudnn:remat",
                 help="sftdiff trainer variants, attention_impl:remat|noremat")
  p.add_argument("--tiny", action="store_true", help="CPU smoke run: 2-layer 256-wide body")
  p.add_argument("--out", default=None, help="also write the results as JSON here")
  args = p.parse_args()
  tiny = dict(hidden_size=256, intermediate_size=512, num_layers=2, num_heads=4,
              num_kv_heads=2, vocab_size=1024) if args.tiny else {}
  global llama_1b  # pylint: disable=global-statement
  if tiny:
    full = llama_1b
    llama_1b = lambda **o: full(**{**tiny, **o})  # noqa: E731
  sections = args.sections.split(",")
  results = {"args": vars(args)}
  guard = LoadGuard("bench/gpu.py")
  if "peak" in sections:
    section("peak", results, bench_peak)
  if "train" in sections:
    base = llama_1b(dtype="bfloat16", param_dtype="float32")
    fpt = base.flops_per_token(args.seq_len)
    results["train_model"] = {"params": base.num_params(), "batch": args.batch,
                              "seq_len": args.seq_len, "flops_per_token": fpt}
    batches = random_batches(args.warmup + args.steps, args.batch, args.seq_len, base.vocab_size)
    # The peer first: it frees its memory before JAX allocates (no preallocation).
    section("train_torch", results, bench_train_torch, args, base, batches, out=args.out)
    for variant in args.variants.split(","):
      impl, remat = variant.split(":")
      cfg = base.replace(attention_impl=impl, remat=remat == "remat")
      section(f"train_sftdiff_{variant}", results, bench_train_ours, args, cfg, batches,
              out=args.out)
    from sftdiff.train.metrics import peak_flops_per_second
    table_peak, source = peak_flops_per_second()
    measured = results.get("peak", {}).get("bf16_matmul_tflops", float("nan")) * 1e12
    torch_tps = results["train_torch"].get("tokens_per_s", float("nan"))
    for name, r in results.items():
      if name.startswith("train_") and "tokens_per_s" in r:
        r["mfu_vs_table"] = r["tokens_per_s"] * fpt / table_peak
        r["mfu_vs_measured_matmul"] = r["tokens_per_s"] * fpt / measured
        r["peak_table_source"] = source
        r["ratio_vs_torch"] = guard.recordable(r["tokens_per_s"] / torch_tps)
  if "sample" in sections:
    with tempfile.TemporaryDirectory() as workdir:
      section("sample", results, bench_sample, args, workdir, out=args.out)
  results["load"] = guard.summary()
  print("== summary")
  print(json.dumps(results, indent=1, default=str))
  guard.finish()


if __name__ == "__main__":
  main()
