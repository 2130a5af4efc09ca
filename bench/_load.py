"""Load-average guard shared by the bench scripts.

Ratios measured while other jobs share the CPU say more about the scheduler
than about the code (at load 15-20 torch's threads suffered far more than
XLA's, which turned a 1.3x sampler into "18x"). Every bench makes one
`LoadGuard`: it prints `os.getloadavg()` when the bench starts and when it
finishes, and `guard.ratio(x)` formats a ratio for printing, marked
"UNDER LOAD — not a result" when the machine was loaded; `guard.record(d)`
keeps such ratios out of any results file a bench writes.

"Loaded" means either the 1-minute load average at start exceeded
`QUIET_LOAD` (other work was running before the bench began), or other
processes used more than `QUIET_LOAD` cores on average while it ran. The
second figure is the machine's busy CPU time (/proc/stat) minus this
process tree's own, so the bench's own threads, which push the load average
itself to ~2 on a 2-core machine, do not count against it. Where /proc/stat
is missing, the load average at the time of the check is used instead.
"""

from __future__ import annotations

import os
import resource
import sys
import time

QUIET_LOAD = 1.0
UNDER_LOAD = "UNDER LOAD — not a result"


def machine_busy_seconds() -> float | None:
  """CPU seconds every core spent busy since boot (user, nice, system, irq,
  softirq, steal), or None where /proc/stat is unavailable."""
  try:
    with open("/proc/stat") as f:
      fields = f.readline().split()
  except OSError:
    return None
  user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _live_descendants(pid: int) -> list[int]:
  kids = []
  try:
    for tid in os.listdir(f"/proc/{pid}/task"):
      with open(f"/proc/{pid}/task/{tid}/children") as f:
        kids += [int(k) for k in f.read().split()]
  except OSError:
    return []
  return kids + [d for k in kids for d in _live_descendants(k)]


def own_busy_seconds() -> float:
  """CPU seconds of this process, its reaped children and its live descendants."""
  total = 0.0
  for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
    usage = resource.getrusage(who)
    total += usage.ru_utime + usage.ru_stime
  tick = os.sysconf("SC_CLK_TCK")
  for pid in _live_descendants(os.getpid()):
    try:
      with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
      total += (int(stat[11]) + int(stat[12])) / tick  # utime, stime
    except (OSError, IndexError, ValueError):
      continue
  return total


def _fmt(load) -> str:
  return "%.2f %.2f %.2f" % tuple(load)


class LoadGuard:
  """`guard = LoadGuard("bench/x.py")` at the start of a bench, `guard.ratio(r)`
  for each printed ratio, `guard.finish()` at the end. The readers are
  injectable for tests."""

  def __init__(self, name: str, *, stream=None, loadavg=os.getloadavg,
               machine_busy=machine_busy_seconds, own_busy=own_busy_seconds,
               clock=time.monotonic):
    self.name, self._stream = name, stream or sys.stdout
    self._loadavg, self._machine_busy, self._own_busy = loadavg, machine_busy, own_busy
    self._clock = clock
    self.start_load = tuple(loadavg())
    self._t0, self._machine0, self._own0 = clock(), machine_busy(), own_busy()
    self._print(f"load average at start (1/5/15 min): {_fmt(self.start_load)}")

  def _print(self, msg):
    print(f"[{self.name}] {msg}", file=self._stream, flush=True)

  def others_cores(self) -> float | None:
    """Mean cores used by processes outside this bench since it started."""
    machine = self._machine_busy()
    elapsed = self._clock() - self._t0
    if machine is None or self._machine0 is None or elapsed <= 0:
      return None
    other = (machine - self._machine0) - (self._own_busy() - self._own0)
    return max(0.0, other / elapsed)

  def loaded_by(self) -> str | None:
    """Why this run is not quiet, or None when it is."""
    if self.start_load[0] > QUIET_LOAD:
      return f"load {self.start_load[0]:.2f} at start > {QUIET_LOAD}"
    others = self.others_cores()
    if others is None:
      now = self._loadavg()[0]
      return f"load {now:.2f} > {QUIET_LOAD}" if now > QUIET_LOAD else None
    if others > QUIET_LOAD:
      return f"other processes used {others:.2f} cores > {QUIET_LOAD}"
    return None

  def ratio(self, value: float, fmt: str = "{:.2f}x") -> str:
    """`value` formatted for printing, with the load beside it, or marked
    UNDER LOAD when the machine was loaded."""
    text = fmt.format(value)
    why = self.loaded_by()
    if why:
      return f"{text} [{UNDER_LOAD}: {why}]"
    others = self.others_cores()
    beside = f", others {others:.2f} cores" if others is not None else ""
    return f"{text} (load {self._loadavg()[0]:.2f}{beside})"

  def recordable(self, ratio):
    """`ratio` itself on a quiet machine, else the marker string in its place."""
    why = self.loaded_by()
    return f"{UNDER_LOAD}: {why}" if why else ratio

  def record(self, results: dict) -> dict:
    """A copy of `results` fit for a results file: the load beside it, and
    under load every value whose key names a ratio replaced by the marker."""
    out = {k: (self.recordable(v) if "ratio" in k else v) for k, v in results.items()}
    out["load"] = self.summary()
    return out

  def summary(self) -> dict:
    return {"start": list(self.start_load), "now": list(self._loadavg()),
            "others_cores": self.others_cores(), "under_load": self.loaded_by()}

  def finish(self) -> None:
    others = self.others_cores()
    self._print(f"load average at end (1/5/15 min): {_fmt(self._loadavg())}"
                + (f"; other processes used {others:.2f} cores on average" if others is not None
                   else ""))
    why = self.loaded_by()
    self._print(f"{UNDER_LOAD} ({why}): rerun on a quiet machine" if why
                else "quiet run: the ratios above are results")
