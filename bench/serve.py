"""Tokens/s of `python -m sftdiff.serve` at 1, 8 and 32 concurrent clients vs
calling the sampler in-process (the server's overhead ratio), CPU.

    .venv/bin/python bench/serve.py --clients=1,8,32 --new_tokens=32

A random llama of the given size (the project's test tokenizer) is written as
an HF checkpoint and served by the real binary in a subprocess (PORT=0).
Each of C clients (asyncio, `openai.AsyncOpenAI`) sends `--requests` greedy
chat requests in sequence; tokens/s = completion tokens / wall time, the median of
`--repeats` timed passes. The
in-process baseline runs the same requests through `Sampler.generate` in
batches of C (what perfect batching would give). Both sides are warmed up
first (one full untimed pass each), so compilation is excluded. Greedy with
the same prompts gives the same tokens on both sides (checked). The load
average is printed beside each number: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _load import LoadGuard  # noqa: E402


def _prompts(count):
  words = ["the", "sea", "year", "answer", "question", "poem", "blue", "March", "tool"]
  return [" ".join(words[(i + j) % len(words)] for j in range(6 + i % 5))
          for i in range(count)]


def _load():
  return "load %.2f %.2f %.2f" % os.getloadavg()


def in_process(model_dir, prompts, clients, new_tokens, repeats):
  from sftdiff.eval.sampler import from_checkpoint, SamplerConfig
  from sftdiff.eval.types import Request, SamplingParams
  sampler = from_checkpoint(model_dir, sampler_config=SamplerConfig(max_batch_size=32),
                            dtype="float32")
  sp = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
  reqs = [Request([{"role": "user", "content": p}]) for p in prompts]
  out = {}
  for c in clients:
    batches = [reqs[i:i + c] for i in range(0, len(reqs), c)]
    for b in batches:
      sampler.generate(b, sp)  # warm-up: compile every (batch, prompt) bucket used
    rates = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      texts = [comp[0] for b in batches for comp in sampler.generate(b, sp)]
      wall = time.perf_counter() - t0
      rates.append(sum(len(t.token_ids) for t in texts) / wall)
    out[c] = (statistics.median(rates), [t.text for t in texts], _load())
  return out


async def _clients_run(base_url, model, prompts, clients, new_tokens):
  import openai
  client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                              timeout=600)
  texts = [None] * len(prompts)
  tokens = 0

  async def worker(k):
    nonlocal tokens
    for i in range(k, len(prompts), clients):
      r = await client.chat.completions.create(
          model=model, messages=[{"role": "user", "content": prompts[i]}],
          temperature=0, max_tokens=new_tokens)
      texts[i] = r.choices[0].message.content
      tokens += r.usage.completion_tokens

  t0 = time.perf_counter()
  await asyncio.gather(*(worker(k) for k in range(clients)))
  wall = time.perf_counter() - t0
  await client.close()
  return tokens / wall, texts


def served(model_dir, prompts, clients, new_tokens, window_s, repeats):
  import httpx
  proc = subprocess.Popen(
      [sys.executable, "-m", "sftdiff.serve", "--gin_file=runs/serve.gin",
       f"--gin.CHECKPOINT='{model_dir}'", "--gin.PORT=0", "--gin.MODEL_NAME='bench'",
       "--gin.DTYPE='float32'", f"--gin.serve.batch_window_s={window_s}"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
      text=True)
  try:
    line = proc.stdout.readline()
    if "serving" not in line:
      raise RuntimeError(f"server did not start: {line!r}")
    base = line.strip().split(" on ")[-1]
    out = {}
    for c in clients:
      asyncio.run(_clients_run(base, "bench", prompts, c, new_tokens))  # warm-up pass
      before = httpx.get(f"{base}/stats").json()
      runs = [asyncio.run(_clients_run(base, "bench", prompts, c, new_tokens))
              for _ in range(repeats)]
      after = httpx.get(f"{base}/stats").json()
      batches = after["batches"] - before["batches"]
      out[c] = (statistics.median(r[0] for r in runs), runs[-1][1], _load(),
                repeats * len(prompts) / max(batches, 1))
    return out
  finally:
    proc.terminate()
    proc.wait()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--clients", default="1,8,32")
  ap.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
  ap.add_argument("--new_tokens", type=int, default=32)
  ap.add_argument("--hidden_size", type=int, default=256)
  ap.add_argument("--num_layers", type=int, default=4)
  ap.add_argument("--batch_window_s", type=float, default=0.01)
  ap.add_argument("--repeats", type=int, default=3, help="timed passes; the median is shown")
  args = ap.parse_args()
  clients = [int(c) for c in args.clients.split(",")]
  guard = LoadGuard("bench/serve.py")

  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  with tempfile.TemporaryDirectory() as d:
    write_test_tokenizer(d)
    vocab = ChatTokenizer.from_dir(d).vocab_size
    write_random_hf_checkpoint(d, "llama", vocab_size=vocab, hidden_size=args.hidden_size,
                               intermediate_size=4 * args.hidden_size,
                               num_layers=args.num_layers, head_dim=args.hidden_size // 4)
    prompts = _prompts(args.requests)
    print(f"model: llama hidden={args.hidden_size} layers={args.num_layers} vocab={vocab}; "
          f"{args.requests} greedy requests x {args.new_tokens} max new tokens; "
          f"cpus={os.cpu_count()}", flush=True)
    local = in_process(d, prompts, clients, args.new_tokens, args.repeats)
    server = served(d, prompts, clients, args.new_tokens, args.batch_window_s, args.repeats)
  print(f"{'clients':>7} {'server tok/s':>12} {'in-process tok/s':>16} {'overhead':>8} "
        f"{'req/batch':>9}  load (server | in-process)")
  for c in clients:
    s_tps, s_texts, s_load, per_batch = server[c]
    l_tps, l_texts, l_load = local[c]
    same = "same tokens" if s_texts == l_texts else "TEXTS DIFFER"
    print(f"{c:>7} {s_tps:>12.1f} {l_tps:>16.1f} {l_tps / s_tps:>7.2f}x {per_batch:>9.1f}  "
          f"{s_load} | {l_load}  ({same})")
    print(f"        overhead at {c} clients: {guard.ratio(l_tps / s_tps)}")
  guard.finish()


if __name__ == "__main__":
  main()
