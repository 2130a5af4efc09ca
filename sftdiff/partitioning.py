"""Mesh, logical axis rules and shardings (T5X-style partitioning).

The logical axis rules (gin/runs/logical_axis_rules.gin, the one list) are the
only bridge between the model's logical names (`batch, length, embed, mlp,
heads, kv_heads, head_dim, kv, vocab`) and the physical mesh
`(data, fsdp, tensor)`; no code here names a model axis.

`Partitioner(mesh, rules)` carries the pair: `.sharding(logical_axes)` turns a
tree of logical PartitionSpecs into NamedShardings, and `.jit(fn, ...)` returns
a jitted function that runs (and traces) with the mesh and rules active, so
the model's activation constraints apply (T5X's PjitPartitioner and
PjittedFnWithContext). The trainer and the sampler both use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import gin
from gin import config_parser
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
RULES_GIN_FILE = "runs/logical_axis_rules.gin"
_RULES_BINDING = "partitioning.PartitionConfig.logical_axis_rules"

Rules = Sequence[tuple[str, Any]]


def normalise_rules(rules: Rules) -> tuple[tuple[str, Any], ...]:
  """Validated rules as tuples; raises ValueError naming the bad rule."""
  out = []
  for i, rule in enumerate(rules):
    if len(rule) != 2 or not isinstance(rule[0], str):
      raise ValueError(
          f"logical_axis_rules[{i}] = {rule!r}: each rule is (logical_name, "
          f"mesh_axis | (mesh_axes...) | None)")
    target = rule[1]
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    for t in targets:
      if t not in MESH_AXES:
        raise ValueError(
            f"logical_axis_rules[{i}] = {rule!r}: mesh axis {t!r} is not one "
            f"of {MESH_AXES}")
    out.append((rule[0], tuple(target) if isinstance(target, list) else target))
  return tuple(out)


@functools.cache
def default_rules() -> tuple[tuple[str, Any], ...]:
  """The rules bound in gin/runs/logical_axis_rules.gin (the one list), read
  without touching gin's global config; for code that runs without gin."""
  from sftdiff import gin_utils  # JAX-free; only for the gin directory
  path = gin_utils.GIN_DIR / RULES_GIN_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{path}: the logical axis rules file is missing "
                            f"(sftdiff's gin/ directory is not installed)")
  for statement in config_parser.ConfigParser(path.read_text(), None):
    if isinstance(statement, config_parser.BindingStatement) and \
        f"{statement.selector}.{statement.arg_name}".endswith(_RULES_BINDING):
      return normalise_rules(statement.value)
  raise ValueError(f"{path}: no `{_RULES_BINDING} = [...]` binding")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PartitionConfig:
  """How the run is laid out on devices.

  ici_mesh_shape: (data, fsdp, tensor) within a slice; -1 in one position
    takes the remaining devices.
  dcn_mesh_shape: (data, fsdp, tensor) across slices (multi-slice); None for
    a single slice.
  logical_axis_rules: logical name -> mesh axis (or tuple, or None); None:
    the list in gin/runs/logical_axis_rules.gin.
  num_devices: use only the first N devices (None: all); for small runs.
  """
  ici_mesh_shape: Sequence[int] = (-1, 1, 1)
  dcn_mesh_shape: Sequence[int] | None = None
  logical_axis_rules: Rules | None = None
  num_devices: int | None = None

  @property
  def rules(self):
    if self.logical_axis_rules is None:
      return default_rules()
    return normalise_rules(self.logical_axis_rules)


def _resolve_shape(shape: Sequence[int], num_devices: int, what: str) -> tuple[int, ...]:
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(MESH_AXES):
    raise ValueError(f"{what}={shape} must have {len(MESH_AXES)} entries "
                     f"{MESH_AXES}")
  if shape.count(-1) > 1:
    raise ValueError(f"{what}={shape}: at most one entry may be -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"{what}={shape} does not divide {num_devices} devices")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ValueError(f"{what}={shape} needs {math.prod(shape)} devices, "
                     f"{num_devices} available")
  return shape


def make_mesh(config: PartitionConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  if config.num_devices is not None:
    if not 0 < config.num_devices <= len(devices):
      raise ValueError(f"PartitionConfig.num_devices={config.num_devices}: "
                       f"{len(devices)} devices available")
    devices = devices[:config.num_devices]
  if config.dcn_mesh_shape is not None:
    num_slices = len({getattr(d, "slice_index", 0) for d in devices})
    dcn = _resolve_shape(config.dcn_mesh_shape, num_slices, "dcn_mesh_shape")
    ici = _resolve_shape(config.ici_mesh_shape, len(devices) // num_slices,
                         "ici_mesh_shape")
    array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices)
  else:
    ici = _resolve_shape(config.ici_mesh_shape, len(devices), "ici_mesh_shape")
    try:
      array = mesh_utils.create_device_mesh(ici, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
      # CPU and odd topologies: plain row-major order is fine.
      array = np.asarray(devices).reshape(ici)
  return Mesh(array, MESH_AXES)


@contextlib.contextmanager
def tracing_context(mesh: Mesh, rules, constrain_activations: bool = True):
  """Mesh + logical rules active while tracing (for activation constraints).

  Without the mesh, the model's `with_logical_constraint` calls are no-ops
  and XLA propagates shardings from the jit's in/out shardings alone.
  """
  mesh_ctx = jax.set_mesh(mesh) if constrain_activations else contextlib.nullcontext()
  with mesh_ctx, nn.logical_axis_rules(rules):
    yield


def logical_to_sharding(logical_specs, mesh: Mesh, rules):
  """PartitionSpec tree of logical names -> NamedSharding tree."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
  return nn.logical_to_mesh_sharding(PartitionSpec("batch", "length"), mesh, rules)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh, rules) -> int:
  """Number of shards of the batch dimension (global batch must divide)."""
  spec = batch_sharding(mesh, rules).spec[0]
  axes = (spec,) if isinstance(spec, str) else tuple(spec or ())
  return math.prod(mesh.shape[a] for a in axes)


def global_batch(local_batch, sharding: NamedSharding, global_batch_size: int, *,
                 batch_axis: int = 0):
  """Assembles each process's rows into global arrays on the mesh.

  `local_batch`: a pytree of host arrays (the trainer's `data.batch.Batch`)
  whose dimension `batch_axis` holds this process's rows; returns the same
  tree of `jax.Array`s with `global_batch_size` rows there."""
  if jax.process_count() == 1:
    for path, value in jax.tree_util.tree_leaves_with_path(local_batch):
      if np.shape(value)[batch_axis] != global_batch_size:
        raise ValueError(f"batch feature {jax.tree_util.keystr(path)!r} has "
                         f"{np.shape(value)[batch_axis]} rows; the global batch size is "
                         f"{global_batch_size}")
    return jax.device_put(local_batch, sharding)  # one call for all features

  def assemble(value):
    value = np.asarray(value)
    shape = (*value.shape[:batch_axis], global_batch_size, *value.shape[batch_axis + 1:])
    return jax.make_array_from_process_local_data(sharding, value, shape)
  return jax.tree.map(assemble, local_batch)


class Partitioner:
  """A mesh and its logical axis rules, travelling together.

  `rules=None`: the one list (gin/runs/logical_axis_rules.gin).
  `constrain_activations=False`: trace with the rules but without the mesh,
  so the model's activation constraints are no-ops and XLA propagates
  shardings from the jit's in/out shardings alone.
  """

  def __init__(self, mesh: Mesh, rules: Rules | None = None, *,
               constrain_activations: bool = True):
    self.mesh = mesh
    self.rules = default_rules() if rules is None else normalise_rules(rules)
    self.constrain_activations = constrain_activations

  @classmethod
  def from_config(cls, config: PartitionConfig,
                  devices: Sequence[jax.Device] | None = None, **kwargs) -> Partitioner:
    return cls(make_mesh(config, devices), config.rules, **kwargs)

  def sharding(self, logical_axes):
    """A PartitionSpec (or tree of them) of logical names -> NamedSharding(s)."""
    return logical_to_sharding(logical_axes, self.mesh, self.rules)

  @property
  def replicated(self) -> NamedSharding:
    return replicated(self.mesh)

  @property
  def batch_sharding(self) -> NamedSharding:
    return batch_sharding(self.mesh, self.rules)

  @property
  def batch_divisor(self) -> int:
    return batch_divisor(self.mesh, self.rules)

  def context(self):
    return tracing_context(self.mesh, self.rules, self.constrain_activations)

  def jit(self, fn: Callable, in_shardings=None, out_shardings=None,
          donate_argnums: Sequence[int] = (), **jit_kwargs) -> JittedWithContext:
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=tuple(donate_argnums), **jit_kwargs)
    return JittedWithContext(jitted, self)


class JittedWithContext:
  """A jitted function that is called, traced and lowered under its
  partitioner's mesh and rules (T5X's PjittedFnWithContext)."""

  def __init__(self, jitted, partitioner: Partitioner):
    self._jitted = jitted
    self.partitioner = partitioner
    functools.update_wrapper(self, jitted)

  def __call__(self, *args, **kwargs):
    with self.partitioner.context():
      return self._jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with self.partitioner.context():
      return self._jitted.lower(*args, **kwargs)


@gin.configurable
def initialize_distributed(enabled: bool = False,
                           coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           cpu_collectives: str = "gloo") -> None:
  """`jax.distributed.initialize` when asked (gin or SFTDIFF_* env vars).

  Env vars (override gin; what a launcher sets per process):
  SFTDIFF_COORDINATOR_ADDRESS, SFTDIFF_NUM_PROCESSES, SFTDIFF_PROCESS_ID.
  With `enabled` and nothing given, jax auto-detects (TPU pods, SLURM, ...).
  """
  env = os.environ
  coordinator_address = env.get("SFTDIFF_COORDINATOR_ADDRESS", coordinator_address)
  if "SFTDIFF_NUM_PROCESSES" in env:
    num_processes = int(env["SFTDIFF_NUM_PROCESSES"])
  if "SFTDIFF_PROCESS_ID" in env:
    process_id = int(env["SFTDIFF_PROCESS_ID"])
  if not (enabled or coordinator_address):
    return
  if jax.config.jax_platforms in (None, "", "cpu") or env.get("JAX_PLATFORMS") == "cpu":
    # CPU processes need a collectives backend to talk to each other.
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  log.info("jax.distributed.initialize(%s, num_processes=%s, process_id=%s)",
               coordinator_address, num_processes, process_id)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
