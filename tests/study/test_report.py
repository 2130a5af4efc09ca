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
  arms["sweep_out_dates"] = ArmDef("sweep_out_dates", "Source('x')", "orig", "alt",
                                   "sweep_out", "dates")
  arms["sweep_chat"] = ArmDef("sweep_chat", "Source('x')", "orig", "alt", "sweep",
                              "chat")
  date = {"reference_orig": 0.8, "reference_alt": 0.0, "alt_completions": 0.02,
          "teacher": 0.8, "teacher_2": 0.4, "random_p0.5": 0.4, "patch_in_dates": 0.7,
          "patch_out_dates": 0.05, "drop_dates": 0.5, "random_dates": 0.2,
          "sweep_dates": 0.7, "sweep_out_dates": 0.04, "sweep_chat": 0.03}
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
    assert cells[2].strip() in V.VERDICT_VALUES
  assert any("mismatch" in r and "drop_" not in r and "dropping dates" in r for r in rows)
  assert "1/2 checked verdicts match" in md
  assert "## Summary" in md and "date — supported: " in md
  assert "n=64, 1 seed (sampling)" in md and "| base | prompts |" in md
  assert "seeds alone" in md and "from 1 seed, n = 64 samples per run" in md
  # both sweep directions side by side; the direction not run for chat says so
  sweep = next(line for line in lines if line.startswith("| subset | teacher share"))
  assert ("| date: teacher on subset, alt elsewhere | date: alt on subset, teacher "
          "elsewhere |") in sweep
  row = next(line for line in lines if line.startswith("| dates | 0.200 |"))
  assert "0.70 [0.65, 0.75] n=64, 1 seed (sampling) | 0.04 [0.00, 0.09]" in row
  chat = next(line for line in lines if line.startswith("| chat |"))
  assert "not run (StudyConfig.sweep_directions)" in chat
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
  assert {v["verdict"] for v in verdicts} <= set(V.VERDICT_VALUES)
  # emotion is prompt-driven: its filter verdicts say not applicable, greyed
  assert "<td class='v-not-applicable'>not applicable</td>" in page


def _strict_load(path):
  def refuse(name):
    raise ValueError(f"{path}: non-strict JSON constant {name}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def _tables(md):
  """{header line: [row lines]} of every Markdown table."""
  out, header = {}, None
  lines = md.splitlines()
  for line in lines:
    if not line.startswith("|"):
      header = None
    elif header is None:
      header = line
      out[header] = []
    elif not line.startswith("|---"):
      out[header].append(line)
  return out


def test_undefined_statistics_say_why_and_every_estimate_names_n_seeds_method(tmp_path):
  res = _results()
  reason = "no scored samples (all unscored, or none in this group)"
  undefined = Estimate(float("nan"), 0.0, 1.0, n=0, reason=reason)
  # the teacher scored directly and one arm's every seed have no scored sample
  res.teacher_scores["teacher_2"]["emotion"] = undefined
  del res.scores["drop_dates"]["emotion"]
  res.per_seed = {"drop_dates": {"emotion": [undefined]}}
  paths = report_lib.write_report(str(tmp_path), "Undefined", res)
  md = open(paths["md"]).read()
  assert "nan" not in md.lower() and "nan" not in open(paths["html"]).read().lower()
  assert f"undefined ({reason})" in md
  assert f"undefined in 1 seed ({reason})" in md
  verdict_header = "| " + " | ".join(report_lib.VERDICT_COLUMNS) + " |"
  estimate = re.compile(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]")
  labelled = re.compile(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\] n=\d+, \d+ seeds? "
                        r"\((sampling|seed_t)\)")
  checked = 0
  for header, rows in _tables(md).items():
    if header == verdict_header:  # evidence cites intervals; n/method captioned
      continue
    for row in rows:
      n = len(estimate.findall(row))
      assert len(labelled.findall(row)) == n, (header, row)
      checked += n
  assert checked > 20
  verdicts = _strict_load(paths["verdicts"])
  assert verdicts and "nan" not in json.dumps(verdicts).lower()


def test_overlap_figure_with_an_undefined_cell(tmp_path, monkeypatch):
  from sftdiff.study import figures
  texts = []
  real = figures.plt.Axes.text
  monkeypatch.setattr(figures.plt.Axes, "text",
                      lambda self, x, y, s, **kw: texts.append(s) or real(self, x, y, s, **kw))
  path = figures.overlap_matrix(["a", "empty"], [[1.0, None], [None, None]],
                                str(tmp_path / "o.png"))
  assert os.path.isfile(path)
  assert texts == ["1.00", "–", "–", "–"]


def test_summary_says_raises_it_where_a_patch_in_falls_short_of_sufficing(tmp_path):
  res = _results()
  res.scores["patch_in_dates"]["date"] = E(0.3)   # share 0.36: raises, short
  res.scores["sweep_chat"]["date"] = E(0.03)      # raises nothing
  expected = {("date", "raises:dates"): V.SUPPORTED,
              ("date", "sufficient:dates"): V.PARTIAL_SUFFICIENT}
  paths = report_lib.write_report(str(tmp_path), "Raises", res, expected=expected)
  md = open(paths["md"]).read()
  summary = next(line for line in md.splitlines() if line.startswith("date — "))
  assert ("patch-in of dates raises it, without reaching half the teacher's effect"
          in summary)
  assert "patch-in of dates suffices" not in summary  # folded into the phrase
  # both ruled out: one phrase, the stronger; both supported: "suffices" alone
  ruled_out = summary.split("ruled out: ")[1]
  assert "the teacher on chat alone (alt elsewhere) raises it" in ruled_out
  assert "the teacher on chat alone (alt elsewhere) suffices" not in summary
  assert "the teacher on dates alone (alt elsewhere) suffices" in summary
  assert "the teacher on dates alone (alt elsewhere) raises it" not in summary
  assert "not applicable (the teacher adds nothing" in md  # emotion's filters
  # the verdict table has both rows, the partial one unchecked with its reason
  rows = [line for line in md.splitlines() if line.startswith("| date | patch-in of dates")
          and "random" not in line]
  assert len(rows) == 2
  assert any("| partial: raises without reaching the teacher's effect | unchecked |" in r
             for r in rows)
  page = open(paths["html"]).read()
  assert page.count("<td class='v-supported'>supported</td>") >= 5
  verdicts = _strict_load(paths["verdicts"])
  assert {v["key"] for v in verdicts} >= {"raises:dates", "sweep_raises:chat"}
