"""RunSpec: the unit a study expands into, and its JSON form."""

import shlex

import pytest

from sftdiff.runs import plan as plan_lib
from sftdiff.runs.spec import RunSpec


def _spec(**kw):
  base = dict(arm_name="patch_in_date_mentions",
              arm="Patch(base='alt', patch='teacher', where='date_mentions')",
              seed=1, gin_files=("runs/sft.gin",),
              overrides=(("TRAIN_STEPS", "10"),), model_dir="/tmp/m")
  base.update(kw)
  return RunSpec(**base)


def test_name_and_bindings():
  spec = _spec()
  assert spec.name == "patch_in_date_mentions/seed1"
  assert spec.bindings()[:3] == [
      ("ARM", "\"Patch(base='alt', patch='teacher', where='date_mentions')\""),
      ("SEED", "1"), ("MODEL_DIR", "'/tmp/m'")]
  assert spec.train_steps == 10
  assert spec.content_key() == _spec(arm_name="other", model_dir="/x").content_key()
  args = _train_args(spec)
  assert args[0] == "--gin_file=runs/sft.gin"
  assert "--gin.TRAIN_STEPS=10" in args


def _train_args(spec):
  return plan_lib.build_plan([spec], title="t", run_eval=False).work_units[0].train.args()


def test_args_survive_a_shell_round_trip():
  args = _train_args(_spec())
  assert shlex.split(shlex.join(args)) == args


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "-lead"])
def test_bad_arm_name_rejected(bad):
  with pytest.raises(ValueError, match="arm name"):
    _spec(arm_name=bad)
