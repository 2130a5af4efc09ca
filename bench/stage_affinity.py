"""Two study stages side by side: each on both cores, or each pinned to one.

    .venv/bin/python bench/stage_affinity.py            # ~2.5 min on 2 cores
    .venv/bin/python bench/stage_affinity.py --steps=30

The quick study runs two train/eval processes at once on a 2-core machine
(`StudyConfig.parallelism = 2`); each XLA:CPU process sizes its thread pool
to the CPUs it may use, so two of them oversubscribe the cores. This bench
asks whether pinning each process to its own core (what a runner would do
with `os.sched_setaffinity`) is faster. It runs the toy study's real train
step (`bench/decoder.py --preset=toy --with_optimizer`'s `steps.build` step:
AdamW + clip, packed rows, 8 x 256 tokens) in fresh subprocesses:

  1. one process, both cores;      2. one process pinned to core 0;
  3. two at once, both unpinned;   4. two at once, pinned to cores 0 and 1;

and prints each process's steady step time and the pair's throughput ratio
(pinned vs unpinned), with the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _load import LoadGuard


def _worker(steps: int) -> None:
  import jax
  import numpy as np

  import decoder as bench_decoder
  from sftdiff.models import decoder
  from sftdiff.testing.models import tiny_config
  cfg = tiny_config("llama", **bench_decoder._PRESETS["toy"], max_position_embeddings=1024)
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  run = bench_decoder._train_step(
      cfg, params, bench_decoder._packed_batch(rng, cfg.vocab_size, 8, 256), 8)
  for _ in range(3):  # compile + warm up
    run()
  start = time.perf_counter()
  for _ in range(steps):
    run()
  print(f"step_ms={1000 * (time.perf_counter() - start) / steps:.2f}", flush=True)


def _run_together(cpu_sets, steps: int) -> list[float]:
  """Starts one worker per entry (None = unpinned) at once; their step ms."""
  procs = []
  for cpus in cpu_sets:
    # The preexec hook pins the child before XLA sizes its thread pool.
    pin = (lambda c=cpus: os.sched_setaffinity(0, c)) if cpus is not None else None
    procs.append(subprocess.Popen(
        [sys.executable, __file__, "--worker", f"--steps={steps}"],
        stdout=subprocess.PIPE, text=True, preexec_fn=pin))
  out = []
  for proc in procs:
    text, _ = proc.communicate()
    if proc.returncode != 0:
      raise SystemExit(f"worker exited {proc.returncode}")
    out.append(float(text.strip().rsplit("step_ms=", 1)[1]))
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--worker", action="store_true")
  args = parser.parse_args()
  if args.worker:
    _worker(args.steps)
    return
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) < 2:
    raise SystemExit("bench/stage_affinity.py needs at least 2 cores")
  guard = LoadGuard("bench/stage_affinity.py")
  a, b = cores[0], cores[1]
  alone = _run_together([None], args.steps)
  alone_pinned = _run_together([{a}], args.steps)
  pair = _run_together([None, None], args.steps)
  pair_pinned = _run_together([{a}, {b}], args.steps)
  print(f"toy train step (0.37M, 8 x 256 tokens, AdamW), {args.steps} steps per process, "
        f"cores {cores}")
  print("| processes | step ms (each) |")
  print("|---|---|")
  print(f"| 1, both cores | {alone[0]:.1f} |")
  print(f"| 1, pinned to core {a} | {alone_pinned[0]:.1f} |")
  print(f"| 2 at once, unpinned | {pair[0]:.1f}, {pair[1]:.1f} |")
  print(f"| 2 at once, pinned to {a} and {b} | {pair_pinned[0]:.1f}, {pair_pinned[1]:.1f} |")
  gain = (1 / pair_pinned[0] + 1 / pair_pinned[1]) / (1 / pair[0] + 1 / pair[1])
  print(f"pair throughput, pinned / unpinned: {guard.ratio(gain)}")
  guard.finish()


if __name__ == "__main__":
  main()
