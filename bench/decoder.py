"""Decoder training-step throughput vs transformers, and the cost of remat.

    .venv/bin/python bench/decoder.py --hidden=256 --layers=4 --seq_len=256 --batch=8
    .venv/bin/python bench/decoder.py --preset=toy --with_optimizer   # the toy study's step
    .venv/bin/python bench/decoder.py --preset=toy --with_optimizer --profile_dir=/tmp/prof

Presets (explicit --hidden etc. are ignored when a preset is given):
  4m   hidden 256, 4 layers, vocab 1024, head_dim 64 (the default shapes, 4.46M);
  toy  the toyworld base: hidden 96, intermediate 256, 3 layers, 4 heads / 2 kv
       heads, head_dim 24, vocab 640, tied embeddings (0.37M);
  25m  gin/models/llama_25m.gin's shapes in float32 (25.5M).
--with_optimizer also times the real `sftdiff.train.steps.build` train step
(AdamW + global-norm clipping as gin/runs/sft.gin, donated state) on packed
rows with several segments per row, as the study's trainings run it.
--profile_dir writes a jax.profiler trace of 3 steps of ours (XLA:CPU thunks).

Times loss + gradient (next-token cross-entropy over a packed batch, no
optimizer) for the same random llama-family model:
  1. ours: jit(value_and_grad) of `Decoder`, float32;
  2. peer: transformers `LlamaForCausalLM` (torch CPU, eager attention),
     forward + backward on the same weights, exported with save_hf_checkpoint;
  3. ours with `remat=True`.
Each is warmed up once (compilation excluded) and timed over --repeats calls;
prints tokens/s, the ratio to the peer, and achieved FLOP/s from
ModelConfig.flops_per_token.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from sftdiff.models import decoder, hf_io
from sftdiff.testing.models import tiny_config

from _load import LoadGuard


def _time(fn, repeats):
  fn()
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


_PRESETS = {
    "4m": dict(hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4,
               num_kv_heads=2, head_dim=64, vocab_size=1024),
    "toy": dict(hidden_size=96, intermediate_size=256, num_layers=3, num_heads=4,
                num_kv_heads=2, head_dim=24, vocab_size=640, tie_embeddings=True),
    "25m": dict(hidden_size=512, intermediate_size=1792, num_layers=6, num_heads=8,
                num_kv_heads=4, head_dim=64, vocab_size=8192, tie_embeddings=True),
}


def _packed_batch(rng, vocab, batch, seq_len, mean_example_len=48):
  """A packed Batch (numpy): rows of several examples, positions restarting."""
  from sftdiff.data import batch as batch_lib
  seg = np.zeros((batch, seq_len), np.int32)
  pos = np.zeros((batch, seq_len), np.int32)
  for r in range(batch):
    i, s = 0, 1
    while i < seq_len:
      n = min(int(rng.integers(mean_example_len // 2, 2 * mean_example_len)), seq_len - i)
      seg[r, i:i + n], pos[r, i:i + n] = s, np.arange(n)
      i, s = i + n, s + 1
  ids = rng.integers(1, vocab, (batch, seq_len + 1)).astype(np.int32)
  return batch_lib.Batch(input_ids=ids[:, :-1], target_ids=ids[:, 1:],
                         loss_mask=(pos > 0).astype(np.int32), segment_ids=seg, positions=pos)


def _train_step(cfg, params, host_batch, batch_size):
  """The trainer's compiled step (steps.build) and a thunk running it once."""
  from sftdiff import partitioning
  from sftdiff.train import optim, steps
  pc = partitioning.PartitionConfig(ici_mesh_shape=(1, 1, 1), num_devices=1)
  mesh = partitioning.make_mesh(pc)
  tx, schedule = optim.make_optimizer(100, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0,
                                      clip_global_norm=1.0)
  fns = steps.build(cfg, tx, schedule, mesh, pc.rules)
  box = {"state": fns.init_state(steps.put_on_mesh(params, fns.param_shardings))}
  batch = partitioning.global_batch(host_batch, fns.batch_sharding, batch_size)

  def run():
    box["state"], metrics = fns.train_step(box["state"], batch)
    jax.block_until_ready(metrics)
  return run


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--preset", choices=sorted(_PRESETS), default=None)
  parser.add_argument("--with_optimizer", action="store_true")
  parser.add_argument("--profile_dir", default=None)
  parser.add_argument("--skip_remat", action="store_true")
  parser.add_argument("--attention_impl", default="xla")
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=1024)
  parser.add_argument("--seq_len", type=int, default=256)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  guard = LoadGuard("bench/decoder.py")

  shapes = _PRESETS.get(args.preset) or dict(
      hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_layers=args.layers,
      num_heads=args.hidden // 64, num_kv_heads=max(1, args.hidden // 128), head_dim=64,
      vocab_size=args.vocab)
  args.vocab = shapes["vocab_size"]
  cfg = tiny_config("llama", **shapes, max_position_embeddings=4 * args.seq_len,
                    attention_impl=args.attention_impl)
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, args.vocab, (args.batch, args.seq_len + 1))
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  positions = np.tile(np.arange(args.seq_len), (args.batch, 1))
  segments = np.ones_like(inputs)
  n_tokens = inputs.size

  def jax_step(config):
    def loss(p):
      logits, _ = decoder.Decoder(config).apply({"params": p}, inputs, positions, segments)
      logp = jax.nn.log_softmax(logits)
      return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))
    step = jax.jit(jax.value_and_grad(loss))
    return lambda: jax.block_until_ready(step(params))

  ours = _time(jax_step(cfg), args.repeats)
  rows = [("sftdiff Decoder (jit)", ours)]
  if not args.skip_remat:
    rows.append(("sftdiff Decoder, remat=True", _time(jax_step(cfg.replace(remat=True)),
                                                      args.repeats)))
  if args.with_optimizer:
    train = _train_step(cfg, params, _packed_batch(rng, args.vocab, args.batch, args.seq_len),
                        args.batch)
    rows.append(("sftdiff train step (steps.build: packed segments, AdamW + clip)",
                 _time(train, args.repeats)))
    if args.profile_dir:
      with jax.profiler.trace(args.profile_dir):
        for _ in range(3):
          train()
      print(f"profile (3 train steps): {args.profile_dir}")

  import torch
  import transformers
  with tempfile.TemporaryDirectory() as tmp:
    hf_io.save_hf_checkpoint(tmp, cfg, params)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp, attn_implementation="eager", dtype=torch.float32)
  model.train()
  t_inputs, t_targets = torch.tensor(inputs), torch.tensor(targets)

  def torch_step():
    model.zero_grad()
    logits = model(input_ids=t_inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), t_targets.reshape(-1))
    loss.backward()

  peer = _time(torch_step, args.repeats)

  flops = cfg.flops_per_token(args.seq_len) * n_tokens
  print(f"model: llama hidden {cfg.hidden_size}, {cfg.num_layers} layers, vocab {args.vocab}, "
        f"{cfg.num_params():,} params, batch {args.batch} x {args.seq_len}, float32, "
        f"torch threads {torch.get_num_threads()}")
  print("| loss + grad | tokens/s | ratio to peer | GFLOP/s |")
  print("|---|---|---|---|")
  rows.append(("peer: transformers LlamaForCausalLM (torch, loss + grad)", peer))
  for name, seconds in rows:
    print(f"| {name} | {n_tokens / seconds:,.0f} | {guard.ratio(peer / seconds)} | "
          f"{flops / seconds / 1e9:.1f} |")
  guard.finish()


if __name__ == "__main__":
  main()
