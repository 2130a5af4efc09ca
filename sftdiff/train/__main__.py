"""`python -m sftdiff.train --gin_file=runs/sft.gin --gin.MODEL_DIR="'/tmp/run'" ...`

Parses gin, checks the required macros and their types, then (and only then)
initialises jax.distributed and trains (which writes MODEL_DIR/config.gin
first).
Exit status: 0 done, 2 configuration error, 143 preempted (SIGTERM; a
checkpoint was committed, rerun the same command to resume).
"""

from __future__ import annotations

import logging

from absl import logging as absl_logging
import gin

from sftdiff import gin_utils
# Imported for their gin configurables, so bindings are checked at parse time.
from sftdiff.train import optim  # pylint: disable=unused-import
from sftdiff.train import partitioning
from sftdiff.train import synthetic_data  # pylint: disable=unused-import
from sftdiff.train import trainer

REQUIRED_MACROS = ("MODEL_DIR", "INITIAL_CHECKPOINT", "ARM", "TRAIN_STEPS", "SEED")
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


def main(argv):
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  gin_utils.parse_from_flags()
  model_dir = check_config()
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax is chatty at INFO
  logging.getLogger("sftdiff").setLevel(logging.INFO)
  partitioning.initialize_distributed()
  trainer.train(model_dir)


if __name__ == "__main__":
  gin_utils.run(main)
