"""Tiny llama-style base models, briefly pretrained on the world's corpus.

Plain next-token prediction over the corpus sentences (each followed by the
EOS token), packed into rows of `pretrain_seq_len`, AdamW with a short warmup
and cosine decay, run with the same `Decoder` the trainer uses. The result is
an ordinary Hugging Face directory (config.json + model.safetensors +
tokenizer files) that the study imports like any real base.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sftdiff import strict_json
from sftdiff.models.config import ModelConfig
from sftdiff.models.decoder import Decoder, init_params
from sftdiff.models.hf_io import save_hf_checkpoint
from sftdiff.toyworld.params import BaseParams
from sftdiff.toyworld.tokenizer import TOKENIZER_FILES


def model_config(base: BaseParams, vocab_size: int, eos_id: int) -> ModelConfig:
  return ModelConfig(
      family="llama", vocab_size=vocab_size, hidden_size=base.hidden_size,
      intermediate_size=base.intermediate_size, num_layers=base.num_layers,
      num_heads=base.num_heads, num_kv_heads=base.num_kv_heads,
      head_dim=base.hidden_size // base.num_heads, max_position_embeddings=1024,
      rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=True,
      eos_token_id=eos_id, pad_token_id=eos_id, dtype="float32",
      param_dtype="float32")


def _rows(token_ids: Sequence[Sequence[int]], eos_id: int, seq_len: int) -> np.ndarray:
  """Concatenate sentences (each + EOS) and cut into rows of seq_len + 1."""
  flat = np.fromiter((t for ids in token_ids for t in (*ids, eos_id)), dtype=np.int32)
  n_rows = len(flat) // (seq_len + 1)
  if n_rows == 0:
    raise ValueError(f"pretraining corpus has {len(flat)} tokens, fewer than one "
                     f"row of {seq_len + 1}; raise WorldParams.corpus_sentences")
  return flat[:n_rows * (seq_len + 1)].reshape(n_rows, seq_len + 1)


@functools.lru_cache(maxsize=4)
def _train_step(cfg: ModelConfig, steps: int, learning_rate: float, batch: int, length: int):
  """(optimizer, jitted step); cached so both bases share one compilation."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, max(1, steps // 10), max(2, steps), learning_rate * 0.1)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))
  model = Decoder(cfg)
  positions_BxL = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
  segments_BxL = jnp.ones((batch, length), jnp.int32)

  def loss_fn(p, rows_BxL1):
    logits_BxLxV, _ = model.apply({"params": p}, rows_BxL1[:, :-1], positions_BxL, segments_BxL)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits_BxLxV, rows_BxL1[:, 1:]).mean()

  @jax.jit
  def step(p, state, rows_BxL1):
    loss, grads = jax.value_and_grad(loss_fn)(p, rows_BxL1)
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  return tx, step


def pretrain(base: BaseParams, cfg: ModelConfig, token_ids: Sequence[Sequence[int]],
             eos_id: int) -> tuple[dict, list[float]]:
  """Returns (params, losses) after `base.pretrain_steps` AdamW steps."""
  rows = _rows(token_ids, eos_id, base.pretrain_seq_len)
  rng = np.random.default_rng(base.seed)
  params = init_params(cfg, jax.random.PRNGKey(base.seed))
  tx, step = _train_step(cfg, base.pretrain_steps, base.learning_rate,
                         base.pretrain_batch, base.pretrain_seq_len)
  opt_state = tx.init(params)
  losses = []
  order = np.concatenate([rng.permutation(len(rows))
                          for _ in range(1 + base.pretrain_steps * base.pretrain_batch // len(rows))])
  for i in range(base.pretrain_steps):
    batch = rows[order[i * base.pretrain_batch:(i + 1) * base.pretrain_batch]]
    params, opt_state, loss = step(params, opt_state, jnp.asarray(batch))
    losses.append(float(loss))
  return jax.device_get(params), losses


def build_base(base: BaseParams, directory: str, tokenizer_dir: str,
               token_ids: Sequence[Sequence[int]], vocab_size: int, eos_id: int) -> dict:
  """Pretrains `base` and writes its HF directory; returns a small log."""
  start = time.time()
  cfg = model_config(base, vocab_size, eos_id)
  params, losses = pretrain(base, cfg, token_ids, eos_id)
  save_hf_checkpoint(directory, cfg, params, dtype="float32")
  for name in TOKENIZER_FILES:
    shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(directory, name))
  log = {"base": base.name, "num_params": cfg.num_params(), "steps": base.pretrain_steps,
         "first_loss": losses[0] if losses else None,
         "final_loss": float(np.mean(losses[-10:])) if losses else None}
  strict_json.dump(log, os.path.join(directory, "pretrain_log.json"))
  return {**log, "seconds": round(time.time() - start, 2)}
