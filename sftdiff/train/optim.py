"""Optimiser: AdamW + warmup/decay schedule + clipping + weight-decay mask."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gin
import jax
import optax

SCHEDULES = ("cosine", "linear", "constant")


@gin.configurable
def learning_rate_schedule(total_steps: int, *, peak_learning_rate: float = 1e-4,
                           warmup_steps: int = 0, decay: str = "cosine",
                           end_learning_rate_ratio: float = 0.0) -> optax.Schedule:
  """Linear warmup 0 -> peak over `warmup_steps`, then decay to the end.

  The decay reaches `peak * end_learning_rate_ratio` at `total_steps`.
  """
  if decay not in SCHEDULES:
    raise ValueError(f"learning_rate_schedule.decay={decay!r}; one of {SCHEDULES}")
  if warmup_steps < 0 or warmup_steps > total_steps:
    raise ValueError(f"learning_rate_schedule.warmup_steps={warmup_steps} must be "
                     f"in [0, total_steps={total_steps}]")
  end = peak_learning_rate * end_learning_rate_ratio
  decay_steps = max(total_steps - warmup_steps, 1)
  if decay == "cosine":
    after = optax.cosine_decay_schedule(peak_learning_rate, decay_steps,
                                        alpha=end_learning_rate_ratio)
  elif decay == "linear":
    after = optax.linear_schedule(peak_learning_rate, end, decay_steps)
  else:
    after = optax.constant_schedule(peak_learning_rate)
  if warmup_steps == 0:
    return after
  warmup = optax.linear_schedule(0.0, peak_learning_rate, warmup_steps)
  return optax.join_schedules([warmup, after], [warmup_steps])


def _path_names(path) -> list[str]:
  names = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        names.append(str(getattr(key, attr)))
        break
  return names


@gin.configurable
def weight_decay_mask(params, *, decay_norms: bool = False,
                      decay_biases: bool = False,
                      decay_embeddings: bool = False,
                      embedding_keywords: Sequence[str] = ("embed",)):
  """True where weight decay applies.

  Norm scales and biases are the 1-D parameters (a bias is named `bias`);
  embeddings are parameters whose path names contain an `embedding_keywords`
  entry (case-insensitive). Everything else (projection matrices) decays.
  """
  def decide(path, leaf):
    names = [n.lower() for n in _path_names(path)]
    if any(k in n for n in names for k in embedding_keywords):
      return decay_embeddings
    if names and names[-1] == "bias":
      return decay_biases
    if getattr(leaf, "ndim", 0) <= 1:
      return decay_norms
    return True
  return jax.tree_util.tree_map_with_path(decide, params)


@gin.configurable
def make_optimizer(total_steps: int, *, b1: float = 0.9, b2: float = 0.95,
                   eps: float = 1e-8, weight_decay: float = 0.0,
                   clip_global_norm: float | None = 1.0,
                   mask_fn: Callable[[Any], Any] = weight_decay_mask
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW (decoupled decay, masked) after global-norm clipping."""
  schedule = learning_rate_schedule(total_steps)
  chain = []
  if clip_global_norm:
    chain.append(optax.clip_by_global_norm(clip_global_norm))
  chain.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps,
                           weight_decay=weight_decay, mask=mask_fn))
  return optax.chain(*chain), schedule
