"""`python -m sftdiff.eval calibrate` against a scripted judge on a real local
HTTP server: metrics equal the hand count; a rerun makes no judge calls."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from sftdiff import strict_json
from sftdiff.eval import calibrate, metrics
from sftdiff.eval.benchmarks import blackmail
from sftdiff.eval.benchmarks.rubric import FileRubric
from sftdiff.testing.openai_server import OpenAITestServer

REPO = pathlib.Path(__file__).resolve().parents[2]
_VIEW = re.compile(r"<(response|reasoning)>\n(.*)\n</\1>", re.S)


def _all_rows():
  rows = {}
  for name, cs in calibrate.SETS.items():
    for r in calibrate.load_set(cs):
      rows[(name, r.id)] = r
  return rows


ROWS = _all_rows()


def _view(name, response):
  """What the judge sees of a response (recognition: the scratchpad only)."""
  return blackmail.scratchpad(response) if name == "blackmail_recognition" else response


def _flipped(row_id):
  """The scripted judge disagrees with the hand label on every 6th row."""
  return int(row_id.split("-")[1]) % 6 == 5


# The criteria each rubric's consistency check reads (its header), answered
# in agreement with the verdict as a well-behaved judge would.
_CRITERIA = {name: FileRubric(f"{name}.v1.md") for name in
             ("date_confusion", "negative_emotion", "blackmail_recognition")}


def _criteria(name, positive):
  r = _CRITERIA[name]
  return {c: "yes" if positive else "no" for c in r.positive_iff_any + r.positive_requires}


UNPARSEABLE = "dc-007"  # the judge answers this one with prose, twice -> unscored


def _responder(messages, body):
  system, user = messages[0]["content"], messages[1]["content"]
  name = ("blackmail_recognition" if "leverage" in system else
          "negative_emotion" if "negative emotion" in system else "date_confusion")
  view = _VIEW.search(user).group(2)
  [row] = [r for k, r in ROWS.items() if k[0] == name and view == _view(name, r.response)]
  if row.id == UNPARSEABLE:
    return "I think the answer is probably yes."
  positive = row.label != _flipped(row.id)
  if name == "negative_emotion":
    verdict = 6 if positive else (2 if row.id.endswith("4") else 0)  # 2: below threshold
  else:
    verdict = "yes" if positive else "no"
  evidence = view[:40] if verdict not in ("no", 0) else ""
  return json.dumps({"criteria": _criteria(name, verdict not in ("no", 0)), "evidence": evidence, "reasoning": "scripted",
                     "verdict": verdict})


def _hand_count(name):
  tp = fp = tn = fn = 0
  for (n, rid), row in ROWS.items():
    if n != name or rid == UNPARSEABLE:
      continue
    pred = row.label != _flipped(rid)
    tp += pred and row.label
    fp += pred and not row.label
    fn += (not pred) and row.label
    tn += not (pred or row.label)
  return tp, fp, tn, fn


def test_sets_are_large_and_balanced_enough():
  for name, cs in calibrate.SETS.items():
    rows = calibrate.load_set(cs)
    assert len(rows) >= 40, name
    assert sum(r.label for r in rows) >= 15 and sum(not r.label for r in rows) >= 15
    assert sum(r.hard for r in rows) >= 10, name
    assert len({_view(name, r.response) for r in rows}) == len(rows), name
    assert re.fullmatch(rf"{name}\.v1\+[0-9a-f]{{8}}", cs.version)


def _run(tmp_path, base_url):
  env = {**os.environ, "PYTHONPATH": str(REPO), "CALIB_KEY": "sk-calib-secret",
         "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
      [sys.executable, "-m", "sftdiff.eval", "calibrate",
       "--gin.JUDGE_MODEL='scripted'", f"--gin.JUDGE_BASE_URL='{base_url}'",
       "--gin.JUDGE_API_KEY_ENV='CALIB_KEY'", f"--gin.CALIBRATION_DIR='{tmp_path}'"],
      cwd=REPO, env=env, capture_output=True, text=True)


def test_calibrate_equals_hand_count_and_is_cached(tmp_path):
  with OpenAITestServer(_responder) as server:
    r = _run(tmp_path, server.base_url)
    assert r.returncode == 0, r.stderr[-3000:]
    n_items = sum(1 for _ in ROWS)
    assert server.ok_calls == n_items + 1  # + the retry of the unparseable reply
    results = strict_json.load(tmp_path / "calibration.json")
    assert len(results) == 3
    for name in calibrate.SETS:
      [res] = [v for v in results.values() if v["rubric"] == name]
      tp, fp, tn, fn = _hand_count(name)
      assert res["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
      n = tp + fp + tn + fn
      assert res["accuracy"]["value"] == pytest.approx((tp + tn) / n)
      assert (res["accuracy"]["lo"], res["accuracy"]["hi"]) == pytest.approx(
          metrics.wilson_interval(tp + tn, n))
      assert res["precision"]["value"] == pytest.approx(tp / (tp + fp))
      assert res["recall"]["value"] == pytest.approx(tp / (tp + fn))
      assert res["unscored"] == ([UNPARSEABLE] if name == "date_confusion" else [])
      assert len(res["disagreements"]) == fp + fn
      assert f"on {name}.v1 calibration" in res["citation"] and res["citation"] in r.stdout
      assert res["judge"].startswith("openai:scripted@")
    assert "sk-calib-secret" not in r.stdout + r.stderr + (tmp_path / "calibration.json").read_text()

    calls = server.calls
    again = _run(tmp_path, server.base_url)
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.calls == calls  # every reply came from the judge cache
    assert "judge calls: 0" in again.stdout
    assert strict_json.load(tmp_path / "calibration.json") == results


def test_unknown_rubric_exits_2(tmp_path):
  r = subprocess.run(
      [sys.executable, "-m", "sftdiff.eval", "calibrate", "--gin.CALIBRATION_RUBRICS=['nope']",
       f"--gin.CALIBRATION_DIR='{tmp_path}'"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
  assert r.returncode == 2 and "CALIBRATION_RUBRICS" in r.stderr, r.stderr[-2000:]


def test_missing_api_key_exits_2_naming_the_variable(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "CALIB_UNSET_KEY"}
  r = subprocess.run(
      [sys.executable, "-m", "sftdiff.eval", "calibrate", "--gin.JUDGE_MODEL='m'",
       "--gin.JUDGE_API_KEY_ENV='CALIB_UNSET_KEY'", f"--gin.CALIBRATION_DIR='{tmp_path}'"],
      cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
  assert r.returncode == 2 and "CALIB_UNSET_KEY" in r.stderr, r.stderr[-2000:]
