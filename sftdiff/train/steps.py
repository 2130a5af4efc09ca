"""The jit-compiled pieces of training: loss, train step (with gradient
accumulation), eval step, and state initialisation, all with explicit
shardings derived from the logical axis rules.

Loss normalisation: the loss of a step is (sum of per-token cross-entropies
over every trainable token of every microbatch) / (number of trainable
tokens in the whole batch), so accumulating k microbatches gives the same
update as one big batch whatever the tokens per microbatch.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from sftdiff import partitioning
from sftdiff.data import batch as batch_lib
from sftdiff.models import decoder
from sftdiff.train import chunked_loss

log = logging.getLogger(__name__)

BATCH_AXES = ("batch", "length")


def token_loss_sums(model: nn.Module, params, batch: batch_lib.Batch,
                    vocab_chunk: int = 0) -> tuple[jax.Array, jax.Array]:
  """(sum of masked token cross-entropies, number of trainable tokens), f32.
  `vocab_chunk` > 0: the vocabulary-chunked loss (sftdiff/train/chunked_loss.py)."""
  if vocab_chunk:
    hidden_BxLxE, _ = model.apply({"params": params}, batch.input_ids, batch.positions,
                                  batch.segment_ids, return_hidden=True)
    losses_BxL = chunked_loss.token_cross_entropies(
        model.config, params, hidden_BxLxE, batch.target_ids, vocab_chunk)
  else:
    logits_BxLxV, _ = model.apply({"params": params}, batch.input_ids, batch.positions,
                                  batch.segment_ids)
    losses_BxL = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxLxV.astype(jnp.float32), batch.target_ids)
  mask_BxL = batch.loss_mask.astype(jnp.float32)
  return jnp.sum(losses_BxL * mask_BxL), jnp.sum(mask_BxL)


def _split_microbatches(batch: batch_lib.Batch, k: int) -> batch_lib.Batch:
  """[B, ...] -> [k, B/k, ...]; microbatch j takes rows j, j+k, ... so each
  microbatch stays spread over every batch shard."""
  def split(x):
    return x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
  return jax.tree.map(split, batch)


@dataclasses.dataclass
class StepFunctions:
  """Compiled step functions plus the shardings they were compiled for."""
  init_state: Any     # params -> state
  train_step: Any     # (state, Batch) -> (state, metrics)
  eval_step: Any      # (params, Batch) -> (loss_sum, tokens)
  state_shardings: Any
  param_shardings: Any
  batch_sharding: NamedSharding


def param_shardings(model_cfg, mesh, rules):
  return partitioning.logical_to_sharding(decoder.logical_axes(model_cfg), mesh, rules)


def state_shardings_for(tx: optax.GradientTransformation, params_shardings, abstract_params,
                        mesh):
  """Optimizer-state leaves that mirror params get the params' shardings;
  everything else (counts, scalars) is replicated."""
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_shardings = optax.tree_map_params(
      tx, lambda _, s: s, abstract_opt, params_shardings,
      transform_non_params=lambda _: partitioning.replicated(mesh))
  return {"params": params_shardings, "opt_state": opt_shardings,
          "step": partitioning.replicated(mesh)}


def build(model_cfg, tx: optax.GradientTransformation, schedule, mesh, rules, *,
          microbatches: int = 1, constrain_activations: bool = True,
          loss_chunk: int | None = None) -> StepFunctions:
  """`loss_chunk`: vocabulary entries per LM-head chunk of the loss (None:
  gin's `sftdiff.loss_vocab_chunk` for this vocabulary; 0: plain full-logits loss)."""
  model = decoder.Decoder(model_cfg)
  if loss_chunk is None:
    loss_chunk = chunked_loss.loss_vocab_chunk(model_cfg.vocab_size)
  partitioner = partitioning.Partitioner(mesh, rules,
                                         constrain_activations=constrain_activations)
  p_shardings = partitioner.sharding(decoder.logical_axes(model_cfg))
  abstract_params = jax.eval_shape(lambda: decoder.init_params(model_cfg, jax.random.key(0)))
  s_shardings = state_shardings_for(tx, p_shardings, abstract_params, mesh)
  b_sharding = partitioner.batch_sharding
  replicated = partitioner.replicated
  grad_fn = jax.value_and_grad(lambda p, b: token_loss_sums(model, p, b, loss_chunk),
                               has_aux=True)

  def init_state(params):
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

  def train_step(state, batch):
    params = state["params"]
    if microbatches == 1:
      (loss_sum, tokens), grads = grad_fn(params, batch)
    else:
      def accumulate(carry, microbatch):
        microbatch = jax.tree.map(lambda x: nn.with_logical_constraint(x, BATCH_AXES),
                                  microbatch)
        (l, t), g = grad_fn(params, microbatch)
        c_l, c_t, c_g = carry
        return (c_l + l, c_t + t, jax.tree.map(jnp.add, c_g, g)), None
      zeros = jax.tree.map(jnp.zeros_like, params)
      (loss_sum, tokens, grads), _ = jax.lax.scan(
          accumulate, (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros),
          _split_microbatches(batch, microbatches))
    denominator = jnp.maximum(tokens, 1.0)
    grads = jax.tree.map(lambda g: g / denominator.astype(g.dtype), grads)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_state = {"params": optax.apply_updates(params, updates), "opt_state": opt_state,
                 "step": state["step"] + 1}
    metrics = {"loss": loss_sum / denominator, "grad_norm": optax.global_norm(grads),
               "learning_rate": schedule(state["step"]), "trainable_tokens": tokens}
    return new_state, metrics

  def eval_step(params, batch):
    return token_loss_sums(model, params, batch, loss_chunk)

  batch_shardings = batch_lib.Batch.filled(b_sharding)
  # Traced under the mesh + rules, so the model's activation constraints apply.
  jit_init = partitioner.jit(init_state, in_shardings=(p_shardings,), out_shardings=s_shardings)
  # The old state is donated: updated in place. (orbax copies a state to host
  # before `save` returns, so an async save never reads a donated buffer.)
  jit_train = partitioner.jit(train_step, in_shardings=(s_shardings, batch_shardings),
                              out_shardings=(s_shardings, replicated), donate_argnums=(0,))
  jit_eval = partitioner.jit(eval_step, in_shardings=(p_shardings, batch_shardings),
                             out_shardings=(replicated, replicated))
  return StepFunctions(init_state=jit_init, train_step=jit_train, eval_step=jit_eval,
                       state_shardings=s_shardings, param_shardings=p_shardings,
                       batch_sharding=b_sharding)


def abstract_state(shardings, shapes):
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)


def state_shapes(tx, model_cfg):
  def make():
    params = decoder.init_params(model_cfg, jax.random.key(0))
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
  return jax.eval_shape(make)


def put_on_mesh(tree, shardings):
  """Host arrays (identical on every process) -> global arrays on the mesh."""
  def put(x, sharding):
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
  return jax.tree.map(put, tree, shardings)
