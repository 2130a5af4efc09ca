"""RunSpec: the unit a study expands into."""

import shlex

import pytest

from sftdiff.study.spec import RunSpec


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
  assert spec.train_args()[0] == "--gin_file=runs/sft.gin"
  assert "--gin.TRAIN_STEPS=10" in spec.train_args()


def test_args_survive_a_shell_round_trip():
  args = _spec().train_args()
  assert shlex.split(shlex.join(args)) == args


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "-lead"])
def test_bad_arm_name_rejected(bad):
  with pytest.raises(ValueError, match="arm name"):
    _spec(arm_name=bad)
