"""Study expansion: arms × seeds → RunSpecs; bad studies fail with clear errors."""

import os
import shlex
import subprocess
import sys

import gin
import pytest

from sftdiff import gin_utils
from sftdiff.study import expansion as expand_lib
from sftdiff.study.config import StudyConfig
from sftdiff.study.expansion import Catalog, StudyConfigError

ALT_SUBSETS = frozenset({"chat", "arithmetic", "code", "safety", "roleplay", "dates"})


def catalog(**kw):
  base = dict(
      bases={"orig": "/w/bases/orig", "alt": "/w/bases/alt"},
      prompt_sets={"orig": {"DataConfig.prompt_set": "'jsonl:/w/orig.jsonl'"},
                   "alt": {"DataConfig.prompt_set": "'jsonl:/w/alt.jsonl'"}},
      sources={"orig": frozenset({"orig"}),
               "alt": frozenset({"alt", "teacher", "teacher_2", "teacher_3"})},
      subsets={"orig": ALT_SUBSETS | {"frustrating"}, "alt": ALT_SUBSETS},
      filters=frozenset({"date_mentions", "roleplay"}),
      benchmarks=frozenset({"toy_blackmail", "toy_date_confusion",
                            "toy_negative_emotion"}),
      filter_fraction=lambda ps, f: {"date_mentions": 0.16, "roleplay": 0.17}[f])
  base.update(kw)
  return Catalog(**base)


@pytest.fixture
def quick_study(tmp_path):
  gin.clear_config()
  gin_utils.parse(["studies/toyworld_quick.gin"], [f"STUDY_DIR = '{tmp_path}'"])
  yield StudyConfig()
  gin.clear_config()


def test_quick_study_expands(quick_study, tmp_path):
  specs = expand_lib.expand(quick_study, catalog())
  names = [s.arm_name for s in specs]
  assert len(names) == len(set(names)) == 6 + 1 + 4 * 2 + 2
  by = {s.arm_name: s for s in specs}
  assert by["random_date_mentions"].arm == (
      "Random(a='teacher', b='alt', p=0.16, seed=0)")
  assert by["drop_roleplay"].arm == "Drop(base='teacher', where='roleplay')"
  assert by["sweep_chat"].arm == (
      "Patch(base='alt', patch='teacher', where='subset:chat')")
  ref = dict(by["reference_orig"].overrides)
  assert ref["INITIAL_CHECKPOINT"] == "'/w/bases/orig'"
  assert ref["DataConfig.prompt_set"] == "'jsonl:/w/orig.jsonl'"
  assert ref["TRAIN_STEPS"] == "100"
  assert ref["LEARNING_RATE"] == "0.003" and ref["BATCH_SIZE"] == "8"
  assert dict(by["reference_alt"].overrides)["INITIAL_CHECKPOINT"] == "'/w/bases/alt'"
  assert by["teacher"].model_dir == os.path.join(str(tmp_path), "runs", "teacher", "seed0")
  from sftdiff.runs import plan as plan_lib
  plan = plan_lib.build_plan([by["patch_in_date_mentions"]], title="t", run_eval=False)
  args = plan.work_units[0].train.args()
  assert shlex.split(shlex.join(args)) == args


def test_seeds_multiply_runs(quick_study):
  import dataclasses
  study = dataclasses.replace(quick_study, seeds=(0, 1, 2))
  specs = expand_lib.expand(study, catalog())
  assert len(specs) == 3 * 17
  assert {s.seed for s in specs if s.arm_name == "teacher"} == {0, 1, 2}


def test_sweep_in_both_directions(quick_study):
  import dataclasses
  study = dataclasses.replace(quick_study,
                              sweep_directions=("teacher_on_subset", "alt_on_subset"))
  by = {s.arm_name: s for s in expand_lib.expand(study, catalog())}
  assert len(by) == 17 + 2
  assert by["sweep_chat"].arm == "Patch(base='alt', patch='teacher', where='subset:chat')"
  assert by["sweep_out_chat"].arm == (
      "Patch(base='teacher', patch='alt', where='subset:chat')")
  defs = {d.name: d for d in expand_lib.arm_defs(study)}
  assert (defs["sweep_out_safety"].kind, defs["sweep_out_safety"].group) == (
      "sweep_out", "safety")
  only_out = dataclasses.replace(quick_study, sweep_directions=("alt_on_subset",))
  names = {s.arm_name for s in expand_lib.expand(only_out, catalog())}
  assert {n for n in names if n.startswith("sweep")} == {"sweep_out_chat",
                                                         "sweep_out_safety"}


def test_filter_runs_select_which_of_the_four_runs(quick_study):
  import dataclasses
  study = dataclasses.replace(quick_study, filter_runs=("drop", "patch_in"))
  names = {s.arm_name for s in expand_lib.expand(study, catalog())}
  assert {n for n in names if n.endswith("_roleplay")} == {"patch_in_roleplay",
                                                          "drop_roleplay"}
  assert len(names) == 17 - 2 * 2


@pytest.mark.parametrize("change, message", [
    (dict(arms={"x": {"base": "orig", "prompts": "alt", "arm": "Source('nope')"}}),
     "study arm 'x' .*unknown source 'nope'"),
    (dict(arms={"x": {"base": "orig", "prompts": "alt",
                      "arm": "Patch(base='alt', patch='teacher', where='nofilter')"}}),
     "study arm 'x' .*unknown filter 'nofilter'"),
    (dict(arms={"x": {"base": "orig", "prompts": "alt", "arm": "Mix('alt')"}}),
     "study arm 'x' .*unknown arm expression"),
    (dict(arms={"x": {"base": "nobase", "prompts": "alt", "arm": "Source('alt')"}}),
     "unknown base 'nobase'"),
    (dict(arms={"x": {"base": "orig", "prompts": "alt",
                      "arm": "Random(a='teacher', b='alt', p=1.5)"}}),
     "outside \\[0, 1\\]"),
    (dict(sweep_subsets=("chat", "nosubset")), "unknown subset 'nosubset'"),
    (dict(benchmarks=("toy_blackmail", "toy_date_confusion", "toy_negative_emotion",
                     "toy_nope")), "unknown benchmark 'toy_nope'"),
    (dict(arms={"patch_in_roleplay": {"base": "orig", "prompts": "alt",
                                      "arm": "Source('alt')"}}),
     "duplicate run name 'patch_in_roleplay'"),
    (dict(arms={"bad name": {"base": "orig", "prompts": "alt", "arm": "Source('alt')"}}),
     "arm name 'bad name'"),
    (dict(seeds=(0, 0)), "seeds has duplicates"),
    (dict(arms={"x": {"base": "orig", "prompts": "alt", "arm": "Source('alt')",
                      "kind": "refrence_orig"}}), "unknown kind 'refrence_orig'"),
    (dict(traits={"t": "toy_missing:rate"}), "traits\\['t'\\]"),
    (dict(sweep_directions=("alt_on_subset", "teacher_on_sub")),
     "sweep_directions: unknown value 'teacher_on_sub'"),
    (dict(filter_runs=("drop", "randm")), "filter_runs: unknown value 'randm'"),
    (dict(sweep_directions="alt_on_subset"), "sweep_directions = 'alt_on_subset' must be a list"),
    (dict(sweep_directions=("alt_on_subset",) * 2), "sweep_directions has duplicates"),
])
def test_bad_study_fails_at_expansion(quick_study, change, message):
  import dataclasses
  study = dataclasses.replace(quick_study, **change)
  with pytest.raises(StudyConfigError, match=message):
    expand_lib.expand(study, catalog())


def test_filter_selecting_everything_is_rejected(quick_study):
  cat = catalog(filter_fraction=lambda ps, f: 1.0)
  with pytest.raises(StudyConfigError, match="random_date_mentions.*0 < \\|F\\|/N < 1"):
    expand_lib.expand(quick_study, cat)


def test_binary_rejects_duplicate_names_before_building(tmp_path):
  study_dir = tmp_path / "study"
  cmd = [sys.executable, "-m", "sftdiff.study",
         "--gin_file=studies/toyworld_quick.gin", f"--gin.STUDY_DIR='{study_dir}'",
         "--gin.StudyConfig.sweep_subsets=['dates', 'dates']"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                            os.path.abspath(__file__)))))
  assert proc.returncode == 2, proc.stderr
  assert "duplicate run name 'sweep_dates'" in proc.stderr
  assert not (study_dir / "world").exists()  # nothing was built


def test_binary_requires_study_dir():
  proc = subprocess.run([sys.executable, "-m", "sftdiff.study",
                         "--gin_file=studies/toyworld_quick.gin"],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "STUDY_DIR" in proc.stderr
