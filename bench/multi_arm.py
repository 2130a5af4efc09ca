"""Multi-arm training throughput per arm vs single-arm, at the toyworld base size.

Two measurements, same model (the toyworld base, float32, 8 x 256 tokens):
  step     the steady-state train step: one arm's `steps.build` step vs the
           vmapped step of N stacked arms (`sftdiff.train.multi_arm_steps`),
           alternating, best of --repeats; ratio = per-arm step time alone /
           (vmapped step time / N).
  process  what a study stage pays: N runs of `python -m sftdiff.train`
           (process start, imports, compilation, steps, checkpoints) vs one
           `python -m sftdiff.train.multi_arm` of the N arms (both modes).
Load average is printed at the start and end; a ratio measured at load > 1
is marked "not a result".

  python bench/multi_arm.py                       # both, 4 arms (~2.5 min quiet)
  python bench/multi_arm.py --parts=step --arms=2,4,8
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sftdiff import partitioning  # noqa: E402
from sftdiff.models import decoder  # noqa: E402
from sftdiff.train import multi_arm_steps, optim, steps  # noqa: E402
from sftdiff.train import synthetic_data  # noqa: E402

from _load import LoadGuard  # noqa: E402

BATCH, SEQ, VOCAB = 8, 256, 640


def toy_config():
  from sftdiff.toyworld import bases, params
  base = params.BaseParams(name="bench", seed=0, corpus_mix={})
  return bases.model_config(base, vocab_size=VOCAB, eos_id=0).replace(dtype="float32")


def _best_step_time(step_fn, state, batch, repeats, steps_per_repeat=5):
  state, _ = step_fn(state, batch)  # compile
  jax.block_until_ready(state)
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(steps_per_repeat):
      state, _ = step_fn(state, batch)
    jax.block_until_ready(state)
    best = min(best, (time.perf_counter() - t) / steps_per_repeat)
  return best, state


def bench_step(arm_counts, repeats, guard):
  cfg = toy_config()
  pc = partitioning.PartitionConfig(num_devices=1)
  mesh = partitioning.make_mesh(pc)
  tx, schedule = optim.make_optimizer(1000)
  params0 = decoder.init_params(cfg, jax.random.key(0))
  single = steps.build(cfg, tx, schedule, mesh, pc.rules)
  single_state = single.init_state(steps.put_on_mesh(params0, single.param_shardings))
  single_batch = partitioning.global_batch(
      synthetic_data.make_batch(0, 0, range(BATCH), SEQ, VOCAB), single.batch_sharding, BATCH)
  print(f"step: toyworld base {cfg.num_params() / 1e6:.2f}M params, {BATCH} x {SEQ} "
        f"tokens per arm, float32, 1 device")
  for n in arm_counts:
    stacked = multi_arm_steps.build(cfg, tx, schedule, mesh, pc.rules)
    state = stacked.stack([stacked.arm_fns.init_state(
        steps.put_on_mesh(params0, stacked.arm_fns.param_shardings)) for _ in range(n)])
    batch = multi_arm_steps.stacked_batch(
        [synthetic_data.make_batch(a, 0, range(BATCH), SEQ, VOCAB) for a in range(n)],
        stacked.batch_sharding, BATCH)
    alone = together = float("inf")
    for _ in range(2):  # alternate so both see the same load
      t1, single_state = _best_step_time(single.train_step, single_state, single_batch, repeats)
      tn, state = _best_step_time(stacked.train_step, state, batch, repeats)
      alone, together = min(alone, t1), min(together, tn)
    print(f"  {n} arms: alone {alone * 1e3:.1f} ms/step, vmapped {together * 1e3:.1f} ms/step "
          f"({together / n * 1e3:.1f} ms per arm); per-arm throughput "
          f"{guard.ratio(alone * n / together)}")
    del state, stacked


def _write_init(directory: pathlib.Path):
  from sftdiff.models import hf_io
  from sftdiff.testing.tokenizer import write_test_tokenizer
  cfg = toy_config()
  hf_io.save_hf_checkpoint(str(directory), cfg, decoder.init_params(cfg, jax.random.key(0)))
  write_test_tokenizer(str(directory))


def _arm_flags(root, init, n, train_steps):
  shared = [f"--gin_file={REPO / 'gin' / 'runs' / 'sft.gin'}",
            "--gin.partitioning.PartitionConfig.num_devices=1",
            f"--gin.INITIAL_CHECKPOINT='{init}'", f"--gin.TRAIN_STEPS={train_steps}",
            f"--gin.BATCH_SIZE={BATCH}", f"--gin.SEQ_LEN={SEQ}",
            "--gin.trainer.train.data_fn=@synthetic_train_data",
            f"--gin.synthetic_train_data.vocab_size={VOCAB}",
            f"--gin.CheckpointConfig.save_every={train_steps}",
            "--gin.LoggingConfig.eval_every=0", "--gin.LoggingConfig.report_mfu=False"]
  own = [[f"--gin.MODEL_DIR='{root / f'arm{a}'}'", "--gin.ARM='synthetic'",
          f"--gin.SEED={a}"] for a in range(n)]
  return shared, own


def _timed(cmd, env):
  t = time.perf_counter()
  subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
  return time.perf_counter() - t


def bench_process(n, train_steps, guard):
  import shlex
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_PLATFORMS="cpu")
  print(f"process: {n} arms x {train_steps} steps, toyworld base, {BATCH} x {SEQ}")
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    _write_init(tmp / "init")
    shared, own = _arm_flags(tmp / "single", tmp / "init", n, train_steps)
    alone = sum(_timed([sys.executable, "-m", "sftdiff.train", *shared, *a], env) for a in own)
    results = {}
    for mode in ("vmap", "loop"):
      shared, own = _arm_flags(tmp / mode, tmp / "init", n, train_steps)
      results[mode] = _timed([sys.executable, "-m", "sftdiff.train.multi_arm", *shared,
                              f"--multi_arm_mode={mode}",
                              *[f"--arm={shlex.join(a)}" for a in own]], env)
  print(f"  {n} x sftdiff.train: {alone:.1f} s ({alone / n:.1f} s per arm)")
  for mode, seconds in results.items():
    print(f"  sftdiff.train.multi_arm --multi_arm_mode={mode}: {seconds:.1f} s "
          f"({seconds / n:.1f} s per arm); per-arm throughput {guard.ratio(alone / seconds)}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--parts", default="step,process")
  parser.add_argument("--arms", default="4", help="arm counts for the step part")
  parser.add_argument("--process_arms", type=int, default=4)
  parser.add_argument("--steps", type=int, default=20, help="train steps per process run")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  guard = LoadGuard("bench/multi_arm.py")
  parts = args.parts.split(",")
  if "step" in parts:
    bench_step([int(a) for a in args.arms.split(",")], args.repeats, guard)
  if "process" in parts:
    bench_process(args.process_arms, args.steps, guard)
  guard.finish()


if __name__ == "__main__":
  np.set_printoptions(precision=3)
  main()
