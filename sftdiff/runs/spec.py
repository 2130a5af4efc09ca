"""What one training run is: the unit the plan schedules. A study expands
into a list of RunSpecs; the launcher reads them from flags or JSON."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Sequence

from sftdiff import strict_json

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class PlanError(ValueError):
  """A run or plan request is wrong; the message names the flag, arm, entry
  or binding (the launcher's `LaunchConfigError`)."""


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

  @property
  def train_steps(self) -> int | None:
    """TRAIN_STEPS as bound by the overrides (None if a gin file binds it)."""
    value = dict(self.overrides).get("TRAIN_STEPS")
    try:
      return None if value is None else int(value)
    except ValueError:
      return None

  def bindings(self) -> list[tuple[str, str]]:
    """All gin bindings for this run; arm, seed and model dir come first."""
    return [("ARM", repr(self.arm)), ("SEED", str(self.seed)),
            ("MODEL_DIR", repr(self.model_dir)), *self.overrides]

  def content_key(self) -> tuple:
    """What the trained model depends on: everything but the arm's name and
    where it is written. Runs with equal keys train the same model."""
    return (self.arm, self.seed, self.gin_files, self.overrides)


def runs_to_json(runs: Sequence[RunSpec]) -> str:
  return strict_json.dumps([dataclasses.asdict(r) for r in runs], indent=1)


def runs_from_json(text: str, *, source: str) -> list[RunSpec]:
  """RunSpecs from `runs_to_json` output; errors name `source` and the entry."""
  try:
    items = json.loads(text)
  except json.JSONDecodeError as e:
    raise PlanError(f"{source}: not JSON: {e}") from None
  if not isinstance(items, list):
    raise PlanError(f"{source}: expected a JSON list of runs")
  runs = []
  fields = {f.name for f in dataclasses.fields(RunSpec)}
  for i, item in enumerate(items):
    if not isinstance(item, dict) or set(item) != fields:
      got = sorted(item) if isinstance(item, dict) else type(item).__name__
      raise PlanError(f"{source}[{i}]: a run needs exactly the fields "
                         f"{sorted(fields)}; got {got}")
    try:
      runs.append(RunSpec(
          arm_name=item["arm_name"], arm=item["arm"], seed=int(item["seed"]),
          gin_files=tuple(item["gin_files"]),
          overrides=tuple((str(k), str(v)) for k, v in item["overrides"]),
          model_dir=item["model_dir"]))
    except (TypeError, ValueError) as e:
      raise PlanError(f"{source}[{i}]: {e}") from None
  return runs
