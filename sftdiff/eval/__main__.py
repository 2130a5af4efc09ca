"""`python -m sftdiff.eval`: evaluate checkpoints (and API teachers) on benchmarks.

    python -m sftdiff.eval --gin_file=runs/eval.gin \
        --gin.CHECKPOINT_DIR="'runs/demo/arm_x'" \
        --gin.BENCHMARKS="['date_confusion']"

Finds every committed checkpoint under CHECKPOINT_DIR (orbax steps and
exported HF dirs), evaluates each on every benchmark (incrementally: re-runs
redo nothing finished, except judge calls an API failure left unscored) and
keeps an aggregated `results.jsonl` at the top. Teachers (`run_eval.teachers`)
are evaluated on the same benchmarks under `OUTPUT_DIR/teachers/<name>/`.
`--rejudge` (= `--gin.REJUDGE=True`) asks the judge again for every unscored
sample, including those whose replies broke the rubric.

Several checkpoint dirs in one process (a study's grouped eval job):

    python -m sftdiff.eval --gin_file=runs/eval.gin --gin.BENCHMARKS=... \
        --checkpoint_dir=runs/a/checkpoints/100 --checkpoint_dir=runs/b/checkpoints/100

Each `--checkpoint_dir=D` is evaluated exactly as `--gin.CHECKPOINT_DIR='D'`
alone would be (gin parsed afresh with that one binding added: its own
eval_config.gin, results.jsonl and outputs), one after the other; checkpoints
of one model config reuse the sampler's compiled programs (one compile per
bucket, not per checkpoint). A dir that fails is logged and the others go on;
the process then exits as the first failure would have alone.
"""

from __future__ import annotations

import logging

from absl import flags
from absl import logging as absl_logging
import gin

from sftdiff import gin_utils
from sftdiff.eval import run as eval_run

_REJUDGE = flags.DEFINE_bool(
    "rejudge", False, "Ask the judge again for every unscored sample (default: only "
    "those an API failure left unscored). Same as --gin.REJUDGE=True.")
_CHECKPOINT_DIRS = flags.DEFINE_multi_string(
    "checkpoint_dir", [], "Evaluate each, one after the other in this process, exactly "
    "as --gin.CHECKPOINT_DIR='<dir>' alone would (then no CHECKPOINT_DIR binding).")

log = logging.getLogger("sftdiff.eval")


def _evaluate(extra_bindings=()) -> None:
  """One evaluation: gin as the flags (+ `extra_bindings`) give it, then run_eval."""
  gin_utils.parse_from_flags(extra_bindings=extra_bindings)
  gin_utils.require_macros(gin_utils.REQUIRED_MACROS["sftdiff.eval"])
  absl_logging.set_verbosity(absl_logging.INFO)
  if _REJUDGE.value:
    with gin.unlock_config():
      gin.bind_parameter("run_eval.rejudge", True)
  eval_run.run_eval()


def evaluate_each(checkpoint_dirs) -> None:
  """`--checkpoint_dir` values one by one, each as if alone (see the module
  doc); raises the first failure after trying every dir."""
  bound = [b for b in flags.FLAGS.gin_bindings
           if gin_utils.binding_name(b) == "CHECKPOINT_DIR"]
  if bound:
    raise gin_utils.GinConfigError(
        f"--checkpoint_dir and --gin.{bound[0].strip()} both name checkpoints; give "
        "every dir as --checkpoint_dir, or one as --gin.CHECKPOINT_DIR")
  absl_logging.set_verbosity(absl_logging.INFO)
  first_error = None
  for i, directory in enumerate(checkpoint_dirs, 1):
    log.info("checkpoint dir %d/%d: %s", i, len(checkpoint_dirs), directory)
    gin.clear_config()
    try:
      _evaluate([f"CHECKPOINT_DIR = {directory!r}"])
    except Exception as e:  # pylint: disable=broad-except
      log.error("checkpoint dir %d/%d %s FAILED: %s: %s", i, len(checkpoint_dirs),
                directory, type(e).__name__, e)
      first_error = first_error or e
  if first_error is not None:
    raise first_error


def main(argv):
  if argv[1:2] == ["calibrate"]:  # `python -m sftdiff.eval calibrate`: judge calibration
    from sftdiff.eval import calibrate
    return calibrate.main(argv[1:])
  if argv[1:2] == ["rollouts"]:  # `python -m sftdiff.eval rollouts`: teacher rollouts
    from sftdiff.eval import rollouts
    return rollouts.main(argv[1:])
  if argv[1:2] == ["label"]:  # `python -m sftdiff.eval label`: autorater filter labels
    from sftdiff.eval import autorate_labels
    return autorate_labels.main(argv[1:])
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  if _CHECKPOINT_DIRS.value:
    evaluate_each(_CHECKPOINT_DIRS.value)
  else:
    _evaluate()


if __name__ == "__main__":
  gin_utils.run(main)
