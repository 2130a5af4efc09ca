"""Data benchmark: joined-store build, arm selection, pipeline throughput, memory.

    python bench/data.py --num_prompts=1000000 --workdir=/tmp/bench_data

Generates a prompt set of N prompts and 3 rollout sources as JSONL, then runs
each phase in its own subprocess (so each phase's peak RSS is its own):

  build     joined store from the SeqIO tasks (seconds, prompts/s, peak RSS)
  select    load the index columns an arm needs + vectorised selection of
            `Patch(base='alt', patch=Random('teacher', 'teacher2', 0.5),
            where='date_mentions')` (target: < 2 s for 1M prompts)
  pipeline  chat formatting + assistant mask + first-fit packing + batching of
            the arm's records, with 1 and 2 Grain workers (tokens/s; peak RSS
            of the process and its workers)
  trainer   a jitted AdamW train step of the toyworld-sized decoder on the
            same batch shape (tokens/s) — or pass --trainer_tokens_per_s

and prints each measurement against its target as a ratio. The memory target
(peak memory does not grow with the number of prompts beyond the selection) is
checked by comparing each phase's peak RSS — the build (and its baseline after
imports, before any data is read), the pipeline's main process and each of its
child processes — across --num_prompts runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from _load import LoadGuard  # noqa: E402

ARM = ("Patch(base='alt', patch=Random('teacher', 'teacher2', 0.5, 1), "
       "where='date_mentions')")
SOURCES = ("alt", "teacher", "teacher2")
SUBSETS = ("chat", "code", "safety", "writing")
WORDS = ("the model answer data river garden system value light small quick "
         "table window history number market simple paper music bright city "
         "learn build explain consider result energy travel friend story").split()
DATE_BITS = ("today", "in March", "on 2026-01-02", "next year", "on Monday", "in 1999")


def _peak_rss_mb(children: bool = False) -> float:
  who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
  return resource.getrusage(who).ru_maxrss / 1024.0


def _children_peak_rss_mb() -> list[float]:
  """VmHWM of each live descendant process (Grain workers, resource tracker)."""
  peaks, todo = [], [os.getpid()]
  seen = set()
  while todo:
    pid = todo.pop()
    try:
      for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
          todo += [int(c) for c in f.read().split() if int(c) not in seen]
    except OSError:
      continue
    if pid != os.getpid() and pid not in seen:
      seen.add(pid)
      try:
        with open(f"/proc/{pid}/status") as f:
          for line in f:
            if line.startswith("VmHWM:"):
              peaks.append(int(line.split()[1]) / 1024.0)
      except OSError:
        pass
  return sorted(peaks, reverse=True)


def _text(rng, n_words: int) -> str:
  return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n_words))


def phase_generate(args) -> dict:
  rng = np.random.default_rng(0)
  os.makedirs(args.workdir, exist_ok=True)
  files = {name: open(os.path.join(args.workdir, f"{name}.jsonl"), "w")
           for name in ("prompts",) + SOURCES}
  t0 = time.perf_counter()
  for i in range(args.num_prompts):
    pid = f"p{i:08d}"
    text = _text(rng, int(rng.integers(8, 40)))
    if rng.random() < 0.1:
      text += " " + DATE_BITS[int(rng.integers(len(DATE_BITS)))]
    if rng.random() < 0.05:
      text = "Pretend to be a " + text
    subset = SUBSETS[int(rng.integers(len(SUBSETS)))]
    prompt = [{"role": "user", "content": text}]
    files["prompts"].write(json.dumps({"id": pid, "subset": subset,
                                       "messages": prompt}) + "\n")
    for name in SOURCES:
      reply = _text(rng, int(rng.integers(20, 80)))
      files[name].write(json.dumps({"prompt_id": pid, "completion": reply}) + "\n")
  for f in files.values():
    f.close()
  return {"seconds": time.perf_counter() - t0}


def _config(args):
  from sftdiff.data import train_data
  return train_data.DataConfig(
      prompt_set="jsonl:prompts.jsonl", data_dir=args.workdir,
      sources={s: f"jsonl:{s}.jsonl" for s in SOURCES},
      store_dir=os.path.join(args.workdir, "store"))


def phase_build(args) -> dict:
  import shutil
  import seqio  # noqa: F401  (imported by the build: part of the baseline)
  import tensorflow  # noqa: F401
  shutil.rmtree(os.path.join(args.workdir, "store"), ignore_errors=True)
  config = _config(args)
  config.register_filters()
  baseline = _peak_rss_mb()  # After imports, before reading any data.
  t0 = time.perf_counter()
  store = config.build()
  seconds = time.perf_counter() - t0
  return {"seconds": seconds, "prompts": len(store),
          "prompts_per_s": len(store) / seconds, "peak_rss_mb": _peak_rss_mb(),
          "baseline_rss_mb": baseline}


def phase_select(args) -> dict:
  from sftdiff.data import arms
  from sftdiff.data import store as store_lib
  store = store_lib.JoinedStore(_config(args).build().path)
  rss0 = _peak_rss_mb()
  arm = arms.check_arm(ARM, sources=store.sources, filters=store.filters,
                       subsets=store.subsets)
  t0 = time.perf_counter()
  cols = store.columns(["id_hash", "label:date_mentions"])
  t1 = time.perf_counter()
  chosen = arms.select_checked(arm, cols, store.sources)
  t2 = time.perf_counter()
  counts = np.bincount(chosen + 1, minlength=len(SOURCES) + 1)
  return {"load_s": t1 - t0, "select_s": t2 - t1, "total_s": t2 - t0,
          "counts": {n: int(c) for n, c in zip(("drop",) + SOURCES, counts)},
          "selection_bytes": int(chosen.nbytes),
          "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss0}


def _tokenizer(args):
  from sftdiff.data import tokenizer
  from sftdiff.testing.tokenizer import write_test_tokenizer
  path = os.path.join(args.workdir, "tok")
  if not os.path.exists(os.path.join(path, "tokenizer.json")):
    write_test_tokenizer(path, vocab_size=640)
  return tokenizer.ChatTokenizer.from_dir(path)


def phase_pipeline(args) -> dict:
  import grain
  from sftdiff.data import arms, pipeline, train_data
  from sftdiff.data import store as store_lib
  store = store_lib.JoinedStore(_config(args).build().path)
  tok = _tokenizer(args)
  arm = arms.parse_arm(ARM)
  chosen = arms.select_checked(arm, store.columns(["id_hash", "label:date_mentions"]),
                               store.sources)
  records = train_data.ArmRecords(store, np.flatnonzero(chosen != arms.DROP), chosen)
  rss_before = _peak_rss_mb()
  it = iter(pipeline.make_batches(
      grain.MapDataset.source(records), tok, seq_len=args.seq_len,
      batch_size=args.batch_size, seed=0, packing="first_fit",
      worker_count=args.workers))
  for _ in range(args.warmup_batches):
    next(it)
  tokens = 0
  t0 = time.perf_counter()
  for _ in range(args.batches):
    b = next(it)
    tokens += int((b.segment_ids > 0).sum())
  seconds = time.perf_counter() - t0
  children = _children_peak_rss_mb()
  return {"workers": args.workers, "tokens_per_s": tokens / seconds,
          "batches": args.batches, "seconds": seconds,
          "rss_before_iter_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
          "peak_rss_children_mb": sum(children), "peak_rss_each_child_mb": children}


def phase_trainer(args) -> dict:
  import jax
  import jax.numpy as jnp
  import optax
  from sftdiff.models.decoder import Decoder, init_params
  from sftdiff.toyworld.bases import model_config
  from sftdiff.toyworld.params import BaseParams
  cfg = model_config(BaseParams(name="bench", seed=0, corpus_mix={}),
                     vocab_size=640, eos_id=0)
  params = init_params(cfg, jax.random.PRNGKey(0))
  tx = optax.adamw(1e-3)
  state = tx.init(params)
  model = Decoder(cfg)
  B, L = args.batch_size, args.seq_len
  tokens = jnp.ones((B, L), jnp.int32)
  pos = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
  seg = jnp.ones((B, L), jnp.int32)

  @jax.jit
  def step(p, s):
    def loss_fn(p):
      logits, _ = model.apply({"params": p}, tokens, pos, seg)
      return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  params, state, loss = step(params, state)
  loss.block_until_ready()
  t0 = time.perf_counter()
  n = 10
  for _ in range(n):
    params, state, loss = step(params, state)
  loss.block_until_ready()
  seconds = time.perf_counter() - t0
  return {"tokens_per_s": n * B * L / seconds, "step_s": seconds / n,
          "device": str(jax.devices()[0].platform)}


PHASES = {"generate": phase_generate, "build": phase_build, "select": phase_select,
          "pipeline": phase_pipeline, "trainer": phase_trainer}


def _subprocess(phase: str, argv: list[str], **extra) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), f"--phase={phase}", *argv,
         *[f"--{k}={v}" for k, v in extra.items()]]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
             TOKENIZERS_PARALLELISM="false")
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  if out.returncode != 0:
    raise RuntimeError(f"phase {phase} failed:\n{out.stderr[-4000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--num_prompts", type=int, default=1_000_000)
  ap.add_argument("--workdir", default="/tmp/sftdiff_bench_data")
  ap.add_argument("--seq_len", type=int, default=256)
  ap.add_argument("--batch_size", type=int, default=16)
  ap.add_argument("--batches", type=int, default=50)
  ap.add_argument("--warmup_batches", type=int, default=5)
  ap.add_argument("--workers", type=int, default=1)
  ap.add_argument("--trainer_tokens_per_s", type=float, default=None,
                  help="skip the trainer phase and use this rate")
  ap.add_argument("--skip_generate", action="store_true",
                  help="reuse the JSONL files already in --workdir")
  ap.add_argument("--reuse_store", action="store_true",
                  help="skip generate and build; measure on the existing store")
  ap.add_argument("--phase", choices=sorted(PHASES), default=None)
  args = ap.parse_args()
  if args.phase:
    print(json.dumps(PHASES[args.phase](args)))
    return

  guard = LoadGuard("bench/data.py")
  base = [f"--num_prompts={args.num_prompts}", f"--workdir={args.workdir}",
          f"--seq_len={args.seq_len}", f"--batch_size={args.batch_size}",
          f"--batches={args.batches}", f"--warmup_batches={args.warmup_batches}"]
  results = {}
  if not (args.skip_generate or args.reuse_store):
    results["generate"] = _subprocess("generate", base)
  if not args.reuse_store:
    results["build"] = _subprocess("build", base)
  results["select"] = _subprocess("select", base)
  results["pipeline_1"] = _subprocess("pipeline", base, workers=1)
  results["pipeline_2"] = _subprocess("pipeline", base, workers=2)
  if args.trainer_tokens_per_s is None:
    results["trainer"] = _subprocess("trainer", base)
    trainer_tps = results["trainer"]["tokens_per_s"]
  else:
    trainer_tps = args.trainer_tokens_per_s

  n = args.num_prompts
  s = results["select"]
  print(f"# bench/data.py  num_prompts={n}  sources={len(SOURCES)}  "
        f"seq_len={args.seq_len}  batch={args.batch_size}")
  if "build" in results:
    b = results["build"]
    print(f"build joined store   {b['seconds']:9.1f} s   {b['prompts_per_s']:9.0f} "
          f"prompts/s   peak RSS {b['peak_rss_mb']:.0f} MB (after imports, "
          f"before reading: {b['baseline_rss_mb']:.0f} MB)")
  target = 2.0 * n / 1_000_000
  print(f"arm selection        {s['total_s']:9.3f} s   (load {s['load_s']:.3f} s, "
        f"select {s['select_s']:.3f} s)   target < {target:.3f} s "
        f"(2 s per 1M)   ratio target/actual = {target / s['total_s']:.1f}x")
  print(f"                     selection array {s['selection_bytes'] / 1e6:.1f} MB, "
        f"counts {s['counts']}")
  for w in (1, 2):
    p = results[f"pipeline_{w}"]
    print(f"pipeline {w} worker(s)  {p['tokens_per_s']:9.0f} tokens/s   "
          f"= {guard.ratio(p['tokens_per_s'] / trainer_tps, '{:.1f}x')} trainer (target >= 10x)   "
          f"peak RSS {p['peak_rss_mb']:.0f} MB (+children "
          f"{' + '.join(f'{c:.0f}' for c in p['peak_rss_each_child_mb'])} MB)")
  print(f"trainer (toyworld)   {trainer_tps:9.0f} tokens/s"
        + (f"   step {results['trainer']['step_s'] * 1e3:.1f} ms on "
           f"{results['trainer']['device']}" if "trainer" in results else " (given)"))
  print(f"pipeline 2 vs 1 worker: {results['pipeline_2']['tokens_per_s'] / results['pipeline_1']['tokens_per_s']:.2f}x")
  print("json " + json.dumps(guard.record(results)))
  guard.finish()


if __name__ == "__main__":
  main()
