"""GKE JobSet manifests for multi-host TPU slices."""

import yaml
import pytest

from sftdiff.launch import jobset
from sftdiff.launch import plan as plan_lib
from sftdiff.runs.resources import Resources, check

ARMS = [plan_lib.Arm("patch_in_date_mentions",
                     "Patch(base='alt', patch='teacher', where='date_mentions')"),
        plan_lib.Arm("ref", "Source('orig')")]


def _plan(resources, eval_resources=None):
  runs = plan_lib.runs_from_arms(ARMS, [0, 1], root_dir="gs://bucket/study")
  runs = plan_lib.apply_overrides(runs, [("TRAIN_STEPS", "1000")], {})
  return plan_lib.build_plan(runs, title="Date study", resources=resources,
                             eval_resources=eval_resources,
                             env=(("XLA_FLAGS", "--xla_dump_to=/tmp/x"),))


def _env(container):
  return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_multi_host_jobset_runs_the_same_command_on_every_host():
  train_res = check(Resources("tpu_v5e", tpu_topology="4x4", cpu=100), "gke")
  eval_res = check(Resources("tpu_v5e", tpu_topology="2x2"), "gke")
  plan = _plan(train_res, eval_res)
  text = jobset.render(plan, image="us-docker.pkg.dev/p/r/sftdiff:1",
                       secret_env={"OPENAI_API_KEY": ("openai", "api-key")})
  assert "kubectl apply -f" in text
  docs = list(yaml.safe_load_all(text))
  assert len(docs) == 4
  for doc, wu in zip(docs, plan.work_units):
    assert doc["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and doc["kind"] == "JobSet"
    name = doc["metadata"]["name"]
    assert name == jobset.k8s_name(f"Date study-{wu.name}")
    assert doc["metadata"]["annotations"]["sftdiff/model-dir"] == wu.model_dir
    assert doc["metadata"]["annotations"]["sftdiff/tensorboard-dir"] == wu.tensorboard_dir
    train, evaluation = doc["spec"]["replicatedJobs"]
    spec = train["template"]["spec"]
    # 16 chips of v5e = 4 hosts × 4 chips, one pod per host.
    assert spec["parallelism"] == spec["completions"] == 4
    assert spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "4x4"}
    (container,) = pod["containers"]
    # The per-host command is the plan's train command, argv for argv.
    assert container["command"] == wu.train.argv("python")
    assert f"--gin.ARM={wu.run.arm!r}" in container["command"]
    assert container["image"] == "us-docker.pkg.dev/p/r/sftdiff:1"
    assert container["resources"]["limits"] == {"google.com/tpu": "4"}
    assert container["resources"]["requests"]["cpu"] == "100"
    env = _env(container)
    coordinator = f"{name}-train-0-0.{name}:{jobset.COORDINATOR_PORT}"
    assert env["SFTDIFF_COORDINATOR_ADDRESS"] == coordinator
    assert env["JAX_COORDINATOR_ADDRESS"] == coordinator
    assert env["SFTDIFF_NUM_PROCESSES"] == "4"
    assert env["SFTDIFF_PROCESS_ID"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert env["OPENAI_API_KEY"] == {"secretKeyRef": {"name": "openai", "key": "api-key"}}
    # Eval runs after training completes, on its own single-host slice.
    assert evaluation["dependsOn"] == [{"name": "train", "status": "Complete"}]
    eval_spec = evaluation["template"]["spec"]
    assert eval_spec["parallelism"] == 1
    (eval_container,) = eval_spec["template"]["spec"]["containers"]
    assert eval_container["command"] == wu.eval.argv("python")
    assert "SFTDIFF_COORDINATOR_ADDRESS" not in _env(eval_container)


def test_single_host_slice_has_no_coordinator_and_names_are_unique():
  plan = _plan(check(Resources("tpu_v6e", tpu_topology="2x4"), "gke"))
  docs = list(yaml.safe_load_all(jobset.render(plan, image="img")))
  names = [d["metadata"]["name"] for d in docs]
  assert len(set(names)) == 4
  for name in names:
    assert len(name) <= 40 and name == name.lower()
  container = docs[0]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
      "spec"]["containers"][0]
  assert "SFTDIFF_COORDINATOR_ADDRESS" not in _env(container)
  assert container["resources"]["limits"] == {"google.com/tpu": "8"}


def test_k8s_names():
  assert jobset.k8s_name("My_Study-patch_in.x-seed0") == "my-study-patch-in-x-seed0"
  long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
  assert jobset.k8s_name(long_a) != jobset.k8s_name(long_b)
  assert len(jobset.k8s_name(long_a)) <= 40
  with pytest.raises(plan_lib.LaunchConfigError, match="NAME=SECRET:KEY"):
    jobset.parse_secret_env(["OPENAI_API_KEY=openai"])
  assert jobset.parse_secret_env(["K=s:k"]) == {"K": ("s", "k")}
