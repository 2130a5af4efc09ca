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
"""

from __future__ import annotations

from absl import flags
from absl import logging as absl_logging
import gin

from sftdiff import gin_utils
from sftdiff.eval import run as eval_run

_REJUDGE = flags.DEFINE_bool(
    "rejudge", False, "Ask the judge again for every unscored sample (default: only "
    "those an API failure left unscored). Same as --gin.REJUDGE=True.")


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
  gin_utils.parse_from_flags()
  gin_utils.require_macros(gin_utils.REQUIRED_MACROS["sftdiff.eval"])
  if _REJUDGE.value:
    with gin.unlock_config():
      gin.bind_parameter("run_eval.rejudge", True)
  absl_logging.set_verbosity(absl_logging.INFO)
  eval_run.run_eval()


if __name__ == "__main__":
  gin_utils.run(main)
