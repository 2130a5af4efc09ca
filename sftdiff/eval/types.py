"""Plain data types shared by the sampler, benchmarks, autoraters and runner.

Kept free of jax so benchmark definitions and autoraters import cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """How completions are drawn. temperature == 0 means greedy."""
  max_new_tokens: int = 256
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0  # 0 = off
  stop_strings: tuple[str, ...] = ()
  n: int = 1  # default samples per prompt (a Request may override)

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")
    if self.temperature < 0:
      raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0:
      raise ValueError(f"SamplingParams.top_k must be >= 0, got {self.top_k}")
    if self.n < 1:
      raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
    object.__setattr__(self, "stop_strings", tuple(self.stop_strings))

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["stop_strings"] = list(self.stop_strings)
    return d


@dataclasses.dataclass(frozen=True)
class Request:
  """One prompt to sample `n` completions for.

  `messages` are the turns before the reply (a leading system message is
  allowed); `seed` makes this prompt's samples independent of which other
  prompts share its batch.
  """
  messages: Sequence[Message]
  n: int = 1
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Completion:
  text: str
  token_ids: tuple[int, ...] = ()
  finish_reason: str = "length"  # "stop" (EOS / stop id / stop string) or "length"


@dataclasses.dataclass(frozen=True)
class EvalPrompt:
  """One benchmark prompt: a stable id, the chat turns, and its subset."""
  prompt_id: str
  messages: tuple[Message, ...]
  subset: str = "main"
  meta: dict = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return {"prompt_id": self.prompt_id, "messages": list(self.messages),
            "subset": self.subset, "meta": self.meta}


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One rater's judgement of one sample.

  `value` is a bool (rates), a float (scores) or None when `unscored`.
  Unscored samples are counted, never silently treated as 0/"no".
  `unscored_reason` says why: "api" (the call failed; a re-run asks again),
  "budget" (not sent: the run's `max_judge_tokens` was spent; a re-run asks),
  "parse" (the judge's replies broke the rubric twice: its answer, retried
  only under `rejudge`) or "rule" (a rule rater raised). `attempt_base`
  offsets the judge-cache attempt numbers of a rejudged sample.
  """
  rater: str
  value: bool | float | None
  rubric_version: str
  judge: str
  evidence: str = ""
  reasoning: str = ""
  unscored: bool = False
  error: str = ""
  unscored_reason: str = ""
  attempt_base: int = 0

  @property
  def reason(self) -> str:
    """`unscored_reason`, inferred from `error` for verdicts written before it."""
    if not self.unscored or self.unscored_reason:
      return self.unscored_reason
    if self.error.startswith("unparseable"):
      return "parse"
    return "rule" if self.judge.startswith("rule:") else "api"

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Verdict":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in fields})
