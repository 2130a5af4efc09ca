"""orbax checkpoints of the train state + data iterator; params for eval; HF export.

Layout: `MODEL_DIR/checkpoints/<step>/{state,data}`. `state` is the train state
(params, opt_state, step) saved as an orbax PyTree; `data` is the Grain
iterator state, one JSON file per process (Grain's orbax handler). orbax
writes each step into a temporary directory and renames it on commit, so a
step interrupted half-way is never listed as a valid step.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
from typing import Any

import grain.checkpoint as grain_ckpt
import jax
import numpy as np
import orbax.checkpoint as ocp

from sftdiff import layout
from sftdiff import strict_json
from sftdiff.models import config as model_config_lib
from sftdiff.models import decoder

log = logging.getLogger(__name__)

CHECKPOINTS = layout.CHECKPOINTS
MODEL_CONFIG = layout.MODEL_CONFIG
TOKENIZER = layout.TOKENIZER
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json", "tokenizer.model")


class CheckpointNotFoundError(FileNotFoundError):
  """No (committed) checkpoint where one was expected; the message says where."""


class _IteratorState:
  """What Grain's orbax handler saves: a snapshot of an iterator's state.

  Snapshotting at save time keeps the saved state consistent with the saved
  train state even though the save completes asynchronously.
  """

  def __init__(self, state: Any = None):
    if isinstance(state, (bytes, str)):
      self.payload = state if isinstance(state, bytes) else state.encode()
    else:
      self.payload = json.dumps({"json": state}).encode()

  def get_state(self) -> bytes:
    return self.payload

  def set_state(self, payload: bytes) -> None:
    self.payload = payload

  def start_prefetch(self) -> None:
    pass

  def apply_to(self, iterator) -> None:
    try:
      decoded = json.loads(self.payload)
    except ValueError:
      decoded = None
    if isinstance(decoded, dict) and set(decoded) == {"json"}:
      iterator.set_state(decoded["json"])
    else:
      iterator.set_state(self.payload)


class Checkpointer:
  """CheckpointManager for `MODEL_DIR/checkpoints`: async, keep-last-K."""

  def __init__(self, model_dir: str, *, save_every: int, keep: int | None,
               async_save: bool = True, min_replica_slice_bytes: int = 1 << 20):
    """`min_replica_slice_bytes`: replicated arrays are written in parallel by
    their replicas only when each replica's slice is at least this big (tiny
    slices cost more in per-shape slicing programs than they save)."""
    self.directory = pathlib.Path(model_dir).absolute() / CHECKPOINTS
    self.save_every = save_every
    self.last_saved_step = None
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=1, max_to_keep=keep,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    handlers = ocp.type_handlers
    registry = handlers.create_type_handler_registry(
        (int, handlers.ScalarHandler()), (float, handlers.ScalarHandler()),
        (np.number, handlers.ScalarHandler()), (np.ndarray, handlers.NumpyHandler()),
        (str, handlers.StringHandler()),
        (jax.Array, handlers.ArrayHandler(
            min_slice_bytes_for_replica_parallel=min_replica_slice_bytes)))
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"),
        item_handlers={"state": ocp.PyTreeCheckpointHandler(type_handler_registry=registry),
                       "data": grain_ckpt.CheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator, *, force: bool = False) -> bool:
    """Saves (asynchronously) every `save_every` steps, or now with `force`."""
    if (not force and step % self.save_every) or step == self.last_saved_step:
      return False
    self.last_saved_step = step
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeSave(state),
        data=grain_ckpt.CheckpointSave(_IteratorState(data_iterator.get_state()))),
        force=True)

  def restore(self, step: int, abstract_state, data_iterator):
    """Restores the state onto `abstract_state`'s shardings and the iterator."""
    snapshot = _IteratorState()
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(abstract_state, restore_args=restore_args),
        data=grain_ckpt.CheckpointRestore(snapshot)))
    snapshot.apply_to(data_iterator)
    return restored["state"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


# --- model directory files ----------------------------------------------------

def write_model_config(model_dir: str, cfg: model_config_lib.ModelConfig) -> None:
  from sftdiff.models import hf_io
  path = pathlib.Path(model_dir) / MODEL_CONFIG
  strict_json.dump(hf_io.to_hf_config(cfg), path)


def read_model_config(model_dir: str | os.PathLike) -> model_config_lib.ModelConfig:
  from sftdiff.models import hf_io
  path = pathlib.Path(model_dir) / MODEL_CONFIG
  if not path.exists():
    raise CheckpointNotFoundError(f"{path} is missing (written by sftdiff.train at start)")
  try:
    return hf_io.from_hf_config(json.loads(path.read_text()))
  except (ValueError, KeyError) as e:
    raise CheckpointNotFoundError(f"{path}: cannot read the model config: {e}") from e


def copy_tokenizer(source_dir: str | os.PathLike, dest_dir: str | os.PathLike) -> list[str]:
  """Copies the tokenizer files present in `source_dir`; requires tokenizer.json."""
  source_dir, dest_dir = pathlib.Path(source_dir), pathlib.Path(dest_dir)
  if not (source_dir / "tokenizer.json").exists():
    raise CheckpointNotFoundError(f"{source_dir / 'tokenizer.json'} is missing")
  dest_dir.mkdir(parents=True, exist_ok=True)
  copied = []
  for name in TOKENIZER_FILES:
    if (source_dir / name).exists():
      if (source_dir / name).resolve() != (dest_dir / name).resolve():
        shutil.copyfile(source_dir / name, dest_dir / name)
      copied.append(name)
  return copied


def find_tokenizer_dir(*candidates: str | os.PathLike | None) -> pathlib.Path:
  """First of `candidates` (or its `tokenizer/` subdir) holding tokenizer.json."""
  tried = []
  for c in candidates:
    if c is None:
      continue
    for d in (pathlib.Path(c), pathlib.Path(c) / TOKENIZER):
      tried.append(str(d))
      if (d / "tokenizer.json").exists():
        return d
  raise CheckpointNotFoundError(
      "no tokenizer.json found in " + ", ".join(tried) +
      "; set TOKENIZER_DIR (train.tokenizer_dir) to a directory with tokenizer files")


# --- reading params for eval / initialisation -----------------------------------

def resolve_step_dir(path: str | os.PathLike, step: int | None = None
                     ) -> tuple[pathlib.Path, pathlib.Path]:
  """(model_dir, step_dir) for a MODEL_DIR or a `checkpoints/<step>` dir."""
  path = pathlib.Path(path).absolute()
  if (path / "state").is_dir() and path.parent.name == CHECKPOINTS:
    if step is not None and int(path.name) != step:
      raise CheckpointNotFoundError(f"{path} is step {path.name}, not step {step}")
    return path.parent.parent, path
  ckpt_dir = path / CHECKPOINTS
  if not ckpt_dir.is_dir():
    raise CheckpointNotFoundError(
        f"{path} is neither a model directory (no {CHECKPOINTS}/) nor a step "
        f"directory ({CHECKPOINTS}/<step>/state)")
  steps = ocp.utils.checkpoint_steps(ckpt_dir)  # committed steps only
  if not steps:
    raise CheckpointNotFoundError(f"{ckpt_dir} has no committed checkpoint")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise CheckpointNotFoundError(f"{ckpt_dir} has no step {step} (has {sorted(steps)})")
  return path, ckpt_dir / str(step)


def load_params(path: str | os.PathLike, step: int | None = None, *,
                shardings=None, param_dtype: str | None = None):
  """`(ModelConfig, params)` from a trainer's MODEL_DIR or a step directory.

  Reads only the params of the train state. `shardings` (a tree matching the
  params) places them on a mesh; default: the first local device.
  """
  model_dir, step_dir = resolve_step_dir(path, step)
  cfg = read_model_config(model_dir)
  if param_dtype is not None:
    cfg = cfg.replace(param_dtype=param_dtype)
  shapes = jax.eval_shape(lambda: decoder.init_params(cfg, jax.random.key(0)))
  if shardings is None:
    device = jax.local_devices()[0]
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes)
  abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
  with ocp.PyTreeCheckpointer() as ckptr:
    restored = ckptr.restore(
        step_dir / "state",
        args=ocp.args.PyTreeRestore(item={"params": abstract},
                                    restore_args={"params": restore_args},
                                    partial_restore=True))
  return cfg, restored["params"]


def export_hf(model_dir: str | os.PathLike, cfg, params, *, dtype: str = "float32",
              tokenizer_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Writes `MODEL_DIR/hf/` (config.json + safetensors + tokenizer files)."""
  from sftdiff.models import hf_io
  out = pathlib.Path(layout.hf_dir(model_dir))
  if jax.process_count() > 1:  # params may live on other hosts' devices
    from jax.experimental import multihost_utils
    params = multihost_utils.process_allgather(params, tiled=True)
  host_params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), params)
  if jax.process_index() == 0:
    hf_io.save_hf_checkpoint(str(out), cfg, host_params, dtype=dtype)
    copy_tokenizer(tokenizer_dir or pathlib.Path(model_dir) / TOKENIZER, out)
  log.info("exported Hugging Face checkpoint to %s", out)
  return out
