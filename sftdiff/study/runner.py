"""The local study runner: executes a run plan in subprocesses.

The plan's train groups (`sftdiff.runs.plan.TrainGroup`: one run, or several
sharing one multi-arm process) each run their train job, then their eval job
(one process for every run of the group), each exactly the plan's
`Job.argv(python)` (the argv XManager and JobSet run too). `parallelism`
jobs run at once (threads that each wait on one subprocess); a ready eval
goes before the next training. A stage whose outputs exist is skipped
(`stages.py`), so re-running a finished or half-finished study redoes
nothing complete: a group is pending while any member is untrained; it
reruns as planned when all its members are at one common checkpoint (fresh,
or stopped together by SIGTERM), else each untrained member resumes with its
own single-arm train job (loop-mode multi-arm training is bit-identical to
it). Likewise the group's eval job runs when no member is evaluated yet,
else each unevaluated member's own eval job (the same evaluation); a member
whose training failed is left out by running the others' own eval jobs.

Every subprocess launch is appended to `<study_dir>/logs/launches.jsonl`,
its end (exit status, wall and CPU seconds) to `logs/finished.jsonl`;
every stage writes its log beside the run (`runs/<arm>/seed<k>.{train,eval}.log`;
a grouped job's log is its first member's, and the others' point to it). A
failing job is reported per run it did not finish (a training: every run of
a job that exited nonzero; an evaluation: every run whose metrics are
missing, or all if none is), with its log path and tail, and the other runs
go on.
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
from sftdiff import layout
from sftdiff.runs.plan import Job, LaunchPlan, TrainGroup, WorkUnit
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


def _wait(proc: subprocess.Popen) -> tuple[int, float | None]:
  """Waits for the child: (exit status as Popen reports it, its CPU seconds,
  user + sys, from wait4; None if another thread reaped it first)."""
  try:
    _, status, usage = os.wait4(proc.pid, 0)
  except ChildProcessError:  # reaped by _stop_children's poll()
    return proc.wait(), None
  proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, usage.ru_utime + usage.ru_stime


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


@dataclasses.dataclass(eq=False)
class _Task:
  """One subprocess to run: a train or eval job (for `units`)."""
  stage: str
  job: Job
  units: tuple[WorkUnit, ...]
  after: tuple["_Task", ...] = ()  # the train tasks an eval waits for
  state: str = "waiting"           # waiting | running | done | failed

  @property
  def label(self) -> str:
    first = self.units[0].run.name
    return first if len(self.units) == 1 else f"{first} (+{len(self.units) - 1} runs)"


def _own_evals(units, trains) -> list[_Task]:
  """Each unit's own eval job, after the train tasks that train it."""
  return [_Task("eval", wu.eval, (wu,), tuple(t for t in trains if wu in t.units))
          for wu in units]


class LocalRunner:
  """Runs a plan's jobs locally with bounded parallelism.

  `benchmarks` are those the plan's eval jobs bind (BENCHMARKS): with them
  the runner tells an evaluated unit from one still to evaluate."""

  def __init__(self, plan: LaunchPlan, *, study_dir: str,
               benchmarks: Sequence[str], parallelism: int = 2,
               env: Mapping[str, str] | None = None, python: str = sys.executable,
               log: Callable[[str], None] | None = None):
    if parallelism < 1:
      raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    self.plan = plan
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
    self.finish_log = os.path.join(study_dir, "logs", "finished.jsonl")

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

  def _train_tasks(self, group: TrainGroup, untrained: list[WorkUnit]) -> list[_Task]:
    """The group's own job if it can restart as one, else one per member."""
    if not untrained:
      return []
    together = (len(untrained) == len(group.units) and len({
        tuple(layout.committed_steps(wu.model_dir)[-1:]) for wu in group.units}) == 1)
    if together:
      return [_Task("train", group.train, group.units)]
    return [_Task("train", wu.train, (wu,)) for wu in untrained]

  @staticmethod
  def _eval_tasks(group: TrainGroup, unevaluated: list[WorkUnit],
                  trains: list[_Task]) -> list[_Task]:
    """The group's own eval job if no member is evaluated yet, else one per member."""
    if not unevaluated:
      return []
    if len(unevaluated) == len(group.units):
      return [_Task("eval", group.eval, group.units, tuple(trains))]
    return _own_evals(unevaluated, trains)

  def tasks(self) -> list[_Task]:
    """Every job left to run, in plan order (evals point at their training)."""
    todo = dict((wu.name, stage_list) for wu, stage_list in self.pending())
    out = []
    for group in self.plan.groups:
      untrained = [wu for wu in group.units if "train" in todo.get(wu.name, ())]
      trains = self._train_tasks(group, untrained)
      out += trains
      out += self._eval_tasks(
          group, [wu for wu in group.units if "eval" in todo.get(wu.name, ())], trains)
    return out

  # ------------------------------------------------------------ execution

  def _launch(self, task: _Task) -> tuple[int, str]:
    cmd = task.job.argv(self.python)
    log_path = stages.log_path(task.units[0].run, task.stage)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    record = {"time": time.time(), "run": task.units[0].run.name, "stage": task.stage,
              "cmd": cmd, "log": log_path}
    if len(task.units) > 1:
      record["runs"] = [wu.run.name for wu in task.units]
      record["model_dirs"] = [wu.model_dir for wu in task.units]
    with self._lock:
      os.makedirs(os.path.dirname(self.launch_log), exist_ok=True)
      with open(self.launch_log, "a") as f:
        f.write(strict_json.dumps(record) + "\n")
    done = "trained" if task.stage == "train" else "evaluated"
    for wu in task.units[1:]:
      other = stages.log_path(wu.run, task.stage)
      os.makedirs(os.path.dirname(other), exist_ok=True)
      with open(other, "a") as f:
        f.write(f"{done} in one process with {task.units[0].run.name}: log {log_path}\n")
    with open(log_path, "a") as log:
      log.write(f"$ {' '.join(cmd)}\n")
      log.flush()
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                              env=self.env, stdin=subprocess.DEVNULL)
      with self._lock:
        self._children.add(proc)
      t0 = time.time()
      try:
        rc, cpu_s = _wait(proc)
      finally:
        with self._lock:
          self._children.discard(proc)
    with self._lock:
      with open(self.finish_log, "a") as f:
        f.write(strict_json.dumps({"run": record["run"], "stage": task.stage, "rc": rc,
                                   "wall_s": time.time() - t0, "cpu_s": cpu_s}) + "\n")
    return rc, log_path

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

  def _run_task(self, task: _Task) -> list[Failure]:
    """Runs one job; a failure for each run it did not finish."""
    rc, log = self._launch(task)
    if task.stage == "train":
      together = (f" (one multi-arm job for {len(task.units)} runs)"
                  if len(task.units) > 1 else "")
      if rc != 0:
        return [Failure(wu.run.name, "train", f"exit status {rc}{together}", log)
                for wu in task.units]
      return [Failure(wu.run.name, "train", "trainer exited 0 but wrote no checkpoint "
                      f"{stages.final_checkpoint(wu.run)}{together}", log)
              for wu in task.units if not stages.train_done(wu.run)]
    together = (f" (one eval job for {len(task.units)} runs)"
                if len(task.units) > 1 else "")
    missing = {wu.name: stages.missing_metrics(wu.run, self.benchmarks, wu.eval_steps)
               for wu in task.units}
    if rc != 0:  # the runs it left unevaluated; all of them if it left none
      return [Failure(wu.run.name, "eval", f"exit status {rc}{together}", log)
              for wu in task.units if missing[wu.name] or not any(missing.values())]
    return [Failure(wu.run.name, "eval", f"eval exited 0 but left no metrics for "
                    f"{sorted({b for _, b in missing[wu.name]})} (e.g. "
                    f"{missing[wu.name][0][0]}){together}", log)
            for wu in task.units if missing[wu.name]]

  def run(self) -> RunnerResult:
    result = RunnerResult()
    pending = self.pending()
    result.skipped = len(self.units) - len(pending)
    tasks = self.tasks()
    if result.skipped:
      self._log(f"study: {result.skipped}/{len(self.units)} runs already complete "
                "(final checkpoint and metrics present); skipping them")
    if not tasks:
      return result
    bar = tqdm.tqdm(total=len(tasks), desc="study", unit="stage", file=sys.stderr,
                    dynamic_ncols=True, mininterval=1.0,
                    disable=None)  # the bar only on a terminal; log lines always
    active: dict[str, str] = {}
    changed = threading.Condition(self._lock)
    progress = {"done": 0}  # counted here: a disabled bar does not count
    start = time.time()

    def finish(task: _Task, failed_runs: set[str]) -> None:
      """Under the lock: `task` ended; evals of runs it failed are dropped
      (a group's eval gives way to the other members' own eval jobs)."""
      task.state = "failed" if failed_runs else "done"
      ended = [task]
      for t in list(tasks):
        failed_here = [wu for wu in t.units if wu.run.name in failed_runs]
        if task in t.after and t.state == "waiting" and failed_here:
          t.state = "failed"
          ended.append(t)
          others = _own_evals([wu for wu in t.units if wu not in failed_here], t.after)
          tasks.extend(others)
          bar.total += len(others)
      bar.update(len(ended))
      progress["done"] += len(ended)
      changed.notify_all()

    def next_task() -> _Task | None:
      """Under the lock: a ready eval first, else the next training; None
      when nothing is left (waits while only blocked tasks remain)."""
      while True:
        waiting = [t for t in tasks if t.state == "waiting"]
        if not waiting:
          return None
        # (an eval still waiting after its training failed is of a run it trained)
        ready = [t for t in waiting if all(a.state in ("done", "failed") for a in t.after)]
        if ready:
          task = min(ready, key=lambda t: t.stage != "eval")
          task.state = "running"
          return task
        changed.wait()

    failures: dict[int, list[Failure]] = {}

    def worker() -> None:
      while True:
        with self._lock:
          task = next_task()
          if task is None:
            return
          active[task.label] = task.stage
          bar.set_postfix_str(", ".join(f"{s}:{n}" for n, s in sorted(active.items())))
          result.launches += 1
        log_path = stages.log_path(task.units[0].run, task.stage)
        self._log(f"[{task.stage}] {task.label} started (log: {log_path})")
        t0 = time.time()
        try:
          failed = self._run_task(task)
        except BaseException:
          with self._lock:
            finish(task, {wu.run.name for wu in task.units})
          raise
        with self._lock:
          failures[tasks.index(task)] = failed
          active.pop(task.label, None)
          finish(task, {f.run for f in failed})
          done = progress["done"]
          eta = (time.time() - start) / max(done, 1) * (len(tasks) - done)
        for failure in failed:
          self._log(f"[{task.stage}] {failure.run} FAILED ({failure.error}); log: "
                    f"{failure.log}\n{_tail(failure.log)}")
        if not failed:
          self._log(f"[{task.stage}] {task.label} done in {time.time() - t0:.0f}s "
                    f"({done}/{len(tasks)} stages; ETA {eta / 60:.1f} min)")

    pool = concurrent.futures.ThreadPoolExecutor(self.parallelism)
    futures = [pool.submit(worker) for _ in range(self.parallelism)]
    try:
      for fut in futures:
        fut.result()
      result.failures = [f for i in sorted(failures) for f in failures[i]]
    except BaseException:  # Ctrl-C / SIGTERM: do not leave trainers behind
      with self._lock:
        for t in tasks:
          if t.state == "waiting":
            t.state = "failed"
        changed.notify_all()
      self._stop_children()
      raise
    finally:
      pool.shutdown(wait=True)
      bar.close()
    return result
