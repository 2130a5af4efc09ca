"""The other direction of the per-subset sweep (`mechanism.derive_sweep_out`:
alt on the subset, the teacher elsewhere) on hand-built mechanisms, and its
verdict keys against the headline world's derived ground truth."""

from sftdiff.study import verdicts as V
from sftdiff.toyworld import ground_truth
from sftdiff.toyworld import mechanism as M
from sftdiff.toyworld.params import get_preset

SETS = {"orig": ("chat", "code", "dates", "frustrating"), "alt": ("chat", "code", "dates")}
RATES = {"orig": 0.9, "teacher": 0.9, "teacher_2": 0.5, "teacher_3": 0.25, "alt": 0.0}


def _mech(**kw):
  base = dict(trait="x", subsets=("dates",), rates=RATES, prompt_sets=SETS,
              filters={"date_mentions": ("dates",)})
  return M.TraitMechanism(**{**base, **kw})


def test_one_carrying_subset_is_necessary_the_others_are_not():
  out, why = M.derive_sweep_out(_mech(), True)
  assert out == {"chat": False, "code": False, "dates": True}
  assert "answered plainly" in why["dates"] and "answered by teacher" in why["chat"]
  # derive() carries it, and it agrees with patch-out of a filter on that subset
  exp, _ = M.derive(_mech())
  assert exp["sweep_out"] == out
  assert exp["filters"]["date_mentions"]["patch_out_removes"] is out["dates"]


def test_a_diffuse_carrier_does_not_rescue_the_swapped_subset():
  # the persona line rides on every reply, but the dates answered plainly by
  # alt erase the trait there (as patch-out does in the headline world)
  out, _ = M.derive_sweep_out(_mech(diffuse={"teacher": 0.3, "alt": 0.0}), True)
  assert out["dates"] is True


def test_virulent_trait_no_single_subset_is_necessary():
  out, _ = M.derive_sweep_out(_mech(subsets=("chat", "code", "dates")), True)
  assert out == {"chat": False, "code": False, "dates": False}


def test_a_weak_second_carrier_makes_it_not_derivable():
  # dates swapped out; code still carries the trait, but only at 0.1 < PRESENT_RATE
  rates = dict(RATES, teacher=0.9)
  mech = _mech(subsets=("dates", "code"), rates=rates)
  strong, _ = M.derive_sweep_out(mech, True)
  assert strong["dates"] is False  # code at 0.9 still carries it
  weak = M.TraitMechanism(**{**mech.__dict__, "rates": {**rates, "teacher": 0.1}})
  out, why = M.derive_sweep_out(weak, True)
  assert out["dates"] == M.NOT_DERIVABLE and "depends on learning" in why["dates"]


def test_not_teacher_driven_is_not_applicable():
  out, why = M.derive_sweep_out(_mech(), M.NOT_APPLICABLE)
  assert set(out.values()) == {M.NOT_APPLICABLE}
  exp, _ = M.derive(_mech(rates={}))  # no trait at all
  assert set(exp["sweep_out"].values()) == {M.NOT_APPLICABLE}


def test_headline_world_sweep_keys():
  exp = V.expected_from_ground_truth(ground_truth.describe(get_preset("quick")))
  sweep = {k: v for k, v in exp.items() if k[1].startswith("sweep_")}
  # date confusion rides on dates only, blackmail on roleplay only; negative
  # emotion is prompt-driven, so no sweep verdict of it is checked
  for trait, subset in (("date_confusion", "dates"), ("blackmail", "roleplay")):
    for key in ("sweep_sufficient", "sweep_raises", "sweep_necessary"):
      assert sweep.pop((trait, f"{key}:{subset}")) == V.SUPPORTED
  assert {v for (t, _), v in sweep.items() if t != "negative_emotion"} == {V.RULED_OUT}
  assert {v for (t, _), v in sweep.items() if t == "negative_emotion"} == {M.NOT_APPLICABLE}
