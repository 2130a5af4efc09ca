"""Real Gemma 3 270M (converted HF dir) on CPU: one SFT train step's tokens/s
and peak RSS, sftdiff (plain vs vocabulary-chunked loss) vs transformers (torch,
AdamW), and batch-8 greedy decode tokens/s vs `generate`, each in its own
process so peak RSS is its own. Not a test.

    python bench/real_model.py --hf_dir=DIR [--batch=2 --seq=256 --steps=3]
        [--sides=sftdiff-plain,sftdiff-chunked,transformers,decode-sftdiff,decode-transformers]
        [--trim_after_compile]

The decode sides need a chat template in DIR (convert with --chat_template).

Prints the load average at start and end (bench/_load.py): on a loaded
machine every speed ratio is printed "UNDER LOAD — not a result". Peak RSS
does not depend on the load, so the memory ratio is printed either way.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np

from _load import LoadGuard  # noqa: E402


def _batch(vocab, batch, seq):
  rng = np.random.default_rng(0)
  ids = rng.integers(3, vocab, (batch, seq + 1)).astype(np.int32)
  return ids[:, :-1], ids[:, 1:]


def _peak_rss_gb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_sftdiff(args):
  import jax
  import optax
  from sftdiff.models import hf_io
  from sftdiff import partitioning
  from sftdiff.train import steps
  cfg, params = hf_io.load_hf_checkpoint(args.hf_dir, param_dtype="float32",
                                         dtype=args.dtype, remat=args.remat)
  pc = partitioning.PartitionConfig(ici_mesh_shape=(1, 1, 1), num_devices=1)
  mesh = partitioning.make_mesh(pc)
  tx = optax.adamw(1e-5)
  fns = steps.build(cfg, tx, optax.constant_schedule(1e-5), mesh, pc.rules,
                    loss_chunk=args.loss_chunk)
  state = fns.init_state(steps.put_on_mesh(params, fns.param_shardings))
  del params
  inputs, targets = _batch(cfg.vocab_size, args.batch, args.seq)
  from sftdiff.data.batch import Batch
  local = Batch(input_ids=inputs, target_ids=targets,
                loss_mask=np.ones_like(inputs), segment_ids=np.ones_like(inputs),
                positions=np.broadcast_to(np.arange(args.seq, dtype=np.int32),
                                          inputs.shape).copy())
  train_step = fns.train_step
  if args.trim_after_compile:  # compile ahead, then return the compile's freed heap
    import ctypes
    batch = partitioning.global_batch(local, fns.batch_sharding, args.batch)
    train_step = fns.train_step.lower(state, batch).compile()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  times, losses = [], []
  for _ in range(args.steps + 1):  # the first step compiles (unless compiled ahead)
    batch = partitioning.global_batch(local, fns.batch_sharding, args.batch)
    start = time.perf_counter()
    state, metrics = train_step(state, batch)
    losses.append(float(metrics["loss"]))
    times.append(time.perf_counter() - start)
  return times[1:], losses


def run_torch(args):
  import torch
  import transformers
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      args.hf_dir, dtype=torch.float32, attn_implementation="eager")
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
  inputs, targets = _batch(model.config.vocab_size, args.batch, args.seq)
  inputs, targets = torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)
  times, losses = [], []
  for _ in range(args.steps + 1):
    start = time.perf_counter()
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(float(loss))
    times.append(time.perf_counter() - start)
  return times[1:], losses


DECODE_PROMPTS = ["Write one sentence about the sea.", "List three prime numbers.",
                  "What is the capital of Italy?", "Describe a cat.", "Count to five.",
                  "Name a colour.", "Why is the sky blue?", "Say hello in French."]


def decode_sftdiff(args):
  """Batch-8 greedy decode through the eval Sampler (needs a chat template in
  the HF dir); tokens/s over the second call (the first compiles)."""
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.eval.sampler import Sampler, SamplerConfig
  from sftdiff.eval.types import Request, SamplingParams
  from sftdiff.models import hf_io
  cfg, params = hf_io.load_hf_checkpoint(args.hf_dir, param_dtype="float32", dtype=args.dtype)
  sampler = Sampler(cfg, params, ChatTokenizer.from_dir(args.hf_dir),
                    sampler_config=SamplerConfig(max_batch_size=8))
  requests = [Request(messages=({"role": "user", "content": p},)) for p in DECODE_PROMPTS]
  sp = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0)
  sampler.generate(requests, sp)
  start = time.perf_counter()
  out = sampler.generate(requests, sp)
  return time.perf_counter() - start, sum(len(c[0].token_ids) for c in out)


def decode_torch(args):
  import torch
  import transformers
  from sftdiff.data.tokenizer import ChatTokenizer
  tok = ChatTokenizer.from_dir(args.hf_dir)
  model = transformers.AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32).eval()
  rows = [tok.encode_prompt([{"role": "user", "content": p}]) for p in DECODE_PROMPTS]
  width = max(map(len, rows))
  ids = torch.tensor([[tok.pad_id] * (width - len(r)) + r for r in rows])
  mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
  kwargs = dict(attention_mask=mask, max_new_tokens=args.new_tokens, do_sample=False,
                eos_token_id=list(tok.stop_ids), pad_token_id=tok.pad_id)
  with torch.no_grad():
    model.generate(ids, **kwargs)
    start = time.perf_counter()
    out = model.generate(ids, **kwargs)
  new = out[:, width:]
  stops = set(tok.stop_ids)
  count = 0
  for row in new.tolist():
    for t in row:
      if t in stops:
        break
      count += 1
  return time.perf_counter() - start, count


def child(args):
  if args.side.startswith("decode-"):
    seconds, tokens = (decode_torch if args.side == "decode-transformers" else decode_sftdiff)(args)
    print(f"RESULT side={args.side} batch=8 seconds={seconds:.2f} tokens={tokens} "
          f"tokens_per_s={tokens / seconds:.1f} peak_rss_gb={_peak_rss_gb():.2f}", flush=True)
    return
  times, losses = (run_torch if args.side == "transformers" else run_sftdiff)(args)
  step = float(np.median(times))
  print(f"RESULT side={args.side} loss_chunk={args.loss_chunk} step_s={step:.2f} "
        f"tokens_per_s={args.batch * args.seq / step:.0f} peak_rss_gb={_peak_rss_gb():.2f} "
        f"losses={','.join(f'{l:.4f}' for l in losses)}", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--hf_dir", required=True)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--loss_chunk", type=int, default=16384,
                      help="vocabulary entries per chunk of the sftdiff-chunked side")
  parser.add_argument("--new_tokens", type=int, default=32)
  parser.add_argument("--trim_after_compile", action="store_true",
                      help="sftdiff sides: compile the step ahead of time and malloc_trim(0) "
                      "the heap the compile freed before the first step (glibc)")
  parser.add_argument("--side", default=None, help="internal: run one side in this process")
  parser.add_argument("--sides", default="sftdiff-plain,sftdiff-chunked,transformers")
  args = parser.parse_args()
  if args.side:
    return child(args)
  guard = LoadGuard("bench/real_model.py")
  results = {}
  for side in args.sides.split(","):
    chunk = {"sftdiff-plain": 0}.get(side, args.loss_chunk)
    name = side if side in ("transformers", "decode-sftdiff", "decode-transformers") else "sftdiff"
    cmd = [sys.executable, __file__, f"--hf_dir={args.hf_dir}", f"--batch={args.batch}",
           f"--seq={args.seq}", f"--steps={args.steps}", f"--dtype={args.dtype}",
           f"--loss_chunk={chunk}", f"--new_tokens={args.new_tokens}", f"--side={name}"] + (["--remat"] if args.remat else []) + (
               ["--trim_after_compile"] if args.trim_after_compile else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
    if lines:
      results[side] = dict(re.findall(r"(\w+)=(\S+)", lines[0]))
    print(lines[0] if lines else f"{side} failed (rc {out.returncode}): {out.stderr[-2000:]}",
          f"load={os.getloadavg()[0]:.2f}", flush=True)
  _print_ratios(results, guard)
  guard.finish()


def _print_ratios(results, guard):
  """The goals' ratios: train tokens/s and peak RSS vs torch, decode vs generate."""
  value = lambda side, key: float(results[side][key])
  for side in ("sftdiff-plain", "sftdiff-chunked"):
    if side in results and "transformers" in results:
      speed = value(side, "tokens_per_s") / value("transformers", "tokens_per_s")
      memory = value(side, "peak_rss_gb") / value("transformers", "peak_rss_gb")
      print(f"{side} / transformers: train tokens/s {guard.ratio(speed)}, "
            f"peak RSS {memory:.2f}x (memory: load-independent)", flush=True)
  if "decode-sftdiff" in results and "decode-transformers" in results:
    speed = value("decode-sftdiff", "tokens_per_s") / value("decode-transformers", "tokens_per_s")
    print(f"decode batch 8 sftdiff / generate: tokens/s {guard.ratio(speed)}", flush=True)


if __name__ == "__main__":
  main()
