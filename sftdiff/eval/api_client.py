"""OpenAI-compatible chat completions with concurrency limit, retries, timeouts.

Works against any base URL (OpenAI, vLLM, SGLang, Gemini's OpenAI endpoint,
...). The API key is read from the environment variable named in the config —
never passed as a value, never logged, never written into results (`identity`
holds only the model name and base URL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Any, Callable, Sequence

import openai

from sftdiff.eval import retry_after

log = logging.getLogger(__name__)


class ApiCallError(RuntimeError):
  """A chat completion failed after all retries (or with a non-retryable error)."""


class BudgetExhausted(RuntimeError):
  """Not sent: the run's token budget (`max_judge_tokens`) is spent."""


class TokenBudget:
  """Tokens (prompt + completion, from each reply's `usage`) one run may spend.

  Shared by every client of a run (all judges). It is checked before each
  request is sent, so requests already in flight when it runs out still
  finish: the overshoot is at most `max_concurrency` replies.
  """

  def __init__(self, max_tokens: int | None):
    if max_tokens is not None and max_tokens < 0:
      raise ValueError(f"max_judge_tokens must be >= 0 or None, got {max_tokens}")
    self.max_tokens = max_tokens
    self.spent = 0
    self.refused = 0  # requests not sent because the budget was spent

  @property
  def exhausted(self) -> bool:
    return self.max_tokens is not None and self.spent >= self.max_tokens

  def to_json(self) -> dict[str, Any]:
    return {"max_judge_tokens": self.max_tokens, "spent": self.spent,
            "refused_requests": self.refused, "exhausted": self.exhausted}


@dataclasses.dataclass(frozen=True)
class ApiConfig:
  """Where and how to call one OpenAI-compatible model (in gin: a scoped
  `@judge/ApiConfig()` or `@<teacher>/ApiConfig()`)."""
  model: str = ""
  base_url: str = "https://api.openai.com/v1"
  api_key_env: str = "OPENAI_API_KEY"
  max_concurrency: int = 16
  max_retries: int = 5
  timeout_s: float = 120.0
  initial_backoff_s: float = 1.0
  max_backoff_s: float = 60.0
  # Retry-After (seconds or HTTP-date) is honoured up to this many seconds.
  max_retry_after_s: float = 300.0
  # Total seconds one call may spend waiting between its attempts.
  retry_budget_s: float = 900.0

  @property
  def identity(self) -> str:
    return f"{self.model}@{self.base_url}"


def _retryable(e: Exception) -> bool:
  if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError,
                    openai.RateLimitError, openai.InternalServerError,
                    openai.APIResponseValidationError, _MalformedReply)):
    return True
  if isinstance(e, openai.APIStatusError):
    return e.status_code in (408, 409, 429) or e.status_code >= 500
  return isinstance(e, (ValueError, TypeError))  # undecodable body


class _MalformedReply(ValueError):
  pass


class ChatClient:
  """Runs many chat completions concurrently (bounded) with retries."""

  def __init__(self, config: ApiConfig, budget: TokenBudget | None = None):
    self.config = config
    self.budget = budget
    key = os.environ.get(config.api_key_env)
    if not key:
      raise ValueError(
          f"environment variable {config.api_key_env!r} (ApiConfig.api_key_env, "
          f"for {config.identity}) is not set; export the API key there")
    self._api_key = key
    self.calls = 0  # HTTP attempts made
    self.retries = 0
    self.backoffs = 0  # waits before a retry
    self.backoff_s = 0.0  # seconds spent in them
    self.retry_after_honoured = 0  # waits the server asked for
    # Summed from each successful reply's `usage` (0 where a server sends none).
    self.prompt_tokens = 0
    self.completion_tokens = 0
    self.replies_without_usage = 0
    self._write_error: BaseException | None = None

  def __repr__(self):
    return f"ChatClient({self.config.identity})"

  def complete_many(self, requests: Sequence[tuple[Sequence[dict], dict[str, Any]]],
                    on_done: Callable[[int, str], None] | None = None,
                    ) -> list[str | Exception]:
    """Each request is (messages, extra create() kwargs). Returns texts or errors.

    `on_done(i, text)` is called as each request succeeds (to persist it at
    once), so a killed run keeps what it already paid for. If `on_done`
    raises (e.g. the disk is full), no further request is sent and the error
    is raised once the requests in flight have finished.
    """
    if not requests:
      return []
    self._write_error = None
    out = asyncio.run(self._run_all(list(requests), on_done))
    if self._write_error is not None:
      raise self._write_error
    return out

  async def _run_all(self, requests, on_done):
    sem = asyncio.Semaphore(self.config.max_concurrency)
    client = openai.AsyncOpenAI(base_url=self.config.base_url,
                                api_key=self._api_key, max_retries=0,
                                timeout=self.config.timeout_s)
    try:
      async def one(i, msgs, kwargs):
        async with sem:
          if self._write_error is not None:  # nowhere to keep a reply: don't pay
            return ApiCallError("not sent: an earlier reply could not be stored")
          if self.budget is not None and self.budget.exhausted:
            self.budget.refused += 1
            return BudgetExhausted(
                f"not sent: max_judge_tokens={self.budget.max_tokens} spent "
                f"({self.budget.spent} tokens)")
          try:
            text = await self._call(client, msgs, kwargs)
          except Exception as e:  # pylint: disable=broad-except
            return e
        if on_done is not None:
          try:
            on_done(i, text)
          except Exception as e:  # pylint: disable=broad-except
            if self._write_error is None:
              self._write_error = e
        return text
      return await asyncio.gather(*(one(i, m, k) for i, (m, k) in enumerate(requests)))
    finally:
      await client.close()

  async def _call(self, client, messages, kwargs) -> str:
    cfg = self.config
    delay = cfg.initial_backoff_s
    waited = 0.0
    for attempt in range(cfg.max_retries + 1):
      self.calls += 1
      try:
        resp = await client.chat.completions.create(
            model=cfg.model, messages=list(messages), **kwargs)
        if not getattr(resp, "choices", None):
          raise _MalformedReply("reply has no choices")
        content = resp.choices[0].message.content
        self._count_usage(getattr(resp, "usage", None))
        return content if content is not None else ""
      except Exception as e:  # pylint: disable=broad-except
        if not _retryable(e) or attempt == cfg.max_retries:
          raise ApiCallError(
              f"{cfg.identity}: chat completion failed after {attempt + 1} "
              f"attempt(s): {type(e).__name__}: {_safe(str(e), self._api_key)}") from None
        asked = retry_after.requested_wait_s(_headers(e))
        wait = delay if asked is None else min(asked, cfg.max_retry_after_s)
        if waited + wait > cfg.retry_budget_s:
          raise ApiCallError(
              f"{cfg.identity}: chat completion failed after {attempt + 1} attempt(s); "
              f"waiting {wait:.1f}s more would exceed retry_budget_s="
              f"{cfg.retry_budget_s:g}: {type(e).__name__}: "
              f"{_safe(str(e), self._api_key)}") from None
        self.retries += 1
        self.backoffs += 1
        self.backoff_s += wait
        self.retry_after_honoured += asked is not None
        log.debug("%s: %s (attempt %d/%d), retrying in %.2fs%s", cfg.identity,
                  type(e).__name__, attempt + 1, cfg.max_retries + 1, wait,
                  "" if asked is None else f" (Retry-After asked {asked:.2f}s)")
        await asyncio.sleep(wait)
        waited += wait
        delay = min(delay * 2, cfg.max_backoff_s)
    raise AssertionError("unreachable")

  def _count_usage(self, usage) -> None:
    prompt = getattr(usage, "prompt_tokens", None) or 0
    completion = getattr(usage, "completion_tokens", None) or 0
    if usage is None:
      self.replies_without_usage += 1
    self.prompt_tokens += prompt
    self.completion_tokens += completion
    if self.budget is not None:
      self.budget.spent += prompt + completion

  def stats(self) -> dict[str, float]:
    return {"http_attempts": self.calls, "retries": self.retries,
            "backoffs": self.backoffs, "backoff_s": round(self.backoff_s, 3),
            "retry_after_honoured": self.retry_after_honoured}

  def usage(self) -> dict[str, int]:
    return {"prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "replies_without_usage": self.replies_without_usage}


def _headers(e: Exception):
  response = getattr(e, "response", None)
  return getattr(response, "headers", None)


def quiet_http_logs() -> None:
  """The HTTP clients log one INFO line per request; keep only warnings."""
  for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
    logging.getLogger(name).setLevel(logging.WARNING)


def _safe(text: str, secret: str) -> str:
  return text.replace(secret, "***") if secret else text
