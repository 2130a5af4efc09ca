"""A stand-in for `python -m sftdiff.train` / `sftdiff.eval` in launcher tests.

It parses its flags exactly like the real binaries (`sftdiff.gin_utils`), so
a test sees what reached the binary through XManager, the shell and gin:
train writes two committed steps, `MODEL_DIR/checkpoints/<TRAIN_STEPS // 2>/`
and `.../<TRAIN_STEPS>/`, and `MODEL_DIR/macros.json`;
eval (given CHECKPOINT_DIR: a step dir, or a model dir for every step) fails
unless that checkpoint exists, then writes `CHECKPOINT_DIR/eval/macros.json`.
Given `--arm=` flags it stands for `sftdiff.train.multi_arm`: it trains each
arm as above, under the shared gin flags followed by the arm's own. Given
`--checkpoint_dir=` flags it evaluates each as with that CHECKPOINT_DIR
(a missing one fails after the others, as `sftdiff.eval` does).
Both append their argv to `$FAKE_BINARY_ARGV_LOG` (JSON lines) when it is set.
"""

import json
import os
import shlex
import sys

from absl import flags
import gin

from sftdiff import gin_utils
from sftdiff import layout
from sftdiff.train import multi_arm_config


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


def _record():
  """The flags exactly as the executor passed them (before absl/gin)."""
  path = os.environ.get("FAKE_BINARY_ARGV_LOG")
  if path:
    with open(path, "a") as f:
      f.write(json.dumps({"python": sys.executable, "args": sys.argv[1:]}) + "\n")


def main(argv):
  del argv
  if flags.FLAGS.arm:
    for i, own in enumerate(flags.FLAGS.arm):
      _, bindings, _ = multi_arm_config.split_train_args(shlex.split(own), f"arm {i}")
      gin.clear_config()
      gin_utils.parse(flags.FLAGS.gin_file, [*flags.FLAGS.gin_bindings, *bindings],
                      flags.FLAGS.gin_search_paths)
      _train(_macros())
    _record()
    return 0
  if flags.FLAGS.checkpoint_dir:
    rcs = []
    for ckpt in flags.FLAGS.checkpoint_dir:
      gin.clear_config()
      gin_utils.parse(flags.FLAGS.gin_file,
                      [*flags.FLAGS.gin_bindings, f"CHECKPOINT_DIR = {ckpt!r}"],
                      flags.FLAGS.gin_search_paths)
      rcs.append(_evaluate(_macros()))
    _record()
    return max(rcs)
  gin_utils.parse_from_flags()
  macros = _macros()
  if "CHECKPOINT_DIR" not in macros:
    _train(macros)
    _record()
    return 0
  rc = _evaluate(macros)
  _record()
  return rc


def _evaluate(macros):
  ckpt = macros["CHECKPOINT_DIR"]
  step_dirs = ([ckpt] if layout.is_step_dir(ckpt) else
               [layout.step_dir(ckpt, s) for s in layout.committed_steps(ckpt)])
  if not step_dirs or not all(os.path.isdir(d) for d in step_dirs):
    print(f"no checkpoint at {ckpt}", file=sys.stderr)
    return 1
  _write_macros(layout.eval_dir(ckpt), macros)
  _write_metrics(step_dirs, macros.get("BENCHMARKS") or ())
  return 0


def _train(macros):
  gin_utils.require_macros(["MODEL_DIR", "ARM", "SEED", "TRAIN_STEPS"])
  out_dir = macros["MODEL_DIR"]
  steps = int(macros["TRAIN_STEPS"])
  for step in sorted({steps // 2, steps} - {0}):
    step_dir = layout.step_dir(out_dir, step)
    os.makedirs(step_dir, exist_ok=True)
    for name in ("params", layout.COMMIT_MARKERS[0]):
      with open(os.path.join(step_dir, name), "w") as f:
        f.write("stand-in")
  _write_macros(out_dir, macros)


def _write_macros(out_dir, macros):
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "macros.json"), "w") as f:
    json.dump(macros, f)


def _write_metrics(step_dirs, benchmarks):
  """What a study runner waits for: a metrics file per checkpoint × benchmark."""
  for d in step_dirs:
    for bench in benchmarks:
      os.makedirs(os.path.dirname(layout.metrics_path(d, bench)), exist_ok=True)
      with open(layout.metrics_path(d, bench), "w") as f:
        json.dump({"stand_in_rate": 0.5}, f)



if __name__ == "__main__":
  # Defined only when run: the launcher imports this module to check gin, and
  # has an --arm flag of its own.
  flags.DEFINE_multi_string("arm", [], "multi-arm stand-in: one arm's own flags")
  flags.DEFINE_string("multi_arm_mode", None, "multi-arm stand-in: recorded only")
  flags.DEFINE_multi_string("checkpoint_dir", [], "grouped eval stand-in: each dir")
  gin_utils.run(lambda argv: sys.exit(main(argv)))
