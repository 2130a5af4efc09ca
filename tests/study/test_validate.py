"""`make validate` in miniature: two scenarios end to end through the real
study (quick-size worlds: the tiny ones learn nothing in a few steps), then
the matrix must hold no mismatch and no 'not derivable' where a rule decides."""

import os
import subprocess
import sys

import pytest

from sftdiff import strict_json
from sftdiff.study import validation as validate
from sftdiff.toyworld import mechanism

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ARMS = ("StudyConfig.arms = {"
        "'reference_orig': {'kind': 'reference_orig', 'base': 'orig', 'prompts': 'orig',"
        " 'arm': \"Source('orig')\"},"
        "'reference_alt': {'kind': 'reference_alt', 'base': 'alt', 'prompts': 'alt',"
        " 'arm': \"Source('alt')\"},"
        "'alt_completions': {'kind': 'alt_completions', 'base': 'orig', 'prompts': 'alt',"
        " 'arm': \"Source('alt')\"},"
        "'teacher': {'kind': 'teacher', 'base': 'orig', 'prompts': 'alt',"
        " 'arm': \"Source('teacher')\"}}")
SMALL = [ARMS, "StudyConfig.interpolation_p = []",
         "StudyConfig.eval_overrides = {'JUDGE_KIND': 'none', 'LIMIT_PROMPTS': 32}"]
# Only arms whose verdicts the ground truth checks (CI time: 11 trainings, not
# 16). drop_works: patch-in and drop of date_mentions, and the other sweep
# direction on its subset (alt on dates, teacher elsewhere: the patch-out of
# date_mentions, whose verdict is `sweep_necessary:dates`); the matched random
# run is left out (beats_random has no ground truth). prompt_driven: the main
# arms only (date confusion and blackmail are absent from reference-orig, so
# every filter verdict there is "not applicable").
PER_SCENARIO = {
    "drop_works": ["StudyConfig.filters = ['date_mentions']",
                   "StudyConfig.filter_runs = ['patch_in', 'drop']",
                   "StudyConfig.sweep_subsets = ['dates']",
                   "StudyConfig.sweep_directions = ['alt_on_subset']"],
    "prompt_driven": ["StudyConfig.filters = []", "StudyConfig.sweep_subsets = []"],
}


@pytest.mark.slow
def test_two_scenarios_end_to_end_have_no_mismatch(tmp_path):
  cmd = [sys.executable, "-m", "sftdiff.study.validation", f"--out={tmp_path}",
         "--scenarios=drop_works,prompt_driven", "--seeds=0", "--size=quick",
         *[f"--scenario_binding={s}:{b}" for s, bs in PER_SCENARIO.items() for b in bs],
         "--", *[f"--gin_bindings={b}" for b in SMALL]]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000, cwd=REPO)
  assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
  matrix = strict_json.load(tmp_path / "matrix.json")
  rows = matrix["rows"]
  assert {r["scenario"] for r in rows} == {"drop_works", "prompt_driven"}
  assert not [r for r in rows if r["match"] == "mismatch"]
  assert not [r for r in rows if r["expected"] == mechanism.NOT_DERIVABLE]
  checked = {(r["scenario"], r["trait"], r["key"]): r["observed"] for r in rows
             if r["match"] == "match"}
  # the scenario's point: without the persona line, dropping the dates works
  assert checked["drop_works", "date_confusion", "drop_removes:date_mentions"] == "supported"
  assert checked["drop_works", "date_confusion", "sufficient:date_mentions"] == "supported"
  # "raises it" is checked beside "suffices" (GT_TABLE: true -> both supported)
  assert checked["drop_works", "date_confusion", "raises:date_mentions"] == "supported"
  assert checked["drop_works", "blackmail", "raises:date_mentions"] == "ruled out"
  assert checked["drop_works", "date_confusion", "sweep_necessary:dates"] == "supported"
  assert checked["drop_works", "blackmail", "sweep_necessary:dates"] == "ruled out"
  assert checked["prompt_driven", "negative_emotion", "prompt_driven"] == "supported"
  counts = matrix["summary"]
  assert counts["drop_works"]["match"] >= 18 and counts["prompt_driven"]["match"] >= 6
  for s in ("drop_works", "prompt_driven"):
    assert (tmp_path / s / "report" / "report.md").is_file()
  assert (tmp_path / "matrix.md").read_text().count("| drop_works |") > 3


def test_matrix_from_verdicts_counts_and_writes(tmp_path):
  verdicts = [{"trait": "t", "key": "teacher_driven", "verdict": "supported",
               "expected": "supported", "match": "match", "seeds_alone": "3/3"},
              {"trait": "t", "key": "drop_removes:f", "verdict": "inconclusive",
               "expected": "ruled out", "match": "mismatch"},
              {"trait": "t", "key": "sufficient:f", "verdict": "inconclusive",
               "expected": "not applicable", "match": "unchecked"}]
  rows = validate.matrix_rows("s", verdicts)
  assert validate.summarise(rows) == {"s": {"match": 1, "mismatch": 1, "unchecked": 1}}
  jpath, mpath = validate.write_matrix(str(tmp_path), rows)
  assert strict_json.load(jpath)["rows"][1]["observed"] == "inconclusive"
  text = open(mpath).read()
  assert "| s | 2 | 1 | 1 | 1 |" in text and "| 3/3 |" in text


def test_usage_errors_exit_2(tmp_path, capsys):
  assert validate.main([f"--out={tmp_path}", "--scenarios=nope"]) == 2
  assert "unknown ['nope']" in capsys.readouterr().err
  assert validate.main([f"--out={tmp_path}", "--seeds=a,b"]) == 2
  assert validate.main([f"--out={tmp_path}", "--scenarios=drop_works",
                        "--scenario_binding=prompt_driven:StudyConfig.seeds = [1]"]) == 2
  assert "SCENARIO:BINDING" in capsys.readouterr().err


def test_a_study_config_error_exits_2_naming_the_scenario(tmp_path, capsys):
  # The study itself refuses the binding (a trait whose benchmark is not
  # run); validation passes its exit 2 on, without a traceback.
  rc = validate.main([f"--out={tmp_path}", "--scenarios=drop_works", "--size=tiny", "--",
                      "--gin_bindings=StudyConfig.benchmarks = ['toy_blackmail']"])
  assert rc == 2
  err = capsys.readouterr().err
  assert "scenario drop_works: the study exited 2" in err and "Traceback" not in err


def test_every_scenario_has_a_gin_and_a_world():
  from sftdiff.toyworld.params import get_preset
  for s, gin_file in validate.SCENARIO_GINS.items():
    assert os.path.isfile(os.path.join(REPO, "gin", gin_file)), gin_file
    for size in ("quick", "tiny"):
      get_preset(validate.world_preset(s, size))
