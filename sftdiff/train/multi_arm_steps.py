"""The train step of several arms as one compiled program: `vmap` over a
leading arm axis of the stacked train states and batches.

The single-arm step (`steps.build`) is vmapped as it is, so the arms run the
same loss, accumulation and optimiser update. On a mesh the arm axis is
either replicated (`arm_axis=None`: every arm is laid out as in single-arm
training, "arms within data") or mapped onto one mesh axis (`arm_axis='data'`
say: each slice of that axis trains its own arms, and the logical rules lose
that axis for everything inside an arm).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np

from sftdiff import partitioning
from sftdiff.train import steps


def rules_without(rules, axis: str | None):
  """The logical rules with mesh axis `axis` removed from every target."""
  if axis is None:
    return rules
  out = []
  for name, target in rules:
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    kept = tuple(t for t in targets if t != axis)
    out.append((name, kept[0] if len(kept) == 1 else (kept or None)))
  return tuple(out)


def stacked_sharding(sharding: NamedSharding, arm_axis: str | None) -> NamedSharding:
  """A per-arm sharding with the arm axis in front."""
  return NamedSharding(sharding.mesh, PartitionSpec(arm_axis, *sharding.spec))


@dataclasses.dataclass
class StackedStep:
  """The vmapped step and how stacked/per-arm states are laid out."""
  arm_fns: steps.StepFunctions   # the single-arm functions vmapped here
  train_step: Any                # (stacked state, stacked batch) -> (state, metrics [A])
  state_shardings: Any           # stacked
  batch_sharding: NamedSharding  # stacked [A, B, L]
  stack: Any                     # list of per-arm states -> stacked state
  unstack: Any                   # (stacked state, i) -> arm i's state, per-arm shardings


def build(model_cfg, tx, schedule, mesh, rules, *, arm_axis: str | None = None,
          microbatches: int = 1, constrain_activations: bool = True) -> StackedStep:
  arm_rules = rules_without(rules, arm_axis)
  # Activation constraints need the mesh active while tracing; the vmapped
  # step's own context (below) provides it, so the inner one must not.
  fns = steps.build(model_cfg, tx, schedule, mesh, arm_rules, microbatches=microbatches,
                    constrain_activations=False)
  state_shardings = jax.tree.map(lambda s: stacked_sharding(s, arm_axis), fns.state_shardings)
  batch_sharding = stacked_sharding(fns.batch_sharding, arm_axis)
  replicated = partitioning.replicated(mesh)
  vmapped = jax.vmap(fns.train_step, spmd_axis_name=arm_axis)
  jit_train = jax.jit(vmapped, in_shardings=(state_shardings, batch_sharding),
                      out_shardings=(state_shardings, replicated), donate_argnums=(0,))
  context = functools.partial(partitioning.tracing_context, mesh, arm_rules,
                              constrain_activations)

  def train_step(state, batch):
    with context():
      return jit_train(state, batch)

  jit_stack = jax.jit(lambda states: jax.tree.map(lambda *x: jnp.stack(x), *states),
                      out_shardings=state_shardings)
  jit_unstack = jax.jit(lambda state, i: jax.tree.map(
      lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), state),
                        out_shardings=fns.state_shardings)
  return StackedStep(arm_fns=fns, train_step=train_step, state_shardings=state_shardings,
                     batch_sharding=batch_sharding, stack=jit_stack,
                     unstack=lambda state, i: jit_unstack(state, np.int32(i)))


def stacked_batch(local_batches, sharding: NamedSharding, global_batch_size: int):
  """Per-arm local `Batch`es -> one `Batch` of global [A, B, ...] arrays."""
  local = jax.tree.map(lambda *x: np.stack(x), *local_batches)
  return partitioning.global_batch(local, sharding, global_batch_size, batch_axis=1)
