"""Power of the study's verdicts: how many seeds × samples an effect needs.

Model (two levels, docs/study.md "Power planner"). One seed's value of an arm
is its population mean + a training-seed effect (variance σ²_seed) + the
sampling error of its N eval samples (variance σ²_sample / N). An arm run at
S seeds × N samples per seed therefore has

    var(arm mean) = σ²_seed / S + σ²_sample / (S · N).

The decision planned for is the verdict engine's "clearly above"
(verdicts.py): arm a's (1 − α) `seed_t` interval lies entirely above arm b's
(stats.py), i.e. D = (x̄_a − x̄_b) − t(1 − α/2, S − 1) · (ŝ_a + ŝ_b) / √S > 0,
where ŝ² = max(s², σ²_sample / N) is the seed variance floored by the
sampling variance and s² ~ v · χ²(S − 1) / (S − 1) with v = σ²_seed +
σ²_sample / N. With m = E[ŝ] and q = E[ŝ²] (exact moments of the floored
χ², by quadrature over its quantiles) per arm,

    E[D]   = Δ − t · (m_a + m_b) / √S
    var[D] = (v_a + v_b) / S + t² · (q_a − m_a² + q_b − m_b²) / S
    power ≈ Φ(E[D] / √var[D]).

The second variance term is the randomness of the estimated intervals, which
with 2-3 seeds is what costs most power (t(0.975, 1) = 12.7). Checked against
simulated studies that apply the real `seed_t` rule to Bernoulli samples
(tests/study/test_power.py).

`pilot_components` estimates σ²_seed and σ²_sample from a pilot study's
per-seed estimates (each a value and its 95% sampling interval): per arm,
σ²_sample = mean over seeds of n · w (w = ((hi − lo) / 3.92)², the seed's
own sampling variance) and σ²_seed = s²_between − mean w (method of moments:
the seed values' spread already contains their sampling noise), pooled over
arms with weights S − 1 and floored at 0 after pooling. Pooling assumes the
arms' seed variance is alike; a baseline far from them (alt completions at
0.00, whose seeds barely vary) is estimated apart (the planner's
`--baseline`), else the comparison is charged the carriers' seed variance
twice and the power is understated.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from sftdiff.study.stats import Z95

RULE = ("clearly above: the two arms' (1 - alpha) seed_t intervals do not "
        "overlap (sftdiff/study/verdicts.py, stats.py)")
_QUADRATURE = 4000  # χ² quantile midpoints for E[ŝ], E[ŝ²]


@dataclasses.dataclass(frozen=True)
class Components:
  """Variance components of one arm's per-seed value.

  seed_var: σ²_seed, between training seeds (excluding sampling noise).
  sample_var: σ²_sample, of one eval sample (the seed's sampling variance
    is sample_var / N).
  """
  seed_var: float
  sample_var: float

  def __post_init__(self):
    for name in ("seed_var", "sample_var"):
      v = getattr(self, name)
      if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"Components.{name} must be finite and >= 0, got {v}")


def arm_mean_variance(c: Components, seeds: int, samples: int) -> float:
  """var(arm mean) = σ²_seed / S + σ²_sample / (S · N)."""
  return c.seed_var / seeds + c.sample_var / (seeds * samples)


def _floored_sd_moments(c: Components, seeds: int, samples: int) -> tuple[float, float]:
  """(E[ŝ], E[ŝ²]) of ŝ² = max(v · χ²(S−1)/(S−1), σ²_sample/N)."""
  v = c.seed_var + c.sample_var / samples
  floor = c.sample_var / samples
  u = (np.arange(_QUADRATURE) + 0.5) / _QUADRATURE
  s2 = np.maximum(v * sps.chi2.ppf(u, seeds - 1) / (seeds - 1), floor)
  return float(np.sqrt(s2).mean()), float(s2.mean())


def power(effect: float, seeds: int, samples: int, a: Components,
          b: Components | None = None, *, alpha: float = 0.05) -> float:
  """P(arm a is judged clearly above arm b) when its mean is `effect` higher,
  both run at `seeds` seeds × `samples` eval samples per seed."""
  if seeds < 2:
    raise ValueError(f"seed_t intervals need >= 2 seeds, got {seeds}")
  if samples < 1:
    raise ValueError(f"samples per seed must be >= 1, got {samples}")
  if not 0 < alpha < 1:
    raise ValueError(f"alpha must be in (0, 1), got {alpha}")
  b = a if b is None else b
  t = sps.t.ppf(1 - alpha / 2, seeds - 1)
  (ma, qa), (mb, qb) = (_floored_sd_moments(c, seeds, samples) for c in (a, b))
  mean = effect - t * (ma + mb) / math.sqrt(seeds)
  var = (arm_mean_variance(a, seeds, samples) + arm_mean_variance(b, seeds, samples)
         + t * t * (qa - ma * ma + qb - mb * mb) / seeds)
  if var <= 0:  # no noise at all: decided by the effect's sign
    return 1.0 if mean > 0 else 0.0
  return float(sps.norm.cdf(mean / math.sqrt(var)))


def samples_needed(effect: float, seeds: int, target: float, c: Components,
                   b: Components | None = None, *, alpha: float = 0.05,
                   max_samples: int = 1 << 20) -> int | None:
  """The fewest samples per seed giving `target` power at `seeds` seeds (arm
  `c` against arm `b`, default `c`'s own components), or None when even
  `max_samples` do not (the seed variance alone is too big: more seeds are
  needed, not more samples)."""
  if power(effect, seeds, max_samples, c, b, alpha=alpha) < target:
    return None
  lo, hi = 1, max_samples  # power grows with N: bisect
  if power(effect, seeds, lo, c, b, alpha=alpha) >= target:
    return lo
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if power(effect, seeds, mid, c, b, alpha=alpha) >= target:
      hi = mid
    else:
      lo = mid
  return hi


@dataclasses.dataclass(frozen=True)
class SeedEstimate:
  """One seed's value of an arm with its 95% sampling interval and n."""
  value: float
  lo: float
  hi: float
  n: int


def pilot_components(arms: Mapping[str, Sequence[SeedEstimate]]) -> tuple[Components, dict]:
  """Pooled (σ²_seed, σ²_sample) from arms with >= 2 seeds (module docstring);
  returns them and, per arm, what went in. ValueError if no arm has 2 seeds
  or a seed lacks n."""
  between_num = between_den = 0.0
  sample_vars, used = [], {}
  for arm, ests in sorted(arms.items()):
    ests = [e for e in ests if math.isfinite(e.value)]
    if len(ests) < 2:
      continue
    if any(e.n <= 0 for e in ests):
      raise ValueError(f"arm {arm!r}: a seed's estimate has no sample count n")
    w = np.array([((e.hi - e.lo) / (2 * Z95)) ** 2 for e in ests])
    values = np.array([e.value for e in ests])
    s2 = float(values.var(ddof=1))
    sample_var = float(np.mean(w * np.array([e.n for e in ests])))
    between_num += (len(ests) - 1) * (s2 - float(w.mean()))
    between_den += len(ests) - 1
    sample_vars.append(sample_var)
    used[arm] = {"seeds": len(ests), "mean": float(values.mean()),
                 "between_seed_var": s2, "within_seed_var": float(w.mean()),
                 "sample_var": sample_var, "n_per_seed": int(np.mean([e.n for e in ests]))}
  if not used:
    raise ValueError("no arm has estimates from >= 2 seeds: a pilot needs at "
                     "least 2 seeds to separate seed from sampling variance")
  comps = Components(seed_var=max(0.0, between_num / between_den),
                     sample_var=float(np.mean(sample_vars)))
  return comps, used
