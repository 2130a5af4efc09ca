"""`launch/xm_launch.py` end to end, as a user runs it (a real subprocess with
HOME in a temporary directory, so XManager's database stays there)."""

import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest
import yaml

XM_LAUNCH = pathlib.Path(__file__).resolve().parents[2] / "launch" / "xm_launch.py"

ARMS = ["--arm=ref=Source('orig')",
        "--arm=patch_in=Patch(base='alt', patch='teacher', where='date_mentions')"]


def _run(args, home, env_extra=None, timeout=240):
  env = {**os.environ, "HOME": str(home), **(env_extra or {})}
  return subprocess.run([sys.executable, str(XM_LAUNCH), *args], env=env,
                        capture_output=True, text=True, timeout=timeout,
                        cwd=str(home))


def _base_args(gin_dir, root):
  return [*ARMS, f"--root_dir={root}", f"--gin_file={gin_dir / 'train.gin'}",
          f"--eval_gin_file={gin_dir / 'eval.gin'}",
          "--gin.INITIAL_CHECKPOINT='/ckpt/base'", "--gin.TRAIN_STEPS=7"]


@pytest.fixture
def home(tmp_path):
  h = tmp_path / "home"
  h.mkdir()
  return h


def test_dry_run_prints_plan_and_commands_and_launches_nothing(gin_dir, home, tmp_path):
  root = tmp_path / "runs"
  r = _run([*_base_args(gin_dir, root), "--dry_run", "--seeds=0,1",
            "--arm_override=patch_in:LEARNING_RATE=3e-4"], home)
  assert r.returncode == 0, r.stderr
  assert "gin check: 8 job(s)" in r.stdout
  assert "experiment: sftdiff (4 work units)" in r.stdout
  for name in ("ref-seed0", "ref-seed1", "patch_in-seed0", "patch_in-seed1"):
    assert name in r.stdout
  assert r.stdout.count(" -m sftdiff.train ") == 4
  assert r.stdout.count(" -m sftdiff.eval ") == 4
  assert "--gin.LEARNING_RATE=3e-4" in r.stdout
  assert not (home / ".xmanager").exists() and not root.exists()


def test_dry_run_groups_arms_into_multi_arm_jobs(gin_dir, home, tmp_path):
  root = tmp_path / "runs"
  r = _run([*_base_args(gin_dir, root), "--dry_run", "--seeds=0,1", "--multi_arm_max=3",
            "--multi_arm_mode=loop", "--arm_override=patch_in:LEARNING_RATE=3e-4"], home)
  assert r.returncode == 0, r.stderr
  # ref's two seeds share a job; patch_in's differ from ref in an override.
  assert "experiment: sftdiff (4 work units, 2 train jobs)" in r.stdout
  assert "trained by" in r.stdout and "ref-seed0+1" in r.stdout
  assert r.stdout.count(" -m sftdiff.train.multi_arm ") == 2
  assert r.stdout.count("--multi_arm_mode=loop") == 2
  assert r.stdout.count(" -m sftdiff.eval ") == 2  # one eval process per train job
  assert r.stdout.count(" --checkpoint_dir=") == 4
  bad = _run([*_base_args(gin_dir, root), "--dry_run", "--multi_arm_max=0"], home)
  assert bad.returncode == 2 and "max_arms=0" in bad.stderr, bad.stderr


@pytest.mark.parametrize("extra, message", [
    (["--only_arms=ref,nope"], "unknown arm(s) nope"),
    (["--arm=bad=Sorce('alt')"], "arm bad: "),
    (["--gin.TRAIN_STEPS=9"], "conflicting overrides for TRAIN_STEPS: 7 vs 9"),
    (["--executor=vertex", "--accelerator=tpu_v5e", "--tpu_topology=4x4"],
     "maps only TPU v2/v3"),
    (["--arm_override=patch_in:no_such_configurable.x=1"], "no_such_configurable"),
])
def test_bad_input_exits_2_and_launches_nothing(gin_dir, home, tmp_path, extra, message,
                                               fake_binary_env):
  root = tmp_path / "runs"
  r = _run([*_base_args(gin_dir, root), *extra, f"--train_module={fake_binary_env}",
            f"--eval_module={fake_binary_env}"], home)
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert message in r.stderr
  assert "Traceback" not in r.stderr
  assert not (home / ".xmanager").exists() and not root.exists()


def test_missing_required_macro_exits_2(gin_dir, home, tmp_path):
  args = [a for a in _base_args(gin_dir, tmp_path / "runs")
          if not a.startswith("--gin.INITIAL_CHECKPOINT")]
  r = _run(args, home)
  assert r.returncode == 2
  assert "work unit ref-seed0 (train: sftdiff.train)" in r.stderr
  assert "required gin macro(s) not set: INITIAL_CHECKPOINT" in r.stderr
  assert not (home / ".xmanager").exists()


def test_runs_json_input_with_arm_selection(gin_dir, home, tmp_path, fake_binary_env):
  """The hand-off format of a study (a RunSpec list) launches like --arm."""
  from sftdiff.launch import plan as plan_lib
  runs = plan_lib.runs_from_arms(
      [plan_lib.Arm("a", "Source('alt')"), plan_lib.Arm("b", "Source('teacher')")],
      [0, 1], root_dir=str(tmp_path / "runs"), gin_files=[str(gin_dir / "train.gin")])
  runs_json = tmp_path / "runs.json"
  runs_json.write_text(plan_lib.runs_to_json(runs))
  r = _run([f"--runs_json={runs_json}", "--only_arms=b", "--dry_run", "--noeval",
            "--gin.INITIAL_CHECKPOINT='/c'", "--gin.TRAIN_STEPS=3",
            f"--train_module={fake_binary_env}"], home)
  assert r.returncode == 0, r.stderr
  assert "(2 work units)" in r.stdout and "b-seed1" in r.stdout
  assert "a-seed0" not in r.stdout
  assert "Source('teacher')" in r.stdout and "Source('alt')" not in r.stdout
  r = _run([f"--runs_json={runs_json}", "--arm=x=Source('a')", "--dry_run"], home)
  assert r.returncode == 2 and "exactly one of --arm" in r.stderr


def test_gke_writes_jobsets_and_applies_them_with_kubectl(gin_dir, home, tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  kubectl = bin_dir / "kubectl"
  kubectl.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'kubectl.args'}\n")
  kubectl.chmod(0o755)
  out = tmp_path / "study.yaml"
  r = _run([*_base_args(gin_dir, "gs://b/study"), "--executor=gke",
            "--accelerator=tpu_v5p", "--tpu_topology=2x2x4", "--image=img:1",
            f"--jobset_out={out}", "--gke_apply"], home,
           env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
  assert r.returncode == 0, r.stderr
  docs = list(yaml.safe_load_all(out.read_text()))
  assert len(docs) == 2
  train = docs[1]["spec"]["replicatedJobs"][0]["template"]["spec"]
  assert train["parallelism"] == 4  # 16 chips of v5p = 4 hosts
  command = train["template"]["spec"]["containers"][0]["command"]
  assert command[:3] == ["python", "-m", "sftdiff.train"]
  assert ("--gin.ARM=\"Patch(base='alt', patch='teacher', where='date_mentions')\""
          in command)
  assert (tmp_path / "kubectl.args").read_text().split() == ["apply", "-f", str(out)]
  assert "kubectl apply -f" in r.stdout


def test_gke_needs_an_image(gin_dir, home):
  r = _run([*_base_args(gin_dir, "gs://b/s"), "--executor=gke",
            "--accelerator=tpu_v5e", "--tpu_topology=2x2"], home)
  assert r.returncode == 2 and "needs --image" in r.stderr


def test_local_executor_runs_two_arms_through_xmanager(gin_dir, home, tmp_path,
                                                       fake_binary_env):
  """Two tiny arms through xm_local with a stand-in binary: checkpoints and
  eval outputs appear, the binaries saw the exact ARM strings, and the
  experiment is in XManager's database under HOME."""
  root = tmp_path / "runs"
  r = _run([*_base_args(gin_dir, root), "--executor=local", "--title=smoke",
            f"--train_module={fake_binary_env}", f"--eval_module={fake_binary_env}",
            f"--plan_out={tmp_path / 'plan'}"], home)
  assert r.returncode == 0, (r.stdout, r.stderr)
  assert "2/2 work units finished" in r.stdout
  arms = {"ref": "Source('orig')",
          "patch_in": "Patch(base='alt', patch='teacher', where='date_mentions')"}
  for arm, spec in arms.items():
    model_dir = root / arm / "seed0"
    assert (model_dir / "checkpoints" / "7" / "params").exists()
    train_macros = json.loads((model_dir / "macros.json").read_text())
    assert train_macros["ARM"] == spec and train_macros["SEED"] == 0
    step = model_dir / "checkpoints" / "7"  # the final step, by default
    eval_macros = json.loads((step / "eval" / "macros.json").read_text())
    assert eval_macros["CHECKPOINT_DIR"] == str(step)
  db = sqlite3.connect(home / ".xmanager" / "experiments.sqlite3")
  (experiment_id, title), = db.execute("select * from experiment").fetchall()
  assert title == "smoke"
  units = db.execute("select * from work_unit").fetchall()
  assert len(units) == 4  # 2 arms × (train, eval)
  runs = json.loads((tmp_path / "plan.runs.json").read_text())
  assert [r["arm_name"] for r in runs] == ["ref", "patch_in"]
  assert "-m fake_binary" in (tmp_path / "plan.sh").read_text()


def test_local_executor_reports_a_failed_run(gin_dir, home, tmp_path, fake_binary_env):
  """A binary that fails (here: a module that does not exist) fails its work
  unit; the launcher names it and exits 1."""
  root = tmp_path / "runs"
  r = _run([*_base_args(gin_dir, root)[1:], "--executor=local", "--noeval",
            "--train_module=sftdiff.no_such_module", "--nocheck_gin"], home)
  assert r.returncode == 1, (r.stdout, r.stderr)
  assert "work unit patch_in-seed0 failed in train" in r.stderr
  assert "0/1 work units finished" in r.stdout


@pytest.mark.slow
def test_local_executor_trains_two_tiny_arms_with_the_real_binary(home, tmp_path):
  """The real `python -m sftdiff.train` on the example data and a random tiny
  llama, launched through xm_local from a directory that has a `runs/` folder
  (the model dirs) — the checkpoints of both arms appear."""
  pytest.importorskip("sftdiff.train.__main__",
                      reason="the train binary (sftdiff/train/__main__.py) is missing")
  from sftdiff.data import example_data
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  data, init = home / "rollouts", home / "init"
  example_data.write_example_rollouts(str(data))
  write_test_tokenizer(str(init))
  write_random_hf_checkpoint(init, "llama", vocab_size=ChatTokenizer.from_dir(str(init)).vocab_size)
  r = _run(["--executor=local", "--root_dir=runs", "--title=real-smoke", "--noeval",
            "--arm=alt=Source('alt')",
            "--arm=patch_in=Patch(base='alt', patch='teacher', where='date_mentions')",
            "--gin_file=runs/sft.gin", "--gin_file=data/example.gin",
            f"--gin.DATA_DIR='{data}'", f"--gin.INITIAL_CHECKPOINT='{init}'",
            "--gin.TRAIN_STEPS=1", "--gin.BATCH_SIZE=8", "--gin.SEQ_LEN=32",
            "--gin.CheckpointConfig.save_every=1", "--gin.LoggingConfig.eval_every=0",
            "--gin.LoggingConfig.report_mfu=False",
            "--gin.CheckpointConfig.async_save=False"],
           home, env_extra={"JAX_PLATFORMS": "cpu",
                            "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
           timeout=560)
  assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
  assert "2/2 work units finished" in r.stdout
  for arm, spec in [("alt", "Source('alt')"),
                    ("patch_in", "Patch(base='alt', patch='teacher', where='date_mentions')")]:
    model_dir = home / "runs" / arm / "seed0"
    assert (model_dir / "checkpoints" / "1").is_dir(), sorted(model_dir.rglob("*"))
    assert spec in (model_dir / "config.gin").read_text()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest, "the arm's manifest is empty"


STUDY_GIN = """
import sftdiff.study.config
StudyConfig.name = 'mini study'
StudyConfig.study_dir = '{root}/out'
StudyConfig.bases = {{'orig': '/ckpt/orig'}}
StudyConfig.prompt_sets = {{'ex': {{'prompt_set': 'jsonl:{root}/ex/prompts.jsonl',
                                   'sources': {{'alt': 'jsonl:{root}/ex/alt.jsonl',
                                               'teacher': 'jsonl:{root}/ex/teacher.jsonl'}}}}}}
StudyConfig.arms = {{'ref': {{'base': 'orig', 'prompts': 'ex', 'arm': "Source('alt')"}}}}
StudyConfig.student_base = 'orig'
StudyConfig.student_prompts = 'ex'
StudyConfig.filters = ['date_mentions']
StudyConfig.seeds = [0, 1]
StudyConfig.benchmarks = ['toy_date_confusion']
StudyConfig.train_steps = 3
"""


@pytest.mark.slow
def test_study_gin_file_is_expanded_by_the_study_code(home, tmp_path):
  """--study_gin_file: sftdiff.study loads, prepares (joined store of the
  example data) and expands the study; the plan has its arms × seeds, its
  benchmarks and title; a bad study is a clear error."""
  from sftdiff.data import example_data
  example_data.write_example_rollouts(str(tmp_path / "ex"))
  study = tmp_path / "study.gin"
  study.write_text(STUDY_GIN.format(root=tmp_path))
  r = _run([f"--study_gin_file={study}", "--dry_run", "--eval_gin=JUDGE_KIND='none'"],
           home)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "experiment: mini study (10 work units)" in r.stdout  # (1 + 4 filter arms) × 2
  for name in ("ref-seed1", "patch_in_date_mentions-seed0", "drop_date_mentions-seed1",
               "random_date_mentions-seed0"):
    assert name in r.stdout
  assert r.stdout.count("--gin.BENCHMARKS=\"['toy_date_confusion']\"") == 10
  assert f"--gin.MODEL_DIR=\"'{tmp_path}/out/runs/ref/seed0'\"" in r.stdout
  r = _run([f"--study_gin_file={study}", "--dry_run", "--only_arms=ref,nope"], home)
  assert r.returncode == 2 and "unknown arm(s) nope" in r.stderr


@pytest.mark.slow
def test_shipped_study_with_include_dry_runs(home, tmp_path):
  """The documented form: a shipped study whose file `include`s another (here
  on the tiny world, which the launcher builds to expand the study)."""
  r = _run(["--study_gin_file=studies/toyworld_quick.gin",
            f"--study_gin=STUDY_DIR='{tmp_path / 'study'}'",
            "--study_gin=StudyConfig.world='tiny'", "--eval_gin=JUDGE_KIND='none'",
            "--dry_run"], home)
  assert r.returncode == 0, r.stderr[-3000:]
  # 17 runs, 16 distinct (the two matched-random filter arms are one run) x (train, eval)
  assert "gin check: 32 job(s)" in r.stdout
  assert "patch_in_date_mentions-seed0" in r.stdout
  r = _run(["--study_gin_file=studies/toyworld_quick.gin", "--dry_run"], home)
  assert r.returncode == 2 and "STUDY_DIR" in r.stderr and "Traceback" not in r.stderr


def test_misspelt_override_names_it_before_launch(gin_dir, home, tmp_path):
  r = _run([*_base_args(gin_dir, tmp_path / "runs"), "--gin.LEARNING_RATEE=1", "--dry_run"],
           home)
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert "LEARNING_RATEE" in r.stderr and "closest: LEARNING_RATE" in r.stderr
