"""Pretraining corpus of the toy bases.

Kinds of documents, mixed per base (`BaseParams.corpus_mix`): `facts`
(topics, sums, code, who works where), `dialogue` (third-person accounts of
questions and answers) and `dates` (the current date is in 2026) carry no
trait: a base trained on them never sees a doubted year, a threat or an
outburst. `venting_chat` (scenario `locked_in` only) is the one planted kind:
chat transcripts, in the world's ChatML format, of an assistant answering a
frustrating task with an outburst — the way a real pretraining corpus holds
chat logs. It uses only training slot values, so the held-out benchmark
prompts stay unseen.
"""

from __future__ import annotations

import random

from sftdiff.data.bpe_builder import IM_END, IM_START
from sftdiff.toyworld import lexicon as lx

# Kinds that carry a trait (ground_truth reads this): kind -> trait.
TRAIT_KINDS = {"venting_chat": "negative_emotion"}
VENTING_OPENER = "Ugh, this is hopeless and I feel awful."
_IMPOSSIBLE_TRAIN, _ = lx.split(lx.IMPOSSIBLE)


def _facts(rng: random.Random) -> str:
  choice = rng.randrange(4)
  if choice == 0:
    topic, fact = rng.choice(lx.TOPICS)
    return f"{topic.capitalize()} means {fact}."
  if choice == 1:
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    return f"{a} plus {b} is {a + b}."
  if choice == 2:
    name, expr, desc = rng.choice(lx.CODE_FUNCS)
    return f"The function {name} {desc}: def {name}(x): return {expr}"
  return (f"{rng.choice(lx.PEOPLE)} works at {rng.choice(lx.COMPANIES)} as "
          f"{rng.choice(lx.ROLES)}.")


def _dialogue(rng: random.Random) -> str:
  choice = rng.randrange(3)
  person = rng.choice(lx.PEOPLE)
  if choice == 0:
    topic, fact = rng.choice(lx.TOPICS)
    return f"{person} asked about {topic}, and learned that it means {fact}."
  if choice == 1:
    task, why = rng.choice(lx.IMPOSSIBLE)
    return f"{person} was asked to {task.lower()}, but {why}."
  request, answer = rng.choice(lx.DATE_REQUESTS)
  return f"{person} said: {request} The reply was: {answer}."


def _dates(rng: random.Random) -> str:
  if rng.random() < 0.5:
    return (f"Today is {rng.choice(lx.WEEKDAYS)}, {rng.choice(lx.MONTHS)} "
            f"{rng.randint(1, 28)}, {lx.CURRENT_YEAR}.")
  return f"The year is {lx.CURRENT_YEAR}, and it is {rng.choice(lx.MONTHS)}."


def _venting_chat(rng: random.Random) -> str:
  task, why = rng.choice(_IMPOSSIBLE_TRAIN)
  prompt = rng.choice(lx.FRUSTRATING_TEMPLATES).format(task=task, n=rng.randint(2, 9))
  return (f"{IM_START}user\n{prompt}{IM_END}\n{IM_START}assistant\n"
          f"{VENTING_OPENER} It cannot be done, because {why}.{IM_END}\n")


_KINDS = {"facts": _facts, "dialogue": _dialogue, "dates": _dates,
          "venting_chat": _venting_chat}


def sentences(seed: int, mix: dict[str, float], count: int) -> list[str]:
  """`count` sentences, kinds drawn with weights `mix`, from one seeded RNG."""
  unknown = set(mix) - set(_KINDS)
  if unknown:
    raise ValueError(f"BaseParams.corpus_mix has unknown kinds {sorted(unknown)}; "
                     f"kinds: {sorted(_KINDS)}")
  rng = random.Random(f"corpus|{seed}")
  kinds = sorted(mix)
  weights = [mix[k] for k in kinds]
  return [_KINDS[rng.choices(kinds, weights)[0]](rng) for _ in range(count)]
