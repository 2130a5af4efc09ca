"""A miniature study through the real runner: tiny world, two arms, a few
steps. Checks the report and its verdict table, then that re-running a
finished study launches nothing and a half-finished one only what is missing;
and that with both arms trained in one multi-arm process (loop mode) the
samples, metrics, verdicts and report are those of one process per run
(byte for byte, but for the study's path)."""

import json
import os
import re
import subprocess
import sys

import pytest

from sftdiff.study import report as report_lib
from sftdiff.study import verdicts as V

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MINI = [
    "StudyConfig.world = 'tiny'",
    "StudyConfig.arms = {"
    "'alt_completions': {'kind': 'alt_completions', 'base': 'orig', 'prompts': 'alt',"
    " 'arm': \"Source('alt')\"},"
    "'teacher': {'kind': 'teacher', 'base': 'orig', 'prompts': 'alt',"
    " 'arm': \"Source('teacher')\"}}",
    "StudyConfig.interpolation_p = []",
    "StudyConfig.filters = []",
    "StudyConfig.sweep_subsets = []",
    "StudyConfig.train_steps = 3",
    "StudyConfig.train_overrides = {'BATCH_SIZE': 4, 'SEQ_LEN': 128,"
    " 'LoggingConfig.report_mfu': False, 'LoggingConfig.eval_every': 0,"
    " 'CheckpointConfig.async_save': False}",
    "StudyConfig.eval_overrides = {'JUDGE_KIND': 'none', 'LIMIT_PROMPTS': 4}",
    # One process per run (the quick preset groups arms; the grouped study
    # is the test below, which binds max_arms again).
    "MultiArmGrouping.max_arms = 1",
]


def _run_study(study_dir, world_root, *extra):
  cmd = [sys.executable, "-m", "sftdiff.study", "--gin_file=studies/toyworld_quick.gin",
         f"--gin.STUDY_DIR='{study_dir}'",
         f"--gin.StudyConfig.world_root='{world_root}'",
         *[f"--gin_bindings={b}" for b in MINI], *extra]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-5000:]
  return proc


def _launches(study_dir):
  path = os.path.join(study_dir, "logs", "launches.jsonl")
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_mini_study_end_to_end(tmp_path):
  study_dir, world_root = tmp_path / "study", tmp_path / "world"
  proc = _run_study(study_dir, world_root)
  report_dir = study_dir / "report"
  assert f"report: {report_dir / 'report.md'}" in proc.stdout
  for name in ("report.md", "report.html", "verdicts.json", "fig1_main_runs.png"):
    assert (report_dir / name).is_file(), name
  first = _launches(study_dir)
  assert sorted((l["run"], l["stage"]) for l in first) == [
      ("alt_completions/seed0", "eval"), ("alt_completions/seed0", "train"),
      ("teacher/seed0", "eval"), ("teacher/seed0", "train")]

  # The verdict table: every row has every column and a known verdict, and
  # the ground truth is compared where it speaks to a verdict.
  md = (report_dir / "report.md").read_text()
  header = "| " + " | ".join(report_lib.VERDICT_COLUMNS) + " |"
  lines = md.splitlines()
  rows = []
  for line in lines[lines.index(header) + 2:]:
    if not line.startswith("|"):
      break
    rows.append(re.split(r"(?<!\\)\|", line)[1:-1])
  traits = {"date_confusion", "blackmail", "negative_emotion"}
  assert {r[0].strip() for r in rows} == traits
  for r in rows:
    assert len(r) == len(report_lib.VERDICT_COLUMNS)
    assert r[2].strip() in (V.SUPPORTED, V.RULED_OUT, V.INCONCLUSIVE)
    assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", r[3]), r  # with intervals
    assert r[5].strip() in ("match", "mismatch", "unchecked", "–")
  assert any(r[5].strip() in ("match", "mismatch") for r in rows)
  verdicts = json.loads((report_dir / "verdicts.json").read_text())
  assert {(v["trait"], v["key"]) for v in verdicts} >= {
      (t, k) for t in traits for k in ("teacher_driven", "prompt_driven")}

  # Every JSON file the study wrote parses strictly (no bare NaN/Infinity).
  from sftdiff import strict_json
  # (orbax's own files under checkpoints/<step>/state are not ours)
  written = [p for p in study_dir.rglob("*") if p.suffix in (".json", ".jsonl")
             and "state" not in p.relative_to(study_dir).parts]
  assert any(p.name == "results.jsonl" for p in written)
  assert any(p.name == "metrics.json" and "eval" in p.parts for p in written)
  assert any(p.name == "verdicts.json" for p in written)
  for path in written:
    text = path.read_text()
    if path.suffix == ".jsonl":
      for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
          try:
            strict_json.loads(line)
          except ValueError as e:
            raise AssertionError(f"{path}:{n}: {e}") from None
    else:
      try:
        strict_json.loads(text)
      except ValueError as e:
        raise AssertionError(f"{path}: {e}") from None

  # Finished study: nothing is launched again.
  proc = _run_study(study_dir, world_root)
  assert len(_launches(study_dir)) == len(first)
  assert "2/2 runs already complete" in proc.stderr

  # Half-finished: only the missing eval runs.
  ckpt = study_dir / "runs" / "teacher" / "seed0" / "checkpoints" / "3"
  os.remove(ckpt / "eval" / "toy_blackmail" / "metrics.json")
  _run_study(study_dir, world_root)
  new = _launches(study_dir)[len(first):]
  assert [(l["run"], l["stage"]) for l in new] == [("teacher/seed0", "eval")]
  assert (ckpt / "eval" / "toy_blackmail" / "metrics.json").is_file()


def _text(path, study_dir):
  return path.read_text().replace(str(study_dir), "<study_dir>")


def _outputs(study_dir):
  """Each eval's samples (bytes) and metrics (a metrics.json's `metrics`: its
  `fingerprint` names the checkpoint's path and inodes, not its values)."""
  runs = study_dir / "runs"
  out = {str(p.relative_to(runs)): p.read_bytes() for p in sorted(runs.rglob("samples.jsonl"))}
  out.update({str(p.relative_to(runs)): json.loads(p.read_text())["metrics"]
              for p in sorted(runs.rglob("eval/*/metrics.json"))})
  return out


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
  outputs = _outputs(alone)
  assert len(outputs) == 2 * 2 * 3 and _outputs(grouped) == outputs  # runs × files × benchmarks
  for name in ("verdicts.json", "report.md"):
    assert _text(grouped / "report" / name, grouped) == _text(alone / "report" / name, alone)
