"""Reading a study's results: eval metrics per run, manifests, seed pooling.

Eval writes flat metric dicts (`sftdiff.eval.metrics`): a value under
`<name>_rate` / `<name>_mean` / `<name>_share_ge_<t>` with its 95% interval
under `<name>_ci95` (or `<name>_share_ge_<t>_ci95`) and the sample count under
`<name>_n`. A trait is read as `benchmark:metric_key`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping

from sftdiff.study import stats


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A value with its 95% interval; n = samples (summed over seeds);
  method = how the interval was made (study/stats.py: 'sampling' for one
  seed's eval interval, 'seed_t' pooled over seeds). An undefined statistic
  (NaN value, e.g. no scored sample) carries why in `reason`. `upper` is the
  metric's largest possible value (1 for a rate or share; None: unbounded),
  so a pooled interval never claims more than the metric can be."""
  value: float
  lo: float
  hi: float
  n: int = 0
  seeds: int = 1
  method: str = "sampling"
  reason: str = ""
  upper: float | None = None

  @property
  def defined(self) -> bool:
    return math.isfinite(self.value)

  def fmt(self, digits: int = 2) -> str:
    """`0.42 [0.35, 0.49]`, or `undefined (<why>)`: never 'nan'."""
    if not self.defined:
      return f"undefined ({self.reason or 'no value'})"
    if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
      return f"{self.value:.{digits}f} [interval undefined]"
    return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

  def above(self, other: "Estimate") -> bool:
    """Clearly larger: the intervals do not overlap."""
    return self.lo > other.hi

  def overlaps(self, other: "Estimate") -> bool:
    return not (self.lo > other.hi or other.lo > self.hi)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def interval_key(metric: str) -> str:
  for suffix in ("_rate", "_mean"):
    if metric.endswith(suffix):
      return metric[: -len(suffix)] + "_ci95"
  return metric + "_ci95"


def count_key(metric: str) -> str:
  for suffix in ("_rate", "_mean"):
    if metric.endswith(suffix):
      return metric[: -len(suffix)] + "_n"
  return metric.split("_share_ge_")[0] + "_n"


def reason_key(metric: str) -> str:
  """Where eval says why `metric` is undefined (`<prefix>_reason`)."""
  return count_key(metric)[: -len("_n")] + "_reason"


def estimate_from(metrics: Mapping[str, Any], metric: str, where: str = "") -> Estimate:
  """The Estimate of `metric` in a flat metrics dict (or one under 'metrics')."""
  if metric not in metrics and isinstance(metrics.get("metrics"), Mapping):
    metrics = metrics["metrics"]
  if metric not in metrics:
    raise KeyError(f"metric {metric!r} not in {where or 'metrics'}; has "
                   f"{sorted(k for k in metrics if not k.endswith(('_ci95', '_n')))}")
  # Strict JSON writes an undefined statistic as null (with a `_reason`).
  value = _number(metrics[metric])
  lo, hi = metrics.get(interval_key(metric)) or (value, value)
  reason = ""
  if math.isnan(value):
    reason = str(metrics.get(reason_key(metric)) or f"{metric} is null in {where or 'metrics'}")
  return Estimate(value, _number(lo), _number(hi),
                  int(metrics.get(count_key(metric)) or 0), reason=reason,
                  upper=1.0 if _is_proportion(metric) else None)


def _is_proportion(metric: str) -> bool:
  """A share of samples (eval.metrics: `<rater>_rate`, `<rater>_share_ge_<k>`)."""
  return metric.endswith("_rate") or "_share_ge_" in metric


def _number(x) -> float:
  return math.nan if x is None else float(x)


def pool_seeds(estimates: Iterable[Estimate]) -> Estimate | None:
  """One arm's estimate over its seeds (study/stats.py, method `seed_t`).

  The value is the mean over seeds; the interval is a t interval on the seed
  values whose variance is floored by the seeds' own sampling variance, so it
  carries training noise as well as sampling noise (docs/study.md,
  "Intervals"). One seed: its own sampling interval.
  """
  ests = [e for e in estimates if e.defined]
  if not ests:
    return None  # the report says why from the per-seed estimates
  if len(ests) == 1:
    return ests[0]
  lower = 0.0 if all(e.lo >= 0 for e in ests) else -math.inf
  uppers = {e.upper for e in ests}
  upper = uppers.pop() if len(uppers) == 1 else None
  value, lo, hi = stats.seed_t_interval(
      [e.value for e in ests], [e.lo for e in ests], [e.hi for e in ests],
      bounds=(lower, math.inf if upper is None else upper))
  return Estimate(value=value, lo=lo, hi=hi, n=sum(e.n for e in ests),
                  seeds=len(ests), method=stats.SEED_T, upper=upper)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def source_fraction(manifest: Mapping[str, Any], source: str) -> dict[str, float]:
  """Fraction of `source` in an arm's manifest (sftdiff.data.manifest), by
  examples (`fraction_examples`) and by trainable tokens
  (`fraction_trainable_tokens`, absent when the manifest has no token counts).
  """
  out = {}
  for unit, key in (("examples", "fraction_examples"),
                    ("tokens", "fraction_trainable_tokens")):
    fr = manifest.get(key)
    if isinstance(fr, Mapping):
      out[unit] = float(fr.get(source, 0.0))
  if "examples" not in out:
    raise KeyError(f"manifest has no 'fraction_examples'; keys: {sorted(manifest)}")
  return out
