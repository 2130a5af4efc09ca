"""The SFT training loop: one gin-configured `train(...)` for every arm.

Resumable: on start it restores the latest committed checkpoint of
`MODEL_DIR/checkpoints` (train state + data iterator), so rerunning the same
command after any kill continues to a bit-identical result. SIGTERM saves a
checkpoint at the current step and exits with status 143 (so supervisors
see a preemption and rerun).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import signal
import threading
from typing import Any, Callable, Mapping

import gin
import jax
import numpy as np

from sftdiff import gin_utils
from sftdiff import layout
from sftdiff import partitioning
from sftdiff.data import batch as batch_lib
from sftdiff.data import manifest as manifest_lib
# Registers `chat_tokenizer.*` (template choice) before gin files are parsed.
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.models import config as model_config_lib
from sftdiff.train import checkpoints
from sftdiff.train import metrics as metrics_lib
from sftdiff.train import optim
from sftdiff.train import run_config
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


def evaluate(fns, params, data: batch_lib.TrainData, batch_size: int) -> float:
  """Mean token loss over `data.eval_batches()` (0.0 when there are none)."""
  loss_sum, tokens = 0.0, 0.0
  for local in data.eval_batches():
    batch = partitioning.global_batch(local, fns.batch_sharding, batch_size)
    l, t = fns.eval_step(params, batch)
    loss_sum += float(l)
    tokens += float(t)
  return loss_sum / max(tokens, 1.0)


@dataclasses.dataclass
class PreparedRun:
  """One arm's run as its loop starts: the model dir is laid out (config.gin,
  tokenizer/, model_config.json, manifest.json), the data stream is built and
  the params are loaded (None when resuming: the checkpoint has everything)."""
  model_dir: str
  ckpt: checkpoints.Checkpointer
  resume_step: int | None
  model_cfg: model_config_lib.ModelConfig
  host_params: Any
  data: batch_lib.TrainData


def write_manifest(model_dir: str, data: batch_lib.TrainData) -> None:
  """The one writer of MODEL_DIR/manifest.json (process 0): the data's manifest."""
  if jax.process_index() == 0:
    manifest_lib.write_manifest(model_dir, data.manifest)


def prepare_run(model_dir: str, *, initial_checkpoint: str, arm: str, seed: int,
                batch_size: int, seq_len: int, data_fn: Callable[..., Any],
                tokenizer_dir: str | None, model_overrides: Mapping[str, Any] | None,
                checkpoint_config: run_config.CheckpointConfig, mesh, rules) -> PreparedRun:
  """Everything before the loop, for `train` and multi-arm training alike."""
  model_dir = str(pathlib.Path(model_dir).absolute())
  os.makedirs(model_dir, exist_ok=True)
  primary = jax.process_index() == 0
  if primary:
    gin_utils.write_operative_config(model_dir)
  ckpt = checkpoints.Checkpointer(model_dir, save_every=checkpoint_config.save_every,
                                  keep=checkpoint_config.keep,
                                  async_save=checkpoint_config.async_save)
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
    checkpoints.copy_tokenizer(tok_dir, layout.tokenizer_dir(model_dir))
    # The template trained with (possibly chosen in gin) goes with the model.
    tokenizer.write_chat_template(layout.tokenizer_dir(model_dir))
    checkpoints.write_model_config(model_dir, cfg)
  data = data_fn(tokenizer, arm=arm, seq_len=seq_len,
                 batch_size=batch_size // jax.process_count(), seed=seed,
                 shard_index=jax.process_index(), shard_count=jax.process_count())
  if not isinstance(data, batch_lib.TrainData):
    raise gin_utils.GinConfigError(
        f"trainer.train.data_fn={getattr(data_fn, '__name__', data_fn)!r} returned a "
        f"{type(data).__name__}, not a sftdiff.data.batch.TrainData (train, "
        "eval_batches(), manifest)")
  write_manifest(model_dir, data)
  return PreparedRun(model_dir, ckpt, resume_step, cfg, host_params, data)


def initial_state(run: PreparedRun, fns: steps.StepFunctions, tx):
  """The train state the loop starts from: the initial params' fresh state, or
  the resume step's (restoring the data iterator with it)."""
  if run.resume_step is None:
    state = fns.init_state(steps.put_on_mesh(run.host_params, fns.param_shardings))
  else:
    abstract = steps.abstract_state(fns.state_shardings, steps.state_shapes(tx, run.model_cfg))
    state = run.ckpt.restore(run.resume_step, abstract, run.data.train)
    log.info("resumed from %s/%d", run.ckpt.directory, run.resume_step)
  run.host_params = None
  return state


def export_hf(run: PreparedRun, params, checkpoint_config: run_config.CheckpointConfig):
  """The final HF export to MODEL_DIR/hf/, when `CheckpointConfig.export_hf`."""
  if checkpoint_config.export_hf:
    checkpoints.export_hf(run.model_dir, run.model_cfg, params,
                          dtype=checkpoint_config.export_dtype,
                          tokenizer_dir=layout.tokenizer_dir(run.model_dir))


def run_log(run: PreparedRun, logging_config: run_config.LoggingConfig, *, arm: str,
            seed: int, batch_size: int, seq_len: int) -> metrics_lib.RunLog:
  return metrics_lib.RunLog(run.model_dir, logging_config,
                            flops_per_token=run.model_cfg.flops_per_token(seq_len),
                            tokens_per_step=batch_size * seq_len,
                            run_config={"arm": arm, "seed": seed})


@gin.configurable(denylist=["model_dir"])
def train(model_dir: str, *, initial_checkpoint: str = gin.REQUIRED, arm: str = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, seed: int = gin.REQUIRED,
          batch_size: int = 32, seq_len: int = 1024, microbatches: int = 1,
          data_fn: Callable[..., Any] = default_data_fn,
          tokenizer_dir: str | None = None,
          model_overrides: Mapping[str, Any] | None = None,
          partition_config: partitioning.PartitionConfig | None = None,
          constrain_activations: bool = True,
          checkpoint_config: run_config.CheckpointConfig | None = None,
          logging_config: run_config.LoggingConfig | None = None) -> dict[str, float]:
  """Trains one arm; returns the final step's metrics (incl. eval_loss).

  `checkpoint_config` / `logging_config`: None builds them from gin's
  `CheckpointConfig.*` / `LoggingConfig.*` bindings."""
  checkpoint_config = run_config.checkpoint_config(checkpoint_config)
  logging_config = run_config.logging_config(logging_config)
  partition_config = partition_config or partitioning.PartitionConfig()
  rules = partition_config.rules
  mesh = partitioning.make_mesh(partition_config)
  _check_batch_layout(batch_size, microbatches, partitioning.batch_divisor(mesh, rules),
                      jax.process_count())
  run = prepare_run(model_dir, initial_checkpoint=initial_checkpoint, arm=arm, seed=seed,
                    batch_size=batch_size, seq_len=seq_len, data_fn=data_fn,
                    tokenizer_dir=tokenizer_dir, model_overrides=model_overrides,
                    checkpoint_config=checkpoint_config, mesh=mesh, rules=rules)
  ckpt, data, cfg = run.ckpt, run.data, run.model_cfg

  tx, schedule = optim.make_optimizer(train_steps)
  fns = steps.build(cfg, tx, schedule, mesh, rules, microbatches=microbatches,
                    constrain_activations=constrain_activations)
  start = run.resume_step or 0
  state = initial_state(run, fns, tx)

  logger = run_log(run, logging_config, arm=arm, seed=seed, batch_size=batch_size,
                   seq_len=seq_len)
  bar = metrics_lib.progress_bar(train_steps, start)
  sigterm = _SigtermFlag()
  sigterm.install()
  try:
    step = start
    while step < train_steps:
      local = next(data.train)
      batch = partitioning.global_batch(local, fns.batch_sharding, batch_size)
      state, step_metrics = fns.train_step(state, batch)
      step += 1
      ckpt.save(step, state, data.train)
      if bar is not None:
        bar.update(1)
      is_last = step == train_steps
      values = logger.after_step(
          step, step_metrics, is_last,
          lambda: evaluate(fns, state["params"], data, batch_size))  # pylint: disable=cell-var-from-loop
      if values is not None and bar is not None:
        bar.set_postfix(loss=f"{values['loss']:.4f}")
      if not is_last and sigterm.any_process():
        ckpt.save(step, state, data.train, force=True)
        ckpt.wait()
        log.warning("preempted: checkpoint of step %d committed; exiting", step)
        raise Preempted(step)
    if ckpt.latest_step() != train_steps:
      ckpt.save(train_steps, state, data.train, force=True)  # no-op if just saved
    ckpt.wait()
    export_hf(run, state["params"], checkpoint_config)
  finally:
    sigterm.uninstall()
    if bar is not None:
      bar.close()
    logger.close()
    ckpt.close()
  return logger.last


gin_utils.register_moved(train, run_config.MOVED)
