"""What 'done' means for each stage of a run, read from files only.

A run is trained when its final orbax step `MODEL_DIR/checkpoints/<steps>`
exists (orbax renames a step's temporary directory on commit, so a half-written
step never has the plain name); it is evaluated when every benchmark has
`<ckpt>/eval/<benchmark>/metrics.json` (the eval binary writes it last).
"""

from __future__ import annotations

import os
from typing import Sequence

from sftdiff.study.spec import RunSpec


def final_checkpoint(spec: RunSpec, steps: int) -> str:
  return os.path.join(spec.model_dir, "checkpoints", str(int(steps)))


def train_done(spec: RunSpec, steps: int) -> bool:
  return os.path.isdir(final_checkpoint(spec, steps))


def metrics_path(checkpoint: str, benchmark: str) -> str:
  return os.path.join(checkpoint, "eval", benchmark, "metrics.json")


def missing_benchmarks(spec: RunSpec, steps: int,
                       benchmarks: Sequence[str]) -> list[str]:
  ckpt = final_checkpoint(spec, steps)
  return [b for b in benchmarks if not os.path.isfile(metrics_path(ckpt, b))]


def eval_done(spec: RunSpec, steps: int, benchmarks: Sequence[str]) -> bool:
  return not missing_benchmarks(spec, steps, benchmarks)


def log_path(spec: RunSpec, stage: str) -> str:
  """`runs/<arm>/seed<k>.<stage>.log`: beside the model dir, not in it, so a
  run whose model dir cannot be created still has a log."""
  model_dir = os.path.normpath(spec.model_dir)
  return f"{model_dir}.{stage}.log"
