"""What one training run of a study is: the unit both the study runner and
`launch/xm_launch.py` schedule. A study expands into a list of RunSpecs."""

from __future__ import annotations

import dataclasses
import re

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One arm × seed: everything the train binary needs, as gin.

  Attributes:
    arm_name: the arm's name in the study (e.g. `patch_in_date_mentions`).
    arm: the arm spec string bound to the `ARM` macro (see sftdiff.data.arms).
    seed: training seed bound to the `SEED` macro.
    gin_files: gin files for the train binary, in order.
    overrides: extra `NAME -> VALUE` gin bindings; VALUE is a gin literal
      (strings carry their own quotes: `"'adamw'"`).
    model_dir: where the run writes checkpoints; bound to `MODEL_DIR`.
  """
  arm_name: str
  arm: str
  seed: int
  gin_files: tuple[str, ...]
  overrides: tuple[tuple[str, str], ...]
  model_dir: str

  def __post_init__(self):
    if not _NAME_RE.match(self.arm_name):
      raise ValueError(
          f"arm name {self.arm_name!r} must match {_NAME_RE.pattern} "
          "(it becomes a directory and a work-unit name)")

  @property
  def name(self) -> str:
    return f"{self.arm_name}/seed{self.seed}"

  def bindings(self) -> list[tuple[str, str]]:
    """All gin bindings for this run; arm, seed and model dir come first."""
    return [("ARM", repr(self.arm)), ("SEED", str(self.seed)),
            ("MODEL_DIR", repr(self.model_dir)), *self.overrides]

  def train_args(self) -> list[str]:
    """argv (without the interpreter) for `python -m sftdiff.train`."""
    args = [f"--gin_file={f}" for f in self.gin_files]
    args += [f"--gin.{k}={v}" for k, v in self.bindings()]
    return args
