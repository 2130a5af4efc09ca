"""Per-arm gin configurations for multi-arm training (`multi_arm.py`).

Each arm is configured exactly as a single-arm `python -m sftdiff.train` run:
its own argv of `--gin_file=`, `--gin.NAME=VALUE` (or `--gin_bindings=`) and
`--gin_search_paths=`. gin is global, so an arm's config is re-parsed
whenever its own code runs (`activate`): loading its tokenizer, building its
data stream and manifest, writing its `config.gin`. What the arms run as one
compiled step must agree (model, optimiser, batch, steps, mesh); a mismatch
is a `GinConfigError` naming the arm and the setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import pathlib
from typing import Any, Sequence

import gin

from sftdiff import gin_utils

# trainer.train parameters the arms share: they shape the one compiled step.
SHARED_SETTINGS = ("train_steps", "batch_size", "seq_len", "microbatches", "model_overrides",
                   "partition_config", "constrain_activations")
# Configurables whose bindings shape the step too (optimiser, loss).
SHARED_CONFIGURABLES = ("optim.make_optimizer", "optim.learning_rate_schedule",
                        "optim.weight_decay_mask", "sftdiff.loss_vocab_chunk")


@dataclasses.dataclass(frozen=True)
class ArmConfig:
  """One arm: its train argv and what its gin config resolves to."""
  index: int
  gin_files: tuple[str, ...]
  bindings: tuple[str, ...]
  search_paths: tuple[str, ...]
  model_dir: str
  settings: dict[str, Any]            # trainer.train's keyword arguments, resolved
  program: dict[str, Any]             # SHARED_CONFIGURABLES' bindings

  @property
  def name(self) -> str:
    return f"arm {self.index} ({self.model_dir})"


def split_train_args(args: Sequence[str], where: str):
  """`sftdiff.train` argv -> (gin files, bindings, search paths)."""
  files, bindings, paths = [], [], []
  for arg in args:
    if arg.startswith("--gin_file="):
      files.append(arg.split("=", 1)[1])
    elif arg.startswith("--gin.") and "=" in arg:
      name, value = arg[len("--gin."):].split("=", 1)
      bindings.append(f"{name} = {value}")
    elif arg.startswith("--gin_bindings="):
      bindings.append(arg.split("=", 1)[1])
    elif arg.startswith("--gin_search_paths="):
      paths.extend(p for p in arg.split("=", 1)[1].split(",") if p)
    else:
      raise gin_utils.GinConfigError(
          f"{where}: argument {arg!r} is not --gin_file=, --gin.NAME=VALUE, "
          "--gin_bindings= or --gin_search_paths=")
  return tuple(files), tuple(bindings), tuple(paths)


def _parse(files, bindings, paths) -> None:
  from sftdiff.train import __main__ as train_main  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin_utils.parse(files, bindings, paths,
                  known_macros=(*train_main.REQUIRED_MACROS, *train_main.MACRO_TYPES))


def _train_settings() -> dict[str, Any]:
  """trainer.train's keyword arguments as the active gin config sets them
  (grouped configs built from gin when unbound, as `trainer.train` does)."""
  from sftdiff.train import run_config  # pylint: disable=g-import-not-at-top
  from sftdiff.train import trainer  # pylint: disable=g-import-not-at-top
  signature = inspect.signature(trainer.train.__wrapped__)
  settings = {name: p.default for name, p in signature.parameters.items()
              if p.kind == p.KEYWORD_ONLY}
  settings.update(gin.get_bindings("trainer.train", resolve_references=True))
  missing = [k for k, v in settings.items() if v is gin.REQUIRED]
  if missing:
    raise gin_utils.GinConfigError(f"trainer.train: {missing} not bound")
  settings["checkpoint_config"] = run_config.checkpoint_config(settings["checkpoint_config"])
  settings["logging_config"] = run_config.logging_config(settings["logging_config"])
  return settings


def _program_bindings() -> dict[str, Any]:
  return {s: gin.get_bindings(s, resolve_references=True) for s in SHARED_CONFIGURABLES}


def load_arm(index: int, args: Sequence[str]) -> ArmConfig:
  """Parses and checks one arm's config (as the train binary does)."""
  from sftdiff.train import __main__ as train_main  # pylint: disable=g-import-not-at-top
  where = f"arm {index}"
  files, bindings, paths = split_train_args(args, where)
  try:
    _parse(files, bindings, paths)
    model_dir = train_main.check_config()
    train_main.check_inputs(model_dir)
    return ArmConfig(index, files, bindings, paths, str(pathlib.Path(model_dir).absolute()), _train_settings(),
                     _program_bindings())
  except gin_utils.GinConfigError as e:
    raise gin_utils.GinConfigError(f"{where}: {e}") from None


def check_shared(arms: Sequence[ArmConfig]) -> None:
  """Arms stacked into one step must agree on what shapes it; model dirs differ."""
  if not arms:
    raise gin_utils.GinConfigError("multi-arm training needs at least one arm")
  first = arms[0]
  for arm in arms[1:]:
    for key in SHARED_SETTINGS:
      if arm.settings[key] != first.settings[key]:
        raise gin_utils.GinConfigError(
            f"{arm.name}: trainer.train.{key} = {arm.settings[key]!r} but {first.name} has "
            f"{first.settings[key]!r}; arms trained together must share it")
    for selector, bound in arm.program.items():
      if bound != first.program[selector]:
        raise gin_utils.GinConfigError(
            f"{arm.name}: {selector} bindings {bound!r} differ from {first.name}'s "
            f"{first.program[selector]!r}; arms trained together must share them")
  dirs = [a.model_dir for a in arms]
  repeated = sorted({d for d in dirs if dirs.count(d) > 1})
  if repeated:
    raise gin_utils.GinConfigError(f"MODEL_DIR {repeated[0]!r} is given to more than one arm")


@contextlib.contextmanager
def activate(arm: ArmConfig):
  """This arm's gin config is the global one inside the block."""
  _parse(arm.gin_files, arm.bindings, arm.search_paths)
  yield
