"""The local study runner: train and evaluate every RunSpec in subprocesses.

Each run is a chain `train → eval`; `parallelism` chains run at once (threads
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
import json
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

import tqdm

from sftdiff import strict_json
from sftdiff.study import stages
from sftdiff.study.config import gin_literal
from sftdiff.study.spec import RunSpec


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


def resolve_gin_file(path: str) -> str:
  """A relative gin file as an absolute path, found on the gin search path.

  Children get absolute paths: gin's package-path file reader crashes on a
  relative `runs/...` when the working directory holds a `runs/` directory
  (as after `make demo`), since that imports as a namespace package.
  """
  if os.path.isabs(path):
    return path
  from sftdiff import gin_utils
  for base in gin_utils.search_paths():
    candidate = os.path.join(base, path)
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  return path


def train_command(spec: RunSpec, python: str = sys.executable) -> list[str]:
  args = [f"--gin_file={resolve_gin_file(a[len('--gin_file='):])}"
          if a.startswith("--gin_file=") else a for a in spec.train_args()]
  return [python, "-m", "sftdiff.train", *args]


def eval_command(spec: RunSpec, steps: int, benchmarks: Sequence[str],
                 gin_files: Sequence[str], overrides: Mapping[str, object],
                 python: str = sys.executable) -> list[str]:
  ckpt = stages.final_checkpoint(spec, steps)
  args = [python, "-m", "sftdiff.eval",
          *[f"--gin_file={resolve_gin_file(f)}" for f in gin_files],
          f"--gin.CHECKPOINT_DIR={ckpt!r}",
          f"--gin.BENCHMARKS={gin_literal(list(benchmarks))}"]
  args += [f"--gin.{k}={gin_literal(v)}" for k, v in overrides.items()]
  return args


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


class LocalRunner:
  """Trains and evaluates RunSpecs locally with bounded parallelism."""

  def __init__(self, specs: Sequence[RunSpec], *, study_dir: str, train_steps: int,
               benchmarks: Sequence[str], eval_gin_files: Sequence[str],
               eval_overrides: Mapping[str, object], parallelism: int = 2,
               env: Mapping[str, str] | None = None, python: str = sys.executable,
               log: Callable[[str], None] | None = None):
    if parallelism < 1:
      raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    self.specs = list(specs)
    self.study_dir = study_dir
    self.steps = int(train_steps)
    self.benchmarks = list(benchmarks)
    self.eval_gin_files = list(eval_gin_files)
    self.eval_overrides = dict(eval_overrides)
    self.parallelism = parallelism
    self.env = child_env(study_dir, env)
    self.python = python
    self._lock = threading.Lock()
    self._children: set[subprocess.Popen] = set()
    self._log = log or (lambda msg: tqdm.tqdm.write(msg, file=sys.stderr))
    self.launch_log = os.path.join(study_dir, "logs", "launches.jsonl")

  # ------------------------------------------------------------- planning

  def pending(self) -> list[tuple[RunSpec, list[str]]]:
    """Runs with work left and their stages, in study order."""
    out = []
    for spec in self.specs:
      todo = []
      if not stages.train_done(spec, self.steps):
        todo.append("train")
      if self.benchmarks and ("train" in todo or not stages.eval_done(
          spec, self.steps, self.benchmarks)):
        todo.append("eval")
      if todo:
        out.append((spec, todo))
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

  def _stage(self, spec: RunSpec, stage: str) -> Failure | None:
    if stage == "train":
      cmd = train_command(spec, self.python)
    else:
      missing = stages.missing_benchmarks(spec, self.steps, self.benchmarks)
      cmd = eval_command(spec, self.steps, missing, self.eval_gin_files,
                         self.eval_overrides, self.python)
    rc = self._launch(spec, stage, cmd)
    log = stages.log_path(spec, stage)
    if rc != 0:
      return Failure(spec.name, stage, f"exit status {rc}", log)
    if stage == "train" and not stages.train_done(spec, self.steps):
      return Failure(spec.name, stage, "trainer exited 0 but wrote no checkpoint "
                     f"{stages.final_checkpoint(spec, self.steps)}", log)
    if stage == "eval":
      missing = stages.missing_benchmarks(spec, self.steps, self.benchmarks)
      if missing:
        return Failure(spec.name, stage, f"eval exited 0 but left no metrics for "
                       f"{missing}", log)
    return None

  def run(self) -> RunnerResult:
    result = RunnerResult()
    pending = self.pending()
    result.skipped = len(self.specs) - len(pending)
    total = sum(len(todo) for _, todo in pending)
    if result.skipped:
      self._log(f"study: {result.skipped}/{len(self.specs)} runs already complete "
                "(final checkpoint and metrics present); skipping them")
    if not total:
      return result
    bar = tqdm.tqdm(total=total, desc="study", unit="stage", file=sys.stderr,
                    dynamic_ncols=True, mininterval=1.0,
                    disable=None)  # the bar only on a terminal; log lines always
    active: dict[str, str] = {}
    progress = {"done": 0}  # counted here: a disabled bar does not count
    start = time.time()

    def chain(spec: RunSpec, todo: list[str]) -> list[Failure]:
      for i, stage in enumerate(todo):
        with self._lock:
          active[spec.name] = stage
          bar.set_postfix_str(", ".join(f"{s}:{n}" for n, s in sorted(active.items())))
          result.launches += 1
        self._log(f"[{stage}] {spec.name} started (log: {stages.log_path(spec, stage)})")
        t0 = time.time()
        failure = self._stage(spec, stage)
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
    futures = [pool.submit(chain, spec, todo) for spec, todo in pending]
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
