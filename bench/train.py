"""Trainer throughput: sftdiff's train step vs Tunix's PeftTrainer, same run.

For the toyworld base model and a ~25M-parameter Llama (gin/models/llama_25m.gin)
it trains the same model, batch and sequence length with (a) sftdiff's jit
train step (`sftdiff.train.steps`, AdamW, masked token-sum loss) and (b)
Tunix's `PeftTrainer.train` (the same flax Decoder wrapped as an nnx module,
the same optimizer and loss), alternating chunks of steps so both see the
same machine load. It prints tokens/s, MFU against the CPU f32 matmul peak
measured in the same run, and the ratio.

  python bench/train.py [--models=toyworld,25m] [--steps=12] [--warmup=2]

Tunix is not a project dependency (its pins, e.g. safetensors<0.8, conflict
with transformers); install it beside the project without its pins:

  .venv/bin/pip install --no-deps google-tunix==0.1.7 google-metrax==0.2.4 \
      jaxtyping==0.3.11 perfetto==0.59.1 wadler_lindig==0.1.8

Compute is float32 for both (CPU has no fast bf16 matmul; MFU is against
the f32 peak). One CPU device (all host cores).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import gin  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from sftdiff.models import decoder  # noqa: E402
from sftdiff.models.config import ModelConfig  # noqa: E402
from sftdiff.train import metrics, partitioning, steps, synthetic_data  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent


def toyworld_config() -> ModelConfig:
  from sftdiff.toyworld import bases, params
  base = params.BaseParams(name="bench", seed=0, corpus_mix={})
  return bases.model_config(base, vocab_size=640, eos_id=0)


def llama_25m_config() -> ModelConfig:
  gin.clear_config()
  gin.parse_config_file(str(REPO / "gin" / "models" / "llama_25m.gin"))
  cfg = ModelConfig()
  gin.clear_config()
  return cfg.replace(dtype="float32", param_dtype="float32")


MODELS = {"toyworld": (toyworld_config, 8, 256), "25m": (llama_25m_config, 4, 256)}


def _optimizer():
  return optax.adamw(1e-4, b1=0.9, b2=0.95, weight_decay=0.0)


class Clock:
  """Starts when the first measured batch (after `warmup`) is requested."""

  def __init__(self, warmup):
    self.warmup, self.start = warmup, None

  def wrap(self, batches):
    for i, b in enumerate(batches):
      if i == self.warmup:
        self.start = time.perf_counter()
      yield b


class Ours:
  name = "sftdiff"

  def __init__(self, cfg, params0, batch_size):
    pc = partitioning.PartitionConfig(ici_mesh_shape=(1, 1, 1), num_devices=1)
    mesh = partitioning.make_mesh(pc)
    tx = _optimizer()
    self.fns = steps.build(cfg, tx, optax.constant_schedule(1e-4), mesh, pc.rules)
    self.state = self.fns.init_state(steps.put_on_mesh(params0, self.fns.param_shardings))
    self.batch_size = batch_size

  def run(self, batches, clock):
    for local in clock.wrap(batches):
      batch = partitioning.global_batch(local, self.fns.batch_sharding, self.batch_size)
      self.state, m = self.fns.train_step(self.state, batch)
    jax.block_until_ready(self.state)


class Tunix:
  name = "tunix"

  def __init__(self, cfg, params0, batch_size):
    from flax import nnx
    from tunix.sft import peft_trainer

    class DecoderModule(nnx.Module):
      """The same flax Decoder and parameters as an nnx module (what Tunix trains)."""

      def __init__(self, params):
        self.params = nnx.data(jax.tree.map(lambda x: nnx.Param(jnp.array(x)), params))

      def __call__(self, tokens, positions, segment_ids):
        params = jax.tree.map(lambda v: v[...], self.params,
                              is_leaf=lambda x: isinstance(x, nnx.Param))
        return decoder.Decoder(cfg).apply({"params": params}, tokens, positions, segment_ids)

    model = DecoderModule(params0)

    def loss_fn(model, input_ids, target_ids, loss_mask, segment_ids, positions):
      logits, _ = model(input_ids, positions, segment_ids)
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, target_ids)
      mask = loss_mask.astype(jnp.float32)
      return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    self.model, self.loss_fn, self.make = model, loss_fn, peft_trainer

  def run(self, batches, clock):
    # A fresh PeftTrainer per run: its train() runs once to max_steps.
    config = self.make.TrainingConfig(eval_every_n_steps=10**9, max_steps=len(batches),
                                      pbar_description=None)
    trainer = self.make.PeftTrainer(self.model, _optimizer(), config).with_loss_fn(self.loss_fn)
    # numpy batches in, as from a data loader (ours gets numpy batches too).
    trainer.train({k: jnp.asarray(v) for k, v in b.items()} for b in clock.wrap(batches))
    jax.block_until_ready(nnx_params(self.model))
    assert trainer.train_steps == len(batches), (trainer.train_steps, len(batches))


def nnx_params(model):
  from flax import nnx
  return nnx.state(model, nnx.Param)


def bench_model(name, warmup, measured, repeats):
  make_cfg, batch_size, seq_len = MODELS[name]
  cfg = make_cfg()
  params0 = decoder.init_params(cfg, jax.random.key(0))
  data = synthetic_data.synthetic_train_data(seq_len=seq_len, batch_size=batch_size,
                                             seed=0, vocab_size=cfg.vocab_size)
  batches = [next(data.train) for _ in range(warmup + measured)]
  runners = [Ours(cfg, params0, batch_size)]
  try:
    runners.append(Tunix(cfg, params0, batch_size))
  except Exception as e:  # pylint: disable=broad-except
    print(f"  Tunix PeftTrainer unavailable: {type(e).__name__}: {e}")
  elapsed = {r.name: float("inf") for r in runners}
  for rep in range(repeats):
    # Alternate (and swap the order each repeat) so both see the same load.
    for r in (runners if rep % 2 == 0 else runners[::-1]):
      clock = Clock(warmup)
      r.run(batches, clock)
      took = time.perf_counter() - clock.start
      elapsed[r.name] = min(elapsed[r.name], took)
      print(f"  {name} {r.name} repeat {rep}: {took / measured:.3f} s/step", flush=True)
  tokens = measured * batch_size * seq_len
  return cfg, batch_size, seq_len, {k: tokens / v for k, v in elapsed.items()}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="toyworld,25m")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=12)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  peak_before = metrics.measured_cpu_peak_flops.__wrapped__(2048, 5)
  rows = []
  for name in args.models.split(","):
    cfg, b, l, tps = bench_model(name, args.warmup, args.steps, args.repeats)
    rows.append((name, cfg, b, l, tps))
  peak = max(peak_before, metrics.measured_cpu_peak_flops.__wrapped__(2048, 5))
  print(f"CPU f32 matmul peak (2048^3, best of 5, before/after): {peak / 1e9:.1f} GFLOP/s "
        f"({os.cpu_count()} cores, jax {jax.__version__})")
  print("| model | params | batch x seq | sftdiff tok/s | sftdiff MFU | Tunix tok/s | "
        "Tunix MFU | sftdiff / Tunix |")
  print("|---|---|---|---|---|---|---|---|")
  for name, cfg, b, l, tps in rows:
    fpt = cfg.flops_per_token(l)
    ours = tps["sftdiff"]
    theirs = tps.get("tunix", float("nan"))
    print(f"| {name} | {cfg.num_params() / 1e6:.2f}M | {b} x {l} | {ours:,.0f} | "
          f"{ours * fpt / peak:.1%} | {theirs:,.0f} | {theirs * fpt / peak:.1%} | "
          f"{ours / theirs:.2f}x |")


if __name__ == "__main__":
  main()
