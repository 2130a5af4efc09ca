"""Identical runs train once: two arms naming the same run launch it once,
and both appear in the results and the report (stand-in binaries)."""

import json
import os
import pathlib

from sftdiff.runs import plan as plan_lib
from sftdiff.runs.spec import RunSpec
from sftdiff.study import collect as collect_lib
from sftdiff.study import report as report_lib
from sftdiff.study import runner as runner_lib
from sftdiff.study.config import ArmDef

LAUNCH_TESTS = pathlib.Path(__file__).resolve().parents[1] / "launch"
ARM = "Random(a='teacher', b='alt', p=0.175, seed=0)"


def test_two_arms_naming_the_same_run_train_once(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(LAUNCH_TESTS))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (str(LAUNCH_TESTS), os.environ.get("PYTHONPATH", "")) if p))
  (tmp_path / "train.gin").write_text(
      "MODEL_DIR = %gin.REQUIRED\nARM = %gin.REQUIRED\nSEED = %gin.REQUIRED\n"
      "TRAIN_STEPS = %gin.REQUIRED\n")
  (tmp_path / "eval.gin").write_text("CHECKPOINT_DIR = %gin.REQUIRED\nBENCHMARKS = []\n")
  names = ["random_date_mentions", "random_roleplay"]
  specs = [RunSpec(arm_name=n, arm=ARM, seed=0, gin_files=(str(tmp_path / "train.gin"),),
                   overrides=(("TRAIN_STEPS", "4"),),
                   model_dir=str(tmp_path / "runs" / n / "seed0")) for n in names]
  specs = plan_lib.dedupe(specs)
  assert specs[1].model_dir == specs[0].model_dir
  plan = plan_lib.build_plan(specs, title="t", benchmarks=["b"],
                             eval_gin_files=[str(tmp_path / "eval.gin")],
                             train_module="fake_binary", eval_module="fake_binary")
  (wu,) = plan.work_units
  assert wu.aliases == ["random_roleplay/seed0"]
  result = runner_lib.LocalRunner(plan, study_dir=str(tmp_path), benchmarks=["b"],
                                  log=lambda msg: None).run()
  assert result.failures == []
  launches = [json.loads(l) for l in open(tmp_path / "logs" / "launches.jsonl")]
  assert [l["stage"] for l in launches] == ["train", "eval"]
  defs = [ArmDef(n, ARM, "orig", "alt", "filter", group=n[7:]) for n in names]
  res = collect_lib.collect(defs, specs, steps=4, traits={"t": "b:stand_in_rate"},
                            teacher_source="teacher", alt_source="alt")
  assert {n: res.scores[n]["t"].value for n in names} == {n: 0.5 for n in names}
  md = open(report_lib.write_report(str(tmp_path), "r", res)["md"]).read()
  assert all(n in md for n in names)
