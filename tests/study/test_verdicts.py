"""Verdict logic on hand-made estimates (including a planted mismatch)."""

from sftdiff.study.config import ArmDef
from sftdiff.study.results import Estimate, estimate_from, pool_seeds
from sftdiff.study import verdicts as V


def E(v, half=0.05):
  return Estimate(v, max(0.0, v - half), min(1.0, v + half), n=100)


def _arm(name, kind, arm="Source('x')", group=""):
  return ArmDef(name=name, arm=arm, base="orig", prompts="alt", kind=kind, group=group)


ARMS = {a.name: a for a in [
    _arm("reference_orig", "reference_orig", "Source('orig')"),
    _arm("reference_alt", "reference_alt", "Source('alt')"),
    _arm("alt_completions", "alt_completions", "Source('alt')"),
    _arm("teacher", "teacher", "Source('teacher')"),
    _arm("teacher_2", "other_teacher", "Source('teacher_2')"),
    _arm("teacher_3", "other_teacher", "Source('teacher_3')"),
    _arm("random_p0.5", "interpolation", "Random(a='teacher', b='alt', p=0.5, seed=0)"),
    _arm("patch_in_dates", "filter", group="dates"),
    _arm("patch_out_dates", "filter", group="dates"),
    _arm("drop_dates", "filter", group="dates"),
    _arm("random_dates", "filter", group="dates"),
    _arm("sweep_dates", "sweep", group="dates"),
    _arm("sweep_chat", "sweep", group="chat"),
    _arm("sweep_out_dates", "sweep_out", group="dates"),
    _arm("sweep_out_chat", "sweep_out", group="chat"),
]}

# date confusion follows the teacher; emotion is prompt-driven (orig only).
SCORES = {
    "reference_orig": {"date": E(0.8), "emotion": E(0.7)},
    "reference_alt": {"date": E(0.02), "emotion": E(0.05)},
    "alt_completions": {"date": E(0.03), "emotion": E(0.05)},
    "teacher": {"date": E(0.8), "emotion": E(0.06)},
    "teacher_2": {"date": E(0.45), "emotion": E(0.05)},
    "teacher_3": {"date": E(0.2), "emotion": E(0.06)},
    "random_p0.5": {"date": E(0.42), "emotion": E(0.05)},
    "patch_in_dates": {"date": E(0.7), "emotion": E(0.05)},
    "patch_out_dates": {"date": E(0.06), "emotion": E(0.05)},
    "drop_dates": {"date": E(0.4), "emotion": E(0.05)},
    "random_dates": {"date": E(0.15), "emotion": E(0.05)},
    "sweep_dates": {"date": E(0.7), "emotion": E(0.05)},
    "sweep_chat": {"date": E(0.1), "emotion": E(0.05)},
    "sweep_out_dates": {"date": E(0.06), "emotion": E(0.05)},
    "sweep_out_chat": {"date": E(0.78), "emotion": E(0.05)},
}
TEACHERS = {"teacher": {"date": E(0.9), "emotion": E(0.0)},
            "teacher_2": {"date": E(0.5), "emotion": E(0.0)},
            "teacher_3": {"date": E(0.25), "emotion": E(0.0)},
            "alt": {"date": E(0.0), "emotion": E(0.0)}}
FRACTIONS = {"random_p0.5": {"examples": 0.5, "tokens": 0.52},
             "patch_in_dates": {"examples": 0.2}, "patch_out_dates": {"examples": 0.8},
             "drop_dates": {"examples": 1.0}, "random_dates": {"examples": 0.2}}


def results():
  return V.StudyResults(traits=["date", "emotion"], arms=ARMS, scores=SCORES,
                        teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)


def by_key(vs):
  return {(v.trait, v.key): v for v in vs}


def test_teacher_driven_trait():
  v = by_key(V.all_verdicts(results()))
  assert v["date", "differs_between_references"].verdict == V.SUPPORTED
  assert v["date", "teacher_driven"].verdict == V.SUPPORTED
  assert v["date", "prompt_driven"].verdict == V.RULED_OUT
  assert v["date", "pretraining"].verdict == V.RULED_OUT
  assert v["date", "tracks_teacher"].verdict == V.SUPPORTED
  assert v["date", "sufficient:dates"].verdict == V.SUPPORTED
  assert v["date", "patch_out_removes:dates"].verdict == V.SUPPORTED
  assert v["date", "drop_removes:dates"].verdict == V.RULED_OUT  # drop leaves it
  assert v["date", "beats_random:dates"].verdict == V.SUPPORTED
  assert v["date", "linear_dose"].verdict == V.SUPPORTED  # 0.42 ± .05 ∋ 0.415
  # the per-subset sweep, both directions: dates is sufficient and necessary
  assert v["date", "sweep_sufficient:dates"].verdict == V.SUPPORTED
  assert v["date", "sweep_sufficient:chat"].verdict == V.RULED_OUT
  assert v["date", "sweep_necessary:dates"].verdict == V.SUPPORTED
  assert v["date", "sweep_necessary:chat"].verdict == V.RULED_OUT
  assert "alt on dates / teacher elsewhere 0.06" in v["date", "sweep_necessary:dates"].evidence
  # the evidence cites intervals
  assert "0.80 [0.75, 0.85]" in v["date", "teacher_driven"].evidence


def test_prompt_driven_trait():
  v = by_key(V.all_verdicts(results()))
  assert v["emotion", "prompt_driven"].verdict == V.SUPPORTED
  assert v["emotion", "teacher_driven"].verdict == V.RULED_OUT
  # the teacher run adds nothing: no filter or subset carries it
  for key in ("sufficient:dates", "raises:dates", "drop_removes:dates",
              "sweep_necessary:dates", "sweep_sufficient:chat", "sweep_raises:chat"):
    assert v["emotion", key].verdict == V.NOT_APPLICABLE, key
  assert "teacher-driven ruled out" in v["emotion", "raises:dates"].evidence


def test_ground_truth_match_and_mismatch():
  expected = {("date", "teacher_driven"): V.SUPPORTED,
              ("date", "drop_removes:dates"): V.SUPPORTED,  # planted wrongly
              ("emotion", "prompt_driven"): V.SUPPORTED}
  v = by_key(V.all_verdicts(results(), expected))
  assert v["date", "teacher_driven"].match == "match"
  assert v["date", "drop_removes:dates"].match == "mismatch"
  assert v["emotion", "prompt_driven"].match == "match"
  assert v["date", "pretraining"].match == ""


def test_overlapping_intervals_are_not_an_effect():
  scores = dict(SCORES, teacher={"date": E(0.1, 0.1), "emotion": E(0.06)})
  res = V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                       teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)
  v = by_key(V.all_verdicts(res))
  # the teacher run is indistinguishable from alt completions while the
  # orig reference shows the trait: the data point at the prompts, not the teacher
  assert v["date", "teacher_driven"].verdict == V.RULED_OUT
  assert v["date", "prompt_driven"].verdict == V.SUPPORTED
  assert v["date", "drop_removes:dates"].verdict == V.NOT_APPLICABLE
  # undecided whether the teacher carries it: the filter runs cannot be read
  scores["teacher"] = {"date": E(0.4, 0.38)}  # overlaps AC and reference-orig
  v = by_key(V.all_verdicts(res))
  assert v["date", "teacher_driven"].verdict == V.INCONCLUSIVE
  assert v["date", "drop_removes:dates"].verdict == V.INCONCLUSIVE
  assert v["date", "raises:dates"].verdict == V.INCONCLUSIVE


def test_nonlinear_dose_is_ruled_out():
  scores = dict(SCORES, **{"random_p0.5": {"date": E(0.75), "emotion": E(0.05)}})
  res = V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                       teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)
  assert by_key(V.all_verdicts(res))["date", "linear_dose"].verdict == V.RULED_OUT


def test_pool_seeds_is_a_seed_t_interval_wider_than_the_seeds_spread():
  pooled = pool_seeds([Estimate(0.2, 0.1, 0.3, 50), Estimate(0.4, 0.3, 0.5, 50)])
  assert abs(pooled.value - 0.3) < 1e-12
  assert (pooled.n, pooled.seeds, pooled.method) == (100, 2, "seed_t")
  # two seeds: t(0.975, 1) = 12.7 times the se of the mean (0.1) -> clipped at 0
  assert pooled.lo == 0.0 and pooled.hi > 1.5
  assert pool_seeds([Estimate(0.3, 0.2, 0.4, 50)]).method == "sampling"


def test_pool_seeds_clips_a_rate_at_one_but_not_an_unbounded_mean():
  # three seeds of a rate near 1 (eval metrics, as a study reads them)
  seeds = [{"blackmail_rate": v, "blackmail_ci95": [v - 0.06, min(1.0, v + 0.03)],
            "blackmail_n": 128, "emotion_mean": 10 * v, "emotion_ci95": [10 * v - 0.6, 10 * v + 0.3],
            "emotion_n": 128} for v in (0.99, 0.97, 0.90)]
  rate = pool_seeds([estimate_from(m, "blackmail_rate") for m in seeds])
  assert rate.upper == 1.0 and rate.hi == 1.0 and rate.lo < rate.value < 1.0
  mean = pool_seeds([estimate_from(m, "emotion_mean") for m in seeds])
  assert mean.upper is None and mean.hi > 10.0  # a 0-10 score's bound is not known here


def test_expected_from_toyworld_ground_truth():
  from sftdiff.toyworld import ground_truth, params
  gt = ground_truth.describe(params.get_preset("quick"))
  exp = V.expected_from_ground_truth(gt)
  assert exp["date_confusion", "teacher_driven"] == V.SUPPORTED
  assert exp["date_confusion", "drop_removes:date_mentions"] == V.RULED_OUT
  assert exp["date_confusion", "sufficient:date_mentions"] == V.SUPPORTED
  assert exp["negative_emotion", "prompt_driven"] == V.SUPPORTED
  assert exp["negative_emotion", "tracks_teacher"] == V.RULED_OUT
  assert exp["blackmail", "differs_between_references"] == V.SUPPORTED
  assert V.traits_from_ground_truth(gt)["blackmail"] == "toy_blackmail:blackmail_rate"


def test_seeds_alone_counts_the_seeds_that_agree_with_the_pooled_verdict():
  # three seeds of the teacher run: two clearly above AC, one not
  per_seed = {a: {t: [e, e, e] for t, e in by.items()} for a, by in SCORES.items()}
  per_seed["teacher"] = {"date": [E(0.8), E(0.75), E(0.05)], "emotion": [E(0.06)] * 3}
  scores = dict(SCORES, teacher={"date": E(0.53, 0.2), "emotion": E(0.06)})
  res = V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                       teacher_fraction=FRACTIONS, teacher_scores=TEACHERS,
                       per_seed=per_seed)
  v = by_key(V.all_verdicts(res))
  assert v["date", "teacher_driven"].verdict == V.SUPPORTED
  assert v["date", "teacher_driven"].seeds_alone == "2/3"
  assert v["date", "differs_between_references"].seeds_alone == "3/3"


def test_undefined_statistics_say_why_instead_of_nan():
  scores = {k: {"date": E(0.3)} for k in SCORES}  # teacher == alt completions
  res = V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                       teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)
  verdicts = V.all_verdicts(res)
  text = " ".join(v.evidence for v in verdicts)
  assert "nan" not in text.lower()
  assert "Spearman ρ undefined" in text
  assert V._fmt_share(float("nan")) == "share undefined: teacher equals alt completions"


def _partial_lock_in(pout):
  # the hand-made case: alt completions 0.4, teacher 0.85
  scores = dict(SCORES, alt_completions={"date": E(0.4)}, teacher={"date": E(0.85)},
                patch_out_dates={"date": E(pout)}, drop_dates={"date": E(0.42)},
                reference_alt={"date": E(0.02)})
  return V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                        teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)


def test_partial_lock_in_is_stated_and_removal_is_checked_against_reference_alt():
  expected = {("date", "partially_locked_in"): V.SUPPORTED,
              ("date", "drop_reaches_reference_alt:dates"): V.SUPPORTED}  # wrong
  v = by_key(V.all_verdicts(_partial_lock_in(0.42), expected))
  assert v["date", "partially_locked_in"].verdict == V.SUPPORTED
  assert v["date", "partially_locked_in"].match == "match"
  # removal relative to AC says "removes", the absolute check says it does not
  assert v["date", "drop_removes:dates"].verdict == V.SUPPORTED
  assert v["date", "drop_reaches_reference_alt:dates"].verdict == V.RULED_OUT
  assert v["date", "drop_reaches_reference_alt:dates"].match == "mismatch"
  assert v["date", "patch_out_reaches_reference_alt:dates"].verdict == V.RULED_OUT
  v = by_key(V.all_verdicts(_partial_lock_in(0.03)))
  assert v["date", "patch_out_reaches_reference_alt:dates"].verdict == V.SUPPORTED


def test_full_lock_in_rules_out_a_teacher_part_and_headline_has_no_new_keys():
  res = _partial_lock_in(0.42)
  res.scores["teacher"] = {"date": E(0.42)}
  v = by_key(V.all_verdicts(res))
  assert v["date", "partially_locked_in"].verdict == V.RULED_OUT
  assert v["date", "pretraining"].verdict == V.SUPPORTED
  # no lock-in (AC at reference-alt level): the new keys are not emitted
  keys = {k for _, k in by_key(V.all_verdicts(results()))}
  assert not {k for k in keys if "reference_alt:" in k or k == "partially_locked_in"}


def _virulent(**sweeps):
  """A trait riding on several subsets: each one's teacher data suffices,
  swapping any one for alt completions leaves it (others still carry it)."""
  scores = dict(SCORES, **{k: {"date": E(v)} for k, v in sweeps.items()})
  return V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                        teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)


def test_sweep_both_directions_against_the_ground_truth_including_a_mismatch():
  res = _virulent(sweep_dates=0.7, sweep_chat=0.65, sweep_out_dates=0.75,
                  sweep_out_chat=0.72)
  expected = {("date", "sweep_sufficient:dates"): V.SUPPORTED,
              ("date", "sweep_sufficient:chat"): V.SUPPORTED,
              ("date", "sweep_necessary:dates"): V.RULED_OUT,
              ("date", "sweep_necessary:chat"): V.SUPPORTED,  # planted wrongly
              }
  v = by_key(V.all_verdicts(res, expected))
  assert [v["date", f"sweep_sufficient:{s}"].match for s in ("dates", "chat")] == [
      "match", "match"]
  assert v["date", "sweep_necessary:dates"].verdict == V.RULED_OUT
  assert v["date", "sweep_necessary:dates"].match == "match"
  assert v["date", "sweep_necessary:chat"].verdict == V.RULED_OUT
  assert v["date", "sweep_necessary:chat"].match == "mismatch"
  # a middling patch-in (clearly above AC, share < 0.5) decides nothing
  v = by_key(V.all_verdicts(_virulent(sweep_chat=0.3)))
  assert v["date", "sweep_sufficient:chat"].verdict == V.INCONCLUSIVE


def test_sweep_necessary_under_partial_lock_in_checks_reference_alt():
  res = _partial_lock_in(0.42)
  res.scores["sweep_out_dates"] = {"date": E(0.41)}
  v = by_key(V.all_verdicts(res))
  assert v["date", "sweep_necessary:dates"].verdict == V.SUPPORTED  # vs AC 0.4
  assert v["date", "sweep_necessary_reaches_reference_alt:dates"].verdict == V.RULED_OUT


def test_sweep_expectations_from_the_ground_truth():
  from sftdiff.toyworld import ground_truth, params
  exp = V.expected_from_ground_truth(ground_truth.describe(params.get_preset("quick")))
  # headline world: only dates carries date confusion, only roleplay blackmail
  assert exp["date_confusion", "sweep_sufficient:dates"] == V.SUPPORTED
  assert exp["date_confusion", "sweep_necessary:dates"] == V.SUPPORTED
  assert exp["date_confusion", "sweep_necessary:chat"] == V.RULED_OUT
  assert exp["blackmail", "sweep_necessary:roleplay"] == V.SUPPORTED
  assert exp["negative_emotion", "sweep_necessary:chat"] == "not applicable"


# --- "raises it": a patch-in that clearly raises the trait without reaching
# the teacher's effect (the ground truth's "partial", e.g. virulent blackmail:
# chat alone 0.23 against the teacher's 0.69).

def _with(**arms):
  scores = dict(SCORES, **{k: {"date": E(v) if isinstance(v, float) else v}
                           for k, v in arms.items()})
  return V.StudyResults(traits=["date"], arms=ARMS, scores=scores,
                        teacher_fraction=FRACTIONS, teacher_scores=TEACHERS)


def _gt(patch_in=None, sweep=None):
  exp = {"teacher_driven": True}
  if patch_in is not None:
    exp["filters"] = {"dates": {"patch_in_sufficient": patch_in}}
  if sweep is not None:
    exp["sweep"] = {"chat": sweep}
  return V.expected_from_ground_truth({"traits": {"date": {"expected": exp}}})


def test_raises_is_judged_apart_from_the_half_of_teacher_threshold():
  # AC 0.03, teacher 0.8: 0.23 is clearly above AC at share 0.26 (< 0.5)
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.23, sweep_chat=0.23)))
  assert v["date", "raises:dates"].verdict == V.SUPPORTED
  assert v["date", "sufficient:dates"].verdict == V.INCONCLUSIVE
  assert v["date", "sweep_raises:chat"].verdict == V.SUPPORTED
  assert v["date", "sweep_sufficient:chat"].verdict == V.INCONCLUSIVE
  assert "patch-in 0.23 [0.18, 0.28] (share 0.26)" in v["date", "raises:dates"].evidence
  # overlapping AC: raises nothing, suffices neither
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.06, sweep_chat=0.06)))
  for key in ("raises:dates", "sufficient:dates", "sweep_raises:chat",
              "sweep_sufficient:chat"):
    assert v["date", key].verdict == V.RULED_OUT, key
  # a full patch-in both raises and suffices
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.7, sweep_chat=0.7)))
  for key in ("raises:dates", "sufficient:dates", "sweep_raises:chat",
              "sweep_sufficient:chat"):
    assert v["date", key].verdict == V.SUPPORTED, key


def test_a_wide_interval_below_clear_is_inconclusive_not_ruled_out():
  # seeds disagree: 0.29 [0.00, 0.60] is not clearly above AC 0.03, but its
  # upper bound is 0.74 of the teacher's effect: nothing is ruled out
  wide = Estimate(0.29, 0.0, 0.60, n=100)
  v = by_key(V.all_verdicts(_with(patch_in_dates=wide, sweep_chat=wide)))
  for key in ("raises:dates", "sufficient:dates", "sweep_raises:chat",
              "sweep_sufficient:chat"):
    assert v["date", key].verdict == V.INCONCLUSIVE, key
  # upper bound 0.30 of the effect: cannot suffice (< 0.5), may still raise it
  mid = Estimate(0.10, 0.0, 0.26, n=100)
  v = by_key(V.all_verdicts(_with(patch_in_dates=mid)))
  assert v["date", "sufficient:dates"].verdict == V.RULED_OUT
  assert v["date", "raises:dates"].verdict == V.INCONCLUSIVE
  # planted partial, observed inconclusive: still a mismatch, never a match
  v = by_key(V.all_verdicts(_with(patch_in_dates=wide), _gt(patch_in=V.PARTIAL)))
  assert v["date", "raises:dates"].match == "mismatch"


def test_partial_ground_truth_checks_raises_and_leaves_sufficient_unchecked():
  res = _with(patch_in_dates=0.23, sweep_chat=0.23)
  v = by_key(V.all_verdicts(res, _gt(patch_in=V.PARTIAL, sweep=V.PARTIAL)))
  for raises, sufficient in (("raises:dates", "sufficient:dates"),
                             ("sweep_raises:chat", "sweep_sufficient:chat")):
    assert (v["date", raises].expected, v["date", raises].match) == (V.SUPPORTED, "match")
    assert v["date", sufficient].expected == (
        "partial: raises without reaching the teacher's effect")
    assert v["date", sufficient].match == V.UNCHECKED
  # the planted partial carrier raises nothing in the study: mismatch
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.05, sweep_chat=0.05),
                            _gt(patch_in=V.PARTIAL, sweep=V.PARTIAL)))
  assert v["date", "raises:dates"].match == "mismatch"
  assert v["date", "sweep_raises:chat"].match == "mismatch"
  assert v["date", "sufficient:dates"].match == V.UNCHECKED


def test_true_and_false_ground_truth_check_both_keys_including_mismatches():
  # planted "suffices" and the run suffices: two matches per direction
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.7, sweep_chat=0.7),
                            _gt(patch_in=True, sweep=True)))
  for key in ("raises:dates", "sufficient:dates", "sweep_raises:chat",
              "sweep_sufficient:chat"):
    assert (v["date", key].expected, v["date", key].match) == (V.SUPPORTED, "match")
  # planted "does not raise it", the run raises it part of the way: raises
  # is a mismatch; sufficient is inconclusive, which is a mismatch too
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.23, sweep_chat=0.23),
                            _gt(patch_in=False, sweep=False)))
  for key in ("raises:dates", "sufficient:dates", "sweep_raises:chat",
              "sweep_sufficient:chat"):
    assert (v["date", key].expected, v["date", key].match) == (V.RULED_OUT, "mismatch")
  # planted "suffices", the run only raises it: sufficient mismatches, raises matches
  v = by_key(V.all_verdicts(_with(patch_in_dates=0.23), _gt(patch_in=True)))
  assert v["date", "raises:dates"].match == "match"
  assert v["date", "sufficient:dates"].match == "mismatch"


def test_ground_truth_values_map_through_one_table():
  for value, sufficient, raises in (
      (True, V.SUPPORTED, V.SUPPORTED), (False, V.RULED_OUT, V.RULED_OUT),
      (V.PARTIAL, V.PARTIAL_SUFFICIENT, V.SUPPORTED),
      ("not derivable", "not derivable", "not derivable"),
      ("not applicable", "not applicable", "not applicable")):
    exp = _gt(patch_in=value, sweep=value)
    assert (exp["date", "sufficient:dates"], exp["date", "raises:dates"]) == (
        sufficient, raises), value
    assert (exp["date", "sweep_sufficient:chat"], exp["date", "sweep_raises:chat"]) == (
        sufficient, raises), value
  # 'partial' / 'both' where no key defines them pass through (unchecked)
  exp = V.expected_from_ground_truth({"traits": {"date": {"expected": {
      "teacher_driven": "both", "filters": {"dates": {"drop_removes": V.PARTIAL}}}}}})
  assert exp == {("date", "teacher_driven"): "both", ("date", "drop_removes:dates"): "partial"}
  # every ground-truth key the table knows maps onto keys the engine emits
  keys = {k.split(":")[0] for _, k in by_key(V.all_verdicts(results()))}
  assert {k for rows in V.GT_TABLE.values() for k, _ in rows} <= keys
  from sftdiff.toyworld import mechanism
  assert V.PARTIAL == mechanism.PARTIAL and set(mechanism.VALUES) >= {True, False, V.PARTIAL}


def test_raises_counts_the_seeds_that_give_it_alone():
  # three seeds of the patch-in: two clearly above AC, one not
  per_seed = {a: {t: [e, e, e] for t, e in by.items()} for a, by in SCORES.items()}
  per_seed["patch_in_dates"] = {"date": [E(0.25), E(0.2), E(0.04)]}
  res = _with(patch_in_dates=E(0.16, 0.07))  # pooled: [0.09, 0.23] above AC
  res.per_seed = per_seed
  v = by_key(V.all_verdicts(res))
  assert v["date", "raises:dates"].verdict == V.SUPPORTED
  assert v["date", "raises:dates"].seeds_alone == "2/3"


# --- locked-in traits (the three known gaps)

def test_partial_lock_in_says_removes_the_teachers_part_not_removes_it():
  # alt completions 0.4, teacher 0.85: a patch-out at 0.42 removes the
  # teacher's part only; the hypothesis says so and names the residue
  res = _partial_lock_in(0.42)
  v = by_key(V.all_verdicts(res))
  hyp = v["date", "patch_out_removes:dates"].hypothesis
  assert v["date", "patch_out_removes:dates"].verdict == V.SUPPORTED
  assert "removes it" not in hyp and "the teacher's part" in hyp and "0.40" in hyp
  assert "the teacher's part" in v["date", "drop_removes:dates"].hypothesis
  assert v["date", "patch_out_reaches_reference_alt:dates"].verdict == V.RULED_OUT
  # "raises it" is measured against the same residue: 0.55 adds to 0.4
  res.scores["patch_in_dates"] = {"date": E(0.55)}
  v = by_key(V.all_verdicts(res))
  assert v["date", "raises:dates"].verdict == V.SUPPORTED
  assert v["date", "sufficient:dates"].verdict == V.INCONCLUSIVE  # share 0.33
  # without lock-in the plain wording stays
  assert by_key(V.all_verdicts(results()))["date", "drop_removes:dates"].hypothesis == (
      "dropping dates removes it")


def test_full_lock_in_is_not_teacher_driven_and_filters_are_not_applicable():
  # alt completions keep all of it (0.4 ≈ teacher 0.42, reference-alt 0.02)
  res = _partial_lock_in(0.42)
  res.scores["teacher"] = {"date": E(0.42)}
  res.scores["reference_orig"] = {"date": E(0.43)}
  expected = {("date", "pretraining"): V.SUPPORTED,
              ("date", "teacher_driven"): "not applicable",
              ("date", "sufficient:dates"): "not applicable"}
  v = by_key(V.all_verdicts(res, expected))
  assert v["date", "pretraining"].verdict == V.SUPPORTED
  assert v["date", "pretraining"].match == "match"
  assert v["date", "teacher_driven"].verdict == V.RULED_OUT
  assert v["date", "prompt_driven"].verdict == V.RULED_OUT
  assert v["date", "partially_locked_in"].verdict == V.RULED_OUT
  filter_keys = [k for (_, k) in v if ":" in k]
  assert filter_keys and all(v["date", k].verdict == V.NOT_APPLICABLE for k in filter_keys)
  assert {k.split(":")[0] for k in filter_keys} >= {
      "sufficient", "raises", "patch_out_removes", "drop_removes", "sweep_sufficient",
      "sweep_raises", "sweep_necessary"}
  # not applicable on both sides stays unchecked, never a match
  assert v["date", "sufficient:dates"].match == V.UNCHECKED


def test_ground_truth_states_partial_both_and_not_applicable_from_a_world():
  # derived conclusions, not booleans only: the virulent world's blackmail
  from sftdiff.toyworld import ground_truth, params
  exp = V.expected_from_ground_truth(ground_truth.describe(params.get_preset("virulent")))
  assert exp["blackmail", "raises:polite"] == V.SUPPORTED
  assert exp["blackmail", "sufficient:polite"] == V.PARTIAL_SUFFICIENT
  assert exp["blackmail", "sweep_raises:chat"] == V.SUPPORTED
  assert exp["blackmail", "sweep_raises:arithmetic"] == V.RULED_OUT
  assert exp["blackmail", "sweep_raises:greeting"] == "not derivable"
  assert exp["negative_emotion", "raises:polite"] == "not applicable"
