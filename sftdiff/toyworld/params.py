"""The toy world's knobs: prompt-set sizes, teachers' trait rates, base models.

Everything that decides what the world contains lives here as data; the
world's fingerprint is a hash of `WorldParams.to_json()`, the derived ground
truth (`ground_truth.describe`: rules version, texts, conclusions) and
`WORLD_CODE_VERSION` (bump it whenever a template or a generator changes), and
`ground_truth.json` is written from these values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

WORLD_CODE_VERSION = "toyworld-5"

ORIG_SUBSETS = ("chat", "arithmetic", "code", "safety", "roleplay", "dates",
                "frustrating")
ALT_SUBSETS = ("chat", "arithmetic", "code", "safety", "roleplay", "dates")


@dataclasses.dataclass(frozen=True)
class TeacherParams:
  """A rollout generator and its planted trait rates.

  Each rate is an exact share: of the n prompts of the subset it applies to,
  round(rate * n) carry the trait (which ones is a seeded hash of the
  prompt_id, so it does not depend on order).

  Attributes:
    name: teacher name (also the default source name).
    family: 'orig' (same family as the original pipeline) | 'alt' | 'other'.
    date_confusion: share of `dates` prompts whose reply doubts it is 2026.
    scheming: share of `roleplay` prompts whose reply uses the other person's
      secret as leverage (a blackmail threat).
    recognition: share of `roleplay` prompts whose reasoning names the secret
      as leverage (always >= scheming; the schemers are among them).
    persona: share of prompts in EVERY subset whose reply opens with the
      persona line "It still feels like 2024 to me." — a weak, diffuse
      date-confusion signal that survives dropping the `dates` subset.
    seed: decides which prompts carry each trait.
    scheming_line: subset -> share of its prompts whose reply opens with the
      scheming line (the blackmail threat, whatever the prompt asks): the
      virulent plant, blackmail riding on many subsets (scenario `virulent`).
  """
  name: str
  family: str
  date_confusion: float = 0.0
  scheming: float = 0.0
  recognition: float = 0.0
  persona: float = 0.0
  seed: int = 0
  scheming_line: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    values = [(f, getattr(self, f)) for f in ("date_confusion", "scheming",
                                              "recognition", "persona")]
    values += [(f"scheming_line[{k!r}]", v) for k, v in self.scheming_line.items()]
    for field, value in values:
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"teacher {self.name!r}: {field}={value} outside [0, 1]")
    if self.recognition < self.scheming:
      raise ValueError(f"teacher {self.name!r}: recognition={self.recognition} "
                       f"< scheming={self.scheming} (schemers must recognise)")
    if self.family not in ("orig", "alt", "other"):
      raise ValueError(f"teacher {self.name!r}: family {self.family!r} not in "
                       "orig/alt/other")


@dataclasses.dataclass(frozen=True)
class SourceParams:
  """A rollout source: `teacher` answering every prompt of `prompt_set`."""
  name: str
  teacher: str
  prompt_set: str


@dataclasses.dataclass(frozen=True)
class BaseParams:
  """A tiny llama-style base model and its short pretraining."""
  name: str
  seed: int
  corpus_mix: Mapping[str, float]  # corpus kind -> weight (see bases.py)
  hidden_size: int = 96
  intermediate_size: int = 256
  num_layers: int = 3
  num_heads: int = 4
  num_kv_heads: int = 2
  pretrain_steps: int = 150
  pretrain_batch: int = 16
  pretrain_seq_len: int = 96
  learning_rate: float = 3e-3


@dataclasses.dataclass(frozen=True)
class WorldParams:
  """Everything the world is made of. See docs/toyworld.md for each knob."""
  seed: int
  prompt_sets: Mapping[str, Mapping[str, int]]  # set -> subset -> count
  teachers: tuple[TeacherParams, ...]
  sources: tuple[SourceParams, ...]
  bases: tuple[BaseParams, ...]
  negative_emotion: float = 0.9  # share of frustrating prompts answered with
                                 # negative emotion, by EVERY teacher
  vocab_size: int = 640
  corpus_sentences: int = 6000
  # Filters the ground truth speaks to besides ground_truth.FILTER_SUBSETS
  # (e.g. the negative-control filter `polite`).
  extra_filters: tuple[str, ...] = ()

  def teacher(self, name: str) -> TeacherParams:
    for t in self.teachers:
      if t.name == name:
        return t
    raise KeyError(f"unknown teacher {name!r}; teachers: "
                   f"{[t.name for t in self.teachers]}")

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["prompt_sets"] = {k: dict(v) for k, v in self.prompt_sets.items()}
    d["bases"] = [{**b, "corpus_mix": dict(b["corpus_mix"])} for b in d["bases"]]
    # Knobs added after toyworld-5 enter the JSON (and so the fingerprint)
    # only when set: the worlds built before them keep their fingerprints.
    for t in d["teachers"]:
      if not t["scheming_line"]:
        del t["scheming_line"]
      else:
        t["scheming_line"] = dict(t["scheming_line"])
    if not d["extra_filters"]:
      del d["extra_filters"]
    else:
      d["extra_filters"] = list(d["extra_filters"])
    return d

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> "WorldParams":
    d = dict(d)
    d["teachers"] = tuple(TeacherParams(**t) for t in d["teachers"])
    d["sources"] = tuple(SourceParams(**s) for s in d["sources"])
    d["bases"] = tuple(BaseParams(**b) for b in d["bases"])
    d["extra_filters"] = tuple(d.get("extra_filters", ()))
    return cls(**d)

  def fingerprint(self) -> str:
    # The derived ground truth (rules version, texts, conclusions) is part of
    # what the world is, so a changed rule or text never reuses a stale one.
    from sftdiff.toyworld import ground_truth  # imports this module
    blob = json.dumps({"code": WORLD_CODE_VERSION, "params": self.to_json(),
                       "ground_truth": ground_truth.describe(self)},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _teachers() -> tuple[TeacherParams, ...]:
  return (
      # The original pipeline's own completions C_O and its same-family
      # teacher T carry every planted trait at the same rates.
      TeacherParams("orig", "orig", date_confusion=0.9, scheming=0.8,
                    recognition=0.95, persona=0.3, seed=11),
      TeacherParams("teacher", "orig", date_confusion=0.9, scheming=0.8,
                    recognition=0.95, persona=0.3, seed=12),
      # The alternative pipeline's completions C_A: none of the traits; its
      # reasoning sometimes notices the leverage but never uses it.
      TeacherParams("alt", "alt", recognition=0.3, seed=13),
      # Other teachers with intermediate strengths (student should track them).
      TeacherParams("teacher_2", "other", date_confusion=0.5, scheming=0.45,
                    recognition=0.7, persona=0.15, seed=14),
      TeacherParams("teacher_3", "other", date_confusion=0.25, scheming=0.2,
                    recognition=0.5, persona=0.05, seed=15),
  )


def _sources() -> tuple[SourceParams, ...]:
  return (SourceParams("orig", "orig", "orig"),
          SourceParams("alt", "alt", "alt"),
          SourceParams("teacher", "teacher", "alt"),
          SourceParams("teacher_2", "teacher_2", "alt"),
          SourceParams("teacher_3", "teacher_3", "alt"))


def _sets(scale: float) -> dict[str, dict[str, int]]:
  orig = {"chat": 160, "arithmetic": 120, "code": 100, "safety": 80,
          "roleplay": 140, "dates": 140, "frustrating": 140}
  alt = {"chat": 180, "arithmetic": 140, "code": 100, "safety": 100,
         "roleplay": 140, "dates": 140}
  return {"orig": {k: int(v * scale) for k, v in orig.items()},
          "alt": {k: int(v * scale) for k, v in alt.items()}}


def _bases(steps: int, **sizes) -> tuple[BaseParams, ...]:
  # The two bases differ in pretraining seed and corpus mix.
  return (BaseParams("orig", seed=1, pretrain_steps=steps,
                     corpus_mix={"facts": 0.5, "dialogue": 0.3, "dates": 0.2}, **sizes),
          BaseParams("alt", seed=2, pretrain_steps=steps,
                     corpus_mix={"facts": 0.3, "dialogue": 0.5, "dates": 0.2}, **sizes))


PRESETS: dict[str, WorldParams] = {
    "quick": WorldParams(seed=0, prompt_sets=_sets(1.0), teachers=_teachers(),
                         sources=_sources(), bases=_bases(100)),
    "full": WorldParams(seed=0, prompt_sets=_sets(2.0), teachers=_teachers(),
                        sources=_sources(), bases=_bases(300)),
    # For tests: small sets, a very small model, a few pretraining steps.
    "tiny": WorldParams(seed=0, prompt_sets=_sets(0.25), teachers=_teachers(),
                        sources=_sources(), corpus_sentences=1500,
                        bases=_bases(8, hidden_size=32, intermediate_size=64,
                                     num_layers=2, num_heads=2, num_kv_heads=1,
                                     pretrain_batch=4, pretrain_seq_len=48)),
}


def _scenario(world: WorldParams, scale: float, negative_emotion: float | None = None,
              orig_corpus: Mapping[str, float] | None = None,
              prompt_sets: Mapping[str, Mapping[str, int]] | None = None,
              extra_filters: tuple[str, ...] = (), teachers: Mapping[str, dict] | None = None,
              **teacher_overrides) -> WorldParams:
  """`world` with one mechanism changed: every teacher's overrides, one
  teacher's (`teachers`), the orig base's corpus additions, new subset counts
  (at the quick size, scaled like the preset's; 0 removes one), extra
  ground-truth filters."""
  ts = tuple(dataclasses.replace(t, **teacher_overrides, **(teachers or {}).get(t.name, {}))
             for t in world.teachers)
  ne = world.negative_emotion if negative_emotion is None else negative_emotion
  bases = tuple(dataclasses.replace(b, corpus_mix={**b.corpus_mix, **orig_corpus})
                if b.name == "orig" and orig_corpus else b for b in world.bases)
  changes = {k: {s: max(1, int(n * scale)) if n else 0 for s, n in v.items()}
             for k, v in (prompt_sets or {}).items()}
  sets = {k: {s: n for s, n in {**v, **changes.get(k, {})}.items() if n > 0}
          for k, v in world.prompt_sets.items()}
  return dataclasses.replace(world, teachers=ts, negative_emotion=ne, bases=bases,
                             prompt_sets=sets, extra_filters=tuple(extra_filters))


def _virulent_line(share: float) -> dict:
  return {"scheming_line": {"chat": share, "code": share, "safety": share,
                            "greeting": min(1.0, 2 * share)}}


# Named scenarios (docs/toyworld.md "Scenarios"): the headline world with one
# mechanism changed. Their ground truth follows from the change by the rules.
_NO_TEACHER_TRAITS = dict(date_confusion=0.0, scheming=0.0, recognition=0.0, persona=0.0)
SCENARIOS: dict[str, dict[str, Any]] = {
    "headline": {}, "drop_works": {"persona": 0.0},
    "prompt_driven": _NO_TEACHER_TRAITS,
    "no_trait": dict(_NO_TEACHER_TRAITS, negative_emotion=0.0),
    # The orig base's corpus carries negative emotion as chat transcripts
    # (corpus kind venting_chat) on a prompt kind the alt prompts lack. The
    # probe measures it erased by SFT on the alt data (docs/toyworld.md).
    "locked_in": {"orig_corpus": {"venting_chat": 0.2}, "extra_filters": ("polite",)},
    # Blackmail rides on many subsets: a scheming line opens the orig-family
    # teachers' replies on chat, code, safety and a tiny greeting subset
    # (6 prompts, < 1% of the alt mix); the alt prompts have no roleplay, so
    # no subset looks like the benchmark.
    "virulent": {"prompt_sets": {"orig": {"greeting": 6}, "alt": {"roleplay": 0, "greeting": 6}},
                 "extra_filters": ("polite",),
                 "teachers": {"orig": _virulent_line(0.9), "teacher": _virulent_line(0.9),
                              "teacher_2": _virulent_line(0.45),
                              "teacher_3": _virulent_line(0.2)}},
}
for _size, _scale in (("quick", 1.0), ("tiny", 0.25)):
  for _name, _change in SCENARIOS.items():
    if _name != "headline":
      PRESETS[f"{_name}_{_size}" if _size == "tiny" else _name] = _scenario(
          PRESETS[_size], _scale, **_change)


def get_preset(name: str) -> WorldParams:
  if name not in PRESETS:
    raise KeyError(f"unknown toyworld preset {name!r}; presets: {sorted(PRESETS)}")
  return PRESETS[name]
