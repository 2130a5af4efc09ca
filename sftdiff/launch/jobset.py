"""JobSet manifests for GKE TPU slices (v4/v5e/v5p/v6e), which XManager's
Kubernetes executor cannot express (it launches single-pod Jobs with no TPU
slice topology).

One JobSet per train group (one run, or several arms trained by one
multi-arm process): a `train` replicated job with one pod per host of the
slice, every pod running the same command, then one `eval` replicated job
(one process evaluating every run of the group) that starts when training
is Complete (`dependsOn`). Each pod learns its place
from env vars read by `sftdiff.partitioning.initialize_distributed`:
`SFTDIFF_COORDINATOR_ADDRESS` (the first pod's stable DNS name, which JobSet
gives every pod as `<jobset>-<job>-<job index>-<pod index>.<jobset>`),
`SFTDIFF_NUM_PROCESSES` and `SFTDIFF_PROCESS_ID` (the pod's completion index).
The JAX_* equivalents are set too for code that calls jax directly.

Apply with `kubectl apply -f <file>` (needs the JobSet controller installed in
the cluster and a container image holding this repository).
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping, Sequence

import yaml

from sftdiff.launch.plan import Job, LaunchConfigError, LaunchPlan, TrainGroup
from sftdiff.runs.resources import GKE_TPU_LABELS, Resources

API_VERSION = "jobset.x-k8s.io/v1alpha2"
COORDINATOR_PORT = 8476
_COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# JobSet names become pod hostnames `<name>-<job>-<i>-<j>` (≤ 63 chars).
_MAX_NAME = 40


def k8s_name(text: str, *, max_len: int = _MAX_NAME) -> str:
  """An RFC 1123 label from arbitrary text (lower case, '-', bounded)."""
  name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
  name = re.sub(r"-+", "-", name)
  if len(name) > max_len:
    # Keep it unique: a short stable hash of the full text replaces the tail.
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    name = name[:max_len - 7].rstrip("-") + "-" + digest
  if not name:
    raise ValueError(f"cannot make a Kubernetes name from {text!r}")
  return name


def _pod_dns(jobset: str, job: str, pod: int) -> str:
  return f"{jobset}-{job}-0-{pod}.{jobset}"


def _container(job: Job, jobset: str, *, image: str, python: str,
               secret_env: Mapping[str, tuple[str, str]], name: str) -> dict:
  hosts = job.resources.num_hosts
  env = [{"name": k, "value": v} for k, v in job.env]
  if hosts > 1:
    coordinator = f"{_pod_dns(jobset, name, 0)}:{COORDINATOR_PORT}"
    index = {"valueFrom": {"fieldRef": {"fieldPath": _COMPLETION_INDEX}}}
    env += [
        {"name": "SFTDIFF_COORDINATOR_ADDRESS", "value": coordinator},
        {"name": "SFTDIFF_NUM_PROCESSES", "value": str(hosts)},
        {"name": "SFTDIFF_PROCESS_ID", **index},
        {"name": "JAX_COORDINATOR_ADDRESS", "value": coordinator},
    ]
  for name, (secret, key) in sorted(secret_env.items()):
    env.append({"name": name, "valueFrom": {"secretKeyRef": {
        "name": secret, "key": key}}})
  resources = _k8s_resources(job.resources)
  container = {
      "name": name,
      "image": image,
      # argv, not a shell line: gin strings reach the binary verbatim.
      "command": job.argv(python),
      "env": env,
      "resources": resources,
  }
  if hosts > 1:
    container["ports"] = [{"containerPort": COORDINATOR_PORT}]
  return container


def _k8s_resources(r: Resources) -> dict:
  limits: dict[str, str] = {}
  requests: dict[str, str] = {}
  if r.is_tpu_slice:
    limits["google.com/tpu"] = str(r.chips_per_host)
    requests["google.com/tpu"] = str(r.chips_per_host)
  if r.cpu:
    requests["cpu"] = f"{r.cpu:g}"
  if r.ram_gib:
    requests["memory"] = f"{r.ram_gib:g}Gi"
  out = {}
  if requests:
    out["requests"] = requests
  if limits:
    out["limits"] = limits
  return out


def _replicated_job(job: Job, jobset: str, *, image: str, python: str,
                    secret_env: Mapping[str, tuple[str, str]],
                    depends_on: str | None, name: str) -> dict:
  r = job.resources
  hosts = r.num_hosts
  pod_spec = {
      "restartPolicy": "Never",
      "containers": [_container(job, jobset, image=image, python=python,
                                secret_env=secret_env, name=name)],
  }
  if r.is_tpu_slice:
    pod_spec["nodeSelector"] = {
        "cloud.google.com/gke-tpu-accelerator": GKE_TPU_LABELS[r.accelerator],
        "cloud.google.com/gke-tpu-topology": r.tpu_topology,
    }
  replicated = {
      "name": name,
      "replicas": 1,
      "template": {"spec": {
          "parallelism": hosts,
          "completions": hosts,
          "completionMode": "Indexed",
          "backoffLimit": 0,
          "template": {"spec": pod_spec},
      }},
  }
  if depends_on:
    replicated["dependsOn"] = [{"name": depends_on, "status": "Complete"}]
  return replicated


def jobset_manifest(group: TrainGroup, *, experiment: str, image: str,
                    python: str = "python", max_restarts: int = 3,
                    secret_env: Mapping[str, tuple[str, str]] | None = None) -> dict:
  """The JobSet (as a dict) running one train group: train, then each eval."""
  wu = group.units[0]
  name = k8s_name(f"{experiment}-{group.name}")
  secret_env = secret_env or {}
  train = group.train
  jobs = [_replicated_job(train, name, image=image, python=python,
                          secret_env=secret_env, depends_on=None, name=train.name)]
  if group.eval is not None:
    jobs.append(_replicated_job(group.eval, name, image=image, python=python,
                                secret_env=secret_env, depends_on=train.name,
                                name=group.eval.name))
  annotations = {
      # One slice (node pool) per JobSet.
      "alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool",
      "sftdiff/arm": wu.run.arm,
      "sftdiff/model-dir": wu.model_dir,
      "sftdiff/tensorboard-dir": wu.tensorboard_dir,
  }
  if group.is_multi_arm:  # every run the group's train and eval jobs cover
    annotations["sftdiff/runs"] = ",".join(u.run.name for u in group.units)
    annotations["sftdiff/model-dirs"] = ",".join(u.model_dir for u in group.units)
  return {
      "apiVersion": API_VERSION,
      "kind": "JobSet",
      "metadata": {
          "name": name,
          "labels": {"sftdiff/experiment": k8s_name(experiment, max_len=63),
                     "sftdiff/arm": k8s_name(wu.run.arm_name, max_len=63),
                     "sftdiff/seed": str(wu.run.seed)},
          "annotations": annotations,
      },
      "spec": {
          # Preempted slices restart; the trainer resumes from its checkpoint.
          "failurePolicy": {"maxRestarts": max_restarts},
          "network": {"enableDNSHostnames": True},
          "replicatedJobs": jobs,
      },
  }


def render(plan: LaunchPlan, **kwargs) -> str:
  """Every train group's JobSet as one multi-document YAML file."""
  docs = [jobset_manifest(group, experiment=plan.title, **kwargs)
          for group in plan.groups]
  names = [d["metadata"]["name"] for d in docs]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise LaunchConfigError(f"JobSet names collide after Kubernetes normalisation: "
                     f"{', '.join(dupes)}; rename the arms")
  header = (f"# {plan.title}: {len(docs)} JobSet(s). Apply with:\n"
            "#   kubectl apply -f <this file>\n")
  return header + yaml.safe_dump_all(docs, sort_keys=False, width=1000)


def parse_secret_env(items: Sequence[str]) -> dict[str, tuple[str, str]]:
  """`NAME=SECRET:KEY` → {NAME: (SECRET, KEY)} (Kubernetes secretKeyRef)."""
  out = {}
  for item in items:
    name, sep, ref = item.partition("=")
    secret, sep2, key = ref.partition(":")
    if not (sep and sep2 and name and secret and key):
      raise LaunchConfigError(f"--gke_secret_env={item!r} is not NAME=SECRET:KEY")
    out[name] = (secret, key)
  return out
