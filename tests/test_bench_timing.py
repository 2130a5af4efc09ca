"""bench/_timing.py: every side is timed in alternating rounds, so the host's
drift falls on all sides alike."""

import importlib.util
import pathlib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "_timing.py"
_spec = importlib.util.spec_from_file_location("bench_timing", _PATH)
timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timing)


def test_sides_alternate_round_by_round_after_one_warm_up_each():
  calls = []
  sides = {name: (lambda name=name: calls.append(name)) for name in ("ours", "peer")}
  per_round = timing.interleaved(sides, repeats=2, rounds=3)
  assert calls == ["ours", "peer"] + ["ours", "ours", "peer", "peer"] * 3
  assert {name: len(seconds) for name, seconds in per_round.items()} == {"ours": 3, "peer": 3}
  assert all(s >= 0 for seconds in per_round.values() for s in seconds)


def test_ratio_spread_is_per_round_peer_over_ours():
  assert timing.ratio_spread([2.0, 3.0, 4.0], [1.0, 2.0, 8.0]) == (0.5, 2.0)
  assert timing.median([3.0, 1.0, 2.0]) == 2.0
