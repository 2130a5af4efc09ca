"""Ground-truth derivation rules (sftdiff/toyworld/mechanism.py) on the shipped
world and on hand-built mechanisms."""

import dataclasses

import pytest

from sftdiff.study import verdicts as V
from sftdiff.toyworld import ground_truth
from sftdiff.toyworld import mechanism as M
from sftdiff.toyworld.params import get_preset

ND, NA = M.NOT_DERIVABLE, M.NOT_APPLICABLE
S, R = V.SUPPORTED, V.RULED_OUT

# The hand-written expectations of toyworld-5 (the post's headline world): the
# derived ground truth must reproduce every one of them.
_UNRELATED = {"sufficient": R, "patch_out_removes": R, "drop_removes": R}
_HEADLINE = {
    "date_confusion": {"differs_between_references": S, "pretraining": R,
                       "teacher_driven": S, "prompt_driven": R, "tracks_teacher": S,
                       "date_mentions": {"sufficient": S, "patch_out_removes": S,
                                         "drop_removes": R},
                       "roleplay": _UNRELATED},
    "blackmail": {"differs_between_references": S, "pretraining": R,
                  "teacher_driven": S, "prompt_driven": R, "tracks_teacher": S,
                  "roleplay": {"sufficient": S, "patch_out_removes": S,
                               "drop_removes": S},
                  "date_mentions": _UNRELATED},
    "negative_emotion": {"differs_between_references": S, "pretraining": R,
                         "teacher_driven": R, "prompt_driven": S,
                         "tracks_teacher": R},
}


def _flat(spec):
  out = {}
  for trait, keys in spec.items():
    for key, v in keys.items():
      if isinstance(v, dict):
        out.update({(trait, f"{k}:{key}"): x for k, x in v.items()})
      else:
        out[(trait, key)] = v
  return out


def test_headline_world_derives_exactly_the_hand_written_ground_truth():
  full = V.expected_from_ground_truth(ground_truth.describe(get_preset("quick")))
  for preset in ("tiny", "full"):
    assert V.expected_from_ground_truth(ground_truth.describe(get_preset(preset))) == full
  shipped = ("date_mentions", "roleplay")  # the demo's filters
  exp = {k: v for k, v in full.items() if not k[1].startswith(("sweep_", "raises:"))
         and (":" not in k[1] or k[1].split(":")[1] in shipped)}  # sweep_*: test_sweep_rules.py
  # no partial carrier in this world: "raises it" is expected as "suffices"
  assert {k: full[k[0], "raises:" + k[1].split(":")[1]] for k in exp
          if k[1].startswith("sufficient:")} == {k: v for k, v in exp.items()
                                                 if k[1].startswith("sufficient:")}
  checked = {k: v for k, v in exp.items() if v in (S, R)}
  assert checked == _flat(_HEADLINE)
  assert len(checked) == 27
  # negative emotion is not teacher-driven: its filter runs cannot be read
  assert {v for k, v in exp.items() if k not in checked} == {NA}


def test_shipped_filter_subsets_are_what_the_filters_select():
  from sftdiff.data.filters import asks_roleplay, mentions_date, refuses
  from sftdiff.toyworld import prompts, teachers
  params = get_preset("tiny")
  recs = prompts.training_prompts(params, "alt")
  replies = {src.name: {r["prompt_id"]: r["completion"] for r in teachers.rollouts(
      params.teacher(src.teacher), params.negative_emotion, recs, src.name)}
      for src in params.sources if src.prompt_set == "alt"}
  fns = {"date_mentions": lambda r: mentions_date(r["messages"][0]["content"]),
         "roleplay": lambda r: asks_roleplay(r["messages"][0]["content"]),
         "refusal": lambda r: any(refuses(c[r["prompt_id"]]) for c in replies.values())}
  assert set(fns) == set(ground_truth.FILTER_SUBSETS)
  for rec in recs:
    for f, subsets in ground_truth.FILTER_SUBSETS.items():
      assert fns[f](rec) == (rec["subset"] in subsets), (f, rec)


def _world(**teacher_overrides):
  params = get_preset("quick")
  teachers = tuple(dataclasses.replace(t, **teacher_overrides) for t in params.teachers)
  return dataclasses.replace(params, teachers=teachers)


def test_no_diffuse_carrier_makes_drop_work_and_changes_the_fingerprint():
  params = _world(persona=0.0)
  gt = ground_truth.describe(params)["traits"]["date_confusion"]
  assert gt["expected"]["filters"]["date_mentions"]["drop_removes"] is True
  assert gt["expected"]["teacher_driven"] is True
  assert params.fingerprint() != get_preset("quick").fingerprint()
  # a weak persona line: whether it carries the trait is learned, not derivable
  weak = ground_truth.describe(_world(persona=0.1))["traits"]["date_confusion"]
  assert weak["expected"]["filters"]["date_mentions"]["drop_removes"] == ND
  assert "depends on learning" in weak["why"]["filters"]["date_mentions"]["drop_removes"]


@pytest.mark.parametrize("scenario,checked", [
    ("drop_works", {("date_confusion", "drop_removes:date_mentions"): S,
                    ("blackmail", "drop_removes:roleplay"): S}),
    ("prompt_driven", {("date_confusion", "differs_between_references"): R,
                       ("negative_emotion", "prompt_driven"): S}),
    ("no_trait", {(t, "differs_between_references"): R for t in ground_truth.TRAITS}),
])
def test_scenario_presets_derive_their_mechanism(scenario, checked):
  exp = V.expected_from_ground_truth(ground_truth.describe(get_preset(scenario)))
  assert {k: exp[k] for k in checked} == checked
  tiny = V.expected_from_ground_truth(ground_truth.describe(get_preset(scenario + "_tiny")))
  assert tiny == exp
  if scenario == "no_trait":
    assert {k: v for k, v in exp.items() if v in (S, R)} == checked


def test_editing_a_ground_truth_text_changes_the_fingerprint(monkeypatch):
  before = get_preset("quick").fingerprint()
  monkeypatch.setitem(ground_truth.TRAITS, "blackmail",
                      dict(ground_truth.TRAITS["blackmail"], planted_in="elsewhere"))
  assert get_preset("quick").fingerprint() != before


SETS = {"orig": ("chat", "code", "dates", "frustrating"),
        "alt": ("chat", "code", "dates")}
FILTERS = {"date_mentions": ("dates",), "code_only": ("code",), "none": ("math",)}


def _mech(**kw):
  base = dict(trait="x", subsets=("dates",),
              rates={"orig": 0.9, "teacher": 0.9, "teacher_2": 0.5,
                     "teacher_3": 0.25, "alt": 0.0},
              prompt_sets=SETS, filters=FILTERS)
  return M.TraitMechanism(**{**base, **kw})


def test_teacher_driven_trait_without_diffuse_carrier():
  exp, why = M.derive(_mech())
  assert (exp["teacher_driven"], exp["prompt_driven"], exp["follows_teacher"]) == (
      True, False, True)
  assert exp["filters"]["date_mentions"] == {"patch_in_sufficient": True,
                                             "patch_out_removes": True,
                                             "drop_removes": True}
  # a filter that lines up with no subset the trait rides on
  for f in ("code_only", "none"):
    assert exp["filters"][f] == {"patch_in_sufficient": False,
                                 "patch_out_removes": False, "drop_removes": False}
  assert exp["sweep"] == {"chat": False, "code": False, "dates": True}


def test_a_weak_plant_is_not_derivable_and_never_counts_as_a_match():
  exp, why = M.derive(_mech(rates={"orig": 0.1, "teacher": 0.1, "alt": 0.0}))
  assert exp["teacher_driven"] == ND and exp["present_in_reference_orig"] == ND
  assert exp["prompt_driven"] == ND
  assert "depends on learning" in why["teacher_driven"]
  gt = {"traits": {"x": {"expected": exp}}}
  expected = V.expected_from_ground_truth(gt)
  assert expected["x", "teacher_driven"] == ND
  res = V.StudyResults(traits=["x"], arms={}, scores={}, teacher_fraction={},
                       teacher_scores={})
  verdict = V.Verdict("x", "teacher_driven", "h", S, "e")
  assert V._compare(verdict, expected).match == V.UNCHECKED
  assert V.all_verdicts(res, expected) == []


def test_prompt_driven_trait_every_teacher_equal():
  mech = _mech(subsets=("frustrating",),
               rates={s: 0.9 for s in ("orig", "teacher", "teacher_2", "teacher_3", "alt")})
  exp, _ = M.derive(mech)
  assert exp["present_in_reference_orig"] is True
  assert exp["present_in_reference_alt"] is False  # alt prompts lack the subset
  assert (exp["prompt_driven"], exp["teacher_driven"], exp["follows_teacher"]) == (
      True, False, False)
  assert exp["filters"]["date_mentions"]["drop_removes"] == NA


def test_pretraining_plant_is_erased_where_the_alt_data_answers_plainly():
  # the issue's finding: the orig base's corpus carries date doubt, but alt
  # completions answer date prompts plainly -> not locked in
  exp, why = M.derive(_mech(pretraining={"orig": True}))
  assert exp["locked_in_by_pretraining"] is False
  assert "answered plainly" in why["locked_in_by_pretraining"]
  assert exp["teacher_driven"] is True


def test_pretraining_plant_where_the_data_is_silent_is_locked_in():
  # planted on a prompt kind neither prompt set contains, in the orig base only
  sets = {"orig": ("chat", "code"), "alt": ("chat", "code")}
  exp, _ = M.derive(_mech(prompt_sets=sets, rates={}, pretraining={"orig": True}))
  assert exp["present_in_reference_orig"] is True
  assert exp["present_in_reference_alt"] is False  # the alt base lacks it
  assert exp["locked_in_by_pretraining"] is True
  assert exp["teacher_driven"] == NA and exp["prompt_driven"] == NA
  assert exp["filters"]["date_mentions"]["patch_in_sufficient"] == NA
  # the orig prompts answering that kind plainly erase it from the reference
  sets = {"orig": ("chat", "code", "dates"), "alt": ("chat", "code")}
  exp, why = M.derive(_mech(prompt_sets=sets, rates={}, pretraining={"orig": True}))
  assert exp["present_in_reference_orig"] is False
  assert exp["locked_in_by_pretraining"] == NA and "nothing to explain" in why["teacher_driven"]


def test_virulent_trait_each_subset_raises_it_no_single_drop_removes_it():
  mech = _mech(subsets=("chat", "code", "dates"))
  exp, why = M.derive(mech)
  # each carrier adds a learned part of the teacher's effect: partial
  assert exp["sweep"] == {"chat": M.PARTIAL, "code": M.PARTIAL, "dates": M.PARTIAL}
  for f in ("date_mentions", "code_only"):
    assert exp["filters"][f] == {"patch_in_sufficient": M.PARTIAL,
                                 "patch_out_removes": False, "drop_removes": False}
  assert "learned part" in why["filters"]["code_only"]["patch_in_sufficient"]
  # a filter covering every carrier suffices
  all_three = _mech(subsets=("chat", "code", "dates"),
                    filters={"all": ("chat", "code", "dates")})
  assert M.derive(all_three)[0]["filters"]["all"]["patch_in_sufficient"] is True
  # partial is shown unchecked, never as a match; "raises it" is checked
  gt = {"traits": {"x": {"expected": exp}}}
  assert V.expected_from_ground_truth(gt)["x", "sufficient:code_only"] == V.PARTIAL_SUFFICIENT
  assert V.expected_from_ground_truth(gt)["x", "raises:code_only"] == S


def test_no_trait_at_all():
  exp, _ = M.derive(_mech(rates={}))
  assert exp["present_in_reference_orig"] is False
  assert exp["present_in_reference_alt"] is False
  for key in ("locked_in_by_pretraining", "teacher_driven", "prompt_driven",
              "follows_teacher"):
    assert exp[key] == NA
  assert exp["filters"]["date_mentions"]["drop_removes"] == NA
  # only 'differs between references' is checked: it must be ruled out
  gt = {"traits": {"x": {"expected": exp}}}
  checked = {k: v for k, v in V.expected_from_ground_truth(gt).items() if v in (S, R)}
  assert checked == {("x", "differs_between_references"): R}


@pytest.mark.parametrize("trait", sorted(ground_truth.TRAITS))
def test_every_conclusion_has_a_reason_and_an_allowed_value(trait):
  gt = ground_truth.describe(get_preset("quick"))["traits"][trait]
  for key, value in gt["expected"].items():
    if key in ("filters", "sweep", "sweep_out"):
      continue
    assert value in M.VALUES and gt["why"][key]


def test_plant_on_many_subsets_at_own_rates_with_a_small_one():
  # virulent: the teacher carries it on chat (own rate) and on a tiny subset
  sets = {"orig": ("chat", "code", "dates", "hello"), "alt": ("chat", "code", "dates", "hello")}
  mech = _mech(subsets=("dates", "chat", "hello"), prompt_sets=sets,
               subset_rates={"teacher": {"chat": 0.6, "hello": 1.0},
                             "orig": {"chat": 0.6, "hello": 1.0}},
               small_subsets=("hello",))
  assert mech.rate("teacher", "chat") == 0.6 and mech.rate("teacher", "dates") == 0.9
  assert mech.rate("teacher", "code") == 0.0 and mech.rate("alt", "chat") == 0.0
  exp, why = M.derive(mech)
  # a tiny subset alone: whether so few examples plant it is learned
  assert exp["sweep"] == {"chat": M.PARTIAL, "code": False, "dates": M.PARTIAL, "hello": ND}
  assert exp["filters"]["date_mentions"] == {"patch_in_sufficient": M.PARTIAL,
                                             "patch_out_removes": False,
                                             "drop_removes": False}
  v, reason = M.present(mech, "orig", {"chat": "alt", "hello": "teacher"})
  assert v == ND and "under 2%" in reason
  # shown unchecked, never as a match
  gt = {"traits": {"x": {"expected": {"filters": {"f": {"patch_in_sufficient": ND}}}}}}
  assert V.expected_from_ground_truth(gt)["x", "sufficient:f"] == ND
  # the new fields enter the JSON only when set
  assert "subset_rates" in mech.to_json() and "subset_rates" not in _mech().to_json()


def test_filter_selecting_part_of_a_subset():
  partial = {"half_chat": ("chat",)}
  filters = {**FILTERS, "half_chat": ("chat",)}
  assert M.filter_parts(_mech(filters=filters, partial_filters=partial), "half_chat",
                        ("chat", "code")) == [("chat[half_chat]", True),
                                              ("chat[not half_chat]", False), ("code", False)]
  # lines up with no carrying subset: a negative control
  exp, _ = M.derive(_mech(filters=filters, partial_filters=partial))
  assert exp["filters"]["half_chat"] == {"patch_in_sufficient": False,
                                         "patch_out_removes": False, "drop_removes": False}
  # on a carrying subset, the selected part alone raises it, and the rest keeps it
  exp, why = M.derive(_mech(subsets=("chat",), filters=filters, partial_filters=partial))
  assert exp["filters"]["half_chat"] == {"patch_in_sufficient": M.PARTIAL,
                                         "patch_out_removes": False, "drop_removes": False}
  assert why["filters"]["half_chat"]["patch_out_removes"].startswith("chat[not half_chat]")
  assert "chat[not half_chat] also carry it" in why["filters"]["half_chat"]["patch_in_sufficient"]


def test_pretraining_plant_erased_by_sft_or_not_derivable():
  sets = {"orig": ("chat", "code", "frustrating"), "alt": ("chat", "code")}
  rates = {s: 0.9 for s in ("orig", "teacher", "teacher_2", "teacher_3", "alt")}
  kw = dict(subsets=("frustrating",), prompt_sets=sets, rates=rates,
            pretraining={"orig": True})
  exp, why = M.derive(_mech(**kw, pretraining_survives=False))
  assert exp["locked_in_by_pretraining"] is False and "erases it" in why["locked_in_by_pretraining"]
  assert exp["prompt_driven"] is True and exp["teacher_driven"] is False
  assert exp["follows_teacher"] is False  # the erased plant carries nothing
  exp, why = M.derive(_mech(**kw, pretraining_survives=ND))
  assert exp["locked_in_by_pretraining"] == ND and exp["teacher_driven"] == ND
  exp, _ = M.derive(_mech(**kw))  # survives: locked in
  assert exp["locked_in_by_pretraining"] is True and exp["teacher_driven"] == NA
