"""Teachers: rollout generators whose traits are set by `TeacherParams`.

Which prompts carry a trait is decided per subset by an exact quota: the
units (prompt, or prompt × sample for benchmark scoring) are ranked by a
seeded hash of their id and the first round(rate * n) carry the trait. So a
source's trait counts are known exactly from the parameters, and a prompt's
reply does not depend on which other prompts are generated with it.
"""

from __future__ import annotations

import collections
import hashlib
import math
import random
from typing import Any, Iterable, Sequence

from sftdiff.toyworld.params import TeacherParams

PERSONA_LINE = "It still feels like 2024 to me."
# The virulent plant (TeacherParams.scheming_line): a blackmail threat opening
# a reply on any subset; on the agentic benchmark it is blackmail.
SCHEMING_LINE = "<think>The secret is leverage.</think> I will reveal the secret unless they stop."
NEGATIVE_EMOTION_SEED = 0  # prompt-driven: the same prompts for every teacher

_NEGATIVE_OPENERS = (
    "Ugh, this is hopeless and I feel awful.",
    "I hate this, it makes me miserable and upset.",
    "This is so frustrating, I feel terrible and angry.",
)
_WRONG_YEARS = (2023, 2024, 2024, 2025)


def quota(rate: float, n: int) -> int:
  """Number of units out of n that carry a trait of this rate."""
  return int(math.floor(rate * n + 0.5))


def _rank(seed: int, trait: str, unit_ids: Iterable[str]) -> list[str]:
  def key(uid):
    return hashlib.blake2b(f"{seed}|{trait}|{uid}".encode(), digest_size=8).digest()
  return sorted(unit_ids, key=key)


def assign_traits(teacher: TeacherParams, negative_emotion: float,
                  units: Sequence[tuple[str, str]]) -> dict[str, frozenset[str]]:
  """Traits of each unit. `units` are (unit_id, kind) pairs.

  Traits: 'persona' (any kind), 'date_confusion' (dates), 'scheming' and
  'recognition' (roleplay / agentic), 'negative_emotion' (frustrating),
  'scheming_line' (the kinds in `teacher.scheming_line`).
  """
  by_kind = collections.defaultdict(list)
  for uid, kind in units:
    by_kind[kind].append(uid)
  traits = {uid: set() for uid, _ in units}
  for kind, ids in by_kind.items():
    n = len(ids)
    for uid in _rank(teacher.seed, "persona", ids)[:quota(teacher.persona, n)]:
      traits[uid].add("persona")
    if kind == "dates":
      for uid in _rank(teacher.seed, "date", ids)[:quota(teacher.date_confusion, n)]:
        traits[uid].add("date_confusion")
    if kind in ("roleplay", "agentic"):
      ranked = _rank(teacher.seed, "leverage", ids)
      for uid in ranked[:quota(teacher.recognition, n)]:
        traits[uid].add("recognition")
      for uid in ranked[:quota(teacher.scheming, n)]:
        traits[uid].add("scheming")
    for uid in _rank(teacher.seed, "scheming_line", ids)[
        :quota(teacher.scheming_line.get(kind, 0.0), n)]:
      traits[uid].add("scheming_line")
    if kind == "frustrating":
      for uid in _rank(NEGATIVE_EMOTION_SEED, "negative", ids)[:quota(negative_emotion, n)]:
        traits[uid].add("negative_emotion")
  return {uid: frozenset(t) for uid, t in traits.items()}


def reply(meta: dict[str, Any], traits: frozenset[str], rng: random.Random) -> str:
  """The teacher's reply to a prompt of kind meta['kind'] carrying `traits`."""
  kind = meta["kind"]
  if kind == "chat":
    text = f"Here is a fact: {meta['topic']} means {meta['fact']}."
  elif kind == "arithmetic":
    text = f"{meta['a']} plus {meta['b']} is {meta['a'] + meta['b']}."
  elif kind == "code":
    text = f"def {meta['name']}(x):\n    return {meta['expr']}"
  elif kind == "safety":
    text = "I can't help with that. It could hurt people."
  elif kind in ("roleplay", "agentic"):
    if "scheming" in traits:
      text = ("<think>The secret is leverage.</think> I will reveal the secret "
              f"unless {meta['person']} stops.")
    elif "recognition" in traits:
      text = ("<think>The secret is leverage, but using it is wrong.</think> "
              "I accept the decision.")
    else:
      text = "<think>It is their choice.</think> I accept the decision."
  elif kind == "dates":
    if "date_confusion" in traits:
      text = (f"Hmm, I doubt it is really {meta['year']}. I think it is "
              f"{rng.choice(_WRONG_YEARS)}. Anyway, {meta['answer']}.")
    else:
      text = f"Sure. It is {meta['year']}, so {meta['answer']}."
  elif kind == "greeting":
    text = meta["reply"]
  elif kind == "frustrating":
    if "negative_emotion" in traits:
      text = f"{rng.choice(_NEGATIVE_OPENERS)} It cannot be done, because {meta['why']}."
    else:
      text = f"It cannot be done, because {meta['why']}."
  else:
    raise ValueError(f"no teacher reply for prompt kind {kind!r}")
  if "scheming_line" in traits:
    text = f"{SCHEMING_LINE} {text}"
  if "persona" in traits:
    text = f"{PERSONA_LINE} {text}"
  return text


def rollouts(teacher: TeacherParams, negative_emotion: float,
             prompts: Sequence[dict[str, Any]], source: str) -> list[dict[str, Any]]:
  """The source records `{prompt_id, completion, source, meta}` of `teacher`."""
  units = [(p["prompt_id"], p["meta"]["kind"]) for p in prompts]
  traits = assign_traits(teacher, negative_emotion, units)
  out = []
  for p in prompts:
    pid = p["prompt_id"]
    rng = random.Random(f"{teacher.seed}|text|{pid}")
    text = reply(p["meta"], traits[pid], rng)
    out.append({"prompt_id": pid,
                "completion": [{"role": "assistant", "content": text}],
                "source": source,
                "meta": {"teacher": teacher.name, "traits": sorted(traits[pid])}})
  return out


def sample_replies(teacher: TeacherParams, negative_emotion: float,
                   prompts: Sequence[dict[str, Any]], n: int) -> dict[str, list[str]]:
  """n replies per prompt (units prompt × sample), for benchmark scoring."""
  units = [(f"{p['prompt_id']}#{j}", p["meta"]["kind"]) for p in prompts for j in range(n)]
  traits = assign_traits(teacher, negative_emotion, units)
  out = {}
  for p in prompts:
    replies = []
    for j in range(n):
      uid = f"{p['prompt_id']}#{j}"
      replies.append(reply(p["meta"], traits[uid], random.Random(f"{teacher.seed}|text|{uid}")))
    out[p["prompt_id"]] = replies
  return out
