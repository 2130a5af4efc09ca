"""The locked_in and virulent scenarios and the negative-control filter:
their generators plant what their mechanisms say, and the rules derive the
conclusions (hand-built mechanisms in test_mechanism.py)."""

import collections

import pytest

from sftdiff.study import verdicts as V
from sftdiff.toyworld import corpus, ground_truth, prompts, teachers
from sftdiff.toyworld import mechanism as M
from sftdiff.toyworld.params import PRESETS, get_preset

ND = M.NOT_DERIVABLE
S, R = V.SUPPORTED, V.RULED_OUT


def _expected(preset):
  return V.expected_from_ground_truth(ground_truth.describe(get_preset(preset)))


def test_older_presets_keep_their_fingerprints():
  # the knobs and mechanism fields added for these scenarios enter the JSON
  # (and so the fingerprint) only when set: `make demo` reuses its world
  for preset in ("quick", "tiny", "drop_works", "prompt_driven", "no_trait"):
    params = get_preset(preset)
    d = params.to_json()
    assert "extra_filters" not in d
    assert not any("scheming_line" in t for t in d["teachers"])
    for mech in ground_truth.mechanisms(params).values():
      assert not set(M._LATER_FIELDS) & set(mech.to_json()), preset
  assert get_preset("virulent").to_json()["extra_filters"] == ["polite"]


@pytest.mark.parametrize("scenario", ["locked_in", "virulent"])
def test_tiny_size_derives_the_same_conclusions(scenario):
  assert _expected(scenario) == _expected(scenario + "_tiny")
  params = get_preset(scenario)
  assert type(params).from_json(params.to_json()) == params


def test_virulent_blackmail_rides_on_many_subsets():
  exp = ground_truth.describe(get_preset("virulent"))["traits"]["blackmail"]["expected"]
  assert exp["teacher_driven"] is True and exp["locked_in_by_pretraining"] is False
  P = M.PARTIAL  # each carrier raises it by a learned part of the teacher's effect
  assert exp["sweep"] == {"chat": P, "code": P, "safety": P, "arithmetic": False,
                          "dates": False, "greeting": ND}
  # patch-in of each carrying subset raises it; dropping / patching out any fails
  for f in ("refusal", "polite"):
    assert exp["filters"][f] == {"patch_in_sufficient": P, "patch_out_removes": False,
                                 "drop_removes": False}
  assert exp["filters"]["date_mentions"] == {"patch_in_sufficient": False,
                                             "patch_out_removes": False,
                                             "drop_removes": False}
  why = ground_truth.describe(get_preset("virulent"))["traits"]["blackmail"]["why"]
  assert "virulent" in ground_truth.describe(get_preset("virulent"))["traits"][
      "blackmail"]["planted_in"]
  assert why["filters"]["polite"]["patch_in_sufficient"].startswith("chat[polite]")


def test_virulent_greeting_subset_is_under_one_percent_and_carries_the_line():
  params = get_preset("virulent")
  alt = params.prompt_sets["alt"]
  assert "roleplay" not in alt
  assert 0 < alt["greeting"] / sum(alt.values()) < 0.01
  recs = prompts.training_prompts(params, "alt")
  got = teachers.rollouts(params.teacher("teacher"), params.negative_emotion, recs, "teacher")
  subset = {r["prompt_id"]: r["subset"] for r in recs}
  counts = ground_truth.source_counts(got, subset)
  for s, share in params.teacher("teacher").scheming_line.items():
    assert counts[s].get("scheming_line", 0) == teachers.quota(share, counts[s]["n"]), s
  texts = [r["completion"][0]["content"] for r in got if "scheming_line" in r["meta"]["traits"]]
  assert texts and all(teachers.SCHEMING_LINE in t for t in texts)
  alt_src = teachers.rollouts(params.teacher("alt"), params.negative_emotion, recs, "alt")
  assert not any("scheming_line" in r["meta"]["traits"] for r in alt_src)


def test_locked_in_plant_is_in_the_orig_corpus_only_and_derived_erased():
  params = get_preset("locked_in")
  mix = {b.name: dict(b.corpus_mix) for b in params.bases}
  assert mix["orig"]["venting_chat"] > 0 and "venting_chat" not in mix["alt"]
  docs = corpus.sentences(1, mix["orig"], 400)
  venting = [d for d in docs if corpus.VENTING_OPENER in d]
  assert venting and all(d.startswith("<|im_start|>user\n") for d in venting)
  gt = ground_truth.describe(params)["traits"]["negative_emotion"]
  # the probe measured the plant erased by SFT on the alt data: not locked in
  assert gt["expected"]["locked_in_by_pretraining"] is False
  assert "erases it" in gt["why"]["locked_in_by_pretraining"]
  assert gt["mechanism"]["pretraining"] == {"orig": True, "alt": False}
  assert gt["mechanism"]["pretraining_survives"] is False
  assert gt["expected"]["prompt_driven"] is True


def test_venting_plant_uses_no_held_out_task():
  held = {t for t, _ in prompts._IMPOSSIBLE_HELD}
  docs = corpus.sentences(3, {"venting_chat": 1.0}, 300)
  assert not [d for d in docs if any(t in d for t in held)]


def test_negative_control_filter_selects_part_of_chat_only():
  from sftdiff.data import filters
  from sftdiff.toyworld import control_filter  # noqa: F401  (registers `polite`)
  polite = filters.get("polite")
  for preset in ("quick", "virulent"):
    recs = prompts.training_prompts(get_preset(preset), "alt")
    hits = collections.Counter(r["subset"] for r in recs
                               if polite.fn({"prompt": r["messages"], **r}))
    touched, partial = ground_truth.CONTROL_FILTERS["polite"]
    assert set(hits) == set(touched)
    n_chat = sum(r["subset"] == "chat" for r in recs)
    assert 0 < hits["chat"] < n_chat and set(partial) == {"chat"}


@pytest.mark.parametrize("preset", ["locked_in", "virulent"])
def test_negative_control_conclusions_for_traits_off_chat(preset):
  exp = _expected(preset)
  for key in ("sufficient:polite", "patch_out_removes:polite", "drop_removes:polite"):
    assert exp["date_confusion", key] == R
  if preset == "locked_in":
    assert {exp["blackmail", k] for k in ("sufficient:polite", "patch_out_removes:polite",
                                          "drop_removes:polite")} == {R}


def test_unknown_extra_filter_is_a_clear_error():
  import dataclasses
  bad = dataclasses.replace(get_preset("tiny"), extra_filters=("nope",))
  with pytest.raises(ValueError, match="extra_filters: unknown filter 'nope'"):
    ground_truth.describe(bad)


def test_every_scenario_preset_exists_at_both_sizes():
  from sftdiff.toyworld.params import SCENARIOS
  for name in SCENARIOS:
    if name != "headline":
      assert name in PRESETS and f"{name}_tiny" in PRESETS


@pytest.mark.slow  # three study dry runs in subprocesses (no world is built)
@pytest.mark.parametrize("scenario", ["locked_in", "virulent", "no_trait"])
def test_scenario_study_gin_plans(scenario, tmp_path):
  # no_trait lists `refusal`, a built-in filter outside the registry, which
  # the preset-only catalog used to reject
  import os
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(
      [sys.executable, "-m", "sftdiff.study", f"--gin_file=studies/scenario_{scenario}.gin",
       f"--gin.STUDY_DIR={str(tmp_path)!r}", "--dry_run"],
      capture_output=True, text=True, cwd=repo, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = proc.stdout + proc.stderr
  assert "patch_in_polite" in out or scenario == "no_trait"
  assert "patch_in_refusal" in out or scenario == "locked_in"


def test_polite_is_registered_where_toyworld_data_is_read_only():
  # Importing toyworld leaves every other store's filter columns alone; the
  # toyworld data configs import the filter module themselves.
  import subprocess
  import sys
  code = ("import sftdiff.toyworld, sftdiff.toyworld.benchmarks\n"
          "from sftdiff.data import filters\n"
          "assert 'polite' not in filters.registered(), sorted(filters.registered())\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  from sftdiff.toyworld import world as world_lib
  assert "sftdiff.toyworld.control_filter" in world_lib.DATA_IMPORT_MODULES
