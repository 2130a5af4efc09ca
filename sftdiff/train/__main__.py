"""`python -m sftdiff.train --gin_file=runs/sft.gin --gin.MODEL_DIR="'/tmp/run'" ...`

Parses gin, checks the required macros and their types, then (and only then)
initialises jax.distributed and trains (which writes MODEL_DIR/config.gin
first).
Exit status: 0 done, 2 configuration error, 143 preempted (SIGTERM; a
checkpoint was committed, rerun the same command to resume).
"""

from __future__ import annotations

import logging
import os
import pathlib

from absl import logging as absl_logging
import gin

from sftdiff import cli
from sftdiff import gin_utils
# Imported for their gin configurables, so bindings are checked at parse time.
from sftdiff.train import optim  # pylint: disable=unused-import
from sftdiff import partitioning
from sftdiff.train import synthetic_data  # pylint: disable=unused-import
from sftdiff.train import trainer

REQUIRED_MACROS = gin_utils.REQUIRED_MACROS["sftdiff.train"]
MACRO_TYPES = {"MODEL_DIR": str, "INITIAL_CHECKPOINT": str, "ARM": str, "TRAIN_STEPS": int,
               "SEED": int, "BATCH_SIZE": int, "SEQ_LEN": int, "MICROBATCHES": int}


def check_macro_types() -> None:
  """Fails fast (before any compute) on e.g. TRAIN_STEPS='ten'."""
  for name, expected in MACRO_TYPES.items():
    try:
      value = gin.query_parameter(f"%{name}")
    except ValueError:
      continue
    if isinstance(value, bool) or not isinstance(value, expected):
      raise gin_utils.GinConfigError(
          f"gin macro {name} = {value!r} has type {type(value).__name__}; expected "
          f"{expected.__name__} (strings need quotes: --gin.{name}=\"'...'\")")
    if expected is int and name != "SEED" and value <= 0:
      raise gin_utils.GinConfigError(f"gin macro {name} = {value} must be positive")


def check_config() -> str:
  """After parsing: required macros set, with the right types. -> MODEL_DIR."""
  gin_utils.require_macros(REQUIRED_MACROS)
  check_macro_types()
  return gin_utils.query_macro("MODEL_DIR")


def _bound(selector: str, default=None):
  """A bound parameter's value, macros followed; `default` if unbound."""
  try:
    value = gin.query_parameter(selector)
    while (isinstance(value, gin.config.ConfigurableReference)
           and value.config_key[1] == "gin.macro"):
      value = gin.query_parameter(f"%{value.config_key[0]}")
  except ValueError:
    return default
  return value


def check_inputs(model_dir: str) -> None:
  """Before compute, on this machine: what the run reads exists and parses.

  Not part of `check_config` (which the launcher also runs, on a machine that
  may not see these paths).
  """
  from sftdiff.train import checkpoints
  from sftdiff.data import tokenizer as tokenizer_lib
  init = gin_utils.query_macro("INITIAL_CHECKPOINT")
  resuming = (pathlib.Path(model_dir) / checkpoints.CHECKPOINTS).is_dir()
  if not resuming and "://" not in init and not os.path.exists(init):
    raise cli.InputError(
        f"INITIAL_CHECKPOINT={init!r} does not exist (a Hugging Face directory "
        "with config.json, or an orbax MODEL_DIR / checkpoints/<step> directory)")
  if _bound("trainer.train.data_fn") is None:  # the real data pipeline reads ARM
    from sftdiff.data import arms
    arm = gin_utils.query_macro("ARM")
    try:
      arms.parse_arm(arm)
    except arms.ArmError as e:
      raise arms.ArmError(f"gin macro ARM: {e}") from None
  tok_dir = checkpoints.find_tokenizer_dir(
      _bound("trainer.train.tokenizer_dir"), init, model_dir)
  # As the trainer loads it: a gin-chosen template (chat_tokenizer.*) counts.
  tokenizer_lib.load_tokenizer(str(tok_dir))


def main(argv):
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  gin_utils.parse_from_flags(known_macros=(*REQUIRED_MACROS, *MACRO_TYPES))
  model_dir = check_config()
  check_inputs(model_dir)
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax is chatty at INFO
  logging.getLogger("sftdiff").setLevel(logging.INFO)
  partitioning.initialize_distributed()
  trainer.train(model_dir)


if __name__ == "__main__":
  gin_utils.run(main)
