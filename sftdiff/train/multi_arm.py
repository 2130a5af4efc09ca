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

Resume: each arm restarts from its own latest checkpoint; arms that a hard
kill left behind the furthest one catch up alone (the single-arm step) first.
Exit status as `sftdiff.train` (0, 2 configuration error, 143 preempted).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from typing import Any, Sequence

from absl import flags
from absl import logging as absl_logging
import jax

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
  """One arm's run: its config, its prepared run (trainer.prepare_run), its log."""
  config: multi_arm_config.ArmConfig
  run: trainer.PreparedRun
  log: metrics_lib.RunLog | None = None

  @property
  def settings(self):
    return self.config.settings

  @property
  def ckpt(self) -> checkpoints.Checkpointer:
    return self.run.ckpt

  @property
  def data(self):
    return self.run.data


def _prepare(arm_config, mesh, rules) -> _Arm:
  """What `trainer.train` does before its loop (`trainer.prepare_run`), under
  the arm's gin."""
  s = arm_config.settings
  with multi_arm_config.activate(arm_config):
    run = trainer.prepare_run(
        arm_config.model_dir, mesh=mesh, rules=rules,
        **{k: s[k] for k in ("initial_checkpoint", "arm", "seed", "batch_size", "seq_len",
                             "data_fn", "tokenizer_dir", "model_overrides",
                             "checkpoint_config")})
  return _Arm(arm_config, run)


def _check_together(arms: Sequence[_Arm]) -> None:
  first = arms[0]
  for arm in arms[1:]:
    if arm.run.model_cfg != first.run.model_cfg:
      raise gin_utils.GinConfigError(
          f"{arm.config.name}: its INITIAL_CHECKPOINT's model differs from "
          f"{first.config.name}'s; arms trained together share one model config")


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
    # One state per arm until `together()` stacks them (vmap mode).
    self.state = [trainer.initial_state(arm.run, self.fns, tx) for arm in arms]
    self.is_stacked = False

  def step_one(self, i, local):
    """One single-arm update of arm i alone (catching up, before `together`)."""
    batch = partitioning.global_batch(local, self.fns.batch_sharding, self.batch_size)
    self.state[i], metrics = self.fns.train_step(self.state[i], batch)
    return metrics

  def together(self):
    if self.mode == "vmap" and not self.is_stacked:
      self.state = self.stacked.stack(self.state)
      self.is_stacked = True

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
    return self.stacked.unstack(self.state, i) if self.is_stacked else self.state[i]


def _save(arm, program, i, step, *, force=False):
  if force or step % arm.ckpt.save_every == 0:
    if arm.ckpt.last_saved_step != step:
      arm.ckpt.save(step, program.arm_state(i), arm.data.train, force=True)


def _evaluate(arm, program, i) -> float:
  return trainer.evaluate(program.fns, program.arm_state(i)["params"], arm.data,
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
  cfg, train_steps = arms[0].run.model_cfg, s["train_steps"]
  starts = [arm.run.resume_step or 0 for arm in arms]
  start = max(starts)
  with multi_arm_config.activate(arm_configs[0]):  # optimiser and loss gin (shared)
    tx, schedule = optim.make_optimizer(train_steps)
    program = _Program(arms, cfg, tx, schedule, mesh, partition_config.rules, mode=mode,
                       arm_axis=arm_axis)
  for arm in arms:
    arm.log = trainer.run_log(arm.run, arm.settings["logging_config"],
                              **{k: arm.settings[k] for k in ("arm", "seed", "batch_size",
                                                              "seq_len")})
  sigterm = trainer._SigtermFlag()  # pylint: disable=protected-access
  sigterm.install()
  try:
    _catch_up(arms, program, starts, start, train_steps, sigterm)
    program.together()
    step = start
    while step < train_steps:
      per_arm = program.step([next(arm.data.train) for arm in arms])
      step += 1
      is_last = step == train_steps
      for i, (arm, metrics) in enumerate(zip(arms, per_arm)):
        _save(arm, program, i, step)
        arm.log.after_step(step, metrics, is_last,
                           lambda arm=arm, i=i: _evaluate(arm, program, i))
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
      trainer.export_hf(arm.run, program.arm_state(i)["params"],
                        arm.settings["checkpoint_config"])
  finally:
    sigterm.uninstall()
    for arm in arms:
      if arm.log is not None:
        arm.log.close()
      arm.ckpt.close()
  return [arm.log.last for arm in arms]


def _catch_up(arms, program, starts, target, train_steps, sigterm) -> None:
  """Arms behind the furthest one train alone up to its step first.

  A hard kill between two arms' checkpoint saves leaves them at different
  steps; each resumes from its own checkpoint with the single-arm step, so in
  loop mode every arm stays bit-identical to training it alone."""
  at = list(starts)
  for i, arm in enumerate(arms):
    if at[i] < target:
      log.info("%s: resuming at step %d, catching up alone to step %d",
               arm.config.model_dir, at[i], target)
    while at[i] < target:
      metrics = program.step_one(i, next(arm.data.train))
      at[i] += 1
      _save(arm, program, i, at[i])
      arm.log.after_step(at[i], metrics, at[i] == train_steps,
                         lambda arm=arm, i=i: _evaluate(arm, program, i))
      if at[i] < train_steps and sigterm.any_process():
        for j in range(i + 1):  # every arm that moved keeps its progress
          if at[j] > starts[j]:
            _save(arms[j], program, j, at[j], force=True)
            arms[j].ckpt.wait()
        log.warning("preempted while catching up: %s at step %d",
                    arm.config.model_dir, at[i])
        raise trainer.Preempted(at[i])


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
