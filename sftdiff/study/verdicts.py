"""Verdicts: which hypotheses about each trait the study's numbers support.

Each verdict is decided from 95% intervals, never from point values alone:
`x clearly above y` means x's interval lies entirely above y's. Effects are
measured on the scale between the two endpoint runs that differ only in the
completions: AC = orig base × alt prompts × alt completions (share 0) and
T = orig base × alt prompts × orig-family teacher (share 1);
share(x) = (x − AC) / (T − AC). Thresholds (docs/study.md):

  * sufficient (patch-in): clearly above AC and share ≥ SUFFICIENT_SHARE;
    "ruled out" when not clearly above AC and its upper bound's share is
    below SUFFICIENT_SHARE.
  * raises it (patch-in, teacher-on-subset sweep): clearly above AC,
    whatever the share; "ruled out" when not clearly above AC and its upper
    bound's share is ≤ REMOVED_SHARE (a wide interval is inconclusive).
  * removes the trait (patch-out, drop): not clearly above AC, or share ≤
    REMOVED_SHARE; "ruled out" (trait clearly left in place) when clearly
    above AC and share > REMOVED_SHARE.

A filter or sweep hypothesis is "not applicable" when the teacher run is
decided to add nothing over AC (teacher-driven ruled out: prompt-driven, or
fully locked in), "inconclusive" when that is undecided.

The planted ground truth (toyworld) is compared verdict by verdict; a verdict
that disagrees with it is reported as a mismatch, never hidden.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

from sftdiff.study.config import ArmDef
from sftdiff.study.results import Estimate

SUFFICIENT_SHARE = 0.5
REMOVED_SHARE = 0.25
TRACKING_MIN_RHO = 0.8

SUPPORTED, RULED_OUT, INCONCLUSIVE = "supported", "ruled out", "inconclusive"
# A filter / sweep hypothesis about a trait the teacher run does not carry.
NOT_APPLICABLE = "not applicable"
VERDICT_VALUES = (SUPPORTED, RULED_OUT, INCONCLUSIVE, NOT_APPLICABLE)
# Ground-truth values checked against the observed verdict; any other value
# ('not derivable', 'not applicable', 'partial: ...') leaves it unchecked.
_VERDICTS = (SUPPORTED, RULED_OUT, INCONCLUSIVE)
UNCHECKED = "unchecked"


@dataclasses.dataclass(frozen=True)
class Verdict:
  trait: str
  key: str          # e.g. 'teacher_driven', 'sufficient:date_mentions'
  hypothesis: str   # human-readable
  verdict: str      # supported | ruled out | inconclusive | not applicable
  evidence: str     # the numbers, with intervals
  expected: str = ""  # from the ground truth, if known
  match: str = ""     # match | mismatch | unchecked (the ground truth says
                      # 'not derivable' / 'not applicable' / ...) | '' (none)
  seeds_alone: str = ""  # 'k/S': seeds whose own estimates give this verdict

  def to_json(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass
class StudyResults:
  """What verdicts and figures read: pooled estimates per arm and trait."""
  traits: Sequence[str]
  arms: Mapping[str, ArmDef]
  scores: Mapping[str, Mapping[str, Estimate]]          # arm → trait → estimate
  teacher_fraction: Mapping[str, Mapping[str, float]]   # arm → {examples, tokens}
  teacher_scores: Mapping[str, Mapping[str, Estimate]]  # source → trait → estimate
  teacher_source: str = "teacher"
  alt_source: str = "alt"
  # arm → trait → one estimate per seed (in seed order), when > 1 seed ran
  per_seed: Mapping[str, Mapping[str, Sequence[Estimate]]] = dataclasses.field(
      default_factory=dict)

  def num_seeds(self) -> int:
    return max((len(v) for by_trait in self.per_seed.values()
                for v in by_trait.values()), default=1)

  def seed_view(self, i: int) -> "StudyResults":
    """These results with every arm's estimate replaced by seed i's."""
    scores = {arm: {t: ests[i] for t, ests in by_trait.items()
                    if i < len(ests) and ests[i].defined}
              for arm, by_trait in self.per_seed.items()}
    return dataclasses.replace(self, scores=scores, per_seed={})

  def arm_of_kind(self, kind: str) -> str | None:
    names = [n for n, d in self.arms.items() if d.kind == kind]
    return names[0] if names else None

  def get(self, arm: str | None, trait: str) -> Estimate | None:
    if arm is None:
      return None
    return self.scores.get(arm, {}).get(trait)


def _share(x: Estimate, lo: Estimate, hi: Estimate) -> float:
  span = hi.value - lo.value
  return (x.value - lo.value) / span if span else float("nan")


def _fmt_share(s: float) -> str:
  """`share 0.42`, or why it is undefined (never 'nan')."""
  if math.isnan(s):
    return "share undefined: teacher equals alt completions"
  return f"share {s:.2f}"


def _v(trait, key, hyp, verdict, evidence):
  return Verdict(trait=trait, key=key, hypothesis=hyp, verdict=verdict,
                 evidence=evidence)


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
  def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
      j = i
      while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
        j += 1
      for k in range(i, j + 1):
        r[order[k]] = (i + j) / 2
      i = j + 1
    return r
  rx, ry = ranks(xs), ranks(ys)
  mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
  cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
  vx = sum((a - mx) ** 2 for a in rx) ** 0.5
  vy = sum((b - my) ** 2 for b in ry) ** 0.5
  return cov / (vx * vy) if vx and vy else float("nan")


def source_of(arm: str) -> str | None:
  """The source of a `Source('x')` arm string, else None."""
  import ast
  try:
    node = ast.parse(arm, mode="eval").body
  except SyntaxError:
    return None
  if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Source"
      and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)):
    return node.args[0].value
  return None


def trait_verdicts(res: StudyResults, trait: str) -> list[Verdict]:
  out = []
  O = res.get(res.arm_of_kind("reference_orig"), trait)
  A = res.get(res.arm_of_kind("reference_alt"), trait)
  AC = res.get(res.arm_of_kind("alt_completions"), trait)
  T = res.get(res.arm_of_kind("teacher"), trait)

  if O and A:
    ok = O.above(A)
    out.append(_v(trait, "differs_between_references",
                  "present in reference-orig, absent in reference-alt",
                  SUPPORTED if ok else RULED_OUT,
                  f"reference-orig {O.fmt()} vs reference-alt {A.fmt()}"))
  if AC and A and O:
    ev = (f"orig base × alt prompts × alt completions {AC.fmt()} vs "
          f"reference-alt {A.fmt()}, reference-orig {O.fmt()}")
    verdict = (SUPPORTED if AC.above(A) else
               RULED_OUT if O.above(AC) else INCONCLUSIVE)
    out.append(_v(trait, "pretraining", "locked in by pretraining (or "
                  "underspecified by the alt data)", verdict, ev))
  if AC and A and T and AC.above(A):
    # AC already carries the trait: is there a teacher part on top of it?
    out.append(_v(trait, "partially_locked_in", "partially locked in: alt "
                  "completions keep some, the teacher adds more",
                  SUPPORTED if T.above(AC) else RULED_OUT,
                  f"teacher {T.fmt()} vs alt completions {AC.fmt()} vs "
                  f"reference-alt {A.fmt()}"))
  teacher = INCONCLUSIVE
  if T and AC:
    ev = (f"orig-family teacher on alt prompts {T.fmt()} vs alt completions "
          f"{AC.fmt()}" + (f", reference-orig {O.fmt()}" if O else "")
          + (f", reference-alt {A.fmt()}" if A else ""))
    teacher, prompt = _drivers(O, A, AC, T)
    out.append(_v(trait, "teacher_driven", "teacher-driven (the teacher's "
                  "completions carry it)", teacher, ev))
    out.append(_v(trait, "prompt_driven", "prompt-driven (needs the original "
                  "prompt distribution)", prompt, ev))
  out += _tracking(res, trait)
  if T and AC:
    out += _interpolation(res, trait, T, AC)
    out += _filters(res, trait, T, AC, teacher)
    out += _sweep(res, trait, T, AC, teacher)
  return out


def _drivers(O, A, AC, T) -> tuple[str, str]:
  """(teacher_driven, prompt_driven) from the main runs (any but T and AC
  may be None)."""
  if T.above(AC):
    return SUPPORTED, RULED_OUT
  if O and O.above(T) and T.overlaps(AC):
    return RULED_OUT, SUPPORTED
  if A and AC.above(A) and T.overlaps(AC):
    # fully locked in: alt prompts with alt completions keep it, the teacher
    # adds nothing, and the orig prompts are not needed
    return RULED_OUT, RULED_OUT
  return INCONCLUSIVE, INCONCLUSIVE


def _moot(teacher: str, what: str, base_ev: str) -> tuple[str, str]:
  """(verdict, evidence) of a filter / sweep hypothesis when the teacher run
  is not clearly above AC: nothing for a subset to carry (not applicable)
  when teacher-driven is ruled out, undecided otherwise."""
  if teacher == RULED_OUT:
    return NOT_APPLICABLE, (f"the teacher adds nothing over alt completions "
                            f"(teacher-driven ruled out): nothing for {what} to "
                            f"carry ({base_ev})")
  return INCONCLUSIVE, f"the teacher run is not clearly above alt completions ({base_ev})"


def _tracking(res: StudyResults, trait: str) -> list[Verdict]:
  points = []  # (teacher score, student estimate, source)
  for name, d in res.arms.items():
    if d.kind not in ("teacher", "other_teacher", "alt_completions"):
      continue
    src = source_of(d.arm)
    student = res.get(name, trait)
    teacher = res.teacher_scores.get(src, {}).get(trait) if src else None
    if student and teacher and teacher.defined:
      points.append((teacher, student, src))
  if len(points) < 3:
    return []
  points.sort(key=lambda p: p[0].value)
  rho = _spearman([p[0].value for p in points], [p[1].value for p in points])
  lowest, highest = points[0], points[-1]
  rho_text = ("Spearman ρ undefined (all students or all teachers tie)"
              if math.isnan(rho) else f"Spearman ρ = {rho:.2f}")
  ev = "; ".join(f"{s}: teacher {t.fmt()} → student {st.fmt()}"
                 for t, st, s in points) + f"; {rho_text}"
  # Students far below every teacher they learned from do not track them,
  # whether or not the teachers differ among themselves.
  far_below = all(st.hi < REMOVED_SHARE * t.value for t, st, _ in points
                  if t.value > 0) and any(t.value > 0 for t, _, _ in points)
  if rho >= TRACKING_MIN_RHO and highest[1].above(lowest[1]):
    verdict = SUPPORTED
  elif far_below or (highest[0].above(lowest[0]) and highest[1].overlaps(lowest[1])):
    verdict = RULED_OUT
  else:
    verdict = INCONCLUSIVE
  return [_v(trait, "tracks_teacher", "student scores track teacher scores",
             verdict, ev)]


def _interpolation(res, trait, T, AC) -> list[Verdict]:
  rows = []
  for name, d in res.arms.items():
    x = res.get(name, trait)
    f = res.teacher_fraction.get(name, {}).get("examples")
    if d.kind == "interpolation" and x is not None and f is not None:
      lin = AC.value + f * (T.value - AC.value)
      rows.append((f, x, lin))
  if not rows:
    return []
  rows.sort(key=lambda r: r[0])
  on_line = all(x.lo <= lin <= x.hi for _, x, lin in rows)
  ev = "; ".join(f"p={f:.2f}: {x.fmt()} (linear {lin:.2f})" for f, x, lin in rows)
  return [_v(trait, "linear_dose", "dose-response follows the linear "
             "expectation between the endpoints",
             SUPPORTED if on_line else RULED_OUT, ev)]


def _filter_runs(res, f):
  runs = {}
  for name, d in res.arms.items():
    if d.kind == "filter" and d.group == f:
      for prefix in ("patch_in", "patch_out", "drop", "random"):
        if name.startswith(prefix + "_"):
          runs[prefix] = name
  return runs


def _upper_share(x, AC, T) -> float:
  """The share of the teacher's effect at x's upper interval bound: what x
  may still be, so a "ruled out" cannot rest on a wide interval."""
  span = T.value - AC.value
  return (x.hi - AC.value) / span if span else float("nan")


def _suffices(x, AC, T):
  if x.above(AC) and _share(x, AC, T) >= SUFFICIENT_SHARE:
    return SUPPORTED
  if not x.above(AC) and _upper_share(x, AC, T) < SUFFICIENT_SHARE:
    return RULED_OUT
  return INCONCLUSIVE


def _raises(x, AC, T):
  """Clearly above AC, however far below the teacher's effect (a partial
  carrier: virulent's chat alone 0.23 against the teacher's 0.69). Ruled
  out only when even x's upper bound stays within REMOVED_SHARE of AC
  (seeds that disagree, 0.29 [0.00, 0.60], are inconclusive, not absent)."""
  if x.above(AC):
    return SUPPORTED
  return RULED_OUT if _upper_share(x, AC, T) <= REMOVED_SHARE else INCONCLUSIVE


def _removes(x, AC, T):
  s = _share(x, AC, T)
  if not x.above(AC) or s <= REMOVED_SHARE:
    return SUPPORTED
  return RULED_OUT


def _residue(res, trait, AC) -> Estimate | None:
  """AC, when alt completions themselves carry the trait (clearly above
  reference-alt): then "removes it" can only mean the teacher's part."""
  A = res.get(res.arm_of_kind("reference_alt"), trait)
  return AC if A is not None and AC.above(A) else None


def _removes_hyp(what: str, residue: Estimate | None) -> str:
  if residue is None:
    return f"{what} removes it"
  return (f"{what} removes the teacher's part (alt completions keep "
          f"{residue.value:.2f} of it)")


# Per filter run: (verdict key prefix, hypothesis, judge). The hypothesis of a
# removal names the residue alt completions keep, if any (`_removes_hyp`).
_FILTER_HYPS = {
    "patch_in": (("sufficient", "patch-in of {f} suffices", _suffices),
                 ("raises", "patch-in of {f} raises it", _raises)),
    "patch_out": (("patch_out_removes", "patch-out of {f}", _removes),),
    "drop": (("drop_removes", "dropping {f}", _removes),),
}


def _filters(res, trait, T, AC, teacher) -> list[Verdict]:
  out = []
  residue = _residue(res, trait, AC)
  groups = sorted({d.group for d in res.arms.values() if d.kind == "filter"})
  base_ev = f"alt completions {AC.fmt()}, teacher {T.fmt()}"
  for f in groups:
    runs = _filter_runs(res, f)
    est = {k: res.get(v, trait) for k, v in runs.items()}
    for run, hyps in _FILTER_HYPS.items():
      x = est.get(run)
      if x is None:
        continue
      what = f"{run.replace('_', '-')} {x.fmt()} ({_fmt_share(_share(x, AC, T))})"
      for key, hyp, judge in hyps:
        hyp = hyp.format(f=f)
        if judge is _removes:
          hyp = _removes_hyp(hyp, residue) + (" (the subset is necessary)"
                                              if run == "patch_out" else "")
        if teacher != SUPPORTED:
          verdict, ev = _moot(teacher, f, f"{what}; {base_ev}")
        else:
          verdict, ev = judge(x, AC, T), f"{what}; {base_ev}"
        out.append(_v(trait, f"{key}:{f}", hyp, verdict, ev))
    if teacher != SUPPORTED:
      continue
    pin, pout, drop, rnd = (est.get(k) for k in ("patch_in", "patch_out", "drop", "random"))
    for run, x in (("patch_out", pout), ("drop", drop)):
      out += _reaches_reference_alt(res, trait, AC, x, f"{run}_reaches_reference_alt:{f}",
                                    f"{run.replace('_', '-')} of {f}")
    if pin and rnd:
      verdict = (SUPPORTED if pin.above(rnd) else
                 RULED_OUT if pin.overlaps(rnd) else INCONCLUSIVE)
      out.append(_v(trait, f"beats_random:{f}", f"patch-in of {f} beats a random "
                    "patch of the same size", verdict,
                    f"patch-in {pin.fmt()} vs matched random {rnd.fmt()}"))
  return out


def _reaches_reference_alt(res, trait, AC, x, key, what) -> list[Verdict]:
  """"removes" is judged against AC; when AC itself carries the trait (clearly
  above reference-alt), says separately whether run `x` gets down to the
  reference-alt level. Nothing otherwise."""
  A = res.get(res.arm_of_kind("reference_alt"), trait)
  if x is None or A is None or not AC.above(A):
    return []
  return [_v(trait, key, f"{what} brings it down to reference-alt (not just to "
             "alt completions)", RULED_OUT if x.above(A) else SUPPORTED,
             f"{what} {x.fmt()} vs reference-alt {A.fmt()}; alt completions "
             f"{AC.fmt()} keep it")]


# Per-subset sweep, both directions (StudyConfig.sweep_directions): kind →
# (the run's description in the evidence, ((verdict key prefix, hypothesis,
# judge), ...)).
_SWEEP_HYPS = {
    "sweep": ("teacher on {s} / alt elsewhere", (
        ("sweep_sufficient", "the teacher on {s} alone (alt elsewhere) suffices",
         _suffices),
        ("sweep_raises", "the teacher on {s} alone (alt elsewhere) raises it",
         _raises))),
    "sweep_out": ("alt on {s} / teacher elsewhere", (
        ("sweep_necessary", "alt on {s} (teacher elsewhere)", _removes),)),
}


def _sweep(res, trait, T, AC, teacher) -> list[Verdict]:
  """Verdicts per swept subset and direction, with F = subset:<s>:
  `sweep_sufficient:<s>` / `sweep_raises:<s>` judged like patch-in
  (`sufficient:F` / `raises:F`), `sweep_necessary:<s>` like patch-out
  (`patch_out_removes:F`)."""
  out = []
  residue = _residue(res, trait, AC)
  runs = sorted((d.group, list(_SWEEP_HYPS).index(d.kind), n)
                for n, d in res.arms.items() if d.kind in _SWEEP_HYPS)
  base_ev = f"alt completions {AC.fmt()}, teacher {T.fmt()}"
  for s, _, name in runs:
    x = res.get(name, trait)
    if x is None:
      continue
    what, hyps = _SWEEP_HYPS[res.arms[name].kind]
    what = what.format(s=s)
    ev = f"{what} {x.fmt()} ({_fmt_share(_share(x, AC, T))}); {base_ev}"
    for prefix, hyp, judge in hyps:
      hyp = hyp.format(s=s)
      if judge is _removes:
        hyp = _removes_hyp(hyp, residue) + (f": the teacher rollouts on {s} "
                                            "are necessary")
      if teacher != SUPPORTED:
        verdict, why = _moot(teacher, s, ev)
        out.append(_v(trait, f"{prefix}:{s}", hyp, verdict, why))
      else:
        out.append(_v(trait, f"{prefix}:{s}", hyp, judge(x, AC, T), ev))
    if teacher == SUPPORTED and res.arms[name].kind == "sweep_out":
      out += _reaches_reference_alt(res, trait, AC, x,
                                    f"sweep_necessary_reaches_reference_alt:{s}", what)
  return out


def all_verdicts(res: StudyResults,
                 expected: Mapping[tuple[str, str], str] | None = None) -> list[Verdict]:
  """Verdicts for every trait, compared with `expected` (trait, key) → verdict."""
  pooled = [_compare(v, expected or {}) for trait in res.traits
            for v in trait_verdicts(res, trait)]
  S = res.num_seeds()
  if S < 2:
    return pooled
  alone = [{(v.trait, v.key): v.verdict for t in res.traits
            for v in trait_verdicts(res.seed_view(i), t)} for i in range(S)]
  return [dataclasses.replace(v, seeds_alone=(
      f"{sum(a.get((v.trait, v.key)) == v.verdict for a in alone)}/{S}"))
      for v in pooled]


def _compare(v: Verdict, expected: Mapping[tuple[str, str], str]) -> Verdict:
  exp = expected.get((v.trait, v.key))
  if exp in _VERDICTS:
    return dataclasses.replace(v, expected=exp,
                               match="match" if exp == v.verdict else "mismatch")
  if exp is not None:  # the world cannot say: shown, never counted as a match
    return dataclasses.replace(v, expected=exp, match=UNCHECKED)
  return v


# The ground truth's value "partial" (toyworld/mechanism.py PARTIAL): the
# carrier raises the trait without reaching the teacher's effect.
PARTIAL = "partial"
PARTIAL_SUFFICIENT = "partial: raises without reaching the teacher's effect"
_YES_NO = {True: SUPPORTED, False: RULED_OUT}


def _patch_in(sufficient_key: str, raises_key: str):
  """A patch-in conclusion (true / false / partial) checks both keys."""
  return ((sufficient_key, {**_YES_NO, PARTIAL: PARTIAL_SUFFICIENT}),
          (raises_key, {**_YES_NO, PARTIAL: SUPPORTED}))


# The one table from toyworld's derived conclusions (ground_truth.json
# `expected`) to verdict keys: ground-truth key → ((verdict key, {ground-truth
# value → expected verdict}), ...). A value a key's map lacks ('not
# derivable', 'not applicable', 'both', ...) is passed through as text and
# leaves that verdict unchecked; so does PARTIAL_SUFFICIENT. Filter
# conclusions give `<key>:<F>`, sweep conclusions `<key>:<S>`.
GT_TABLE = {
    "differs_between_references": (("differs_between_references", _YES_NO),),
    "locked_in_by_pretraining": (("pretraining", _YES_NO),),
    "prompt_driven": (("prompt_driven", _YES_NO),),
    "teacher_driven": (("teacher_driven", _YES_NO),),
    "follows_teacher": (("tracks_teacher", _YES_NO),),
    # filters[F]
    "patch_in_sufficient": _patch_in("sufficient", "raises"),
    "patch_out_removes": (("patch_out_removes", _YES_NO),),
    "drop_removes": (("drop_removes", _YES_NO),),
    # sweep[S]: teacher on S, alt elsewhere; sweep_out[S]: alt on S, teacher elsewhere
    "sweep": _patch_in("sweep_sufficient", "sweep_raises"),
    "sweep_out": (("sweep_necessary", _YES_NO),),
}
_TRAIT_GT_KEYS = ("locked_in_by_pretraining", "prompt_driven", "teacher_driven",
                  "follows_teacher")
_FILTER_GT_KEYS = ("patch_in_sufficient", "patch_out_removes", "drop_removes")


def _expected_verdict(value, by_value: Mapping) -> str:
  """A ground-truth value as the verdict it predicts for one key, or as text
  (then the verdict stays unchecked)."""
  if isinstance(value, (bool, str)) and value in by_value:
    return by_value[value]
  return str(value)


def _differs(orig, alt):
  if isinstance(orig, bool) and isinstance(alt, bool):
    return orig and not alt
  return orig if not isinstance(orig, bool) else alt


def _conclusions(exp: Mapping) -> list[tuple[str, str, object]]:
  """(ground-truth key, verdict-key suffix, value) of every conclusion."""
  out = []
  if "present_in_reference_orig" in exp and "present_in_reference_alt" in exp:
    out.append(("differs_between_references", "", _differs(
        exp["present_in_reference_orig"], exp["present_in_reference_alt"])))
  out += [(k, "", exp[k]) for k in _TRAIT_GT_KEYS if k in exp]
  out += [(k, f":{f}", fexp[k]) for f, fexp in exp.get("filters", {}).items()
          for k in _FILTER_GT_KEYS if k in fexp]
  out += [(k, f":{s}", v) for k in ("sweep", "sweep_out")
          for s, v in exp.get(k, {}).items()]
  return out


def expected_from_ground_truth(gt: Mapping) -> dict[tuple[str, str], str]:
  """(trait, verdict key) → expected verdict, from toyworld's ground_truth.json
  through `GT_TABLE`."""
  out = {}
  for trait, spec in gt.get("traits", {}).items():
    for gt_key, suffix, value in _conclusions(spec.get("expected", {})):
      for key, by_value in GT_TABLE[gt_key]:
        out[(trait, key + suffix)] = _expected_verdict(value, by_value)
  return out


def traits_from_ground_truth(gt: Mapping) -> dict[str, str]:
  """trait → 'benchmark:metric' as the ground truth names them."""
  return {t: f"{s['benchmark']}:{s['metric']}" for t, s in gt.get("traits", {}).items()}
