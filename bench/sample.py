"""Sampler decode throughput vs transformers, and judge throughput / cache.

    .venv/bin/python bench/sample.py --batch=32 --new_tokens=64
    .venv/bin/python bench/sample.py --hf_dir=DIR --batch=8 --skip_judge   # a converted model

With --hf_dir the decode comparison runs on that HF dir (it needs a chat
template, e.g. the Gemma 3 270M that tests/real_model converts into
~/.cache/sftdiff/gemma3-270m-*/hf) instead of a random llama.
The load average is printed at start and end; a ratio measured on a loaded
machine is marked "UNDER LOAD" (bench/_load.py).

1. Decode tokens/s of `sftdiff.eval.sampler.Sampler` (jit prefill + compiled
   while-loop decode, greedy, no early stop) vs `transformers` `generate`
   (torch CPU, greedy, same random model exported by
   `write_random_hf_checkpoint`, same batch, prompt length and new tokens),
   in the same run; prints the ratio. Both are timed after a warm-up call
   (compilation excluded).
2. Judge calls/s of the autorater against the local OpenAI-compatible test
   server at the given concurrency, and the calls a re-run makes (cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _load import LoadGuard  # noqa: E402


def compare_decode(model_dir, *, batch, prompt_len, new_tokens, repeats, dtype="float32",
                   profile_dir=None):
  """Greedy decode of the HF checkpoint + tokenizer in `model_dir` by
  `Sampler` and by `transformers` `generate` (torch, GPU if there is one), the
  same prompts, after a warm-up call each; tokens/s, ratio and agreement."""
  import numpy as np
  import torch
  import transformers

  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.eval.sampler import Sampler, SamplerConfig
  from sftdiff.eval.types import Request, SamplingParams
  from sftdiff.models.hf_io import load_hf_checkpoint

  tok = ChatTokenizer.from_dir(model_dir)
  cfg, params = load_hf_checkpoint(model_dir, param_dtype=dtype, dtype=dtype)
  # No stop ids: every row decodes exactly new_tokens (as min_new_tokens in HF).
  no_stop = dataclasses.replace(tok, stop_ids=())
  sampler = Sampler(cfg, params, no_stop, sampler_config=SamplerConfig(
      max_batch_size=batch, min_prompt_bucket=prompt_len))
  rng = np.random.default_rng(0)
  words = ["the", "sea", "year", "answer", "question", "poem", "blue", "March", "tool"]
  texts = [" ".join(rng.choice(words, size=prompt_len)) for _ in range(batch)]
  reqs = [Request([{"role": "user", "content": t}]) for t in texts]
  prompt_ids = [sampler.encode(r) for r in reqs]
  longest = max(len(p) for p in prompt_ids)
  sp = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)

  sampler.generate(reqs, sp)  # compile
  t0 = time.perf_counter()
  for _ in range(repeats):
    ours = sampler.generate(reqs, sp)
  ours_s = (time.perf_counter() - t0) / repeats
  assert all(len(c[0].token_ids) == new_tokens for c in ours)
  if profile_dir:  # one more call under jax.profiler (perfetto trace in the dir)
    import jax
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      sampler.generate(reqs, sp)

  device = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      model_dir, dtype=getattr(torch, dtype)).to(device).eval()
  ids = torch.full((batch, longest), tok.pad_id, dtype=torch.long)
  mask = torch.zeros((batch, longest), dtype=torch.long)
  for i, p in enumerate(prompt_ids):  # left padding, as HF recommends for decoding
    ids[i, longest - len(p):] = torch.tensor(p)
    mask[i, longest - len(p):] = 1
  kw = dict(attention_mask=mask.to(device), do_sample=False, max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, pad_token_id=tok.pad_id)
  with torch.no_grad():
    model.generate(ids.to(device), **kw)  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
      hf = model.generate(ids.to(device), **kw)
    sync()
    hf_s = (time.perf_counter() - t0) / repeats
  hf = hf[:, longest:].cpu().numpy()
  first_diff = []
  for i, c in enumerate(ours):
    differ = np.nonzero(np.asarray(c[0].token_ids) != hf[i])[0]
    first_diff.append(int(differ[0]) if len(differ) else new_tokens)
  toks = batch * new_tokens
  return {"params": cfg.num_params(), "vocab": cfg.vocab_size, "dtype": dtype,
          "batch": batch, "prompt_len": longest, "new_tokens": new_tokens,
          "sampler_tok_s": toks / ours_s, "transformers_tok_s": toks / hf_s,
          "ratio": hf_s / ours_s,
          "greedy_rows_identical": f"{sum(f == new_tokens for f in first_diff)}/{batch}",
          "median_first_divergence": float(np.median(first_diff)),
          "torch_device": device, "torch_threads": torch.get_num_threads()}


def bench_sampler(args, workdir):
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer

  write_test_tokenizer(workdir)
  tok = ChatTokenizer.from_dir(workdir)
  write_random_hf_checkpoint(workdir, args.family, vocab_size=tok.vocab_size,
                             hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                             num_layers=args.layers, num_heads=args.hidden // 64,
                             num_kv_heads=max(1, args.hidden // 128), head_dim=64)
  result = compare_decode(workdir, batch=args.batch, prompt_len=args.prompt_len,
                          new_tokens=args.new_tokens, repeats=args.repeats,
                          profile_dir=args.profile_dir)
  result["model"] = (f"{args.family} hidden={args.hidden} layers={args.layers} "
                     f"params={result['params'] / 1e6:.1f}M vocab={result['vocab']}")
  return result


def bench_judge(args, workdir):
  from sftdiff.eval import api_client
  from sftdiff.eval.autorater import Autorater, OpenAIJudge
  from sftdiff.eval.benchmarks import get
  from sftdiff.eval.judge_cache import JudgeCache
  from sftdiff.testing.judge_replies import date_confusion_reply
  from sftdiff.testing.openai_server import OpenAITestServer

  reply = date_confusion_reply(False)
  bench = get("date_confusion")
  rater = bench.raters[0]
  items = [(bench.prompts[i % len(bench.prompts)], f"response number {i}")
           for i in range(args.judge_calls)]
  os.environ["SFTDIFF_BENCH_KEY"] = "bench-key"
  with OpenAITestServer(lambda m, b: reply) as server:
    cfg = api_client.ApiConfig(model="bench-judge", base_url=server.base_url,
                               api_key_env="SFTDIFF_BENCH_KEY",
                               max_concurrency=args.concurrency)
    cache_path = os.path.join(workdir, "judge_cache.sqlite")
    t0 = time.perf_counter()
    first = Autorater(OpenAIJudge(cfg), JudgeCache(cache_path)).rate(rater, items)
    dt = time.perf_counter() - t0
    calls_first = server.calls
    server.reset_counts()
    t0 = time.perf_counter()
    again = Autorater(OpenAIJudge(cfg), JudgeCache(cache_path)).rate(rater, items)
    dt_again = time.perf_counter() - t0
    assert again == first
    return {"judge_calls": calls_first, "concurrency": args.concurrency,
            "calls_per_s": calls_first / dt, "rerun_calls": server.calls,
            "rerun_s": dt_again}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--prompt_len", type=int, default=32)
  p.add_argument("--new_tokens", type=int, default=64)
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--family", default="llama")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--judge_calls", type=int, default=512)
  p.add_argument("--concurrency", type=int, default=32)
  p.add_argument("--skip_sampler", action="store_true")
  p.add_argument("--skip_judge", action="store_true")
  p.add_argument("--hf_dir", default=None, help="decode this HF dir instead of a random llama")
  p.add_argument("--profile_dir", default=None,
                 help="also trace one Sampler.generate call (prefill + decode) with jax.profiler")
  args = p.parse_args()
  guard = LoadGuard("bench/sample.py")
  with tempfile.TemporaryDirectory() as d:
    if args.hf_dir:
      s = compare_decode(args.hf_dir, batch=args.batch, prompt_len=args.prompt_len,
                         new_tokens=args.new_tokens, repeats=args.repeats,
                         profile_dir=args.profile_dir)
      s["model"] = f"{args.hf_dir} params={s['params'] / 1e6:.1f}M vocab={s['vocab']}"
    elif not args.skip_sampler:
      s = bench_sampler(args, os.path.join(d, "model"))
    if args.hf_dir or not args.skip_sampler:
      print(f"sampler: {s['model']}, batch {s['batch']}, prompt {s['prompt_len']} tokens, "
            f"{s['new_tokens']} new tokens (torch threads: {s['torch_threads']})")
      print(f"  sftdiff sampler   {s['sampler_tok_s']:10.1f} tok/s")
      print(f"  transformers      {s['transformers_tok_s']:10.1f} tok/s")
      print(f"  ratio (sampler / transformers): {guard.ratio(s['ratio'])}  "
            f"(greedy rows identical: {s['greedy_rows_identical']})")
    if not args.skip_judge:
      j = bench_judge(args, d)
      print(f"judge: {j['judge_calls']} calls at concurrency {j['concurrency']}: "
            f"{j['calls_per_s']:.1f} calls/s; re-run made {j['rerun_calls']} calls "
            f"({j['rerun_s']:.2f}s)")
  guard.finish()


if __name__ == "__main__":
  main()
