"""Verdict logic on hand-made estimates (including a planted mismatch)."""

from sftdiff.study.config import ArmDef
from sftdiff.study.results import Estimate, pool_seeds
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
  # the teacher run shows no effect, so filter runs cannot be read
  assert v["emotion", "sufficient:dates"].verdict == V.INCONCLUSIVE
  assert v["emotion", "sweep_necessary:dates"].verdict == V.INCONCLUSIVE
  assert v["emotion", "sweep_sufficient:chat"].verdict == V.INCONCLUSIVE


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
  assert v["date", "drop_removes:dates"].verdict == V.INCONCLUSIVE


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
