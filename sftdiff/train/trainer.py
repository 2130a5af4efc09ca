"""The SFT training loop: one gin-configured `train(...)` for every arm.

Resumable: on start it restores the latest committed checkpoint of
`MODEL_DIR/checkpoints` (train state + data iterator), so rerunning the same
command after any kill continues to a bit-identical result. SIGTERM saves a
checkpoint at the current step and exits with status 143 (so supervisors
see a preemption and rerun).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import threading
from typing import Any, Callable, Mapping

import gin
import jax
import numpy as np

from sftdiff import layout
from sftdiff import strict_json
from sftdiff import gin_utils
# Registers `chat_tokenizer.*` (template choice) before gin files are parsed.
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.models import config as model_config_lib
from sftdiff.train import checkpoints
from sftdiff.train import metrics as metrics_lib
from sftdiff.train import optim
from sftdiff import partitioning
from sftdiff.train import steps

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM
MODEL_OVERRIDABLE = ("dtype", "param_dtype", "remat", "attention_impl")


class Preempted(SystemExit):
  """Raised after the preemption checkpoint is committed."""

  def __init__(self, step: int):
    super().__init__(PREEMPTED_EXIT_CODE)
    self.step = step


class _SigtermFlag:
  def __init__(self):
    self.set = False
    self._previous = None

  def install(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def any_process(self) -> bool:
    """Whether any process got SIGTERM (all must agree to save together)."""
    if jax.process_count() == 1:
      return self.set
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.any(multihost_utils.process_allgather(np.array(self.set))))

  def _handle(self, signum, frame):
    del signum, frame
    log.warning("SIGTERM received: checkpointing at the end of this step")
    self.set = True

  def uninstall(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def default_data_fn(*args, **kwargs):
  from sftdiff.data import train_data  # pylint: disable=g-import-not-at-top
  return train_data.make_train_data(*args, **kwargs)


def _load_tokenizer(directory):
  return tokenizer_lib.load_tokenizer(str(directory))  # gin: chat_tokenizer.*


def apply_model_overrides(cfg, overrides: Mapping[str, Any] | None):
  overrides = dict(overrides or {})
  unknown = sorted(set(overrides) - set(MODEL_OVERRIDABLE))
  if unknown:
    raise gin_utils.GinConfigError(f"train.model_overrides: {unknown} cannot be overridden (the model "
                     f"comes from INITIAL_CHECKPOINT); allowed: {MODEL_OVERRIDABLE}")
  return cfg.replace(**overrides) if overrides else cfg


def load_initial_checkpoint(path: str, overrides=None, shardings_fn=None):
  """(ModelConfig, params) from a Hugging Face dir or an orbax MODEL_DIR/step dir."""
  p = pathlib.Path(path)
  if (p / "config.json").exists():
    from sftdiff.models import hf_io  # pylint: disable=g-import-not-at-top
    overrides = dict(overrides or {})
    apply_model_overrides(model_config_lib.ModelConfig(), overrides)  # validates names
    return hf_io.load_hf_checkpoint(str(p), **overrides)
  if (p / checkpoints.CHECKPOINTS).is_dir() or (p / "state").is_dir():
    model_dir, _ = checkpoints.resolve_step_dir(p)
    cfg = apply_model_overrides(checkpoints.read_model_config(model_dir), overrides)
    shardings = shardings_fn(cfg) if shardings_fn else None
    _, params = checkpoints.load_params(p, shardings=shardings, param_dtype=cfg.param_dtype)
    return cfg, params
  raise checkpoints.CheckpointNotFoundError(
      f"INITIAL_CHECKPOINT={path!r} is neither a Hugging Face directory (config.json) "
      f"nor an orbax model/step directory")


def _check_batch_layout(batch_size, microbatches, divisor, process_count):
  if batch_size % microbatches:
    raise gin_utils.GinConfigError(f"train.batch_size={batch_size} is not divisible by "
                     f"train.microbatches={microbatches}")
  if (batch_size // microbatches) % divisor:
    raise gin_utils.GinConfigError(f"microbatch size {batch_size // microbatches} (train.batch_size / "
                     f"train.microbatches) must be divisible by the {divisor} batch shards "
                     f"of the mesh (data x fsdp)")
  if batch_size % process_count:
    raise gin_utils.GinConfigError(f"train.batch_size={batch_size} is not divisible by the "
                     f"{process_count} processes")


def _evaluate(fns, params, data, batch_size) -> float:
  loss_sum, tokens = 0.0, 0.0
  for local in data.eval_batches():
    batch = partitioning.global_batch(local, fns.batch_sharding, batch_size)
    l, t = fns.eval_step(params, batch)
    loss_sum += float(l)
    tokens += float(t)
  return loss_sum / max(tokens, 1.0)


@gin.configurable(denylist=["model_dir"])
def train(model_dir: str, *, initial_checkpoint: str = gin.REQUIRED, arm: str = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, seed: int = gin.REQUIRED,
          batch_size: int = 32, seq_len: int = 1024, microbatches: int = 1,
          data_fn: Callable[..., Any] = default_data_fn,
          tokenizer_dir: str | None = None,
          model_overrides: Mapping[str, Any] | None = None,
          partition_config: partitioning.PartitionConfig | None = None,
          constrain_activations: bool = True,
          checkpoint_every: int = 100, keep_checkpoints: int | None = 3,
          async_checkpoints: bool = True,
          log_every: int = 10, eval_every: int = 0,
          report_mfu: bool = True,
          export_hf: bool = False, export_dtype: str = "float32",
          use_wandb: bool = False, wandb_project: str | None = None) -> dict[str, float]:
  """Trains one arm; returns the final step's metrics (incl. eval_loss)."""
  model_dir = str(pathlib.Path(model_dir).absolute())
  os.makedirs(model_dir, exist_ok=True)
  primary = jax.process_index() == 0
  if primary:
    gin_utils.write_operative_config(model_dir)
  partition_config = partition_config or partitioning.PartitionConfig()
  rules = partition_config.rules
  mesh = partitioning.make_mesh(partition_config)
  _check_batch_layout(batch_size, microbatches, partitioning.batch_divisor(mesh, rules),
                      jax.process_count())

  ckpt = checkpoints.Checkpointer(model_dir, save_every=checkpoint_every,
                                  keep=keep_checkpoints, async_save=async_checkpoints)
  resume_step = ckpt.latest_step()
  tok_dir = checkpoints.find_tokenizer_dir(tokenizer_dir, initial_checkpoint, model_dir)
  tokenizer = _load_tokenizer(tok_dir)

  if resume_step is None:
    cfg, host_params = load_initial_checkpoint(
        initial_checkpoint, model_overrides,
        shardings_fn=lambda c: steps.param_shardings(c, mesh, rules))
  else:  # the initial params are not needed: the checkpoint has everything
    cfg = apply_model_overrides(checkpoints.read_model_config(model_dir), model_overrides)
    host_params = None
  if primary:
    checkpoints.copy_tokenizer(tok_dir, pathlib.Path(model_dir) / checkpoints.TOKENIZER)
    # The template trained with (possibly chosen in gin) goes with the model.
    tokenizer.write_chat_template(str(pathlib.Path(model_dir) / checkpoints.TOKENIZER))
    checkpoints.write_model_config(model_dir, cfg)

  tx, schedule = optim.make_optimizer(train_steps)
  fns = steps.build(cfg, tx, schedule, mesh, rules, microbatches=microbatches,
                    constrain_activations=constrain_activations)
  data = data_fn(tokenizer, arm=arm, seq_len=seq_len,
                 batch_size=batch_size // jax.process_count(), seed=seed,
                 shard_index=jax.process_index(), shard_count=jax.process_count(),
                 manifest_dir=model_dir)
  manifest_path = pathlib.Path(layout.manifest_path(model_dir))
  if primary and not manifest_path.exists() and getattr(data, "manifest", None) is not None:
    strict_json.dump(json.loads(json.dumps(data.manifest, default=str)), manifest_path)

  if resume_step is None:
    state = fns.init_state(steps.put_on_mesh(host_params, fns.param_shardings))
    start = 0
  else:
    abstract = steps.abstract_state(fns.state_shardings, steps.state_shapes(tx, cfg))
    state = ckpt.restore(resume_step, abstract, data.train)
    start = resume_step
    log.info("resumed from %s/%d", ckpt.directory, resume_step)
  del host_params

  flops_per_token = cfg.flops_per_token(seq_len)
  peak = metrics_lib.peak_flops_per_second()[0] if report_mfu else float("nan")
  writer = metrics_lib.MetricsWriter(model_dir, use_wandb=use_wandb,
                                     wandb_project=wandb_project,
                                     run_name=os.path.basename(model_dir),
                                     config={"arm": arm, "seed": seed})
  throughput = metrics_lib.Throughput(flops_per_token, peak)
  bar = metrics_lib.progress_bar(train_steps, start)
  sigterm = _SigtermFlag()
  sigterm.install()
  last: dict[str, float] = {}
  pending_tokens = []
  try:
    step = start
    while step < train_steps:
      local = next(data.train)
      batch = partitioning.global_batch(local, fns.batch_sharding, batch_size)
      state, step_metrics = fns.train_step(state, batch)
      step += 1
      pending_tokens.append(step_metrics["trainable_tokens"])
      ckpt.save(step, state, data.train)
      if bar is not None:
        bar.update(1)
      is_last = step == train_steps
      if step % log_every == 0 or is_last:
        values = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        trainable = sum(float(t) for t in jax.device_get(pending_tokens))
        throughput.add(batch_size * seq_len * len(pending_tokens), trainable,
                       steps=len(pending_tokens))
        pending_tokens.clear()
        values.update(throughput.report())
        if eval_every and (step % eval_every == 0 or is_last):
          values["eval_loss"] = _evaluate(fns, state["params"], data, batch_size)
        writer.write(step, values)
        last = {"step": step, **values}
        if bar is not None:
          bar.set_postfix(loss=f"{values['loss']:.4f}")
        log.info("step %d: %s", step, metrics_lib.format_values(values))
      elif eval_every and step % eval_every == 0:
        writer.write(step, {"eval_loss": _evaluate(fns, state["params"], data, batch_size)})
      if not is_last and sigterm.any_process():
        ckpt.save(step, state, data.train, force=True)
        ckpt.wait()
        log.warning("preempted: checkpoint of step %d committed; exiting", step)
        raise Preempted(step)
    if ckpt.latest_step() != train_steps:
      ckpt.save(train_steps, state, data.train, force=True)  # no-op if just saved
    ckpt.wait()
    if export_hf:
      checkpoints.export_hf(model_dir, cfg, state["params"], dtype=export_dtype,
                            tokenizer_dir=pathlib.Path(model_dir) / checkpoints.TOKENIZER)
  finally:
    sigterm.uninstall()
    if bar is not None:
      bar.close()
    writer.close()
    ckpt.close()
  return last
