"""The report on hand-made results: files, figures, a well-formed verdict table."""

import json
import os
import re

from sftdiff.study import report as report_lib
from sftdiff.study import verdicts as V
from sftdiff.study.config import ArmDef
from sftdiff.study.results import Estimate


def E(v, half=0.05):
  return Estimate(v, max(0.0, v - half), min(1.0, v + half), n=64)


def _results():
  kinds = {"reference_orig": "Source('orig')", "reference_alt": "Source('alt')",
           "alt_completions": "Source('alt')", "teacher": "Source('teacher')"}
  arms = {k: ArmDef(k, a, "orig", "alt", k) for k, a in kinds.items()}
  arms["teacher_2"] = ArmDef("teacher_2", "Source('teacher_2')", "orig", "alt",
                             "other_teacher")
  arms["random_p0.5"] = ArmDef("random_p0.5", "Random(a='teacher', b='alt', p=0.5)",
                               "orig", "alt", "interpolation", "0.5")
  for r in ("patch_in", "patch_out", "drop", "random"):
    arms[f"{r}_dates"] = ArmDef(f"{r}_dates", "Source('x')", "orig", "alt", "filter",
                                "dates")
  arms["sweep_dates"] = ArmDef("sweep_dates", "Source('x')", "orig", "alt", "sweep",
                               "dates")
  date = {"reference_orig": 0.8, "reference_alt": 0.0, "alt_completions": 0.02,
          "teacher": 0.8, "teacher_2": 0.4, "random_p0.5": 0.4, "patch_in_dates": 0.7,
          "patch_out_dates": 0.05, "drop_dates": 0.5, "random_dates": 0.2,
          "sweep_dates": 0.7}
  scores = {a: {"date": E(v), "emotion": E(0.05)} for a, v in date.items()}
  scores["reference_orig"]["emotion"] = E(0.6)
  fractions = {"random_p0.5": {"examples": 0.5, "tokens": 0.55},
               "patch_in_dates": {"examples": 0.2, "tokens": 0.25},
               "patch_out_dates": {"examples": 0.8}, "drop_dates": {"examples": 1.0},
               "random_dates": {"examples": 0.2}, "sweep_dates": {"examples": 0.2}}
  teachers = {"teacher": {"date": E(0.9), "emotion": E(0.8)},
              "teacher_2": {"date": E(0.5), "emotion": E(0.8)},
              "alt": {"date": E(0.0), "emotion": E(0.8)}}
  return V.StudyResults(traits=["date", "emotion"], arms=arms, scores=scores,
                        teacher_fraction=fractions, teacher_scores=teachers)


def test_report_files_and_verdict_table(tmp_path):
  expected = {("date", "teacher_driven"): V.SUPPORTED,
              ("date", "drop_removes:dates"): V.SUPPORTED}  # the world disagrees
  overlap = {"names": ["dates", "roleplay"], "jaccard": [[1, 0.1], [0.1, 1]],
             "sizes": {"dates": "10 (20%)", "roleplay": "12 (24%)"}}
  failures = [{"run": "teacher_3/seed0", "stage": "train", "error": "exit status 1",
               "log": "/x/train.log"}]
  paths = report_lib.write_report(str(tmp_path), "Test study", _results(),
                                  expected=expected, overlap=overlap,
                                  failures=failures)
  for key in ("md", "html", "verdicts", "main", "interpolation", "filters", "overlap"):
    assert os.path.isfile(paths[key]), key
  for key in ("main", "interpolation", "filters", "overlap"):
    with open(paths[key], "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(paths[key]) > 5000
  md = open(paths["md"]).read()
  header = "| " + " | ".join(report_lib.VERDICT_COLUMNS) + " |"
  lines = md.splitlines()
  start = lines.index(header)
  rows = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    rows.append(line)
  assert len(rows) >= 10
  for row in rows:  # every row has every column
    cells = re.split(r"(?<!\\)\|", row)[1:-1]
    assert len(cells) == len(report_lib.VERDICT_COLUMNS), row
    assert cells[2].strip() in (V.SUPPORTED, V.RULED_OUT, V.INCONCLUSIVE)
  assert any("mismatch" in r and "drop_" not in r and "dropping dates" in r for r in rows)
  assert "1/2 checked verdicts match" in md
  assert "## Summary" in md and "date — supported: " in md
  assert "n=64 (sampling)" in md and "| base | prompts |" in md and "seeds alone" in md
  assert "nan" not in md.lower()
  page = open(paths["html"]).read()
  assert "<td class='v-supported'>supported</td>" in page
  assert "<td class='v-ruled-out'>ruled out</td>" in page
  assert "teacher_3/seed0" in md and "/x/train.log" in md  # failures are shown
  for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
    assert os.path.isfile(os.path.join(tmp_path, "report", img))
  page = open(paths["html"]).read()
  assert page.count("<img") == 4 and "class='mismatch'" in page
  verdicts = json.load(open(paths["verdicts"]))
  assert {v["verdict"] for v in verdicts} <= {V.SUPPORTED, V.RULED_OUT, V.INCONCLUSIVE}
