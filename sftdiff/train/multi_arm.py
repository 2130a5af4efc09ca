"""Several arms of one base trained in one process.

  python -m sftdiff.train.multi_arm --gin_file=runs/sft.gin ... \
      --arm="--gin.MODEL_DIR='/runs/a' --gin.ARM='Source(\"alt\")' --gin.SEED=0" \
      --arm="--gin.MODEL_DIR='/runs/b' --gin.ARM='Source(\"teacher\")' --gin.SEED=0"
  python -m sftdiff.train.multi_arm --arms_file=arms.json   # {"arms": [[argv...], ...]}

Each arm's argv is exactly what `python -m sftdiff.train` would get (the
shared `--gin_file`/`--gin.` flags come first, then the arm's own), so each
arm keeps its own data stream, seed, manifest and model directory, with the
single-arm layout (config.gin, model_config.json, tokenizer/, manifest.json,
checkpoints/<step>, metrics.jsonl), and eval and study read it unchanged.

`--multi_arm_mode` (default `auto`: `loop` on CPU, where bench/multi_arm.py
measures the vmapped step no faster per arm than the single one at the toy
size, `vmap` on accelerators):
- `vmap`: the arms' states are stacked along a leading axis and one
  compiled step (`multi_arm_steps`) trains them all. Params equal the
  single-arm run's to float32 rounding (see docs/performance.md: a vmapped
  dot is a batched matmul whose reduction order XLA picks separately).
- `loop`: one compiled single-arm step, called once per arm per step:
  bit-identical to single-arm training; saves process start and compilation.
`--arm_axis=data` (vmap only) maps arms onto that mesh axis instead of
replicating the arm axis.

Resume: the arms restart together from their common latest checkpoint.
Exit status as `sftdiff.train` (0, 2 configuration error, 143 preempted).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import shlex
from typing import Any, Sequence

from absl import flags
from absl import logging as absl_logging
import jax
import numpy as np

from sftdiff import cli
from sftdiff import gin_utils
from sftdiff import strict_json
from sftdiff.train import checkpoints
from sftdiff.train import metrics as metrics_lib
from sftdiff.train import multi_arm_config
from sftdiff.train import multi_arm_steps
from sftdiff.train import optim
from sftdiff import partitioning
from sftdiff.train import steps
from sftdiff.train import trainer

log = logging.getLogger(__name__)

MODES = ("auto", "vmap", "loop")

_ARMS = flags.DEFINE_multi_string(
    "arm", [], "One arm's own train flags (shell-quoted), after the shared gin flags.")
_ARMS_FILE = flags.DEFINE_string(
    "arms_file", None, "JSON {\"arms\": [[train argv...], ...]}: one argv per arm.")
_MODE = flags.DEFINE_enum("multi_arm_mode", "auto", MODES, "vmap: one program; loop: one "
                          "compiled single-arm step per arm (bit-identical); auto: loop "
                          "on CPU, vmap on accelerators.")
_ARM_AXIS = flags.DEFINE_string("arm_axis", None, "vmap: the mesh axis the arms map onto "
                                "(default: none, the arm axis is replicated).")


@dataclasses.dataclass
class _Arm:
  """One arm's run: its config, checkpointer, data, metrics."""
  config: multi_arm_config.ArmConfig
  ckpt: checkpoints.Checkpointer
  resume_step: int | None
  model_cfg: Any
  host_params: Any
  data: Any
  writer: Any = None
  throughput: Any = None
  pending_tokens: list = dataclasses.field(default_factory=list)
  last: dict = dataclasses.field(default_factory=dict)

  @property
  def settings(self):
    return self.config.settings


def _write_manifest(model_dir: str, data) -> None:
  # As trainer.train writes it (the data function may have written it already).
  path = pathlib.Path(model_dir) / "manifest.json"
  if not path.exists() and getattr(data, "manifest", None) is not None:
    strict_json.dump(json.loads(json.dumps(data.manifest, default=str)), path)


def _prepare(arm_config, mesh, rules) -> _Arm:
  """Everything `trainer.train` does before its loop, under the arm's gin."""
  s = arm_config.settings
  model_dir = arm_config.model_dir
  primary = jax.process_index() == 0
  with multi_arm_config.activate(arm_config):
    os.makedirs(model_dir, exist_ok=True)
    if primary:
      gin_utils.write_operative_config(model_dir)
    ckpt = checkpoints.Checkpointer(model_dir, save_every=s["checkpoint_every"],
                                    keep=s["keep_checkpoints"],
                                    async_save=s["async_checkpoints"])
    resume_step = ckpt.latest_step()
    tok_dir = checkpoints.find_tokenizer_dir(s["tokenizer_dir"], s["initial_checkpoint"],
                                             model_dir)
    tokenizer = trainer._load_tokenizer(tok_dir)  # pylint: disable=protected-access
    if resume_step is None:
      cfg, host_params = trainer.load_initial_checkpoint(
          s["initial_checkpoint"], s["model_overrides"],
          shardings_fn=lambda c: steps.param_shardings(c, mesh, rules))
    else:
      cfg = trainer.apply_model_overrides(checkpoints.read_model_config(model_dir),
                                          s["model_overrides"])
      host_params = None
    if primary:
      checkpoints.copy_tokenizer(tok_dir, pathlib.Path(model_dir) / checkpoints.TOKENIZER)
      tokenizer.write_chat_template(str(pathlib.Path(model_dir) / checkpoints.TOKENIZER))
      checkpoints.write_model_config(model_dir, cfg)
    data = s["data_fn"](tokenizer, arm=s["arm"], seq_len=s["seq_len"],
                        batch_size=s["batch_size"] // jax.process_count(), seed=s["seed"],
                        shard_index=jax.process_index(), shard_count=jax.process_count(),
                        manifest_dir=model_dir)
    if primary:
      _write_manifest(model_dir, data)
  return _Arm(arm_config, ckpt, resume_step, cfg, host_params, data)


def _check_together(arms: Sequence[_Arm]) -> None:
  first = arms[0]
  for arm in arms[1:]:
    if arm.model_cfg != first.model_cfg:
      raise gin_utils.GinConfigError(
          f"{arm.config.name}: its INITIAL_CHECKPOINT's model differs from "
          f"{first.config.name}'s; arms trained together share one model config")
  resumes = {a.resume_step for a in arms}
  if len(resumes) > 1:
    raise cli.InputError(
        "arms are at different checkpoints (" + ", ".join(
            f"{a.config.model_dir}: {a.resume_step}" for a in arms) +
        "); train them separately, or together only from the same step")


class _Program:
  """The arms' train states and the compiled step(s) that advance them."""

  def __init__(self, arms, cfg, tx, schedule, mesh, rules, *, mode, arm_axis):
    s = arms[0].settings
    self.mode, self.batch_size = mode, s["batch_size"]
    if mode == "vmap":
      self.stacked = multi_arm_steps.build(
          cfg, tx, schedule, mesh, rules, arm_axis=arm_axis, microbatches=s["microbatches"],
          constrain_activations=s["constrain_activations"])
      self.fns = self.stacked.arm_fns
    else:  # exactly the single-arm trainer's step
      self.fns = steps.build(cfg, tx, schedule, mesh, rules, microbatches=s["microbatches"],
                             constrain_activations=s["constrain_activations"])
    states = []
    for arm in arms:
      if arm.resume_step is None:
        states.append(self.fns.init_state(
            steps.put_on_mesh(arm.host_params, self.fns.param_shardings)))
      else:
        abstract = steps.abstract_state(self.fns.state_shardings, steps.state_shapes(tx, cfg))
        states.append(arm.ckpt.restore(arm.resume_step, abstract, arm.data.train))
      arm.host_params = None
    self.state = self.stacked.stack(states) if mode == "vmap" else states

  def step(self, local_batches):
    """One update of every arm -> per-arm metrics (device arrays)."""
    if self.mode == "vmap":
      batch = multi_arm_steps.stacked_batch(local_batches, self.stacked.batch_sharding,
                                            self.batch_size)
      self.state, metrics = self.stacked.train_step(self.state, batch)
      return [jax.tree.map(lambda x, i=i: x[i], metrics) for i in range(len(local_batches))]
    out = []
    for i, local in enumerate(local_batches):
      batch = partitioning.global_batch(local, self.fns.batch_sharding, self.batch_size)
      self.state[i], metrics = self.fns.train_step(self.state[i], batch)
      out.append(metrics)
    return out

  def arm_state(self, i):
    return self.stacked.unstack(self.state, i) if self.mode == "vmap" else self.state[i]


def _save(arm, program, i, step, *, force=False):
  if force or step % arm.ckpt.save_every == 0:
    if arm.ckpt.last_saved_step != step:
      arm.ckpt.save(step, program.arm_state(i), arm.data.train, force=True)


def _log(arm, program, i, step, metrics, is_last):
  s = arm.settings
  arm.pending_tokens.append(metrics["trainable_tokens"])
  evaluate = s["eval_every"] and (step % s["eval_every"] == 0 or is_last)
  if step % s["log_every"] == 0 or is_last:
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    trainable = sum(float(t) for t in jax.device_get(arm.pending_tokens))
    arm.throughput.add(s["batch_size"] * s["seq_len"] * len(arm.pending_tokens), trainable,
                       steps=len(arm.pending_tokens))
    arm.pending_tokens.clear()
    values.update(arm.throughput.report())
    if evaluate:
      values["eval_loss"] = _evaluate(arm, program, i)
    arm.writer.write(step, values)
    arm.last = {"step": step, **values}
    log.info("%s step %d: %s", arm.config.model_dir, step, metrics_lib.format_values(values))
  elif s["eval_every"] and step % s["eval_every"] == 0:
    arm.writer.write(step, {"eval_loss": _evaluate(arm, program, i)})


def _evaluate(arm, program, i) -> float:
  params = program.arm_state(i)["params"]
  return trainer._evaluate(program.fns, params, arm.data,  # pylint: disable=protected-access
                           arm.settings["batch_size"])


def resolve_mode(mode: str, arm_axis: str | None) -> str:
  if mode not in MODES:
    raise gin_utils.GinConfigError(f"--multi_arm_mode={mode!r}; one of {MODES}")
  if mode != "auto":
    return mode
  return "vmap" if arm_axis is not None or jax.default_backend() != "cpu" else "loop"


def train_arms(arm_configs: Sequence[multi_arm_config.ArmConfig], *, mode: str = "auto",
               arm_axis: str | None = None) -> list[dict[str, float]]:
  """Trains the arms together; returns each arm's final metrics (as `trainer.train`)."""
  mode = resolve_mode(mode, arm_axis)
  multi_arm_config.check_shared(arm_configs)
  s = arm_configs[0].settings
  partition_config = s["partition_config"] or partitioning.PartitionConfig()
  mesh = partitioning.make_mesh(partition_config)
  if arm_axis is not None and mode != "vmap":
    raise gin_utils.GinConfigError("--arm_axis needs --multi_arm_mode=vmap")
  if arm_axis is not None:
    if arm_axis not in mesh.shape:
      raise gin_utils.GinConfigError(f"--arm_axis={arm_axis!r} is not a mesh axis "
                                     f"{tuple(mesh.shape)}")
    if len(arm_configs) % mesh.shape[arm_axis]:
      raise gin_utils.GinConfigError(
          f"{len(arm_configs)} arms do not divide over the {mesh.shape[arm_axis]} "
          f"devices of mesh axis {arm_axis!r}")
  rules = multi_arm_steps.rules_without(partition_config.rules, arm_axis)
  trainer._check_batch_layout(  # pylint: disable=protected-access
      s["batch_size"], s["microbatches"], partitioning.batch_divisor(mesh, rules),
      jax.process_count())

  arms = [_prepare(c, mesh, rules) for c in arm_configs]
  _check_together(arms)
  cfg, train_steps = arms[0].model_cfg, s["train_steps"]
  start = arms[0].resume_step or 0
  with multi_arm_config.activate(arm_configs[0]):  # optimiser and loss gin (shared)
    tx, schedule = optim.make_optimizer(train_steps)
    program = _Program(arms, cfg, tx, schedule, mesh, partition_config.rules, mode=mode,
                       arm_axis=arm_axis)
  peak = metrics_lib.peak_flops_per_second()[0] if s["report_mfu"] else float("nan")
  for arm in arms:
    arm.writer = metrics_lib.MetricsWriter(
        arm.config.model_dir, use_wandb=arm.settings["use_wandb"],
        wandb_project=arm.settings["wandb_project"],
        run_name=os.path.basename(arm.config.model_dir),
        config={"arm": arm.settings["arm"], "seed": arm.settings["seed"]})
    arm.throughput = metrics_lib.Throughput(cfg.flops_per_token(s["seq_len"]), peak)
  sigterm = trainer._SigtermFlag()  # pylint: disable=protected-access
  sigterm.install()
  try:
    step = start
    while step < train_steps:
      per_arm = program.step([next(arm.data.train) for arm in arms])
      step += 1
      is_last = step == train_steps
      for i, (arm, metrics) in enumerate(zip(arms, per_arm)):
        _save(arm, program, i, step)
        _log(arm, program, i, step, metrics, is_last)
      if not is_last and sigterm.any_process():
        for i, arm in enumerate(arms):
          _save(arm, program, i, step, force=True)
          arm.ckpt.wait()
        log.warning("preempted: checkpoints of step %d committed; exiting", step)
        raise trainer.Preempted(step)
    for i, arm in enumerate(arms):
      if arm.ckpt.latest_step() != train_steps:
        _save(arm, program, i, train_steps, force=True)
      arm.ckpt.wait()
      if arm.settings["export_hf"]:
        checkpoints.export_hf(arm.config.model_dir, cfg, program.arm_state(i)["params"],
                              dtype=arm.settings["export_dtype"],
                              tokenizer_dir=pathlib.Path(arm.config.model_dir) /
                              checkpoints.TOKENIZER)
  finally:
    sigterm.uninstall()
    for arm in arms:
      if arm.writer is not None:
        arm.writer.close()
      arm.ckpt.close()
  return [arm.last for arm in arms]


def arm_argvs(shared: Sequence[str], arm_flags: Sequence[str],
              arms_file: str | None) -> list[list[str]]:
  """Each arm's full train argv: the shared flags, then its own."""
  own = [shlex.split(a) for a in arm_flags]
  if arms_file:
    try:
      listed = strict_json.load(arms_file)["arms"]
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise cli.InputError(f"--arms_file={arms_file}: {e} (want {{\"arms\": [[argv...]]}})")
    if not (isinstance(listed, list) and all(
        isinstance(a, list) and all(isinstance(x, str) for x in a) for a in listed)):
      raise cli.InputError(f"--arms_file={arms_file}: 'arms' must be a list of argv lists")
    own += listed
  if not own:
    raise gin_utils.GinConfigError("no arms: pass --arm=... (repeatable) or --arms_file=")
  return [[*shared, *a] for a in own]


def _shared_flags() -> list[str]:
  out = [f"--gin_file={f}" for f in flags.FLAGS.gin_file]
  out += [f"--gin_bindings={b}" for b in flags.FLAGS.gin_bindings]
  if flags.FLAGS.gin_search_paths:
    out.append("--gin_search_paths=" + ",".join(flags.FLAGS.gin_search_paths))
  return out


def main(argv):
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  argvs = arm_argvs(_shared_flags(), _ARMS.value, _ARMS_FILE.value)
  configs = [multi_arm_config.load_arm(i, a) for i, a in enumerate(argvs)]
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax is chatty at INFO
  logging.getLogger("sftdiff").setLevel(logging.INFO)
  with multi_arm_config.activate(configs[0]):
    partitioning.initialize_distributed()
  train_arms(configs, mode=_MODE.value, arm_axis=_ARM_AXIS.value or None)


if __name__ == "__main__":
  gin_utils.run(main)
