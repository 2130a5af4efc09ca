"""The trainer's grouped settings (T5X-style): how a run checkpoints and
exports, and how it logs and evaluates. gin binds their fields directly
(`CheckpointConfig.save_every = 100`, `LoggingConfig.log_every = 10`);
`gin/runs/sft.gin` hands them to `trainer.train.checkpoint_config` /
`trainer.train.logging_config`, and an unbound one is built from gin the same
way (`checkpoint_config()` / `logging_config()`).
"""

from __future__ import annotations

import dataclasses

import gin

from sftdiff import gin_utils

# The flat trainer.train parameters these replaced: an old binding fails
# (rc 2) naming its new place.
MOVED = {
    "checkpoint_every": "CheckpointConfig.save_every",
    "keep_checkpoints": "CheckpointConfig.keep",
    "async_checkpoints": "CheckpointConfig.async_save",
    "export_hf": "CheckpointConfig.export_hf",
    "export_dtype": "CheckpointConfig.export_dtype",
    "log_every": "LoggingConfig.log_every",
    "eval_every": "LoggingConfig.eval_every",
    "report_mfu": "LoggingConfig.report_mfu",
    "use_wandb": "LoggingConfig.use_wandb",
    "wandb_project": "LoggingConfig.wandb_project",
}


def _check(condition: bool, field: str, value, want: str) -> None:
  if not condition:
    raise gin_utils.GinConfigError(f"{field} = {value!r}: {want}")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """Orbax checkpoints of `MODEL_DIR/checkpoints/<step>` and the HF export.

  save_every    steps between checkpoints (the final step is always saved)
  keep          how many checkpoints to keep (None: all)
  async_save    write in the background while training continues
  export_hf     write a Hugging Face checkpoint to `MODEL_DIR/hf/` at the end
  export_dtype  the dtype of that export
  """
  save_every: int = 100
  keep: int | None = 3
  async_save: bool = True
  export_hf: bool = False
  export_dtype: str = "float32"

  def __post_init__(self):
    _check(isinstance(self.save_every, int) and self.save_every >= 1,
           "CheckpointConfig.save_every", self.save_every, "must be an int >= 1")
    _check(self.keep is None or (isinstance(self.keep, int) and self.keep >= 1),
           "CheckpointConfig.keep", self.keep, "must be None (keep all) or an int >= 1")
    from sftdiff.models import hf_io  # pylint: disable=g-import-not-at-top
    dtypes = sorted(hf_io._DTYPES)  # pylint: disable=protected-access
    _check(self.export_dtype in dtypes, "CheckpointConfig.export_dtype",
           self.export_dtype, f"must be one of {dtypes}")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LoggingConfig:
  """metrics.jsonl / TensorBoard (/ W&B) and the held-out eval loss.

  log_every      steps between metrics rows (the final step is always logged)
  eval_every     steps between held-out eval losses (0: never)
  report_mfu     measure the peak FLOP/s once and report MFU
  use_wandb, wandb_project   also log to Weights & Biases
  """
  log_every: int = 10
  eval_every: int = 0
  report_mfu: bool = True
  use_wandb: bool = False
  wandb_project: str | None = None

  def __post_init__(self):
    _check(isinstance(self.log_every, int) and self.log_every >= 1,
           "LoggingConfig.log_every", self.log_every, "must be an int >= 1")
    _check(isinstance(self.eval_every, int) and self.eval_every >= 0,
           "LoggingConfig.eval_every", self.eval_every, "must be an int >= 0 (0: never)")


def checkpoint_config(given: CheckpointConfig | None) -> CheckpointConfig:
  """`given`, or the one gin's `CheckpointConfig.*` bindings make."""
  return given if given is not None else CheckpointConfig()


def logging_config(given: LoggingConfig | None) -> LoggingConfig:
  """`given`, or the one gin's `LoggingConfig.*` bindings make."""
  return given if given is not None else LoggingConfig()
