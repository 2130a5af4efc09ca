"""Seed-aware intervals for an arm's estimate (docs/study.md, "Intervals").

Two methods, named in every table:

* `seed_t` (from per-seed estimates, what eval's flat metrics give): the arm's
  value is the mean of its S seed values; its standard error is
  sqrt(max(s²_between, mean within-seed variance) / S), where s²_between is the
  sample variance of the seed values (it already contains each seed's sampling
  noise) and the within-seed variance is read off each seed's own 95%
  interval ((hi − lo) / 3.92)²; the floor keeps 2-3 nearly equal seeds from
  claiming a precision their samples do not have. The interval is value ±
  t(0.975, S − 1) · se, clipped to `bounds`. Seeds, not samples, are the unit:
  two samples per prompt are never counted as independent seeds.
* `hierarchical_bootstrap` (from per-prompt scores of every seed): resample
  seeds with replacement, then prompts within each drawn seed, B times; the
  interval is the 2.5/97.5 percentiles of the resampled grand means.

With one seed the interval is the eval's own sampling interval (method
`sampling`, 1 seed): it says nothing about training noise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sps

SEED_T = "seed_t"
HIERARCHICAL = "hierarchical_bootstrap"
SAMPLING = "sampling"
Z95 = 1.959963984540054


def seed_t_interval(values_S: Sequence[float], lo_S: Sequence[float],
                    hi_S: Sequence[float], bounds=(0.0, 1.0)
                    ) -> tuple[float, float, float]:
  """(value, lo, hi) over S ≥ 2 seeds, each given as value and 95% interval."""
  v = np.asarray(values_S, dtype=float)
  if v.size < 2:
    raise ValueError(f"seed_t_interval needs >= 2 seeds, got {v.size}")
  within = ((np.asarray(hi_S, float) - np.asarray(lo_S, float)) / (2 * Z95)) ** 2
  se = np.sqrt(max(v.var(ddof=1), within.mean()) / v.size)
  half = sps.t.ppf(0.975, v.size - 1) * se
  mean = float(v.mean())
  return mean, float(max(bounds[0], mean - half)), float(min(bounds[1], mean + half))


def seed_t_interval_batch(values_NxS: np.ndarray, within_var_NxS: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Vectorised `seed_t_interval` for N studies at once (no clipping)."""
  S = values_NxS.shape[1]
  mean = values_NxS.mean(axis=1)
  var = np.maximum(values_NxS.var(axis=1, ddof=1), within_var_NxS.mean(axis=1))
  half = sps.t.ppf(0.975, S - 1) * np.sqrt(var / S)
  return mean, mean - half, mean + half


def hierarchical_bootstrap(scores_SxP: np.ndarray, *, num_boot: int = 2000,
                           seed: int = 0) -> tuple[float, float, float]:
  """(value, lo, hi): seeds resampled, then prompts within each drawn seed.

  scores_SxP: one score per seed and prompt (samples of a prompt averaged).
  """
  scores_SxP = np.asarray(scores_SxP, dtype=float)
  S, P = scores_SxP.shape
  rng = np.random.default_rng(seed)
  seeds_BxS = rng.integers(0, S, size=(num_boot, S))
  prompts_BxSxP = rng.integers(0, P, size=(num_boot, S, P))
  drawn_BxSxP = scores_SxP[seeds_BxS[:, :, None], prompts_BxSxP]
  means_B = drawn_BxSxP.mean(axis=(1, 2))
  lo, hi = np.percentile(means_B, [2.5, 97.5])
  return float(scores_SxP.mean()), float(lo), float(hi)
