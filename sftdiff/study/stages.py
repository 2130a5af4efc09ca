"""What 'done' means for each stage of a run, read from files only.

A run is trained when its final orbax step `MODEL_DIR/checkpoints/<steps>`
exists (orbax renames a step's temporary directory on commit, so a half-written
step never has the plain name); it is evaluated when every checkpoint the plan
evaluates (`sftdiff.runs.plan.evaluated_checkpoints`) has
`<ckpt>/eval/<benchmark>/metrics.json` for every benchmark (the eval binary
writes it last). Paths come from `sftdiff.layout`.
"""

from __future__ import annotations

import os
from typing import Sequence

from sftdiff import layout
from sftdiff.runs import plan as plan_lib
from sftdiff.runs.spec import RunSpec

metrics_path = layout.metrics_path


def final_checkpoint(spec: RunSpec, steps: int | None = None) -> str:
  """The run's last step dir (`steps` default: the run's TRAIN_STEPS)."""
  steps = spec.train_steps if steps is None else steps
  if steps is None:
    raise ValueError(f"run {spec.name} binds no TRAIN_STEPS override")
  return layout.step_dir(spec.model_dir, steps)


def train_done(spec: RunSpec, steps: int | None = None) -> bool:
  return os.path.isdir(final_checkpoint(spec, steps))


def missing_metrics(spec: RunSpec, benchmarks: Sequence[str],
                    eval_steps: str = "final") -> list[tuple[str, str]]:
  """(checkpoint, benchmark) pairs the run's eval has not written yet."""
  return layout.missing_metrics(plan_lib.evaluated_checkpoints(spec, eval_steps),
                                benchmarks)


def eval_done(spec: RunSpec, benchmarks: Sequence[str],
              eval_steps: str = "final") -> bool:
  return not missing_metrics(spec, benchmarks, eval_steps)


def log_path(spec: RunSpec, stage: str) -> str:
  """`runs/<arm>/seed<k>.<stage>.log`: beside the model dir, not in it, so a
  run whose model dir cannot be created still has a log."""
  model_dir = os.path.normpath(spec.model_dir)
  return f"{model_dir}.{stage}.log"
