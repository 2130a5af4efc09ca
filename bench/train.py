"""Trainer throughput: sftdiff's train step vs Tunix's PeftTrainer, same run.

For the toyworld base model and a ~25M-parameter Llama (gin/models/llama_25m.gin)
it trains the same model size, batch and sequence length with
  (a) sftdiff's jit train step (`sftdiff.train.steps`, AdamW, masked
      token-sum loss: the step `python -m sftdiff.train` runs);
  (b) Tunix's `PeftTrainer.train` on Tunix's own Llama 3 (`tunix.models.llama3`)
      of the same sizes — what a Tunix user runs;
  (c) Tunix's `PeftTrainer.train` on sftdiff's Decoder wrapped as an nnx module
      (same model, same parameters: isolates the training loop);
alternating runs (order swapped each repeat) so all see the same machine
load. It prints tokens/s, MFU against the CPU f32 matmul peak measured in the
same run, the ratios, and a matmul floor: the step time if a step took only
its matmuls, each timed alone at its shape.

  python bench/train.py [--models=toyworld,25m] [--steps=12] [--warmup=2]
  python bench/train.py --profile=25m   # where sftdiff's step spends its time

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
from sftdiff import partitioning  # noqa: E402
from sftdiff.train import metrics, steps, synthetic_data  # noqa: E402

from _load import LoadGuard  # noqa: E402

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
  """Starts when the first measured batch (after `warmup`) is requested, once
  every computation dispatched so far has finished: a trainer that dispatches
  steps asynchronously would otherwise carry its warm-up steps into the
  measured window (one that syncs every step would not), which undercounted
  sftdiff by up to warmup/steps in earlier runs of this script."""

  def __init__(self, warmup):
    self.warmup, self.start = warmup, None

  def wrap(self, batches):
    for i, b in enumerate(batches):
      if i == self.warmup:
        jax.block_until_ready(jax.live_arrays())
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
    trainer.train({k: jnp.asarray(v) for k, v in b.features().items()}
                  for b in clock.wrap(batches))
    jax.block_until_ready(nnx_params(self.model))
    assert trainer.train_steps == len(batches), (trainer.train_steps, len(batches))


class TunixLlama3(Tunix):
  """Tunix's PeftTrainer training Tunix's own Llama 3 (`tunix.models.llama3`) of
  the same sizes: what a Tunix user runs. Same loss, optimizer and batches."""
  name = "tunix_llama3"

  def __init__(self, cfg, params0, batch_size):
    from flax import nnx
    from tunix.models.llama3 import model as llama3
    from tunix.sft import peft_trainer
    if cfg.family != "llama" or cfg.rope_scaling or cfg.qk_norm != "none":
      raise ValueError(f"Tunix's Llama 3 cannot express {cfg.family} with these options")
    model = llama3.Llama3(llama3.ModelConfig(
        num_layers=cfg.num_layers, vocab_size=cfg.vocab_size, embed_dim=cfg.hidden_size,
        hidden_dim=cfg.intermediate_size, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        num_kv_heads=cfg.num_kv_heads, rope_theta=int(cfg.rope_theta), norm_eps=cfg.norm_eps,
        weight_tying=cfg.tie_embeddings), rngs=nnx.Rngs(0))

    def loss_fn(model, input_ids, target_ids, loss_mask, segment_ids, positions):
      mask_BxLxS = decoder.attention_mask(positions, segment_ids, positions, segment_ids)
      logits, _ = model(input_ids, positions, None, mask_BxLxS)
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, target_ids)
      mask = loss_mask.astype(jnp.float32)
      return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    self.model, self.loss_fn, self.make = model, loss_fn, peft_trainer


def matmul_floor_s(cfg, batch_size, seq_len, repeats=3):
  """Seconds per train step spent in the model's matmuls alone, each timed in
  isolation at its own shape (forward, and the two backward products per
  weight matmul / four per attention matmul). No implementation that runs
  these matmuls through XLA's CPU kernels can take less time per step."""
  m, h, d = batch_size * seq_len, cfg.hidden_size, cfg.head_dim
  nq, nk, f, v = cfg.num_heads * d, cfg.num_kv_heads * d, cfg.intermediate_size, cfg.vocab_size
  g, bk = cfg.num_heads // cfg.num_kv_heads, batch_size * cfg.num_kv_heads
  weight = [(m, h, nq), (m, h, nk), (m, h, nk), (m, nq, h), (m, h, f), (m, h, f), (m, f, h)]
  # Per (batch x kv head): [G*L, D] @ [D, S] scores and [G*L, S] @ [S, D] values.
  attention = [(bk, g * seq_len, d, seq_len), (bk, g * seq_len, seq_len, d)]
  total = 0.0
  shapes = [(1, *s, cfg.num_layers) for s in weight] + \
           [(*s, cfg.num_layers) for s in attention] + [(1, m, h, v, 1)]
  for batch, a, k, n, count in shapes:
    # Forward x@w, backward dx = dy@w.T and dw = x.T@dy: the same FLOPs, three layouts.
    for lhs, rhs in (((batch, a, k), (batch, k, n)), ((batch, a, n), (batch, n, k)),
                     ((batch, k, a), (batch, a, n))):
      x, y = jnp.ones(lhs, jnp.float32), jnp.ones(rhs, jnp.float32)
      total += metrics.best_matmul_seconds(x, y, repeats) * count
  return total


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
  for peer in (TunixLlama3, Tunix):
    try:
      runners.append(peer(cfg, params0, batch_size))
    except Exception as e:  # pylint: disable=broad-except
      print(f"  {peer.name} unavailable: {type(e).__name__}: {e}")
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
  tps = {k: tokens / v for k, v in elapsed.items()}
  tps["matmul_floor"] = batch_size * seq_len / matmul_floor_s(cfg, batch_size, seq_len)
  return cfg, batch_size, seq_len, tps


def profile(name, steps=3):
  """XLA CPU thunk times of sftdiff's step, summed by kind (jax.profiler trace)."""
  import collections
  import glob
  import gzip
  import json
  import re
  import tempfile
  make_cfg, batch_size, seq_len = MODELS[name]
  cfg = make_cfg()
  data = synthetic_data.synthetic_train_data(seq_len=seq_len, batch_size=batch_size,
                                             seed=0, vocab_size=cfg.vocab_size)
  batches = [next(data.train) for _ in range(steps + 2)]
  ours = Ours(cfg, decoder.init_params(cfg, jax.random.key(0)), batch_size)
  ours.run(batches[:2], Clock(0))
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    ours.run(batches[2:], Clock(0))
    jax.profiler.stop_trace()
    trace = glob.glob(f"{trace_dir}/**/*perfetto_trace.json.gz", recursive=True)[0]
    events = json.load(gzip.open(trace))
  events = events["traceEvents"] if isinstance(events, dict) else events
  by_kind = collections.Counter()
  for e in events:  # XLA thunks are named like `ynn_fusion.12`, `copy_bitcast_fusion.3`
    if e.get("ph") == "X" and re.fullmatch(r"[a-z_]+(\.\d+)?", e["name"]):
      by_kind[e["name"].split(".")[0]] += e.get("dur", 0) / 1e3 / steps
  total = sum(by_kind.values())
  print(f"{name}: XLA thunk time per step {total:.0f} ms (profiled, {steps} steps)")
  for kind, ms in by_kind.most_common(12):
    print(f"  {ms:8.1f} ms  {ms / total:6.1%}  {kind}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="toyworld,25m")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=12)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--profile", default=None, help="profile sftdiff's step for this model")
  args = parser.parse_args()
  guard = LoadGuard("bench/train.py")
  if args.profile:
    profile(args.profile)
    guard.finish()
    return
  peak_before = metrics.measured_cpu_peak_flops.__wrapped__(2048, 5)
  rows = []
  for name in args.models.split(","):
    cfg, b, l, tps = bench_model(name, args.warmup, args.steps, args.repeats)
    rows.append((name, cfg, b, l, tps))
  peak = max(peak_before, metrics.measured_cpu_peak_flops.__wrapped__(2048, 5))
  print(f"CPU f32 matmul peak (2048^3, best of 5, before/after): {peak / 1e9:.1f} GFLOP/s "
        f"({os.cpu_count()} cores, jax {jax.__version__})")
  print("Tokens/s per trainer; MFU against that peak; 'matmuls only' is the rate if a step "
        "took only the time of its matmuls, each timed alone (an upper bound).")
  print("| model | params | batch x seq | sftdiff tok/s (MFU) | Tunix, own Llama 3 (MFU) | "
        "sftdiff / Tunix | Tunix loop, our decoder | sftdiff / that | matmuls only | "
        "sftdiff / matmuls only |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for name, cfg, b, l, tps in rows:
    fpt = cfg.flops_per_token(l)
    ours = tps["sftdiff"]
    cell = lambda k: (f"{tps[k]:,.0f} ({tps[k] * fpt / peak:.1%})" if k in tps else "n/a")
    ratio = lambda k: guard.ratio(ours / tps[k]) if k in tps else "n/a"
    print(f"| {name} | {cfg.num_params() / 1e6:.2f}M | {b} x {l} | {cell('sftdiff')} | "
          f"{cell('tunix_llama3')} | {ratio('tunix_llama3')} | {cell('tunix')} | "
          f"{ratio('tunix')} | {cell('matmul_floor')} | {ratio('matmul_floor')} |")
  guard.finish()

if __name__ == "__main__":
  main()
