"""The local study runner: executes a run plan's work units in subprocesses.

Each work unit is a chain `train → eval`, each stage exactly the plan's
`Job.argv(python)` (`sftdiff.runs.plan`, the argv XManager and JobSet run
too); `parallelism` chains run at once (threads
that each wait on one subprocess). A stage whose outputs exist is skipped
(`stages.py`), so re-running a finished or half-finished study redoes nothing
complete. Every subprocess launch is appended to
`<study_dir>/logs/launches.jsonl`; every stage writes its log beside the run
(`<model_dir>/{train,eval}.log`). A failing stage is reported with its log
path and tail and the other runs go on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

import tqdm

from sftdiff import strict_json
from sftdiff.runs.plan import LaunchPlan, WorkUnit
from sftdiff.runs.spec import RunSpec
from sftdiff.study import stages


@dataclasses.dataclass
class Failure:
  run: str
  stage: str
  error: str
  log: str

  def to_json(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass
class RunnerResult:
  launches: int = 0
  skipped: int = 0
  failures: list[Failure] = dataclasses.field(default_factory=list)


def child_env(study_dir: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
  """Environment of the train/eval subprocesses.

  Each child sees one CPU device (simulated-device flags of a test harness are
  dropped) and shares a persistent XLA compilation cache, so runs with equal
  shapes compile once per study.
  """
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags)
  env.setdefault("JAX_COMPILATION_CACHE_DIR",
                 os.path.join(os.path.abspath(study_dir), ".jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env.setdefault("TOKENIZERS_PARALLELISM", "false")
  env.update(extra or {})
  return env


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


class LocalRunner:
  """Runs a plan's work units locally with bounded parallelism.

  `benchmarks` are those the plan's eval jobs bind (BENCHMARKS): with them
  the runner tells an evaluated unit from one still to evaluate."""

  def __init__(self, plan: LaunchPlan, *, study_dir: str,
               benchmarks: Sequence[str], parallelism: int = 2,
               env: Mapping[str, str] | None = None, python: str = sys.executable,
               log: Callable[[str], None] | None = None):
    if parallelism < 1:
      raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    self.units = list(plan.work_units)
    self.study_dir = study_dir
    self.benchmarks = list(benchmarks)
    self.parallelism = parallelism
    self.env = child_env(study_dir, env)
    self.python = python
    self._lock = threading.Lock()
    self._children: set[subprocess.Popen] = set()
    self._log = log or (lambda msg: tqdm.tqdm.write(msg, file=sys.stderr))
    self.launch_log = os.path.join(study_dir, "logs", "launches.jsonl")

  # ------------------------------------------------------------- planning

  def pending(self) -> list[tuple[WorkUnit, list[str]]]:
    """Work units with work left and their stages, in plan order."""
    out = []
    for wu in self.units:
      todo = []
      if not stages.train_done(wu.run):
        todo.append("train")
      if wu.eval is not None and self.benchmarks and (
          "train" in todo or not stages.eval_done(wu.run, self.benchmarks,
                                                  wu.eval_steps)):
        todo.append("eval")
      if todo:
        out.append((wu, todo))
    return out

  # ------------------------------------------------------------ execution

  def _launch(self, spec: RunSpec, stage: str, cmd: list[str]) -> int:
    log_path = stages.log_path(spec, stage)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with self._lock:
      os.makedirs(os.path.dirname(self.launch_log), exist_ok=True)
      with open(self.launch_log, "a") as f:
        f.write(strict_json.dumps({"time": time.time(), "run": spec.name, "stage": stage,
                            "cmd": cmd, "log": log_path}) + "\n")
    with open(log_path, "a") as log:
      log.write(f"$ {' '.join(cmd)}\n")
      log.flush()
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                              env=self.env, stdin=subprocess.DEVNULL)
      with self._lock:
        self._children.add(proc)
      try:
        return proc.wait()
      finally:
        with self._lock:
          self._children.discard(proc)

  def _stop_children(self) -> None:
    """SIGTERM to every running stage (the trainer checkpoints, then exits)."""
    with self._lock:
      children = list(self._children)
    for proc in children:
      if proc.poll() is None:
        proc.terminate()
    for proc in children:
      try:
        proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        proc.kill()

  def _stage(self, wu: WorkUnit, stage: str) -> Failure | None:
    spec = wu.run
    job = wu.train if stage == "train" else wu.eval
    rc = self._launch(spec, stage, job.argv(self.python))
    log = stages.log_path(spec, stage)
    if rc != 0:
      return Failure(spec.name, stage, f"exit status {rc}", log)
    if stage == "train" and not stages.train_done(spec):
      return Failure(spec.name, stage, "trainer exited 0 but wrote no checkpoint "
                     f"{stages.final_checkpoint(spec)}", log)
    if stage == "eval":
      missing = stages.missing_metrics(spec, self.benchmarks, wu.eval_steps)
      if missing:
        return Failure(spec.name, stage, f"eval exited 0 but left no metrics for "
                       f"{sorted({b for _, b in missing})} (e.g. {missing[0][0]})",
                       log)
    return None

  def run(self) -> RunnerResult:
    result = RunnerResult()
    pending = self.pending()
    result.skipped = len(self.units) - len(pending)
    total = sum(len(todo) for _, todo in pending)
    if result.skipped:
      self._log(f"study: {result.skipped}/{len(self.units)} runs already complete "
                "(final checkpoint and metrics present); skipping them")
    if not total:
      return result
    bar = tqdm.tqdm(total=total, desc="study", unit="stage", file=sys.stderr,
                    dynamic_ncols=True, mininterval=1.0,
                    disable=None)  # the bar only on a terminal; log lines always
    active: dict[str, str] = {}
    progress = {"done": 0}  # counted here: a disabled bar does not count
    start = time.time()

    def chain(wu: WorkUnit, todo: list[str]) -> list[Failure]:
      spec = wu.run
      for i, stage in enumerate(todo):
        with self._lock:
          active[spec.name] = stage
          bar.set_postfix_str(", ".join(f"{s}:{n}" for n, s in sorted(active.items())))
          result.launches += 1
        self._log(f"[{stage}] {spec.name} started (log: {stages.log_path(spec, stage)})")
        t0 = time.time()
        failure = self._stage(wu, stage)
        with self._lock:
          active.pop(spec.name, None)
          step = len(todo) - i if failure else 1
          bar.update(step)
          progress["done"] += step
          done = progress["done"]
          eta = (time.time() - start) / max(done, 1) * (total - done)
        if failure:
          self._log(f"[{stage}] {spec.name} FAILED ({failure.error}); log: "
                    f"{failure.log}\n{_tail(failure.log)}")
          return [failure]
        self._log(f"[{stage}] {spec.name} done in {time.time() - t0:.0f}s "
                  f"({done}/{total} stages; ETA {eta / 60:.1f} min)")
      return []

    pool = concurrent.futures.ThreadPoolExecutor(self.parallelism)
    futures = [pool.submit(chain, wu, todo) for wu, todo in pending]
    try:
      for fut in futures:
        result.failures += fut.result()
    except BaseException:  # Ctrl-C / SIGTERM: do not leave trainers behind
      for fut in futures:
        fut.cancel()
      self._stop_children()
      raise
    finally:
      pool.shutdown(wait=True)
      bar.close()
    return result
