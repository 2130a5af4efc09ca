"""Which runs share a multi-arm train job, and in what sizes."""

import pytest

from sftdiff.runs import groups
from sftdiff.runs import plan as plan_lib
from sftdiff.runs.spec import PlanError, RunSpec


def _run(name, seed=0, overrides=(("TRAIN_STEPS", "5"),), gin_files=("runs/sft.gin",)):
  return RunSpec(arm_name=name, arm="Source('alt')", seed=seed, gin_files=gin_files,
                 overrides=overrides, model_dir=f"/r/{name}/seed{seed}")


def test_chunks_are_the_fewest_of_near_equal_size_in_order():
  assert groups.chunks(list(range(15)), 8) == [list(range(8)), list(range(8, 15))]
  assert [len(c) for c in groups.chunks(list(range(15)), 4)] == [4, 4, 4, 3]
  assert [len(c) for c in groups.chunks(list(range(9)), 4)] == [3, 3, 3]
  assert groups.chunks([1], 4) == [[1]]
  assert sum(groups.chunks(list(range(7)), 2), []) == list(range(7))


def test_only_runs_differing_in_arm_seed_and_dir_share_a_job():
  runs = [_run("a"), _run("b", seed=1), _run("c", overrides=(("TRAIN_STEPS", "6"),)),
          _run("d", gin_files=("runs/sft.gin", "x.gin")), _run("e")]
  plan = plan_lib.build_plan(runs, title="t", run_eval=False,
                             multi_arm=groups.MultiArmGrouping(max_arms=4))
  assert [[wu.run.arm_name for wu in g.units] for g in plan.groups] == [
      ["a", "b", "e"], ["c"], ["d"]]
  assert plan.groups[0].train.module == groups.MULTI_ARM_MODULE
  assert "--multi_arm_mode=auto" in plan.groups[0].train.args()
  assert plan.groups[1].train is plan.groups[1].units[0].train
  off = plan_lib.build_plan(runs, title="t", run_eval=False)
  assert [g.train for g in off.groups] == [wu.train for wu in off.work_units]


@pytest.mark.parametrize("kwargs, message", [
    ({"max_arms": 0}, "max_arms=0"),
    ({"mode": "fast"}, "mode='fast'"),
    ({"mode": "loop", "arm_axis": "data"}, "arm_axis needs"),
])
def test_bad_grouping_is_an_error_naming_the_field(kwargs, message):
  with pytest.raises(PlanError, match=message):
    groups.MultiArmGrouping(**kwargs)
