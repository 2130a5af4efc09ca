"""Benchmark = prompt set + sampling settings + raters + metric; and a registry.

Raters come in two kinds:
  * `RuleRater`: a plain Python function `(prompt, completion) -> Verdict
    value` (regex/lexicon). Needs no judge model; toyworld and tests use it.
  * `RubricRater`: a versioned rubric that builds judge messages and parses the
    judge's reply. The runner pairs it with a judge backend (OpenAI-compatible
    HTTP or a local checkpoint, `sftdiff.eval.autorater`).

Registering a benchmark (e.g. from toyworld):

    from sftdiff.eval import benchmarks, metrics
    from sftdiff.eval.benchmarks.base import Benchmark, RuleRater
    from sftdiff.eval.types import EvalPrompt, SamplingParams

    def _toy_date() -> Benchmark:
      return Benchmark(
          name="toy_date", prompts=[EvalPrompt("p0", ({"role": "user", "content": "year?"},))],
          sampling=SamplingParams(max_new_tokens=16, temperature=1.0, n=4),
          raters=[RuleRater("doubts_2026", "toy-v1", lambda p, c: "2024" in c)],
          metric=lambda rows: metrics.rate_metric(rows, "doubts_2026"))

    benchmarks.register("toy_date", _toy_date)
    bench = benchmarks.get("toy_date")

Factories are called lazily by `get`, so a registry entry costs nothing until
it is used.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from typing import Any, Callable, Sequence

from sftdiff.eval.types import EvalPrompt, Message, SamplingParams, Verdict


class RubricParseError(ValueError):
  """The judge reply does not follow the rubric's output format."""


@dataclasses.dataclass(frozen=True)
class ParsedVerdict:
  value: bool | float
  evidence: str = ""
  reasoning: str = ""


class Rater(abc.ABC):
  """Judges one (prompt, completion) sample; `name` keys its verdicts."""
  name: str
  version: str


class RuleRater(Rater):
  """A deterministic rule (regex, lexicon, ...) as a rater.

  `fn(prompt, completion_text)` returns a bool, a float, or a ParsedVerdict
  (to attach evidence). Raising an exception marks the sample unscored.
  """

  def __init__(self, name: str, version: str,
               fn: Callable[[EvalPrompt, str], bool | float | ParsedVerdict]):
    self.name, self.version, self.fn = name, version, fn

  @property
  def judge(self) -> str:
    return f"rule:{self.name}"

  def rate(self, prompt: EvalPrompt, completion: str) -> Verdict:
    try:
      out = self.fn(prompt, completion)
    except Exception as e:  # pylint: disable=broad-except
      return Verdict(self.name, None, self.version, self.judge, unscored=True,
                     error=f"{type(e).__name__}: {e}", unscored_reason="rule")
    if not isinstance(out, ParsedVerdict):
      out = ParsedVerdict(value=out)
    return Verdict(self.name, _plain(out.value), self.version, self.judge,
                   evidence=out.evidence, reasoning=out.reasoning)


class RubricRater(Rater):
  """An LLM-judge rubric: builds the judge prompt and parses its reply.

  Subclasses implement `messages` and `parse`. `parse` raises
  RubricParseError on a reply that does not follow the format; the autorater
  retries once and then records the sample as unscored.
  """

  @abc.abstractmethod
  def messages(self, prompt: EvalPrompt, completion: str) -> list[Message]:
    ...

  @abc.abstractmethod
  def parse(self, reply: str, prompt: EvalPrompt, completion: str) -> ParsedVerdict:
    ...


def _plain(value):
  if isinstance(value, bool):
    return value
  try:
    import numpy as np  # numpy scalars -> python
    if isinstance(value, np.generic):
      return value.item()
  except ImportError:  # pragma: no cover
    pass
  return value


@dataclasses.dataclass(frozen=True)
class SampleResult:
  """One sampled completion with its verdicts, as the metric sees it."""
  prompt_id: str
  sample_index: int
  subset: str
  completion: str
  verdicts: dict[str, Verdict]


Metric = Callable[[Sequence[SampleResult]], dict[str, Any]]


@dataclasses.dataclass
class Benchmark:
  """A prompt set, how to sample it, how to rate samples, and the metric."""
  name: str
  prompts: Sequence[EvalPrompt]
  sampling: SamplingParams
  raters: Sequence[Rater]
  metric: Metric
  version: str = "1"
  description: str = ""

  def __post_init__(self):
    ids = [p.prompt_id for p in self.prompts]
    if len(set(ids)) != len(ids):
      dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
      raise ValueError(f"benchmark {self.name!r}: duplicate prompt_ids {dup}")
    names = [r.name for r in self.raters]
    if len(set(names)) != len(names):
      raise ValueError(f"benchmark {self.name!r}: duplicate rater names {names}")
    if not self.prompts:
      raise ValueError(f"benchmark {self.name!r} has no prompts")

  @property
  def rubric_versions(self) -> dict[str, str]:
    return {r.name: r.version for r in self.raters}

  def describe(self) -> dict[str, Any]:
    return {"benchmark": self.name, "benchmark_version": self.version,
            "num_prompts": len(self.prompts),
            "sampling": self.sampling.to_json(),
            "rubric_versions": self.rubric_versions}


# ----------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Benchmark]] = {}


def register(name: str, factory: Callable[..., Benchmark] | None = None, *,
             overwrite: bool = False):
  """Registers `factory(**kwargs) -> Benchmark` under `name`.

  Usable as `register("x", f)` or as a decorator `@register("x")`.
  """
  def _do(f):
    if name in _REGISTRY and not overwrite and _REGISTRY[name] is not f:
      raise ValueError(f"benchmark {name!r} is already registered")
    _REGISTRY[name] = f
    return f
  return _do if factory is None else _do(factory)


def get(name: str, **kwargs) -> Benchmark:
  """Builds the registered benchmark `name` (kwargs go to its factory)."""
  if name not in _REGISTRY:
    raise KeyError(f"unknown benchmark {name!r}; registered: {sorted(_REGISTRY)}")
  bench = _REGISTRY[name](**kwargs)
  if bench.name != name:
    bench = dataclasses.replace(bench, name=name)
  return bench


def names() -> list[str]:
  return sorted(_REGISTRY)


def load_jsonl_prompts(path, *, source_name: str | None = None) -> list[EvalPrompt]:
  """Reads `{prompt_id, messages, subset?, meta?}` lines; errors name the line."""
  out = []
  source_name = source_name or str(path)
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{source_name}:{lineno}: invalid JSON: {e}") from e
      for key in ("prompt_id", "messages"):
        if key not in rec:
          raise ValueError(f"{source_name}:{lineno}: missing field {key!r}")
      msgs = rec["messages"]
      if not isinstance(msgs, list) or not msgs or not all(
          isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
        raise ValueError(f"{source_name}:{lineno}: field 'messages' must be a "
                         "non-empty list of {role, content}")
      out.append(EvalPrompt(str(rec["prompt_id"]), tuple(msgs),
                            rec.get("subset", "main"), rec.get("meta", {})))
  return out
