"""The miniature study (test_study_e2e.py) with its two arms trained in one
multi-arm process (loop mode): every eval metrics file and the report's
verdicts equal those of one process per run, byte for byte."""

import json

import pytest

from test_study_e2e import _launches, _run_study  # pylint: disable=import-error


def _metrics(study_dir):
  return {str(p.relative_to(study_dir)): p.read_bytes()
          for p in sorted((study_dir / "runs").rglob("metrics.json"))}


@pytest.mark.slow
def test_grouped_study_gives_the_same_metrics_and_verdicts(tmp_path):
  world = tmp_path / "world"
  alone, grouped = tmp_path / "alone", tmp_path / "grouped"
  _run_study(alone, world)
  proc = _run_study(grouped, world, "--gin.MultiArmGrouping.max_arms=2",
                    "--gin.MultiArmGrouping.mode='loop'")
  assert "2 distinct trainings in 1 train jobs" in proc.stderr
  trains = [l for l in _launches(grouped) if l["stage"] == "train"]
  assert len(trains) == 1 and trains[0]["cmd"][2] == "sftdiff.train.multi_arm"
  assert len(trains[0]["runs"]) == 2
  assert _metrics(grouped) and _metrics(grouped) == _metrics(alone)
  verdicts = [json.loads((d / "report" / "verdicts.json").read_text())
              for d in (alone, grouped)]
  assert verdicts[0] == verdicts[1]
