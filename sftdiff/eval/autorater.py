"""Autoraters: apply a benchmark's raters to samples with a judge backend.

Judge backends (`Judge`):
  * `OpenAIJudge`: any OpenAI-compatible chat-completions endpoint.
  * `LocalJudge`: a local checkpoint through the sampler (greedy).
Rule-based raters (`RuleRater`) need no judge.

Every judge reply goes through a persistent SQLite cache keyed by (judge,
rubric version, full judge prompt, sampling params, attempt): a re-run makes
no new calls. A reply that does not parse (or contradicts itself, or quotes
evidence the response lacks) is retried once (a second cache entry,
attempt=1), then the sample is recorded as unscored with the reason. A call
that fails at the API is unscored with reason "api" and not cached, so a
re-run asks again. A call not sent because the run's token budget
(`max_judge_tokens`) is spent is unscored with reason "budget", likewise
asked again by a later run. `attempt_bases` (rejudge) shifts the attempt numbers so a
rejudged sample gets fresh replies, themselves cached.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any, Sequence

from sftdiff.eval import api_client
from sftdiff.eval.benchmarks.base import (Rater, RubricParseError, RubricRater,
                                          RuleRater)
from sftdiff.eval.judge_cache import JudgeCache, cache_key
from sftdiff.eval.types import EvalPrompt, Request, SamplingParams, Verdict

log = logging.getLogger(__name__)

NUM_PARSE_ATTEMPTS = 2  # the first reply + one retry


class Judge(abc.ABC):
  """Turns judge prompts (message lists) into reply texts."""

  @property
  @abc.abstractmethod
  def identity(self) -> str:
    """Names the judge model in results and cache keys (never a secret)."""

  @property
  @abc.abstractmethod
  def params(self) -> dict[str, Any]:
    """Sampling params (part of the cache key)."""

  @abc.abstractmethod
  def complete_many(self, prompts: Sequence[Sequence[dict]], attempt: int = 0,
                    on_done=None) -> list[str | Exception]:
    ...


class OpenAIJudge(Judge):

  def __init__(self, config: api_client.ApiConfig, *, temperature: float = 0.0,
               max_tokens: int = 1024, budget: api_client.TokenBudget | None = None):
    self.config = config
    self.client = api_client.ChatClient(config, budget=budget)
    self._params = {"temperature": temperature, "max_tokens": max_tokens}

  @property
  def identity(self) -> str:
    return f"openai:{self.config.identity}"

  @property
  def params(self):
    return dict(self._params)

  @property
  def calls(self) -> int:
    return self.client.calls

  def http_stats(self) -> dict[str, float]:
    return self.client.stats()

  def usage(self) -> dict[str, int]:
    return self.client.usage()

  def complete_many(self, prompts, attempt=0, on_done=None):
    # A retry after an unparseable reply must not reuse a deterministic
    # provider-side cache; a seed varies it where the server honours seeds.
    kwargs = dict(self._params)
    if attempt:
      kwargs["seed"] = attempt
    return self.client.complete_many([(p, kwargs) for p in prompts], on_done=on_done)


class LocalJudge(Judge):
  """A local checkpoint as judge (greedy on attempt 0, sampled on the retry)."""

  def __init__(self, sampler, name: str, *, max_new_tokens: int = 512):
    self.sampler, self.name = sampler, name
    self.max_new_tokens = max_new_tokens

  @property
  def identity(self) -> str:
    return f"local:{self.name}"

  @property
  def params(self):
    return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0}

  def complete_many(self, prompts, attempt=0, on_done=None):
    sp = SamplingParams(max_new_tokens=self.max_new_tokens,
                        temperature=0.0 if attempt == 0 else 0.7)
    reqs = [Request(list(p), n=1, seed=attempt) for p in prompts]
    outs = self.sampler.generate(reqs, sp)
    texts = [o[0].text for o in outs]
    if on_done is not None:
      for i, t in enumerate(texts):
        on_done(i, t)
    return texts


@dataclasses.dataclass
class RaterStats:
  judge_calls: int = 0  # prompts sent to the judge (cache misses)
  cache_hits: int = 0
  parse_retries: int = 0
  unscored: int = 0
  api_errors: int = 0
  budget_refused: int = 0  # samples left unscored because the token budget ran out


class Autorater:
  """Rates samples with rule raters directly and rubric raters via a judge."""

  def __init__(self, judge: Judge | None = None, cache: JudgeCache | None = None, *,
               judge_factory=None):
    """`judge_factory()` builds the judge on first need (so runs whose raters
    are all rule-based never touch an API key or load a judge model)."""
    self._judge, self.cache = judge, cache
    self._judge_factory = judge_factory
    self.stats = RaterStats()

  @property
  def built_judge(self) -> Judge | None:
    """The judge if it was built already (never builds one)."""
    return self._judge

  @property
  def judge(self) -> Judge | None:
    if self._judge is None and self._judge_factory is not None:
      self._judge = self._judge_factory()
      self._judge_factory = None
    return self._judge

  def rate(self, rater: Rater, items: Sequence[tuple[EvalPrompt, str]],
           attempt_bases: Sequence[int] | None = None) -> list[Verdict]:
    if isinstance(rater, RuleRater):
      return [rater.rate(p, c) for p, c in items]
    if not isinstance(rater, RubricRater):
      raise TypeError(f"unsupported rater type {type(rater).__name__} ({rater.name})")
    if self.judge is None:
      raise ValueError(f"rater {rater.name!r} needs a judge model; configure "
                       "one (run_eval.judge / JUDGE_* gin macros)")
    bases = list(attempt_bases) if attempt_bases is not None else [0] * len(items)
    return self._rate_rubric(rater, items, bases)

  def _rate_rubric(self, rater: RubricRater, items, bases) -> list[Verdict]:
    judge = self.judge
    msgs = [rater.messages(p, c) for p, c in items]
    results: list[Verdict | None] = [None] * len(items)
    errors = [""] * len(items)
    reasons = [""] * len(items)
    pending = list(range(len(items)))
    for attempt in range(NUM_PARSE_ATTEMPTS):
      if not pending:
        break
      if attempt:
        self.stats.parse_retries += len(pending)
      replies = self._replies(rater, [msgs[i] for i in pending],
                              [bases[i] + attempt for i in pending])
      still = []
      for i, reply in zip(pending, replies):
        prompt, completion = items[i]
        if isinstance(reply, Exception):
          # The call itself failed (after HTTP retries): unscored, not cached,
          # so a later run tries again.
          if isinstance(reply, api_client.BudgetExhausted):
            self.stats.budget_refused += 1
            reasons[i] = "budget"
          else:
            self.stats.api_errors += 1
            reasons[i] = "api"
          errors[i] = f"{type(reply).__name__}: {reply}"
          continue
        try:
          pv = rater.parse(reply, prompt, completion)
        except RubricParseError as e:
          errors[i] = f"unparseable judge reply (attempt {attempt + 1}): {e}"
          reasons[i] = "parse"
          still.append(i)
          continue
        results[i] = Verdict(rater.name, pv.value, rater.version, judge.identity,
                             evidence=pv.evidence, reasoning=pv.reasoning,
                             attempt_base=bases[i])
      pending = still
    out = []
    for i, v in enumerate(results):
      if v is None:
        self.stats.unscored += 1
        v = Verdict(rater.name, None, rater.version, judge.identity,
                    unscored=True, error=errors[i][:500], unscored_reason=reasons[i],
                    attempt_base=bases[i])
      out.append(v)
    return out

  def _replies(self, rater, prompts, attempts) -> list[str | Exception]:
    judge, cache = self.judge, self.cache
    keys = [cache_key(judge.identity, rater.version, p, judge.params, a)
            for p, a in zip(prompts, attempts)]
    replies: list[str | Exception | None] = [None] * len(prompts)
    missing = []
    for i, k in enumerate(keys):
      hit = cache.get(k) if cache is not None else None
      if hit is not None:
        replies[i] = hit
        self.stats.cache_hits += 1
      else:
        missing.append(i)
    if missing:
      self.stats.judge_calls += len(missing)

      def on_done(j, text):
        if cache is not None:
          cache.put(keys[missing[j]], text, judge=judge.identity,
                    rubric_version=rater.version)

      # One judge call per distinct attempt number (all equal unless rejudging).
      by_attempt: dict[int, list[int]] = {}
      for j, i in enumerate(missing):
        by_attempt.setdefault(attempts[i], []).append(j)
      for attempt, js in sorted(by_attempt.items()):
        got = judge.complete_many(
            [prompts[missing[j]] for j in js], attempt=attempt,
            on_done=lambda k, text, js=js: on_done(js[k], text))
        for j, r in zip(js, got):
          replies[missing[j]] = r
    return replies
