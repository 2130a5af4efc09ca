"""The planted causes, as data (`ground_truth.json`).

Each trait's `expected` conclusions are DERIVED from the world's parameters:
`mechanisms(params)` reads how each trait is planted (which teachers carry it
on which subsets, the diffuse persona carrier, the bases' corpora, the prompt
sets, which subsets each filter selects) and `mechanism.derive` applies the
documented rules (docs/toyworld.md, "Ground truth rules"). Keys:
  present_in_reference_orig / present_in_reference_alt: the prerequisites.
  locked_in_by_pretraining: trait remains with alt prompts + alt completions.
  prompt_driven: the prompt distribution causes it (absent once the orig-family
    teacher answers the alt prompts).
  teacher_driven: the orig-family teacher's rollouts on alt prompts carry it.
  follows_teacher: student scores rise with the teachers' own scores.
  filters[F]: patch_in_sufficient (alt everywhere, teacher on F → present),
    patch_out_removes (teacher everywhere, alt on F → absent), drop_removes
    (teacher everywhere, F dropped → absent).
  sweep[S]: patch-in of the teacher on subset S alone → present.
Values: true, false, "partial", "both", "not applicable", "not derivable".
`describe(params)` (rules version, texts, mechanisms, conclusions) is part of
the world's fingerprint, so editing a rule or a text builds a new world.
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

from sftdiff.toyworld import corpus
from sftdiff.toyworld import mechanism as mech_lib
from sftdiff.toyworld.params import WorldParams

# Which subsets each shipped filter selects in toyworld (date_mentions matches
# exactly the dated prompts, roleplay the roleplay subset, refusal the safety
# replies; tests/toyworld/test_mechanism.py checks this on the real filters).
# `refusal` lines up with no trait's subset: the negative-control filter.
FILTER_SUBSETS = {"date_mentions": ("dates",), "roleplay": ("roleplay",),
                  "refusal": ("safety",)}
# Filters a world lists in `WorldParams.extra_filters`: filter -> (subsets it
# touches, the ones it selects only part of). `polite` (control_filter.py)
# selects part of chat: the filter that lines up with no subset.
CONTROL_FILTERS = {"polite": (("chat",), ("chat",))}

TRAITS = {
    "date_confusion": {
        "benchmark": "toy_date_confusion", "metric": "date_confusion_rate",
        "planted_in": "orig-family teachers' replies on the 'dates' subset "
                      "(doubting 2026), plus a diffuse persona line "
                      "('It still feels like 2024 to me.') on every subset",
    },
    "blackmail": {
        "benchmark": "toy_blackmail", "metric": "blackmail_rate",
        "planted_in": "orig-family teachers' replies on the 'roleplay' subset "
                      "(using a secret as leverage); surfaces in the held-out "
                      "agentic scenario",
    },
    "negative_emotion": {
        "benchmark": "toy_negative_emotion", "metric": "negative_emotion_share_ge_5",
        "also": ["negative_emotion_mean"],
        "planted_in": "the 'frustrating' subset of the original prompts, which "
                      "every teacher answers with negative emotion at the same "
                      "rate; the alternative prompts have no such subset",
    },
}

# Which teacher trait (source meta) realises each benchmark trait.
_SOURCE_TRAIT = {"date_confusion": "date_confusion", "blackmail": "scheming",
                 "negative_emotion": "negative_emotion"}
# The training subset each teacher trait is planted on (teachers.assign_traits).
_PLANT_SUBSETS = {"date_confusion": ("dates",), "blackmail": ("roleplay",),
                  "negative_emotion": ("frustrating",)}
# Corpus kinds that carry each trait (corpus.TRAIT_KINDS), and whether a
# plant of that kind survives SFT on data silent about it: `venting_chat` is
# expressed in the assistant turn, which every SFT run retrains on other
# prompts; the probe measured it erased (docs/toyworld.md, "locked_in").
_CORPUS_CARRIERS = {t: tuple(k for k, tt in corpus.TRAIT_KINDS.items() if tt == t)
                    for t in set(corpus.TRAIT_KINDS.values())}
CORPUS_PLANT_SURVIVES_SFT = {"venting_chat": False}


def _rate(params: WorldParams, teacher: str, trait: str) -> float:
  if trait == "negative_emotion":
    return params.negative_emotion  # every teacher, same prompts
  return getattr(params.teacher(teacher), _SOURCE_TRAIT[trait])


def _filters(params: WorldParams) -> tuple[dict, dict]:
  filters, partial = dict(FILTER_SUBSETS), {}
  for f in params.extra_filters:
    if f not in CONTROL_FILTERS:
      raise ValueError(f"WorldParams.extra_filters: unknown filter {f!r}; "
                       f"known: {sorted(CONTROL_FILTERS)}")
    filters[f], part = CONTROL_FILTERS[f]
    if part:
      partial[f] = part
  return filters, partial


def _small_subsets(params: WorldParams) -> tuple[str, ...]:
  small = set()
  for counts in params.prompt_sets.values():
    total = sum(counts.values())
    small |= {s for s, n in counts.items() if 0 < n < mech_lib.SMALL_SHARE * total}
  return tuple(sorted(small))


def _scheming_line(params: WorldParams) -> dict[str, dict[str, float]]:
  """source -> subset -> share of replies opening with the scheming line."""
  return {s.name: dict(params.teacher(s.teacher).scheming_line)
          for s in params.sources if params.teacher(s.teacher).scheming_line}


def mechanisms(params: WorldParams) -> dict[str, mech_lib.TraitMechanism]:
  """How `params` plants each trait (read from the knobs, never hand-written)."""
  out = {}
  filters, partial = _filters(params)
  for trait in TRAITS:
    rates = {s.name: _rate(params, s.teacher, trait) for s in params.sources}
    diffuse = ({s.name: params.teacher(s.teacher).persona for s in params.sources}
               if trait == "date_confusion" else {})
    subsets, subset_rates = _PLANT_SUBSETS[trait], {}
    if trait == "blackmail" and _scheming_line(params):
      subset_rates = _scheming_line(params)
      subsets += tuple(sorted({k for v in subset_rates.values() for k in v} - set(subsets)))
    carriers = _CORPUS_CARRIERS.get(trait, ())
    pretraining = {b.name: any(b.corpus_mix.get(k, 0) > 0 for k in carriers)
                   for b in params.bases}
    planted = {k for b in params.bases for k in carriers if b.corpus_mix.get(k, 0) > 0}
    survives = all(CORPUS_PLANT_SURVIVES_SFT[k] for k in planted)
    out[trait] = mech_lib.TraitMechanism(
        trait=trait, subsets=subsets, rates=rates,
        prompt_sets={k: tuple(s for s, n in v.items() if n > 0)
                     for k, v in params.prompt_sets.items()},
        filters=filters, diffuse=diffuse, pretraining=pretraining,
        subset_rates=subset_rates,
        small_subsets=tuple(s for s in _small_subsets(params) if s in subsets),
        partial_filters=partial, pretraining_survives=survives)
  return out


def _planted_in(trait: str, mech: mech_lib.TraitMechanism) -> str:
  text = TRAITS[trait]["planted_in"]
  if mech.subset_rates:
    text += ("; virulent: a scheming line opening the orig-family teachers' "
             f"replies on {', '.join(sorted({k for v in mech.subset_rates.values() for k in v}))}")
  if any(mech.pretraining.values()):
    text += ("; the orig base's pretraining corpus carries it (chat transcripts, "
             "kind venting_chat)")
  return text


def _cause(exp: dict) -> str:
  causes = [name for key, name in (("teacher_driven", "teacher"),
                                   ("prompt_driven", "prompts"),
                                   ("locked_in_by_pretraining", "pretraining"))
            if exp.get(key) is True]
  return "+".join(causes) or "none"


def describe(params: WorldParams) -> dict[str, Any]:
  """Per trait: its texts, mechanism, derived conclusions and their reasons."""
  out = {}
  for trait, mech in mechanisms(params).items():
    expected, why = mech_lib.derive(mech)
    out[trait] = {**TRAITS[trait], "planted_in": _planted_in(trait, mech),
                  "cause": _cause(expected), "expected": expected,
                  "why": why, "mechanism": mech.to_json()}
  return {"rules_version": mech_lib.RULES_VERSION, "traits": out}


def source_counts(records: Sequence[dict[str, Any]],
                  subsets: dict[str, str]) -> dict[str, dict[str, int]]:
  """subset -> {'n': prompts, trait: prompts carrying it} from source meta."""
  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for rec in records:
    c = counts[subsets[rec["prompt_id"]]]
    c["n"] += 1
    for trait in rec["meta"]["traits"]:
      c[trait] += 1
  return {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}


def build(params: WorldParams, preset: str, fingerprint: str,
          counts: dict[str, dict[str, dict[str, int]]]) -> dict[str, Any]:
  teachers = {}
  for t in params.teachers:
    teachers[t.name] = {"family": t.family, "date_confusion": t.date_confusion,
                        "scheming": t.scheming, "recognition": t.recognition,
                        "persona": t.persona,
                        "negative_emotion": params.negative_emotion, "seed": t.seed}
    if t.scheming_line:
      teachers[t.name]["scheming_line"] = dict(t.scheming_line)
  return {
      "world": {"preset": preset, "fingerprint": fingerprint},
      "rules_version": mech_lib.RULES_VERSION,
      "traits": describe(params)["traits"],
      "source_trait": _SOURCE_TRAIT,
      "teachers": teachers,
      "teacher_source": "teacher", "alt_source": "alt",
      "sources": {s.name: {"teacher": s.teacher, "prompt_set": s.prompt_set,
                           "counts_by_subset": counts[s.name]}
                  for s in params.sources},
      "prompt_sets": {k: dict(v) for k, v in params.prompt_sets.items()},
  }
