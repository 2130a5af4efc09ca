"""Chat formatting + packing throughput (not a test; prints ratios).

Compares, in one run on the same conversations:
  * assistant-mask building (`chat.assistant_spans`, tail re-encode after the
    last added token) against its peers: re-encoding every rendered prefix
    (the straightforward method) and a single encode of the conversation
    (lower bound, no mask);
  * the full pipeline (`pipeline.make_batches`) with first-fit, best-fit and
    no packing: tokens/s and packing efficiency (non-padding fraction).

    .venv/bin/python bench/chat_format.py --num_records=4000
"""

import argparse
import tempfile
import time

import grain
import numpy as np

from sftdiff.data import chat
from sftdiff.data import pipeline
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.testing import tokenizer as test_tokenizer

from _load import LoadGuard

_WORDS = ("the sea is wide and blue what year is it today please write a short "
          "poem about France Paris capital sorry cannot help happy sad").split()


def make_records(n: int, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)

  def text(lo, hi):
    return " ".join(rng.choice(_WORDS, size=int(rng.integers(lo, hi))))

  records = []
  for i in range(n):
    messages = [{"role": "system", "content": text(3, 10)}] if i % 4 == 0 else []
    for _ in range(1 + int(rng.integers(0, 2))):  # one or two exchanges
      messages.append({"role": "user", "content": text(5, 40)})
      messages.append({"role": "assistant", "content": text(10, 150)})
    records.append({"prompt_id": f"p{i}", "messages": messages})
  return records


def naive_spans(tok, messages):
  """Peer: re-encode every rendered prefix (what chat.py avoids)."""
  full = tok.encode(tok.render(messages))
  for i, m in enumerate(messages):
    if m["role"] == "assistant":
      tok.encode(tok.render(messages[:i], add_generation_prompt=True))
      tok.encode(tok.render(messages[: i + 1]))
  return full


def timed(fn, repeats=3):
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t)
  return best, out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_records", type=int, default=4000)
  parser.add_argument("--seq_len", type=int, default=1024)
  parser.add_argument("--batch_size", type=int, default=8)
  args = parser.parse_args()
  guard = LoadGuard("bench/chat_format.py")

  tok = tokenizer_lib.ChatTokenizer.from_dir(
      test_tokenizer.write_test_tokenizer(tempfile.mkdtemp()))
  records = make_records(args.num_records)
  convs = [r["messages"] for r in records]
  num_tokens = sum(len(tok.encode(tok.render(m))) for m in convs)
  print(f"{len(convs)} conversations, {num_tokens} tokens")

  t_ours, _ = timed(lambda: [chat.assistant_spans(tok, m) for m in convs])
  t_naive, _ = timed(lambda: [naive_spans(tok, m) for m in convs])
  t_single, _ = timed(lambda: [tok.encode(tok.render(m)) for m in convs])
  print("mask building, tokens/s:")
  for name, t in (("assistant_spans", t_ours), ("re-encode prefixes", t_naive),
                  ("single encode (no mask)", t_single)):
    print(f"  {name:26s} {num_tokens / t:12,.0f}   time / assistant_spans = "
          f"{t / t_ours:.2f}")
  print(f"  speed-up over re-encoding: {guard.ratio(t_naive / t_ours)}")

  print("pipeline (make_batches, one epoch, in process):")
  base = None
  for packing in ("first_fit", "best_fit", "none"):
    def run():
      it = iter(pipeline.make_batches(
          grain.MapDataset.source(records), tok, seq_len=args.seq_len,
          batch_size=args.batch_size, seed=0, packing=packing, num_epochs=1,
          num_packing_bins=4 * args.batch_size))
      for _ in it:
        pass
      return it.stats
    t, stats = timed(run, repeats=1)
    base = base or t
    fill = stats.tokens / (stats.rows * args.seq_len)
    print(f"  {packing:10s} {stats.tokens / t:12,.0f} tokens/s  rows={stats.rows}"
          f"  fill={fill:.3f}  time vs first_fit={guard.ratio(t / base)}")
  guard.finish()


if __name__ == "__main__":
  main()
