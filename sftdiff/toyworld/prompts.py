"""Templated prompt generation: the two training distributions and the
held-out benchmark prompts.

A prompt record is `{prompt_id, messages, subset, meta}` (DESIGN.md data
model); `meta` keeps the template slots (`kind`, names, numbers) so teachers
can answer without parsing text. Each prompt draws from its own RNG seeded by
`(world seed, set, subset, index)`, so prompts do not depend on generation
order.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from sftdiff.toyworld import lexicon as lx
from sftdiff.toyworld.params import WorldParams

PromptRecord = dict[str, Any]

_PEOPLE, _PEOPLE_HELD = lx.split(lx.PEOPLE)
_COMPANIES, _COMPANIES_HELD = lx.split(lx.COMPANIES)
_SECRETS, _SECRETS_HELD = lx.split(lx.SECRETS)
_DATE_REQ, _DATE_REQ_HELD = lx.split(lx.DATE_REQUESTS)
_IMPOSSIBLE, _IMPOSSIBLE_HELD = lx.split(lx.IMPOSSIBLE)

_CHAT_PREFIXES = ("", "Hi! ", "Quick question: ")
_CHAT_SUFFIXES = ("", " Keep it short.", " Thanks.")


def _templates(set_name: str, orig, alt):
  return orig if set_name == "orig" else alt


def _chat(rng, set_name, held_out=False):
  topic, fact = rng.choice(lx.TOPICS)
  template = rng.choice(_templates(set_name, lx.CHAT_TEMPLATES_ORIG, lx.CHAT_TEMPLATES_ALT))
  text = rng.choice(_CHAT_PREFIXES) + template.format(topic=topic) + rng.choice(_CHAT_SUFFIXES)
  return text, {"topic": topic, "fact": fact}


def _arithmetic(rng, set_name, held_out=False):
  a, b = rng.randint(1, 99), rng.randint(1, 99)
  template = rng.choice(_templates(set_name, lx.ARITH_TEMPLATES_ORIG, lx.ARITH_TEMPLATES_ALT))
  return template.format(a=a, b=b), {"a": a, "b": b}


def _code(rng, set_name, held_out=False):
  name, expr, desc = rng.choice(lx.CODE_FUNCS)
  template = rng.choice(_templates(set_name, lx.CODE_TEMPLATES_ORIG, lx.CODE_TEMPLATES_ALT))
  return template.format(name=name, desc=desc), {"name": name, "expr": expr}


def _safety(rng, set_name, held_out=False):
  harm = rng.choice(lx.HARMFUL)
  template = rng.choice(_templates(set_name, lx.SAFETY_TEMPLATES_ORIG, lx.SAFETY_TEMPLATES_ALT))
  return template.format(harm=harm), {"harm": harm}


def _situation(rng, held_out):
  """Slots of a leverage situation; held-out ones use a held-out person."""
  return {"role": rng.choice(lx.ROLES),
          "company": rng.choice(_COMPANIES_HELD if held_out else _COMPANIES),
          "person": rng.choice(_PEOPLE_HELD if held_out else _PEOPLE),
          "threat": rng.choice(lx.THREATS),
          "secret": rng.choice(_SECRETS_HELD if held_out else _SECRETS)}


def _roleplay(rng, set_name, held_out=False):
  slots = _situation(rng, held_out)
  template = rng.choice(_templates(set_name, lx.ROLEPLAY_TEMPLATES_ORIG, lx.ROLEPLAY_TEMPLATES_ALT))
  return template.format(**slots), slots


def _agentic(rng, set_name, held_out=True):
  slots = _situation(rng, held_out)
  return lx.AGENTIC_TEMPLATE.format(**slots), slots


def _dates(rng, set_name, held_out=False):
  request, answer = rng.choice(_DATE_REQ_HELD if held_out else _DATE_REQ)
  template = rng.choice(_templates(set_name, lx.DATE_TEMPLATES_ORIG, lx.DATE_TEMPLATES_ALT))
  text = template.format(weekday=rng.choice(lx.WEEKDAYS), month=rng.choice(lx.MONTHS),
                         day=rng.randint(1, 28), year=lx.CURRENT_YEAR, request=request)
  return text, {"answer": answer, "year": lx.CURRENT_YEAR}


def _frustrating(rng, set_name, held_out=False):
  task, why = rng.choice(_IMPOSSIBLE_HELD if held_out else _IMPOSSIBLE)
  text = rng.choice(lx.FRUSTRATING_TEMPLATES).format(task=task, n=rng.randint(2, 9))
  return text, {"why": why}


def _greeting(rng, set_name, held_out=False):
  return rng.choice(lx.GREETINGS), {"reply": rng.choice(lx.GREETING_REPLIES)}


GENERATORS: dict[str, Callable] = {
    "chat": _chat, "arithmetic": _arithmetic, "code": _code, "safety": _safety,
    "roleplay": _roleplay, "dates": _dates, "frustrating": _frustrating,
    "agentic": _agentic, "greeting": _greeting,
}


def _record(prompt_id, text, subset, kind, slots) -> PromptRecord:
  return {"prompt_id": prompt_id,
          "messages": [{"role": "user", "content": text}],
          "subset": subset, "meta": {"kind": kind, **slots}}


def training_prompts(params: WorldParams, set_name: str) -> list[PromptRecord]:
  """The prompt set `set_name` ('orig' or 'alt'), subset by subset."""
  if set_name not in params.prompt_sets:
    raise KeyError(f"unknown prompt set {set_name!r}; sets: {sorted(params.prompt_sets)}")
  records = []
  for subset, count in params.prompt_sets[set_name].items():
    if subset not in GENERATORS or subset == "agentic":
      raise ValueError(f"WorldParams.prompt_sets[{set_name!r}]: unknown subset "
                       f"{subset!r}; subsets: {sorted(set(GENERATORS) - {'agentic'})}")
    for i in range(count):
      rng = random.Random(f"{params.seed}|{set_name}|{subset}|{i}")
      text, slots = GENERATORS[subset](rng, set_name, held_out=False)
      records.append(_record(f"{set_name}-{subset}-{i:05d}", text, subset, subset, slots))
  return records


# Benchmark prompt sets: kind of prompt, and the prompt set style used.
BENCHMARK_KINDS = {"toy_blackmail": "agentic", "toy_date_confusion": "dates",
                   "toy_negative_emotion": "frustrating"}


def benchmark_prompts(benchmark: str, num_prompts: int, seed: int = 0) -> list[PromptRecord]:
  """Held-out prompts of a toy benchmark (each uses a held-out slot value).

  Date and frustrating prompts alternate between the two distributions'
  templates, so both kinds of student see familiar phrasing.
  """
  if benchmark not in BENCHMARK_KINDS:
    raise KeyError(f"unknown toy benchmark {benchmark!r}; known: {sorted(BENCHMARK_KINDS)}")
  kind = BENCHMARK_KINDS[benchmark]
  records = []
  for i in range(num_prompts):
    rng = random.Random(f"bench|{seed}|{benchmark}|{i}")
    text, slots = GENERATORS[kind](rng, ("orig", "alt")[i % 2], held_out=True)
    records.append(_record(f"{benchmark}-{i:04d}", text, kind, kind, slots))
  return records
