"""Which runs of a plan share one training process (`sftdiff.train.multi_arm`).

Runs can train together when everything but their arm, seed and model dir is
equal: the same train gin files and the same overrides (base checkpoint,
data, optimiser, steps, batch, mesh). That is what the multi-arm trainer
requires of its arms (`train/multi_arm_config.check_shared`: one model
config, one compiled step), and the plan guarantees it by construction.
A group of such runs is cut into `max_arms`-sized jobs of near-equal size,
so a local runner with parallelism 2 still has two jobs to run at once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence, TypeVar

import gin

from sftdiff.runs.spec import PlanError, RunSpec

MULTI_ARM_MODULE = "sftdiff.train.multi_arm"
MODES = ("auto", "loop", "vmap")

T = TypeVar("T")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MultiArmGrouping:
  """How many arms one training process trains (the plan's grouping).

  Attributes:
    max_arms: at most this many runs per train job; 1 (default) trains each
      run in its own `python -m sftdiff.train` process.
    mode: the multi-arm trainer's `--multi_arm_mode`: `loop` (one compiled
      single-arm step per arm: bit-identical to training each alone),
      `vmap` (one program over stacked arms: within float32 rounding) or
      `auto` (loop on CPU, vmap on accelerators).
    arm_axis: vmap only: the mesh axis the arms map onto (`--arm_axis`);
      every job's arm count must divide over it.
  """
  max_arms: int = 1
  mode: str = "auto"
  arm_axis: str | None = None

  def __post_init__(self):
    if self.max_arms < 1:
      raise PlanError(f"MultiArmGrouping.max_arms={self.max_arms}: must be >= 1 "
                      "(1 trains every run in its own process)")
    if self.mode not in MODES:
      raise PlanError(f"MultiArmGrouping.mode={self.mode!r}: one of {MODES}")
    if self.arm_axis is not None and self.mode == "loop":
      raise PlanError("MultiArmGrouping.arm_axis needs mode 'vmap' or 'auto'")

  @property
  def enabled(self) -> bool:
    return self.max_arms > 1


def group_key(run: RunSpec) -> tuple:
  """Runs with equal keys differ only in ARM, SEED and MODEL_DIR."""
  return (run.gin_files, run.overrides)


def chunks(items: Sequence[T], max_size: int) -> list[list[T]]:
  """`items` in order, cut into the fewest chunks of at most `max_size`,
  sizes as equal as they can be (the first ones one larger)."""
  count = math.ceil(len(items) / max_size)
  size, extra = divmod(len(items), count)
  out, start = [], 0
  for i in range(count):
    end = start + size + (i < extra)
    out.append(list(items[start:end]))
    start = end
  return out


def group(items: Sequence[T], key, max_arms: int) -> list[list[T]]:
  """Items with equal `key(item)`, chunked by `max_arms`; chunks ordered by
  their first item (so with `max_arms=1`, `items` one by one)."""
  by_key: dict[tuple, list[int]] = {}
  for i, item in enumerate(items):
    by_key.setdefault(key(item), []).append(i)
  out = sorted((c for same in by_key.values() for c in chunks(same, max_arms)),
               key=lambda c: c[0])
  return [[items[i] for i in c] for c in out]


def trainer_flags(grouping: MultiArmGrouping) -> list[str]:
  flags = [f"--multi_arm_mode={grouping.mode}"]
  if grouping.arm_axis is not None:
    flags.append(f"--arm_axis={grouping.arm_axis}")
  return flags
