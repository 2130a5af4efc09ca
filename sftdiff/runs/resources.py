"""What a job asks for (accelerator, hosts, CPU, RAM), and which executor can
give it. Pure: no XManager import, so plans and errors work without it.

Accelerator names are XManager's resource names in lower case (`h100`,
`a100_80gib`, `tpu_v3`, `tpu_v5e`, ...) plus `cpu` (no accelerator) and
`local` (whatever this machine has; local executor only).
"""

from __future__ import annotations

import dataclasses
import math

GPUS = ("t4", "p4", "p100", "v100", "a100", "a100_80gib", "l4_24th", "h100",
        "h200", "b200")
# GKE node labels of TPU slices (cloud.google.com/gke-tpu-accelerator).
GKE_TPU_LABELS = {
    "tpu_v4": "tpu-v4-podslice",
    "tpu_v5e": "tpu-v5-lite-podslice",
    "tpu_v5p": "tpu-v5p-slice",
    "tpu_v6e": "tpu-v6e-slice",
}
TPUS = ("tpu_v2", "tpu_v3", *GKE_TPU_LABELS)

# What each executor can run. Open-source XManager's Vertex executor maps only
# TPU v2/v3 (xmanager/cloud/vertex.py); newer slices go through GKE.
SUPPORTED = {
    "local": ("cpu", "local"),
    "vertex": ("cpu", *GPUS, "tpu_v2", "tpu_v3"),
    "gke": tuple(GKE_TPU_LABELS),
}
EXECUTORS = tuple(SUPPORTED)

# Chips per host of a GKE TPU slice; single-host v5e/v6e slices carry up to 8.
_CHIPS_PER_HOST = 4
_SINGLE_HOST_MAX_CHIPS = {"tpu_v5e": 8, "tpu_v6e": 8, "tpu_v4": 4, "tpu_v5p": 4}


class UnsupportedAcceleratorError(ValueError):
  """The chosen executor cannot run the requested accelerator."""


@dataclasses.dataclass(frozen=True)
class Resources:
  """Resources of one job.

  Attributes:
    accelerator: see the module docstring.
    accelerator_count: GPUs (or TPU v2/v3 cores) per job; for GKE TPU slices
      it is derived from `tpu_topology` (chips per host).
    tpu_topology: TPU slice topology, e.g. `2x4` (v5e/v6e) or `2x2x2` (v4/v5p).
    cpu: vCPUs per host (None: the executor's default).
    ram_gib: memory per host in GiB (None: the executor's default).
  """
  accelerator: str = "cpu"
  accelerator_count: int = 0
  tpu_topology: str | None = None
  cpu: float | None = None
  ram_gib: float | None = None

  @property
  def is_tpu_slice(self) -> bool:
    return self.accelerator in GKE_TPU_LABELS

  @property
  def num_chips(self) -> int:
    if not self.tpu_topology:
      return self.accelerator_count
    return math.prod(int(d) for d in self.tpu_topology.split("x"))

  @property
  def num_hosts(self) -> int:
    if not self.is_tpu_slice:
      return 1
    chips = self.num_chips
    if chips <= _SINGLE_HOST_MAX_CHIPS[self.accelerator]:
      return 1
    return chips // _CHIPS_PER_HOST

  @property
  def chips_per_host(self) -> int:
    return self.num_chips // self.num_hosts

  def describe(self) -> str:
    parts = [self.accelerator]
    if self.tpu_topology:
      parts[0] += f" {self.tpu_topology} ({self.num_hosts} host"
      parts[0] += "s)" if self.num_hosts > 1 else ")"
    elif self.accelerator_count:
      parts[0] += f"×{self.accelerator_count}"
    if self.cpu:
      parts.append(f"{self.cpu:g} cpu")
    if self.ram_gib:
      parts.append(f"{self.ram_gib:g}GiB")
    return ", ".join(parts)


def check(resources: Resources, executor: str) -> Resources:
  """Returns `resources` if `executor` can run them, else raises a clear error."""
  if executor not in SUPPORTED:
    raise UnsupportedAcceleratorError(
        f"--executor={executor!r} is not one of {', '.join(EXECUTORS)}")
  acc = resources.accelerator
  known = ("cpu", "local", *GPUS, *TPUS)
  if acc not in known:
    raise UnsupportedAcceleratorError(
        f"--accelerator={acc!r} is not a known accelerator; known: "
        f"{', '.join(known)}")
  if acc not in SUPPORTED[executor]:
    hint = ""
    if executor == "vertex" and acc in GKE_TPU_LABELS:
      hint = (" (open-source XManager's Vertex executor maps only TPU v2/v3; "
              "launch TPU v4/v5e/v5p/v6e slices with --executor=gke)")
    elif executor == "local":
      hint = " (the local executor runs on this machine: use cpu or local)"
    elif executor == "gke":
      hint = (" (--executor=gke emits JobSets for TPU slices; GPUs go "
              "through --executor=vertex)")
    raise UnsupportedAcceleratorError(
        f"--accelerator={acc} is not supported by --executor={executor}; it "
        f"supports {', '.join(SUPPORTED[executor])}{hint}")
  if resources.is_tpu_slice:
    if not resources.tpu_topology:
      raise UnsupportedAcceleratorError(
          f"--accelerator={acc} needs --tpu_topology (e.g. 2x4 or 4x4)")
    try:
      chips = resources.num_chips
    except ValueError:
      raise UnsupportedAcceleratorError(
          f"--tpu_topology={resources.tpu_topology!r} must look like 2x4 or "
          "2x2x2") from None
    if chips > _SINGLE_HOST_MAX_CHIPS[acc] and chips % _CHIPS_PER_HOST:
      raise UnsupportedAcceleratorError(
          f"--tpu_topology={resources.tpu_topology} has {chips} chips, not a "
          f"multiple of {_CHIPS_PER_HOST} chips per host")
    if (resources.accelerator_count
        and resources.accelerator_count != resources.chips_per_host):
      raise UnsupportedAcceleratorError(
          f"--accelerator_count={resources.accelerator_count} contradicts "
          f"--tpu_topology={resources.tpu_topology} ({resources.chips_per_host}"
          " chips per host); leave --accelerator_count unset for TPU slices")
  elif resources.tpu_topology:
    raise UnsupportedAcceleratorError(
        f"--tpu_topology applies to TPU slices ({', '.join(GKE_TPU_LABELS)}), "
        f"not --accelerator={acc}")
  if acc in GPUS + ("tpu_v2", "tpu_v3") and resources.accelerator_count < 1:
    raise UnsupportedAcceleratorError(
        f"--accelerator={acc} needs --accelerator_count >= 1")
  return resources
