"""A stand-in for `python -m sftdiff.train` / `sftdiff.eval` in launcher tests.

It parses its flags exactly like the real binaries (`sftdiff.gin_utils`), so
a test sees what reached the binary through XManager, the shell and gin:
train writes `MODEL_DIR/checkpoints/<TRAIN_STEPS>/` and `MODEL_DIR/macros.json`;
eval (given CHECKPOINT_DIR) fails unless that checkpoint exists, then writes
`CHECKPOINT_DIR/eval/macros.json`.
"""

import json
import os
import sys

import gin

from sftdiff import gin_utils

_MACROS = ("ARM", "SEED", "MODEL_DIR", "TRAIN_STEPS", "INITIAL_CHECKPOINT",
           "LEARNING_RATE", "CHECKPOINT_DIR", "BENCHMARKS")


def _macros():
  out = {}
  for name in _MACROS:
    try:
      out[name] = gin.query_parameter(f"%{name}")
    except ValueError:
      pass
  return out


def main(argv):
  del argv
  gin_utils.parse_from_flags()
  macros = _macros()
  if "CHECKPOINT_DIR" in macros:
    ckpt_root = os.path.join(macros["CHECKPOINT_DIR"], "checkpoints")
    if not os.path.isdir(ckpt_root) or not os.listdir(ckpt_root):
      print(f"no checkpoint under {ckpt_root}", file=sys.stderr)
      return 1
    out_dir = os.path.join(macros["CHECKPOINT_DIR"], "eval")
  else:
    gin_utils.require_macros(["MODEL_DIR", "ARM", "SEED", "TRAIN_STEPS"])
    out_dir = macros["MODEL_DIR"]
    step_dir = os.path.join(out_dir, "checkpoints", str(macros["TRAIN_STEPS"]))
    os.makedirs(step_dir, exist_ok=True)
    with open(os.path.join(step_dir, "params"), "w") as f:
      f.write("stand-in")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "macros.json"), "w") as f:
    json.dump(macros, f)
  return 0


if __name__ == "__main__":
  gin_utils.run(lambda argv: sys.exit(main(argv)))
