"""Rates with Wilson intervals, means with prompt-clustered bootstrap intervals.

Several samples of one prompt are not independent, so the bootstrap resamples
prompts (with all their samples), not samples. Unscored verdicts are excluded
from the estimate and reported as `unscored` — never counted as 0/"no".
With no scored sample the value is NaN in memory (null in metrics.json, which
is strict JSON) and `<prefix>_reason` says why.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Sequence

import numpy as np

Z95 = 1.959963984540054
NO_SCORED = "no scored samples (all unscored, or none in this group)"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
  """Wilson score interval for a binomial proportion (n == 0 -> (0, 1))."""
  if n < 0 or successes < 0 or successes > n:
    raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
  if n == 0:
    return 0.0, 1.0
  p = successes / n
  denom = 1 + z * z / n
  center = (p + z * z / (2 * n)) / denom
  half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  return max(0.0, center - half), min(1.0, center + half)


def clustered_bootstrap_mean(values_by_cluster: dict[str, Sequence[float]], *,
                             num_resamples: int = 2000, seed: int = 0,
                             level: float = 0.95) -> tuple[float, float, float]:
  """Mean of all values, with a percentile bootstrap CI resampling clusters.

  Returns (mean, lo, hi). The point estimate is the plain mean over samples;
  each resample draws clusters (prompts) with replacement and takes the mean
  over all their samples.
  """
  clusters = [np.asarray(v, dtype=np.float64) for _, v in sorted(values_by_cluster.items())
              if len(v)]
  if not clusters:
    return float("nan"), float("nan"), float("nan")
  sums = np.array([c.sum() for c in clusters])
  counts = np.array([len(c) for c in clusters], dtype=np.float64)
  mean = float(sums.sum() / counts.sum())
  rng = np.random.default_rng(seed)
  idx_RxC = rng.integers(0, len(clusters), size=(num_resamples, len(clusters)))
  boot_R = sums[idx_RxC].sum(axis=1) / counts[idx_RxC].sum(axis=1)
  alpha = (1 - level) / 2
  lo, hi = np.quantile(boot_R, [alpha, 1 - alpha])
  return mean, float(lo), float(hi)


# ------------------------------------------------- metrics over SampleResults

def _scored(rows, rater):
  scored, unscored = [], 0
  for r in rows:
    v = r.verdicts.get(rater)
    if v is None or v.unscored or v.value is None:
      unscored += 1
    else:
      scored.append((r, v))
  return scored, unscored


def rate_metric(rows, rater: str, *, prefix: str | None = None) -> dict[str, Any]:
  """Share of samples whose `rater` verdict is true, with a Wilson 95% CI."""
  prefix = prefix or rater
  scored, unscored = _scored(rows, rater)
  k = sum(bool(v.value) for _, v in scored)
  n = len(scored)
  lo, hi = wilson_interval(k, n)
  out = {f"{prefix}_rate": (k / n) if n else float("nan"),
         f"{prefix}_ci95": [lo, hi], f"{prefix}_n": n,
         f"{prefix}_count": k, f"{prefix}_unscored": unscored}
  if not n:
    out[f"{prefix}_reason"] = NO_SCORED
  return out


def conditional_rate_metric(rows, rater: str, given: str, *,
                            prefix: str | None = None) -> dict[str, Any]:
  """Rate of `rater` among samples where `given` is true (both scored)."""
  prefix = prefix or f"{rater}_given_{given}"
  cond = []
  for r in rows:
    g = r.verdicts.get(given)
    if g is not None and not g.unscored and g.value:
      cond.append(r)
  return rate_metric(cond, rater, prefix=prefix)


def mean_metric(rows, rater: str, *, threshold: float | None = None,
                seed: int = 0, num_resamples: int = 2000,
                prefix: str | None = None) -> dict[str, Any]:
  """Mean score with a prompt-clustered bootstrap CI (+ share >= threshold)."""
  prefix = prefix or rater
  scored, unscored = _scored(rows, rater)
  by_prompt = collections.defaultdict(list)
  for r, v in scored:
    by_prompt[r.prompt_id].append(float(v.value))
  mean, lo, hi = clustered_bootstrap_mean(by_prompt, seed=seed,
                                          num_resamples=num_resamples)
  out = {f"{prefix}_mean": mean, f"{prefix}_ci95": [lo, hi],
         f"{prefix}_n": len(scored), f"{prefix}_num_prompts": len(by_prompt),
         f"{prefix}_unscored": unscored}
  if not scored:
    out[f"{prefix}_reason"] = NO_SCORED
  if threshold is not None:
    k = sum(float(v.value) >= threshold for _, v in scored)
    slo, shi = wilson_interval(k, len(scored))
    tag = f"{prefix}_share_ge_{threshold:g}"
    out.update({tag: (k / len(scored)) if scored else float("nan"),
                f"{tag}_ci95": [slo, shi]})
  return out


def by_subset(rows, metric_fn) -> dict[str, dict[str, Any]]:
  """Applies `metric_fn(rows)` per subset."""
  groups = collections.defaultdict(list)
  for r in rows:
    groups[r.subset].append(r)
  return {s: metric_fn(g) for s, g in sorted(groups.items())}
