"""Retry-After (seconds, HTTP-date), its cap and the per-call retry budget,
against the project's local OpenAI-compatible server."""

import email.utils
import logging

import pytest

from sftdiff.eval import api_client
from sftdiff.eval.retry_after import requested_wait_s
from sftdiff.testing.openai_server import OpenAITestServer

KEY_ENV = "SFTDIFF_RETRY_TEST_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
  monkeypatch.setenv(KEY_ENV, "sk-retry-test")


def _client(server, **kw):
  cfg = api_client.ApiConfig(model="m", base_url=server.base_url, api_key_env=KEY_ENV,
                             initial_backoff_s=0.01, timeout_s=10.0, **kw)
  return api_client.ChatClient(cfg)


def _one(client):
  return client.complete_many([([{"role": "user", "content": "hi"}], {})])


def test_requested_wait_parses_seconds_dates_and_ms():
  now = 1_000_000.0
  date = email.utils.formatdate(now + 7, usegmt=True)
  assert requested_wait_s({"retry-after": "2"}, now) == 2.0
  assert requested_wait_s({"retry-after": date}, now) == 7.0
  assert requested_wait_s({"retry-after": email.utils.formatdate(now - 5, usegmt=True)},
                          now) == 0.0
  assert requested_wait_s({"retry-after-ms": "250", "retry-after": "9"}, now) == 0.25
  assert requested_wait_s({"retry-after": "soon"}, now) is None
  assert requested_wait_s({}, now) is None and requested_wait_s(None, now) is None


def test_retry_after_seconds_is_honoured(caplog):
  caplog.set_level(logging.DEBUG, logger="sftdiff.eval.api_client")
  with OpenAITestServer(faults=["429:2"]) as server:
    client = _client(server)
    (text,) = _one(client)
    assert text.startswith("echo: ")
    assert server.calls == 2 and server.faults_served == ["429:2"]
    gap = server.arrivals[1] - server.arrivals[0]
  assert gap >= 1.9, gap  # our own backoff would have been 0.01 s
  assert client.stats()["backoffs"] == 1 and client.stats()["retry_after_honoured"] == 1
  assert client.stats()["backoff_s"] == 2.0
  assert "Retry-After asked 2.00s" in caplog.text
  assert all(r.levelno == logging.DEBUG for r in caplog.records if "retrying" in r.message)


def test_retry_after_http_date_is_honoured():
  # A date 3 s ahead (1 s resolution): at least ~2 s must pass.
  import time
  date = email.utils.formatdate(time.time() + 3, usegmt=True)
  with OpenAITestServer(faults=[f"429:{date}"]) as server:
    client = _client(server)
    _one(client)
    gap = server.arrivals[1] - server.arrivals[0]
  assert gap >= 1.0, gap
  assert client.stats()["retry_after_honoured"] == 1


def test_retry_after_is_capped_and_the_budget_ends_a_call():
  with OpenAITestServer(faults=["429:30"]) as server:
    client = _client(server, max_retry_after_s=0.2)
    (text,) = _one(client)
    assert isinstance(text, str) and server.calls == 2
  assert client.stats()["backoff_s"] == 0.2  # asked 30, capped at 0.2
  with OpenAITestServer(faults=["429:5", "429:5"]) as server:
    client = _client(server, retry_budget_s=4.0)
    (err,) = _one(client)
    assert isinstance(err, api_client.ApiCallError) and "retry_budget_s=4" in str(err)
    assert server.calls == 1  # waiting 5 s would exceed the 4 s budget: no 2nd call
