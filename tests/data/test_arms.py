"""Arm semantics with exact counts on the hand-made example prompt set."""

import numpy as np
import pytest

from sftdiff.data import arms
from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import store as store_lib

SOURCES = ["alt", "teacher"]
ALT, TEACHER = 0, 1
DATES = example_data.EXPECTED_LABELS["date_mentions"]


def _columns():
  recs = [{"prompt_id": pid, "subset": subset,
           "prompt": [{"role": "user", "content": text}],
           "completions": {"alt": [{"role": "assistant",
                                    "content": example_data.alt_reply(pid)}],
                           "teacher": [{"role": "assistant",
                                        "content": example_data.teacher_reply(pid)}]}}
          for pid, (subset, text) in example_data.PROMPTS.items()]
  cols = filters.label_columns(recs, SOURCES, filters.registered())
  ids = [r["prompt_id"] for r in recs]
  cols.update(prompt_id=np.array(ids, dtype=object),
              subset=np.array([r["subset"] for r in recs], dtype=object),
              id_hash=store_lib.id_hash(ids))
  return cols


def _by_id(chosen, cols):
  names = SOURCES + ["drop"]
  return {p: names[c] for p, c in zip(cols["prompt_id"], chosen)}


def test_source():
  cols = _columns()
  assert (arms.select(arms.Source("teacher"), cols, SOURCES) == TEACHER).all()
  assert (arms.select("alt", cols, SOURCES) == ALT).all()


def test_patch_in_and_out():
  cols = _columns()
  patch_in = _by_id(arms.select(arms.Patch(base="alt", patch="teacher",
                                           where="date_mentions"), cols, SOURCES), cols)
  assert {p for p, s in patch_in.items() if s == "teacher"} == DATES
  assert sum(s == "alt" for s in patch_in.values()) == 8
  patch_out = _by_id(arms.select(arms.Patch(base="teacher", patch="alt",
                                            where="date_mentions"), cols, SOURCES), cols)
  assert {p for p, s in patch_out.items() if s == "alt"} == DATES


def test_drop_and_subset_filter():
  cols = _columns()
  chosen = arms.select(arms.Drop(base="teacher", where="subset:code"), cols, SOURCES)
  by_id = _by_id(chosen, cols)
  assert {p for p, s in by_id.items() if s == "drop"} == {"p07", "p08", "p09", "p10"}
  assert sum(s == "teacher" for s in by_id.values()) == 8


def test_refusal_of_named_sources():
  cols = _columns()
  chosen = arms.select(arms.parse_arm("Drop(base='teacher', where='refusal:alt')"),
                       cols, SOURCES)
  assert {p for p, s in _by_id(chosen, cols).items() if s == "drop"} == {"p12"}


def test_nested_arms_compose():
  cols = _columns()
  arm = arms.parse_arm("Drop(base=Patch(base='alt', patch='teacher', "
                       "where='date_mentions'), where='roleplay')")
  by_id = _by_id(arms.select(arm, cols, SOURCES), cols)
  assert {p for p, s in by_id.items() if s == "drop"} == {"p02", "p04", "p12"}
  assert {p for p, s in by_id.items() if s == "teacher"} == {"p01", "p03", "p08"}


def test_random_extremes_and_fraction():
  cols = _columns()
  assert (arms.select(arms.Random("teacher", "alt", p=1.0), cols, SOURCES) == TEACHER).all()
  assert (arms.select(arms.Random("teacher", "alt", p=0.0), cols, SOURCES) == ALT).all()
  ids = [f"id{i}" for i in range(20000)]
  big = {"id_hash": store_lib.id_hash(ids)}
  share = (arms.select(arms.Random("teacher", "alt", p=0.3, seed=5), big,
                       SOURCES) == TEACHER).mean()
  assert abs(share - 0.3) < 0.02  # binomial sd is 0.0032
  other = arms.select(arms.Random("teacher", "alt", p=0.3, seed=6), big, SOURCES)
  assert (other != arms.select(arms.Random("teacher", "alt", p=0.3, seed=5), big,
                               SOURCES)).any()


def test_random_is_order_and_size_invariant():
  ids = np.array([f"prompt-{i}" for i in range(500)], dtype=object)
  full = {"id_hash": store_lib.id_hash(list(ids))}
  arm = arms.Random("teacher", "alt", p=0.4, seed=11)
  ref = dict(zip(ids, arms.select(arm, full, SOURCES)))
  rng = np.random.default_rng(0)
  order = rng.permutation(len(ids))[:137]  # shuffled subsample
  sub = {"id_hash": store_lib.id_hash(list(ids[order]))}
  got = arms.select(arm, sub, SOURCES)
  assert all(ref[p] == c for p, c in zip(ids[order], got))


@pytest.mark.parametrize("arm", [
    arms.Source("teacher"),
    arms.Random(a="teacher", b=arms.Patch("alt", "teacher", "roleplay"), p=0.25, seed=3),
    arms.Patch(base="alt", patch="teacher", where="subset:chat"),
    arms.Drop(base=arms.Random("alt", "teacher", 0.5), where="refusal:teacher,alt"),
])
def test_spec_round_trip(arm):
  assert arms.parse_arm(str(arm)) == arms.parse_arm(str(arms.parse_arm(str(arm))))
  assert str(arms.parse_arm(str(arm))) == str(arm)


def test_parse_positional_and_bare_name():
  assert arms.parse_arm("teacher") == arms.Source("teacher")
  assert arms.parse_arm("Random('a', 'b', 0.5, 7)") == arms.Random("a", "b", 0.5, 7)


@pytest.mark.parametrize("text,message", [
    ("Random(a='teacher', b='alt', p=1.5)", r"p=1.5 must be a number in \[0, 1\]"),
    ("Random(a='teacher', b='alt', p=-0.1)", r"p=-0.1 must be"),
    ("Mix('a', 'b')", "unknown arm 'Mix'"),
    ("__import__('os').system('true')", "unknown arm"),
    ("Patch(base='a', patch=open('x'), where='f')", "unknown arm 'open'"),
    ("Patch(base='a', where='f')", "missing 1 required positional argument"),
    ("Patch(base='a', patch='b', where=x)", "unsupported expression 'x'"),
    ("Patch(base='a'", "not a valid expression"),
    ("", "non-empty string"),
])
def test_bad_specs(text, message):
  with pytest.raises(arms.ArmError, match=message):
    arms.parse_arm(text)


@pytest.mark.parametrize("text,message", [
    ("Patch(base='alt', patch='teacher_x', where='roleplay')",
     "unknown source 'teacher_x'"),
    ("Drop(base='alt', where='dates')", "unknown filter 'dates'"),
    ("Drop(base='alt', where='subset:poetry')", "no subset 'poetry'"),
])
def test_check_arm_names_the_arm(text, message):
  with pytest.raises(arms.ArmError, match=message) as e:
    arms.check_arm(text, sources=SOURCES, filters=["date_mentions", "roleplay"],
                   subsets=["chat", "code", "safety"])
  assert str(arms.parse_arm(text)) in str(e.value)


def test_arm_that_selects_nothing():
  cols = _columns()
  arm = arms.Drop(base=arms.Drop("teacher", "subset:chat"), where="subset:code")
  arm = arms.Drop(base=arm, where="subset:safety")
  with pytest.raises(arms.ArmError, match="selects nothing: all 12 prompts"):
    arms.select_checked(arm, cols, SOURCES)


def test_standard_filter_arms_and_subset_sweep():
  cols = _columns()
  four = arms.standard_filter_arms("date_mentions", "teacher", "alt", 4, cols, SOURCES)
  assert set(four) == {"patch_in_date_mentions", "patch_out_date_mentions",
                       "drop_date_mentions", "random_date_mentions"}
  assert four["random_date_mentions"] == arms.Random("teacher", "alt",
                                                     p=round(4 / 12, 6), seed=4)
  assert four["drop_date_mentions"] == arms.Drop("teacher", "date_mentions")
  sweep = arms.subset_sweep(["chat", "code"], "teacher", "alt")
  assert sweep["patch_in_subset_code"] == arms.Patch("alt", "teacher", "subset:code")
  chosen = arms.select(sweep["patch_in_subset_code"], cols, SOURCES)
  assert (chosen == TEACHER).sum() == 4
