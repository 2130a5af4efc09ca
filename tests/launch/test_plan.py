"""Launch planning: arms × seeds → work units, overrides, shell/gin safety,
gin checks and accelerator support — all before anything is launched."""

import json
import os
import subprocess

import gin
import pytest

from sftdiff import gin_utils
from sftdiff.runs import gin_check
from sftdiff.launch import plan as plan_lib
from sftdiff.runs.resources import Resources, UnsupportedAcceleratorError, check

ARMS = [plan_lib.Arm("ref", "Source('orig')"),
        plan_lib.Arm("patch_in_dates",
                     "Patch(base='alt', patch='teacher', where='date_mentions')")]
COMMON = [("INITIAL_CHECKPOINT", "'/ckpt/base'"), ("TRAIN_STEPS", "10")]


def _plan(gin_dir, arms=ARMS, seeds=(0, 1), common=COMMON, per_arm=None, **kw):
  runs = plan_lib.runs_from_arms(arms, list(seeds), root_dir="/runs",
                                 gin_files=[str(gin_dir / "train.gin")])
  runs = plan_lib.apply_overrides(runs, common, per_arm or {})
  return plan_lib.build_plan(runs, title="t", eval_gin_files=[str(gin_dir / "eval.gin")],
                             **kw)


def test_one_work_unit_per_arm_and_seed_with_exact_flags(gin_dir):
  plan = _plan(gin_dir, per_arm={"patch_in_dates": [("LEARNING_RATE", "3e-4")]},
               benchmarks=["date_confusion", "blackmail"])
  assert [wu.name for wu in plan.work_units] == [
      "ref-seed0", "ref-seed1", "patch_in_dates-seed0", "patch_in_dates-seed1"]
  wu = plan.work_units[3]
  assert wu.train.argv() == [
      "python", "-m", "sftdiff.train", f"--gin_file={gin_dir / 'train.gin'}",
      "--gin.ARM=\"Patch(base='alt', patch='teacher', where='date_mentions')\"",
      "--gin.SEED=1", "--gin.MODEL_DIR='/runs/patch_in_dates/seed1'",
      "--gin.INITIAL_CHECKPOINT='/ckpt/base'", "--gin.TRAIN_STEPS=10",
      "--gin.LEARNING_RATE=3e-4"]
  assert wu.eval.argv() == [
      "python", "-m", "sftdiff.eval", f"--gin_file={gin_dir / 'eval.gin'}",
      "--gin.CHECKPOINT_DIR='/runs/patch_in_dates/seed1/checkpoints/10'",
      "--gin.BENCHMARKS=['date_confusion', 'blackmail']"]  # the final step
  every = _plan(gin_dir, eval_steps="all").work_units[3].eval
  assert "--gin.CHECKPOINT_DIR='/runs/patch_in_dates/seed1'" in every.args()
  # The per-arm override reaches only that arm.
  assert "--gin.LEARNING_RATE=3e-4" not in plan.work_units[0].train.args()
  assert wu.model_dir == "/runs/patch_in_dates/seed1"
  assert wu.tensorboard_dir == "/runs/patch_in_dates/seed1/tb"
  table = plan_lib.format_table(plan)
  assert "4 work units" in table and "patch_in_dates-seed1" in table
  script = plan_lib.format_commands(plan)
  assert script.count("-m sftdiff.train") == 4 and script.count("-m sftdiff.eval") == 4


def test_no_eval_and_per_arm_override_replaces_common(gin_dir):
  plan = _plan(gin_dir, seeds=[3], run_eval=False,
               per_arm={"ref": [("TRAIN_STEPS", "99")]})
  assert all(wu.eval is None for wu in plan.work_units)
  ref, patch = plan.work_units
  assert dict(ref.train.bindings)["TRAIN_STEPS"] == "99"
  assert dict(patch.train.bindings)["TRAIN_STEPS"] == "10"


@pytest.mark.parametrize("common, per_arm, message", [
    ([("TRAIN_STEPS", "10"), ("TRAIN_STEPS", "20")], {},
     "--gin: conflicting overrides for TRAIN_STEPS: 10 vs 20"),
    (COMMON, {"ref": [("LR", "1"), ("LR", "2")]},
     "--arm_override=ref:...: conflicting overrides for LR: 1 vs 2"),
    ([("SEED", "5")], {}, "SEED is set by the launcher"),
    (COMMON, {"nope": [("LR", "1")]}, "--arm_override names unknown arm(s) nope"),
])
def test_bad_overrides_are_clear_errors(gin_dir, common, per_arm, message):
  with pytest.raises(plan_lib.LaunchConfigError) as e:
    _plan(gin_dir, common=common, per_arm=per_arm)
  assert message in str(e.value)


def test_same_override_twice_with_same_value_is_fine(gin_dir):
  plan = _plan(gin_dir, common=[*COMMON, ("TRAIN_STEPS", " 10")])
  assert dict(plan.work_units[0].train.bindings)["TRAIN_STEPS"] == "10"


def test_unknown_arm_and_bad_arm_flags():
  runs = plan_lib.runs_from_arms(ARMS, [0], root_dir="/r")
  plan_lib.check_arm_specs(runs)
  with pytest.raises(plan_lib.LaunchConfigError, match="arm bad: .*Sorce"):
    plan_lib.check_arm_specs(plan_lib.runs_from_arms(
        [plan_lib.Arm("bad", "Sorce('alt')")], [0], root_dir="/r"))
  assert [r.arm_name for r in plan_lib.select_arms(runs, ["ref"])] == ["ref"]
  with pytest.raises(plan_lib.LaunchConfigError, match="unknown arm.*reff.*ref, patch_in_dates"):
    plan_lib.select_arms(runs, ["reff"])
  with pytest.raises(plan_lib.LaunchConfigError, match="is not NAME=ARM"):
    plan_lib.parse_arm("Source('orig')")
  with pytest.raises(plan_lib.LaunchConfigError, match="given twice: ref"):
    plan_lib.runs_from_arms([ARMS[0], ARMS[0]], [0], root_dir="/r")
  with pytest.raises(plan_lib.LaunchConfigError, match="arm name"):
    plan_lib.runs_from_arms([plan_lib.Arm("bad name", "Source('x')")], [0], root_dir="/r")
  with pytest.raises(plan_lib.LaunchConfigError, match="not a gin binding name"):
    plan_lib.parse_binding("1X=2", where="--gin")
  with pytest.raises(plan_lib.LaunchConfigError, match="secrets must not"):
    plan_lib.parse_env(["OPENAI_API_KEY=sk-123"])


TRICKY_ARMS = [
    "Patch(base='alt', patch='teacher', where='date_mentions')",
    "Source(\"it's\")",                        # both quote kinds: repr escapes
    "Random(a='t', b='c', p=0.25, seed=7) $HOME `x` \\n; echo hi",
]


def test_arm_strings_survive_a_shell_and_gin(gin_dir, tmp_path, fake_binary_env, python):
  """The exact command line, run by bash, gives the binary the same ARM."""
  arms = [plan_lib.Arm(f"a{i}", s) for i, s in enumerate(TRICKY_ARMS)]
  runs = plan_lib.runs_from_arms(arms, [0], root_dir=str(tmp_path / "runs"),
                                 gin_files=[str(gin_dir / "train.gin")])
  runs = plan_lib.apply_overrides(runs, COMMON, {})
  plan = plan_lib.build_plan(runs, title="t", run_eval=False,
                             train_module=fake_binary_env)
  for wu in plan.work_units:
    subprocess.run(["bash", "-c", wu.train.command_line(python)], check=True,
                   timeout=60)
    with open(os.path.join(wu.model_dir, "macros.json")) as f:
      macros = json.load(f)
    assert macros["ARM"] == wu.run.arm
    assert macros["MODEL_DIR"] == wu.model_dir
    assert macros["INITIAL_CHECKPOINT"] == "/ckpt/base"
    # And the same bindings parse in this process with gin directly.
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        list(wu.train.gin_files), [f"{k} = {v}" for k, v in wu.train.bindings])
    assert gin.query_parameter("%ARM") == wu.run.arm
    gin.clear_config()


def test_gin_check_passes_and_names_missing_macros(gin_dir):
  plan = _plan(gin_dir)
  # Imports sftdiff.train/eval (registering configurables) when present.
  assert gin_check.check_plan(plan) == 8
  with pytest.raises(gin_check.GinCheckError) as e:
    gin_check.check_plan(_plan(gin_dir, common=[("TRAIN_STEPS", "10")]))
  assert "work unit ref-seed0 (train: sftdiff.train)" in str(e.value)
  assert "INITIAL_CHECKPOINT" in str(e.value)
  # The check leaves no gin state behind.
  with pytest.raises(ValueError):
    gin.query_parameter("%ARM")


def test_gin_check_required_macro_without_declaration(gin_dir):
  (gin_dir / "bare.gin").write_text("LEARNING_RATE = 1e-3\n")
  runs = plan_lib.runs_from_arms(ARMS[:1], [0], root_dir="/r",
                                 gin_files=[str(gin_dir / "bare.gin")])
  plan = plan_lib.build_plan(runs, title="t", run_eval=False)
  with pytest.raises(gin_check.GinCheckError,
                     match="not set: INITIAL_CHECKPOINT, TRAIN_STEPS"):
    gin_check.check_plan(plan)


def test_gin_check_unknown_binding_and_missing_file(gin_dir):
  with pytest.raises(gin_check.GinCheckError, match="no_such_fn"):
    gin_check.check_plan(_plan(gin_dir, common=[*COMMON, ("no_such_fn.x", "1")]))
  runs = plan_lib.runs_from_arms(ARMS[:1], [0], root_dir="/r",
                                 gin_files=[str(gin_dir / "missing.gin")])
  with pytest.raises(gin_check.GinCheckError, match="missing.gin"):
    gin_check.check_plan(plan_lib.build_plan(runs, title="t", run_eval=False))


def test_gin_check_binary_that_does_not_import(gin_dir):
  runs = plan_lib.runs_from_arms(ARMS[:1], [0], root_dir="/r",
                                 gin_files=[str(gin_dir / "train.gin")])
  plan = plan_lib.build_plan(runs, title="t", run_eval=False,
                             train_module="sftdiff.no_such_binary")
  with pytest.raises(gin_check.GinCheckError, match="importing sftdiff.no_such_binary"):
    gin_check.check_plan(plan)


def test_runs_json_round_trip_and_errors(tmp_path):
  runs = plan_lib.apply_overrides(
      plan_lib.runs_from_arms(ARMS, [0, 1], root_dir="/r"), COMMON, {})
  assert plan_lib.runs_from_json(plan_lib.runs_to_json(runs), source="x") == runs
  with pytest.raises(plan_lib.LaunchConfigError, match=r"runs.json\[0\]: a run needs"):
    plan_lib.runs_from_json('[{"arm_name": "a"}]', source="runs.json")
  with pytest.raises(plan_lib.LaunchConfigError, match="runs.json: not JSON"):
    plan_lib.runs_from_json("[", source="runs.json")


@pytest.mark.parametrize("executor, resources, message", [
    ("vertex", Resources("tpu_v5e", tpu_topology="2x4"), "maps only TPU v2/v3"),
    ("vertex", Resources("h100"), "needs --accelerator_count"),
    ("local", Resources("h100", 1), "not supported by --executor=local"),
    ("gke", Resources("h100", 8), "not supported by --executor=gke"),
    ("gke", Resources("tpu_v5e"), "needs --tpu_topology"),
    ("gke", Resources("tpu_v5p", tpu_topology="2x3x1"), "not a multiple of 4"),
    ("gke", Resources("tpu_v5e", 8, tpu_topology="4x4"), "contradicts"),
    ("vertex", Resources("tpu_v3", 8, tpu_topology="2x2"), "applies to TPU slices"),
    ("vertex", Resources("tpu_v9", 8), "not a known accelerator"),
    ("slurm", Resources(), "not one of local, vertex, gke"),
])
def test_unsupported_accelerators(executor, resources, message):
  with pytest.raises(UnsupportedAcceleratorError, match=message):
    check(resources, executor)


def test_supported_accelerators_and_slice_hosts():
  assert check(Resources("h100", 8, cpu=16, ram_gib=128), "vertex").describe() == (
      "h100×8, 16 cpu, 128GiB")
  assert check(Resources("tpu_v3", 8), "vertex")
  assert check(Resources("cpu"), "local")
  for acc, topo, hosts, chips in [("tpu_v5e", "2x4", 1, 8), ("tpu_v5e", "4x4", 4, 4),
                                  ("tpu_v6e", "8x16", 32, 4), ("tpu_v5p", "2x2x2", 2, 4),
                                  ("tpu_v5p", "2x2x1", 1, 4)]:
    r = check(Resources(acc, tpu_topology=topo), "gke")
    assert (r.num_hosts, r.chips_per_host) == (hosts, chips), (acc, topo)


def test_vertex_accelerator_table_matches_xmanager():
  """Every GPU we accept for Vertex is one XManager's Vertex code maps."""
  vertex = pytest.importorskip("xmanager.cloud.vertex")
  from xmanager import xm
  from sftdiff.runs.resources import GPUS
  for gpu in GPUS:
    assert vertex.aip_v1_gpu_accelerator_type_str(xm.ResourceType[gpu.upper()])
  assert set(vertex._CLOUD_TPU_ACCELERATOR_TYPES) == {
      xm.ResourceType.TPU_V2, xm.ResourceType.TPU_V3}


def _real_train_plan(*bindings):
  runs = plan_lib.runs_from_arms(ARMS, [0], root_dir="/r",
                                 gin_files=["runs/sft.gin", "data/example.gin"])
  common = dict([*COMMON, ("DATA_DIR", "'/data'"), *bindings])
  runs = plan_lib.apply_overrides(runs, list(common.items()), {})
  return plan_lib.build_plan(runs, title="t", run_eval=False)


def test_gin_check_against_the_real_train_gin():
  """gin/runs/sft.gin + gin/data/example.gin with the trainer's own checks."""
  pytest.importorskip("sftdiff.train.__main__")
  assert gin_check.check_plan(_real_train_plan()) == 2
  with pytest.raises(gin_check.GinCheckError, match="TRAIN_STEPS = 'ten'"):
    gin_check.check_plan(_real_train_plan(("TRAIN_STEPS", "'ten'")))
  with pytest.raises(gin_check.GinCheckError, match="no_such_param"):
    gin_check.check_plan(_real_train_plan(("trainer.train.no_such_param", "1")))


@pytest.mark.parametrize("arg", [
    "--gin.MODEL_DIR='/tmp/a b'", "--gin.ARM=\"Patch(base='alt')\"", "plain",
    "it's $HOME `x` \\ \"q\" !", "", "--gin.X=['a', 'b']", "'", "=='=",
])
def test_shell_quote_round_trips_through_bash(arg):
  out = subprocess.run(["bash", "-c", "printf '%s' " + plan_lib.shell_quote(arg)],
                       capture_output=True, text=True, check=True, timeout=30).stdout
  assert out == arg


def test_gin_check_against_the_real_eval_gin():
  pytest.importorskip("sftdiff.eval.__main__")
  runs = plan_lib.apply_overrides(
      plan_lib.runs_from_arms(ARMS[:1], [0], root_dir="/r"), COMMON, {})
  plan = plan_lib.build_plan(runs, title="t", benchmarks=["toy_date_confusion"],
                             eval_overrides=[("JUDGE_KIND", "'none'")])
  eval_job = plan.work_units[0].eval
  gin_check.check_job(eval_job, label="eval", required=gin_utils.REQUIRED_MACROS["sftdiff.eval"],
                      binary_check=gin_check.import_binary("sftdiff.eval"))
  no_benchmarks = plan_lib.build_plan(runs, title="t").work_units[0].eval
  with pytest.raises(gin_check.GinCheckError, match="not set: BENCHMARKS"):
    gin_check.check_job(no_benchmarks, label="eval",
                        binary_check=gin_check.import_binary("sftdiff.eval"))
