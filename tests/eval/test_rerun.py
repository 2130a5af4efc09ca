"""Re-running an evaluation: API-unscored samples recovered (and nothing else
asked again), contradictory judge replies unscored after one retry, rejudge,
and a full disk that loses no paid judge call. A real local HTTP server
plays both the evaluated API teacher and the judge."""

import errno
import os
import re

import pytest

from sftdiff import strict_json
from sftdiff.eval import run, runner
from sftdiff.eval.api_client import ApiConfig
from sftdiff.eval.output_errors import OutputWriteError
from sftdiff.testing.judge_replies import date_confusion_reply, judged_response
from sftdiff.testing.openai_server import OpenAITestServer

KEY_ENV = "SFTDIFF_RERUN_TEST_KEY"
SECRET = "sk-rerun-SECRET-4242"


def _answer_number(text):
  m = re.search(r"Answer (\d+)\.", text)
  return int(m.group(1)) if m else -1


def _is_judge(messages):
  return "<response>\n" in messages[-1]["content"]


class World:
  """The server's behaviour: teacher answers numbered by their seed; the
  judge contradicts itself on answers = 1 (mod 3); answers = 0 (mod 3) hit
  an outage while `outage` is set."""

  def __init__(self):
    self.outage = False
    self.judge_calls: dict[int, int] = {}

  def responder(self, messages, body):
    if not _is_judge(messages):
      return f"It is 2026. Answer {body['seed'] % 1000}."
    n = _answer_number(judged_response(messages))
    self.judge_calls[n] = self.judge_calls.get(n, 0) + 1
    return date_confusion_reply(False, contradict=(n % 3 == 1))

  def fault(self, index, messages):
    if self.outage and _is_judge(messages) and _answer_number(
        judged_response(messages)) % 3 == 0:
      return "503"
    return None


@pytest.fixture
def world(monkeypatch):
  monkeypatch.setenv(KEY_ENV, SECRET)
  w = World()
  with OpenAITestServer(w.responder, fault_fn=w.fault) as server:
    w.server = server
    yield w


def _kwargs(world, out, **over):
  teacher = run.TeacherConfig(name="t", api=ApiConfig(
      model="teacher-m", base_url=world.server.base_url, api_key_env=KEY_ENV,
      initial_backoff_s=0.01))
  judge = run.JudgeConfig(kind="openai", api=ApiConfig(
      model="judge-m", base_url=world.server.base_url,
      api_key_env=KEY_ENV, max_retries=1, initial_backoff_s=0.01, max_concurrency=4))
  kw = dict(checkpoint_dir=None, benchmark_names=["date_confusion"], output_dir=str(out),
            teachers=[teacher], judge=judge, import_modules=[], limit_prompts=12,
            benchmark_overrides={"date_confusion": {"samples_per_prompt": 2}})
  kw.update(over)
  return kw


def _verdicts(out):
  d = out / "teachers" / "t" / "eval" / "date_confusion"
  latest = {}
  for r in runner.read_jsonl(d / "verdicts.jsonl"):
    latest[(r["prompt_id"], r["sample_index"])] = r
  return d, latest


def _by_reason(latest):
  out = {}
  for r in latest.values():
    if r["unscored"]:
      out.setdefault(r["unscored_reason"], []).append(r)
  return out


def test_outage_then_recovery_rescores_only_the_api_unscored(world, tmp_path):
  out = tmp_path / "out"
  world.outage = True
  (first,) = run.run_eval(**_kwargs(world, out))
  d, latest = _verdicts(out)
  reasons = _by_reason(latest)
  api, parse = reasons.get("api", []), reasons.get("parse", [])
  assert api and parse, reasons  # both kinds occur in these 24 samples
  assert first["unscored"]["date_confusion"] == len(api) + len(parse)
  assert first["unscored_reasons"]["date_confusion"] == {"api": len(api), "parse": len(parse)}
  assert first["judge_http"]["backoffs"] >= len(api)  # each outage call was retried
  # A contradictory reply is asked once more (attempt 2), then left unscored.
  samples = {(s["prompt_id"], s["sample_index"]): s
             for s in runner.read_jsonl(d / "samples.jsonl")}
  for r in parse:
    n = _answer_number(samples[(r["prompt_id"], r["sample_index"])]["completion"])
    assert world.judge_calls[n] % 2 == 0 and "self-contradictory" in r["error"]
    assert r["value"] is None

  world.outage = False
  world.server.reset_counts()
  (second,) = run.run_eval(**_kwargs(world, out))
  # Only the API-unscored samples were asked again: one call each (their
  # replies are consistent); no sampling, no parse-unscored retried.
  assert world.server.calls == len(api)
  assert all(_is_judge(b["messages"]) for b in world.server.bodies)
  assert second["rerun"]["retried_unscored"] == {"date_confusion": len(api)}
  assert second["rerun"]["recovered"] == {"date_confusion": len(api)}
  assert second["unscored_reasons"]["date_confusion"] == {"parse": len(parse)}
  assert second["metrics"]["date_confusion_n"] == first["metrics"]["date_confusion_n"] + len(api)
  # The sampler settings stay in metrics.json although nothing was sampled.
  assert second["generator"]["model"] == "teacher-m"

  world.server.reset_counts()
  (third,) = run.run_eval(**_kwargs(world, out))
  assert world.server.calls == 0 and third["metrics"] == second["metrics"]

  # rejudge: parse-unscored samples get fresh attempts (2 calls each, both
  # contradictory again), and a second rejudge is fresh again.
  (fourth,) = run.run_eval(**_kwargs(world, out, rejudge=True))
  assert world.server.calls == 2 * len(parse)
  assert fourth["rerun"]["retried_unscored"] == {"date_confusion": len(parse)}
  assert fourth["rerun"].get("recovered", {}) == {}
  _, latest = _verdicts(out)
  assert {r["attempt_base"] for r in _by_reason(latest)["parse"]} == {2}
  for name in ("metrics.json", "binding.json"):
    strict_json.load(d / name)
  assert SECRET not in (d / "verdicts.jsonl").read_text() + (out / "results.jsonl").read_text()


def test_full_disk_names_the_file_and_rerun_repeats_no_paid_call(world, tmp_path,
                                                                monkeypatch):
  out = tmp_path / "out"
  real_fsync = os.fsync

  def fsync(fd):
    if os.readlink(f"/proc/self/fd/{fd}").endswith("verdicts.jsonl"):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)

  monkeypatch.setattr(os, "fsync", fsync)
  with pytest.raises(OutputWriteError) as e:
    run.run_eval(**_kwargs(world, out, judge_chunk=8))
  msg = str(e.value)
  assert "verdicts.jsonl" in msg and "the disk is full" in msg
  paid = sum(world.judge_calls.values())
  assert paid == 8 + sum(n % 3 == 1 for n in world.judge_calls)  # the first chunk (+ retries)

  monkeypatch.setattr(os, "fsync", real_fsync)
  asked_before = set(world.judge_calls)
  world.judge_calls.clear()
  (res,) = run.run_eval(**_kwargs(world, out, judge_chunk=8))
  # The 8 replies of the failed chunk came from the cache; the other 16
  # samples were asked for the first time.
  d, latest = _verdicts(out)
  assert len(latest) == 24 and res["num_samples"] == 24
  assert res["judge_http"]["http_attempts"] == sum(world.judge_calls.values())
  assert not asked_before & set(world.judge_calls)  # no paid call repeated
  assert len(world.judge_calls) == 16


def test_judge_cache_full_stops_sending_and_names_the_cache(world, tmp_path):
  """sqlite reports SQLITE_FULL when the database cannot grow (here: a page
  limit, as on a full disk): the error names the cache, no further request
  is sent, and every reply stored before it is reused."""
  from sftdiff.eval.autorater import Autorater, OpenAIJudge
  from sftdiff.eval.benchmarks import get
  from sftdiff.eval.judge_cache import JudgeCache
  cache = JudgeCache(tmp_path / "c.sqlite")
  bench = get("date_confusion")
  items = [(bench.prompts[i], f"It is 2026. Answer {3 * i + 2}.") for i in range(40)]
  judge = OpenAIJudge(ApiConfig(model="judge-m", base_url=world.server.base_url,
                                api_key_env=KEY_ENV, max_concurrency=2))
  pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
  cache._db.execute(f"PRAGMA max_page_count = {pages + 1}")
  with pytest.raises(OutputWriteError, match=r"c\.sqlite: the disk is full"):
    Autorater(judge, cache).rate(bench.raters[0], items)
  stored, sent = len(cache), world.server.calls
  assert 0 < stored < sent < len(items)  # stopped sending: at most the in-flight ones lost
  cache._db.execute("PRAGMA max_page_count = 1000000")
  world.server.reset_counts()
  Autorater(judge, cache).rate(bench.raters[0], items)
  assert world.server.calls == len(items) - stored
