"""bench/_load.py: ratios measured on a loaded machine are marked, never recorded."""

import importlib.util
import io
import os
import pathlib
import subprocess
import sys
import time

_PATH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "_load.py"
_spec = importlib.util.spec_from_file_location("bench_load", _PATH)
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)


class FakeMachine:
  """Scripted load average and CPU counters (seconds)."""

  def __init__(self, load1):
    self.load1, self.machine, self.own, self.t = load1, 100.0, 10.0, 0.0

  def run(self, seconds, own_cores, other_cores):
    self.t += seconds
    self.own += own_cores * seconds
    self.machine += (own_cores + other_cores) * seconds

  def guard(self):
    return load.LoadGuard("bench/x.py", stream=io.StringIO(),
                          loadavg=lambda: (self.load1, 0.5, 0.5),
                          machine_busy=lambda: self.machine, own_busy=lambda: self.own,
                          clock=lambda: self.t)


def test_quiet_machine_ratio_is_a_result_even_with_the_bench_busy():
  m = FakeMachine(load1=0.3)
  guard = m.guard()
  m.run(60, own_cores=2.0, other_cores=0.1)  # the bench itself loads both cores
  m.load1 = 2.1  # ... so the load average rises: not held against the run
  text = guard.ratio(1.274)
  assert text.startswith("1.27x (load 2.10, others 0.10 cores)")
  assert guard.loaded_by() is None
  assert guard.record({"ratio": 1.274, "tok_s": 5.0}) == {
      "ratio": 1.274, "tok_s": 5.0,
      "load": {"start": [0.3, 0.5, 0.5], "now": [2.1, 0.5, 0.5],
               "others_cores": 0.1, "under_load": None}}
  guard.finish()
  assert "quiet run" in guard._stream.getvalue()


def test_load_at_start_marks_ratio_and_keeps_it_out_of_records():
  m = FakeMachine(load1=4.5)
  guard = m.guard()
  m.run(10, own_cores=1.0, other_cores=0.0)
  assert guard.ratio(18.3) == f"18.30x [{load.UNDER_LOAD}: load 4.50 at start > 1.0]"
  rec = guard.record({"ratio_vs_torch": 18.3, "sampler_tok_s": 691.3})
  assert rec["ratio_vs_torch"].startswith(load.UNDER_LOAD)
  assert rec["sampler_tok_s"] == 691.3
  guard.finish()
  assert "rerun on a quiet machine" in guard._stream.getvalue()


def test_other_processes_during_the_run_mark_it():
  m = FakeMachine(load1=0.2)
  guard = m.guard()
  m.run(30, own_cores=1.0, other_cores=1.5)
  assert "other processes used 1.50 cores" in guard.ratio(1.0)


def test_without_proc_stat_the_current_load_decides():
  m = FakeMachine(load1=0.2)
  guard = load.LoadGuard("b", stream=io.StringIO(), loadavg=lambda: (m.load1, 0, 0),
                         machine_busy=lambda: None)
  assert guard.loaded_by() is None
  m.load1 = 3.0
  assert guard.loaded_by() == "load 3.00 > 1.0"


def _not_self():
  usage = load.resource.getrusage(load.resource.RUSAGE_SELF)
  return load.own_busy_seconds() - usage.ru_utime - usage.ru_stime


def test_own_busy_counts_live_children():
  before = _not_self()
  child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
  try:
    deadline = time.monotonic() + 60
    while _not_self() - before < 0.3 and time.monotonic() < deadline:
      time.sleep(0.05)
    assert _not_self() - before >= 0.2  # the live child's CPU counts as the bench's
  finally:
    child.kill()
    child.wait()
  assert load.machine_busy_seconds() is None or load.machine_busy_seconds() > 0
  assert len(os.getloadavg()) == 3  # the reader the guard uses by default
