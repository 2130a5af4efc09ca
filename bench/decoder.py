"""Decoder training-step throughput vs transformers, and the cost of remat.

    .venv/bin/python bench/decoder.py --hidden=256 --layers=4 --seq_len=256 --batch=8

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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=1024)
  parser.add_argument("--seq_len", type=int, default=256)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  guard = LoadGuard("bench/decoder.py")

  cfg = tiny_config("llama", hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                    num_layers=args.layers, num_heads=args.hidden // 64,
                    num_kv_heads=max(1, args.hidden // 128), head_dim=64,
                    vocab_size=args.vocab, max_position_embeddings=4 * args.seq_len)
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
  ours_remat = _time(jax_step(cfg.replace(remat=True)), args.repeats)

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
  print(f"model: llama hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, "
        f"{cfg.num_params():,} params, batch {args.batch} x {args.seq_len}, float32, "
        f"torch threads {torch.get_num_threads()}")
  print("| loss + grad | tokens/s | ratio to peer | GFLOP/s |")
  print("|---|---|---|---|")
  for name, seconds in (("sftdiff Decoder (jit)", ours),
                        ("sftdiff Decoder, remat=True", ours_remat),
                        ("peer: transformers LlamaForCausalLM (torch)", peer)):
    print(f"| {name} | {n_tokens / seconds:,.0f} | {guard.ratio(peer / seconds)} | "
          f"{flops / seconds / 1e9:.1f} |")
  guard.finish()


if __name__ == "__main__":
  main()
