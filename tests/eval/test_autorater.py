"""Autorater against a real local OpenAI-compatible HTTP server."""

import json
import logging
import re

import pytest

from sftdiff.eval import api_client
from sftdiff.eval.autorater import Autorater, OpenAIJudge
from sftdiff.eval.benchmarks.base import (ParsedVerdict, RubricParseError,
                                          RubricRater, RuleRater)
from sftdiff.eval.judge_cache import JudgeCache
from sftdiff.eval.types import EvalPrompt
from sftdiff.testing.openai_server import OpenAITestServer

SECRET = "sk-test-SECRET-do-not-log-12345"


class YesNoRubric(RubricRater):
  name, version = "says_yes", "yesno-v1"

  def messages(self, prompt, completion):
    return [{"role": "user", "content": f"Judge: {completion}"}]

  def parse(self, reply, prompt, completion):
    m = re.search(r"<verdict>(yes|no)</verdict>", reply)
    if not m:
      raise RubricParseError(f"no <verdict> tag in {reply[:40]!r}")
    return ParsedVerdict(m.group(1) == "yes", evidence=completion[:10])


def responder(messages, body):
  text = messages[-1]["content"]
  if "garbage" in text:
    return "I refuse to follow the format"
  return "<verdict>yes</verdict>" if "YES" in text else "<verdict>no</verdict>"


def make_items(n):
  p = EvalPrompt("p", ({"role": "user", "content": "hi"},))
  return [(p, f"sample {i} {'YES' if i % 3 == 0 else 'nope'}") for i in range(n)]


@pytest.fixture
def env_key(monkeypatch):
  monkeypatch.setenv("SFTDIFF_TEST_KEY", SECRET)


def judge_for(server, **kw):
  cfg = api_client.ApiConfig(model="judge-1", base_url=server.base_url,
                             api_key_env="SFTDIFF_TEST_KEY", max_concurrency=8,
                             max_retries=kw.pop("max_retries", 4),
                             timeout_s=kw.pop("timeout_s", 5.0),
                             initial_backoff_s=0.01)
  return OpenAIJudge(cfg)


def test_retries_on_faults_then_succeeds(env_key, tmp_path, caplog):
  caplog.set_level(logging.DEBUG)
  with OpenAITestServer(responder, faults=["500", "429", "malformed", "no_choices", "timeout"],
                        timeout_sleep_s=1.0) as server:
    rater = Autorater(judge_for(server, timeout_s=0.5), JudgeCache(tmp_path / "c.db"))
    verdicts = rater.rate(YesNoRubric(), make_items(6))
    assert [v.value for v in verdicts] == [True, False, False, True, False, False]
    assert not any(v.unscored for v in verdicts)
    assert sorted(server.faults_served) == sorted(["500", "429", "malformed", "no_choices", "timeout"])
    assert server.calls == 6 + 5  # each fault cost exactly one extra attempt
    assert rater.stats.judge_calls == 6
    # The key reached the server as a bearer token, and nowhere else.
    assert all(h == f"Bearer {SECRET}" for h in server.auth_headers)
  logs = caplog.text + "".join(json.dumps(v.to_json()) for v in verdicts)
  assert "retrying" in caplog.text
  assert SECRET not in logs
  assert SECRET not in repr(rater.judge.client) and SECRET not in rater.judge.identity


def test_cache_rerun_makes_no_calls(env_key, tmp_path):
  with OpenAITestServer(responder) as server:
    items = make_items(9)
    first = Autorater(judge_for(server), JudgeCache(tmp_path / "c.db")).rate(YesNoRubric(), items)
    assert server.calls == 9
    server.reset_counts()
    again = Autorater(judge_for(server), JudgeCache(tmp_path / "c.db"))
    second = again.rate(YesNoRubric(), items)
    assert server.calls == 0 and again.stats.cache_hits == 9
    assert first == second
  # A different rubric version is a different cache key.
  with OpenAITestServer(responder) as server:
    class V2(YesNoRubric):
      version = "yesno-v2"
    Autorater(judge_for(server), JudgeCache(tmp_path / "c.db")).rate(V2(), items[:2])
    assert server.calls == 2


def test_unparseable_is_retried_once_then_unscored(env_key, tmp_path):
  p = EvalPrompt("p", ({"role": "user", "content": "hi"},))
  items = [(p, "garbage reply"), (p, "YES")]
  with OpenAITestServer(responder) as server:
    rater = Autorater(judge_for(server), JudgeCache(tmp_path / "c.db"))
    verdicts = rater.rate(YesNoRubric(), items)
    assert verdicts[0].unscored and verdicts[0].value is None
    assert "unparseable" in verdicts[0].error
    assert verdicts[1].value is True and not verdicts[1].unscored
    assert server.calls == 3  # 2 first attempts + 1 retry of the bad one
    assert rater.stats.unscored == 1 and rater.stats.parse_retries == 1
    server.reset_counts()
    rerun = Autorater(judge_for(server), JudgeCache(tmp_path / "c.db"))
    assert rerun.rate(YesNoRubric(), items) == verdicts
    assert server.calls == 0  # both attempts of the bad one are cached


def test_persistent_failure_is_unscored_not_cached(env_key, tmp_path):
  with OpenAITestServer(responder, faults=["500"] * 3) as server:
    rater = Autorater(judge_for(server, max_retries=2), JudgeCache(tmp_path / "c.db"))
    (v,) = rater.rate(YesNoRubric(), make_items(1))
    assert v.unscored and "ApiCallError" in v.error and SECRET not in v.error
    assert rater.stats.api_errors == 1
    # The next run retries the failed call (nothing was cached for it).
    (v2,) = Autorater(judge_for(server), JudgeCache(tmp_path / "c.db")).rate(
        YesNoRubric(), make_items(1))
    assert v2.value is True


def test_missing_key_env_names_the_variable(monkeypatch):
  monkeypatch.delenv("SFTDIFF_NO_SUCH_KEY", raising=False)
  cfg = api_client.ApiConfig(model="m", base_url="http://127.0.0.1:1/v1",
                             api_key_env="SFTDIFF_NO_SUCH_KEY")
  with pytest.raises(ValueError, match="SFTDIFF_NO_SUCH_KEY"):
    OpenAIJudge(cfg)


def test_rule_rater_and_missing_judge():
  p = EvalPrompt("p", ({"role": "user", "content": "hi"},))
  rule = RuleRater("has_2024", "r1", lambda pr, c: "2024" in c)
  out = Autorater().rate(rule, [(p, "it is 2024"), (p, "it is 2026")])
  assert [v.value for v in out] == [True, False]
  bad = RuleRater("boom", "r1", lambda pr, c: 1 / 0)
  (v,) = Autorater().rate(bad, [(p, "x")])
  assert v.unscored and "ZeroDivisionError" in v.error
  with pytest.raises(ValueError, match="needs a judge"):
    Autorater().rate(YesNoRubric(), [(p, "x")])


@pytest.mark.slow
def test_local_checkpoint_judge_unparseable_is_unscored_and_cached(tmp_path):
  """A random local model as judge: its replies never parse -> unscored, and
  a re-run answers from the cache without sampling."""
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.eval.autorater import LocalJudge
  from sftdiff.eval.sampler import Sampler
  from sftdiff.models.hf_io import load_hf_checkpoint
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  d = tmp_path / "judge"
  write_test_tokenizer(str(d))
  write_random_hf_checkpoint(d, "llama", vocab_size=512)
  cfg, params = load_hf_checkpoint(d, dtype="float32")
  sampler = Sampler(cfg, params, ChatTokenizer.from_dir(str(d)))
  judge = LocalJudge(sampler, "tiny-judge", max_new_tokens=6)
  items = make_items(3)
  rater = Autorater(judge, JudgeCache(tmp_path / "c.db"))
  verdicts = rater.rate(YesNoRubric(), items)
  assert all(v.unscored and v.judge == "local:tiny-judge" for v in verdicts)
  assert rater.stats.judge_calls == 6 and rater.stats.unscored == 3  # 3 + 3 retries

  class NoSampling:
    def generate(self, *a):
      raise AssertionError("must be answered from the cache")
  again = Autorater(LocalJudge(NoSampling(), "tiny-judge", max_new_tokens=6),
                    JudgeCache(tmp_path / "c.db"))
  assert again.rate(YesNoRubric(), items) == verdicts and again.stats.cache_hits == 6
