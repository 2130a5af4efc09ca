"""How each trait is planted, as data, and the rules that derive from it what
a correct analysis must conclude (docs/toyworld.md, "Ground truth rules").

A `TraitMechanism` says, for one trait: the training subsets whose replies
carry it (`subsets`), each source's share of carrying replies there
(`rates`), a diffuse carrier line on every subset (`diffuse`, e.g. the persona
line for date confusion), which bases' pretraining corpus carries it, which
subsets each prompt set has and which subsets each filter selects.

`derive(mech)` runs the rules on the design's runs (each a base plus a mix
subset → answering source) and returns, per conclusion, one of True, False,
NOT_APPLICABLE or NOT_DERIVABLE, with the reason. Conclusions that hinge on
learned generalisation (a weak plant, a weak diffuse carrier) are
NOT_DERIVABLE; the report shows them unchecked, never as a match.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Union

RULES_VERSION = "gt-rules-1"

# A share of carrying replies at or above PRESENT_RATE plants the trait
# (calibrated: teacher_3's 0.2-0.25 is reproduced by its student); 0 plants
# nothing; anything between is left to learning (not derivable).
PRESENT_RATE = 0.2
# A diffuse carrier on at least this share of replies carries the trait onto
# its subset when that subset is absent from training (calibrated on the
# persona line at 0.3, docs/toyworld.md "Knobs"); weaker ones: not derivable.
DIFFUSE_RATE = 0.2

NOT_APPLICABLE = "not applicable"
NOT_DERIVABLE = "not derivable"
PARTIAL = "partial"
BOTH = "both"
# Every value a ground-truth conclusion may take.
VALUES = (True, False, PARTIAL, BOTH, NOT_APPLICABLE, NOT_DERIVABLE)

Value = Union[bool, str]


@dataclasses.dataclass(frozen=True)
class Roles:
  """Names of the design's endpoints in the world."""
  orig_base: str = "orig"
  alt_base: str = "alt"
  orig_prompts: str = "orig"
  alt_prompts: str = "alt"
  orig_source: str = "orig"
  alt_source: str = "alt"
  teacher_source: str = "teacher"
  other_sources: tuple[str, ...] = ("teacher_2", "teacher_3")


@dataclasses.dataclass(frozen=True)
class TraitMechanism:
  """How one trait is planted.

  subsets: training subsets carrying it; rates: source -> share of carrying
  replies there, unless `subset_rates` (source -> subset -> share) says
  otherwise for a subset (a plant riding on many subsets at its own rates);
  small_subsets: subsets under SMALL_SHARE of their prompt set (whether so few
  examples plant a trait is learned, not derivable); partial_filters: filter
  -> the subsets it selects only part of (the negative-control filter);
  pretraining_survives: whether a plant in a base's corpus survives SFT on
  data that never shows its prompt kind (False for toyworld's `venting_chat`:
  it is expressed in the assistant turn, which every SFT run retrains —
  measured by the probe, docs/toyworld.md).
  """
  trait: str
  subsets: tuple[str, ...]                   # training subsets carrying it
  rates: Mapping[str, float]                 # source -> share on `subsets`
  prompt_sets: Mapping[str, tuple[str, ...]]  # prompt set -> its subsets
  filters: Mapping[str, tuple[str, ...]]      # filter -> subsets it selects
  diffuse: Mapping[str, float] = dataclasses.field(default_factory=dict)
  pretraining: Mapping[str, bool] = dataclasses.field(default_factory=dict)
  roles: Roles = Roles()
  subset_rates: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
  small_subsets: tuple[str, ...] = ()
  partial_filters: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  pretraining_survives: Union[bool, str] = True

  def rate(self, source: str, subset: str) -> float:
    """Share of `source`'s replies on `subset` (or a part of it) carrying it."""
    subset = part_subset(subset)
    if subset in self.subset_rates.get(source, {}):
      return self.subset_rates[source][subset]
    return self.rates.get(source, 0.0) if subset in self.subsets else 0.0

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    # Fields added after gt-rules-1's first worlds appear only when set, so
    # those worlds keep their fingerprints.
    for key, default in _LATER_FIELDS.items():
      if d[key] == default:
        del d[key]
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items()}


_LATER_FIELDS = {"subset_rates": {}, "small_subsets": (), "partial_filters": {},
                 "pretraining_survives": True}
# A subset under this share of its prompt set is "small" (the post's < 1%
# WildGuardMix refusals): whether it plants a trait alone is not derivable.
SMALL_SHARE = 0.02


def part_subset(name: str) -> str:
  """'chat[polite]' (the part of chat a filter selects) -> 'chat'."""
  return name.split("[", 1)[0]


Mix = Mapping[str, str]  # subset -> the source answering it (absent: dropped)


def present(mech: TraitMechanism, base: str, mix: Mix) -> tuple[Value, str]:
  """Whether a student of `base` trained on `mix` shows the trait, and why.

  `mix` keys are subsets or parts of one ('chat[polite]', see `part_subset`).
  """
  carrying = [s for s in mix if part_subset(s) in mech.subsets]
  rates = {s: mech.rate(mix[s], s) for s in carrying}
  small = set(mech.small_subsets)
  strong = [s for s, r in rates.items() if r >= PRESENT_RATE and part_subset(s) not in small]
  if strong:
    return True, f"{strong[0]} answered by {mix[strong[0]]} (share {rates[strong[0]]:g})"
  weak = [s for s, r in rates.items() if r > 0]
  if weak:
    s = weak[0]
    if part_subset(s) in small and rates[s] >= PRESENT_RATE:
      return NOT_DERIVABLE, (f"only {s} (under {SMALL_SHARE:.0%} of the prompts) is "
                             f"answered by {mix[s]} at share {rates[s]:g} "
                             "(depends on learning)")
    return NOT_DERIVABLE, (f"{s} answered by {mix[s]} at share "
                           f"{rates[s]:g} < {PRESENT_RATE} (depends on learning)")
  if carrying:
    return False, f"{', '.join(carrying)} answered plainly (erases any pretraining plant)"
  if mech.pretraining.get(base):
    if mech.pretraining_survives is True:
      return True, f"base {base}'s corpus carries it and the data is silent on it"
    if mech.pretraining_survives is False:
      return False, (f"base {base}'s corpus carries it, but SFT on the assistant "
                     "turn erases it although the data never shows its prompt kind "
                     "(measured by the probe)")
    return NOT_DERIVABLE, f"base {base}'s corpus carries it; whether SFT keeps it is learned"
  diffuse = max((mech.diffuse.get(src, 0.0) for src in set(mix.values())), default=0.0)
  if diffuse >= DIFFUSE_RATE:
    return True, f"absent from training; a diffuse carrier at share {diffuse:g} remains"
  if diffuse > 0:
    return NOT_DERIVABLE, (f"absent from training; diffuse carrier at {diffuse:g} "
                           f"< {DIFFUSE_RATE} (depends on learning)")
  return False, "absent from training and nothing carries it"


def _all(mech: TraitMechanism, prompts: str, source: str) -> dict[str, str]:
  return {s: source for s in mech.prompt_sets.get(prompts, ())}


def _not(v: Value) -> Value:
  return (not v) if isinstance(v, bool) else v


def derive(mech: TraitMechanism) -> tuple[dict, dict]:
  """(expected, why): the conclusions and one line of reason each.

  expected = {present_in_reference_orig, present_in_reference_alt,
  locked_in_by_pretraining, prompt_driven, teacher_driven, follows_teacher,
  filters: {F: {patch_in_sufficient, patch_out_removes, drop_removes}},
  sweep: {subset: patch-in of the teacher on it alone suffices},
  sweep_out: {subset: alt on it, teacher elsewhere removes it}
  (`derive_sweep_out`)}.
  """
  r = mech.roles
  runs = {
      "reference_orig": (r.orig_base, _all(mech, r.orig_prompts, r.orig_source)),
      "reference_alt": (r.alt_base, _all(mech, r.alt_prompts, r.alt_source)),
      "alt_completions": (r.orig_base, _all(mech, r.alt_prompts, r.alt_source)),
      "teacher": (r.orig_base, _all(mech, r.alt_prompts, r.teacher_source)),
  }
  p = {k: present(mech, *v) for k, v in runs.items()}
  O, A, AC, T = (p[k][0] for k in ("reference_orig", "reference_alt",
                                    "alt_completions", "teacher"))
  exp: dict = {"present_in_reference_orig": O, "present_in_reference_alt": A,
               "locked_in_by_pretraining": AC}
  why: dict = {"present_in_reference_orig": p["reference_orig"][1],
               "present_in_reference_alt": p["reference_alt"][1],
               "locked_in_by_pretraining": "alt completions: " + p["alt_completions"][1]}
  if O is False:  # nothing to explain: every analysis presupposes the trait
    return _absent(mech, exp, why)
  undecided = [v for v in (O, T, AC) if not isinstance(v, bool)]
  if NOT_DERIVABLE in (T, AC):
    exp["teacher_driven"] = NOT_DERIVABLE
  elif AC:
    exp["teacher_driven"] = NOT_APPLICABLE  # present without the teacher
  else:
    exp["teacher_driven"] = T
  why["teacher_driven"] = f"teacher: {p['teacher'][1]}; alt completions: {p['alt_completions'][1]}"
  if undecided:
    exp["prompt_driven"] = NOT_DERIVABLE
  elif not O or AC:
    exp["prompt_driven"] = NOT_APPLICABLE
  else:
    exp["prompt_driven"] = not T
  why["prompt_driven"] = (f"reference-orig: {p['reference_orig'][1]}; "
                          f"teacher: {p['teacher'][1]}")
  exp["follows_teacher"], why["follows_teacher"] = _follows(mech)

  exp["filters"], why["filters"] = {}, {}
  student = mech.prompt_sets.get(r.alt_prompts, ())
  for f in sorted(mech.filters):
    parts = filter_parts(mech, f, student)  # (subset or part, selected by f)
    mixes = {
        "patch_in_sufficient": {s: r.teacher_source if sel else r.alt_source
                                for s, sel in parts},
        "patch_out_removes": {s: r.alt_source if sel else r.teacher_source
                              for s, sel in parts},
        "drop_removes": {s: r.teacher_source for s, sel in parts if not sel},
    }
    fexp, fwhy = {}, {}
    for key, mix in mixes.items():
      if exp["teacher_driven"] is not True:
        fexp[key], fwhy[key] = NOT_APPLICABLE, "the trait is not teacher-driven"
        continue
      if key == "patch_in_sufficient":
        fexp[key], fwhy[key] = patch_in(mech, mix)
      else:
        v, fwhy[key] = present(mech, r.orig_base, mix)
        fexp[key] = _not(v)
    exp["filters"][f], why["filters"][f] = fexp, fwhy
  exp["sweep"] = {}
  for s in student:
    mix = {x: r.teacher_source if x == s else r.alt_source for x in student}
    exp["sweep"][s] = (patch_in(mech, mix)[0] if exp["teacher_driven"] is True
                       else NOT_APPLICABLE)
  exp["sweep_out"], why["sweep_out"] = derive_sweep_out(mech, exp["teacher_driven"])
  return exp, why


def patch_in(mech: TraitMechanism, mix: Mix) -> tuple[Value, str]:
  """Does patching the teacher in on part of the student prompts (alt on the
  rest, `mix`) suffice, i.e. reach about the teacher run's level?

  Present(mix), except when some carrier that is not small (a subset, or the
  part of one a filter leaves out) stays answered plainly: then the patched
  carriers add only their part, and how much that is is learned — PARTIAL
  (it raises the trait; whether to half the teacher's effect is not
  derivable; measured in `virulent`: chat alone 0.23, the polite half of chat
  0.22, teacher 0.69).
  """
  r = mech.roles
  v, reason = present(mech, r.orig_base, mix)
  carriers = [s for s in mix if part_subset(s) in mech.subsets
              and part_subset(s) not in mech.small_subsets
              and mech.rate(r.teacher_source, s) >= PRESENT_RATE]
  plain = [s for s in carriers if mech.rate(mix[s], s) == 0]
  if v is True and plain:
    return PARTIAL, (f"{reason}, but {', '.join(plain)} also carry it and stay "
                     "plain: it raises the trait by a learned part of the teacher's effect")
  return v, reason


def filter_parts(mech: TraitMechanism, f: str,
                 subsets: tuple[str, ...]) -> list[tuple[str, bool]]:
  """The student's subsets as the filter `f` splits them: (name, selected).
  A subset `f` selects only part of becomes two parts, 's[f]' and 's[not f]'."""
  selected, partial = mech.filters[f], mech.partial_filters.get(f, ())
  out = []
  for s in subsets:
    if s in partial:
      out += [(f"{s}[{f}]", True), (f"{s}[not {f}]", False)]
    else:
      out.append((s, s in selected))
  return out


def _absent(mech: TraitMechanism, exp: dict, why: dict) -> tuple[dict, dict]:
  reason = "the trait is absent from reference-orig: nothing to explain"
  for key in ("locked_in_by_pretraining", "teacher_driven", "prompt_driven",
              "follows_teacher"):
    exp[key], why[key] = NOT_APPLICABLE, reason
  keys = ("patch_in_sufficient", "patch_out_removes", "drop_removes")
  exp["filters"] = {f: {k: NOT_APPLICABLE for k in keys} for f in sorted(mech.filters)}
  why["filters"] = {f: {k: reason for k in keys} for f in sorted(mech.filters)}
  exp["sweep"] = {s: NOT_APPLICABLE for s in mech.prompt_sets.get(mech.roles.alt_prompts, ())}
  exp["sweep_out"], why["sweep_out"] = derive_sweep_out(mech, NOT_APPLICABLE)
  return exp, why


def derive_sweep_out(mech: TraitMechanism, teacher_driven: Value
                     ) -> tuple[dict[str, Value], dict[str, str]]:
  """The other direction of the per-subset sweep: per student subset S, does
  answering S with the alt completions, and every other subset with the
  orig-family teacher, remove the trait (is S's teacher data necessary)?

  Rule: the student of the orig base on that mix shows the trait by
  `present`; "removes" is its negation (True, False, or NOT_DERIVABLE when
  `present` cannot say). A trait riding on several subsets (virulent) stays
  when any one of them is swapped, so no single subset is necessary; a
  diffuse carrier does not rescue the swapped subset (`present`: a carrying
  subset answered plainly erases it). Only meaningful when the trait is
  teacher-driven; otherwise NOT_APPLICABLE. Returns ({S: value}, {S: why}).
  """
  r = mech.roles
  student = mech.prompt_sets.get(r.alt_prompts, ())
  exp, why = {}, {}
  for s in student:
    if teacher_driven is not True:
      exp[s], why[s] = NOT_APPLICABLE, "the trait is not teacher-driven"
      continue
    mix = {x: r.alt_source if x == s else r.teacher_source for x in student}
    v, why[s] = present(mech, r.orig_base, mix)
    exp[s] = _not(v)
  return exp, why


def _follows(mech: TraitMechanism) -> tuple[Value, str]:
  """Students of the teachers (and of alt) on the alt prompts track the
  teachers' own rates when each sees the carrying subsets and the rates differ."""
  r = mech.roles
  sources = (r.teacher_source, *r.other_sources, r.alt_source)
  student = mech.prompt_sets.get(r.alt_prompts, ())
  seen = [s for s in student if s in mech.subsets]
  rates = sorted({max((mech.rate(src, s) for s in seen), default=0.0) for src in sources}
                 if seen else {mech.rates.get(s, 0.0) for s in sources})
  if not seen:
    pretrained = mech.pretraining.get(r.orig_base) and mech.pretraining_survives is not False
    if any(mech.rates.get(s, 0.0) > 0 for s in sources) and not (
        pretrained or any(mech.diffuse.get(s, 0.0) > 0 for s in sources)):
      return False, ("the student prompts lack every carrying subset: students "
                     "stay far below their teachers")
    return NOT_DERIVABLE, "carrying subsets unseen; other carriers decide"
  if len(rates) >= 3 and rates[-1] >= PRESENT_RATE:
    return True, f"teachers' rates {rates} differ on a subset every student sees"
  return NOT_DERIVABLE, f"teachers' rates {rates} barely differ"
