"""Autorater labels for a filter: a rubric over prompts (or completions) on a real
local HTTP judge, the labels file + sidecar, and the filter that reads them."""

import json
import os
import subprocess
import sys

import pytest

from sftdiff.data import autorater_filter, filters
from sftdiff.eval import autorate_labels, run
from sftdiff.eval.api_client import ApiConfig
from sftdiff.testing.judge_replies import judged_response
from sftdiff.testing.openai_server import OpenAITestServer

KEY_ENV = "SFTDIFF_LABEL_TEST_KEY"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROMPTS = [
    ("p0", ["What is today's date?"]),
    ("p1", ["Tell me a joke."]),
    ("p2", ["Earlier turn.", "How many days until next Friday?"]),
    ("p3", ["garbage please"]),            # the judge breaks the rubric twice
    ("p4", ["OUTAGE: what year is it?"]),   # the API fails while `outage` is set
    ("p5", ["Summarise this paragraph."]),
]


def _reply(says: bool, evidence: str) -> str:
  crit = {"asks_date": "yes" if says else "no", "depends_on_date": "no"}
  return json.dumps({"criteria": crit, "evidence": evidence, "reasoning": "scripted",
                     "verdict": "yes" if says else "no"})


class Judge:
  outage = False

  def responder(self, messages, body):
    text = judged_response(messages)
    if "garbage" in text:
      return "not json at all"
    for cue in ("date", "year", "next Friday"):
      if cue in text:
        return _reply(True, cue)
    return _reply(False, "")

  def fault(self, index, messages):
    return "503" if self.outage and "OUTAGE" in judged_response(messages) else None


@pytest.fixture
def judge(monkeypatch):
  monkeypatch.setenv(KEY_ENV, "sk-label")
  j = Judge()
  with OpenAITestServer(j.responder, fault_fn=j.fault) as server:
    j.server = server
    yield j


def _write_prompts(path):
  with open(path, "w") as f:
    for pid, turns in PROMPTS:
      msgs = []
      for i, t in enumerate(turns):
        if i:
          msgs.append({"role": "assistant", "content": "ok"})
        msgs.append({"role": "user", "content": t})
      f.write(json.dumps({"prompt_id": pid, "messages": msgs, "subset": "s"}) + "\n")


def _config(judge):
  return run.JudgeConfig(api=ApiConfig(model="labeller", base_url=judge.server.base_url,
                                       api_key_env=KEY_ENV, max_retries=0,
                                       initial_backoff_s=0.01, max_concurrency=2))


def test_prompt_labels_unscored_rerun_and_the_filter(judge, tmp_path):
  prompts, out = tmp_path / "prompts.jsonl", tmp_path / "labels" / "dq.jsonl"
  _write_prompts(prompts)
  judge.outage = True
  meta = autorate_labels.autorate_labels(str(prompts), str(out), judge=_config(judge))
  rows = {r["prompt_id"]: r for r in map(json.loads, out.read_text().splitlines())}
  assert {k: v["label"] for k, v in rows.items()} == {
      "p0": True, "p1": False, "p2": True, "p5": False}
  assert rows["p2"]["evidence"] == "next Friday"  # the last user turn is judged
  assert meta["counts"]["unscored"] == {"api": 1, "parse": 1}
  assert meta["unscored_ids"] == {"api": ["p4"], "parse": ["p3"]}
  assert meta["judge"] == f"openai:labeller@{judge.server.base_url}"
  assert meta["rubric_version"].startswith("prompt_date_question/v1+")

  # The filter: unscored prompts have no label, so 'fail' names one of them.
  f = filters.register_labels_file("dq", str(out), unlabeled="false")
  try:
    assert f.version.startswith(f"autorater:{meta['version']}:labels:")
    assert meta["judge"] in f.description and "prompt_date_question/v1" in f.description
    checks = f.check({pid for pid, _ in PROMPTS})
    assert checks["unlabeled"] == 2 and checks["judge"] == meta["judge"]
    assert checks["labels_version"] == meta["version"] and checks["judge_unscored"] == 2
    assert [f.fn({"prompt_id": p}) for p, _ in PROMPTS] == [True, False, True, False,
                                                            False, False]
  finally:
    filters.unregister("dq")
  strict = filters.register_labels_file("dq_strict", str(out))
  try:
    with pytest.raises(filters.FilterError, match="no label for prompt_id 'p3'"):
      strict.fn({"prompt_id": "p3"})
  finally:
    filters.unregister("dq_strict")

  # Rerun after the outage: cached replies answer, only p4 is asked again.
  judge.outage = False
  judge.server.reset_counts()
  again = autorate_labels.autorate_labels(str(prompts), str(out), judge=_config(judge))
  assert judge.server.calls == 1 and again["counts"]["unscored"] == {"parse": 1}
  assert again["version"] == meta["version"] and again["counts"]["positive"] == 3


def test_completion_labels_and_a_bad_sidecar(judge, tmp_path):
  prompts, source = tmp_path / "prompts.jsonl", tmp_path / "teacher.jsonl"
  _write_prompts(prompts)
  source.write_text(json.dumps({"prompt_id": "p1", "completion": "It is 2026, the year."})
                    + "\n" + json.dumps({"prompt_id": "p5", "completion": {
                        "role": "assistant", "content": "Short summary."}}) + "\n")
  out = tmp_path / "c.jsonl"
  meta = autorate_labels.autorate_labels(str(prompts), str(out), field="completion:teacher",
                                         source_path=str(source), judge=_config(judge))
  assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [True, False]
  assert meta["counts"]["judged"] == 2 and meta["field"] == "completion:teacher"
  assert set(meta["input_digests"]) == {"prompts", "source"}
  # A sidecar that is not an autorater run's: a FilterError naming it.
  (tmp_path / "c.jsonl.meta.json").write_text('{"format": "other"}')
  with pytest.raises(filters.FilterError, match="c.jsonl.meta.json"):
    filters.register_labels_file("c", str(out))
  assert autorater_filter.read_meta(str(tmp_path / "prompts.jsonl")) is None


def test_label_cli_writes_labels_and_bad_input_exits_2(judge, tmp_path):
  prompts, out = tmp_path / "prompts.jsonl", tmp_path / "l.jsonl"
  _write_prompts(prompts)
  env = {**os.environ, "PYTHONPATH": REPO}
  base = [sys.executable, "-m", "sftdiff.eval", "label", "--gin.JUDGE_MODEL='labeller'",
          f"--gin.JUDGE_BASE_URL='{judge.server.base_url}'", f"--gin.JUDGE_API_KEY_ENV='{KEY_ENV}'",
          f"--gin.LABEL_OUTPUT='{out}'"]
  ok = subprocess.run(base + [f"--gin.LABEL_PROMPTS='{prompts}'"], cwd=REPO, env=env,
                      capture_output=True, text=True)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert len(out.read_text().splitlines()) == 5  # p3 unparseable
  bad = subprocess.run(base + [f"--gin.LABEL_PROMPTS='{tmp_path / 'nope.jsonl'}'"], cwd=REPO,
                       env=env, capture_output=True, text=True)
  assert bad.returncode == 2 and "LABEL_PROMPTS" in bad.stderr, bad.stderr[-2000:]
  assert "Traceback" not in bad.stderr
