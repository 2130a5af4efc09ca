"""Timing two or more sides of a comparison in alternating rounds.

The VM's own speed drifts by 15-20% within a minute, so timing one side and
then the other puts that drift into the ratio. Each round here times every
side for `repeats` calls in turn; a side's time is its median over rounds,
and the spread of the per-round ratios shows how far the drift reached."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                rounds: int) -> dict[str, list[float]]:
  """Seconds per call of each side, one entry per round (each warmed up once)."""
  for fn in fns.values():
    fn()
  per_round = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(repeats):
        fn()
      per_round[name].append((time.perf_counter() - start) / repeats)
  return per_round


def median(seconds: list[float]) -> float:
  return statistics.median(seconds)


def ratio_spread(peer: list[float], ours: list[float]) -> tuple[float, float]:
  """(min, max) over rounds of peer time / our time: > 1 means ours is faster."""
  ratios = [p / o for p, o in zip(peer, ours)]
  return min(ratios), max(ratios)
