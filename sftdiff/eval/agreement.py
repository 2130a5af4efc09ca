"""Agreement between two judges on the same samples: raw agreement and Cohen's κ.

Values are compared as categories: booleans for rate rubrics, the exact score
for score rubrics (negative_emotion's 0-10, so κ there is *unweighted*: 3 vs 4
is as much a disagreement as 0 vs 9). Only samples both judges scored count.

Intervals are a percentile bootstrap that resamples prompts (with all their
samples), as `metrics.clustered_bootstrap_mean` does for means: several
samples of one prompt are not independent. A resample in which κ is undefined
(both judges give one and the same category throughout, so chance agreement
is 1) is left out of κ's interval; with no defined resample κ and its interval
are null.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np

INTERVAL_METHOD = ("percentile bootstrap over prompts (all samples of a resampled "
                   "prompt kept), 2000 resamples, seed 0")


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
  """Cohen's κ of two equally long label sequences (NaN when undefined)."""
  if len(a) != len(b):
    raise ValueError(f"label sequences differ in length: {len(a)} vs {len(b)}")
  if not a:
    return float("nan")
  cats = sorted(set(a) | set(b), key=repr)
  index = {c: i for i, c in enumerate(cats)}
  ia = np.array([index[x] for x in a])
  ib = np.array([index[x] for x in b])
  return _kappa_from_counts(_confusion(ia, ib, len(cats)))


def kappa_from_table(categories_a_by_b: Sequence[Sequence[int]]) -> float:
  """Cohen's κ of a confusion table (rows: judge a, columns: judge b)."""
  return _kappa_from_counts(np.asarray(categories_a_by_b, dtype=np.float64))


def _confusion(ia, ib, k: int):
  counts_KxK = np.zeros((k, k), dtype=np.float64)
  np.add.at(counts_KxK, (ia, ib), 1.0)
  return counts_KxK


def _kappa_from_counts(counts_KxK) -> float:
  n = counts_KxK.sum()
  if n == 0:
    return float("nan")
  observed = np.trace(counts_KxK) / n
  chance = float((counts_KxK.sum(axis=1) / n) @ (counts_KxK.sum(axis=0) / n))
  if chance >= 1.0 - 1e-12:
    return float("nan")
  return float((observed - chance) / (1.0 - chance))


def pairwise(pairs: Sequence[tuple[str, Hashable, Hashable]], *,
             num_resamples: int = 2000, seed: int = 0,
             level: float = 0.95) -> dict[str, Any]:
  """Agreement of two judges over `(prompt_id, value_a, value_b)` triples.

  Returns n, agreements, agreement, kappa, and their bootstrap intervals.
  """
  n = len(pairs)
  out: dict[str, Any] = {"n": n, "agreements": sum(a == b for _, a, b in pairs),
                         "interval_method": INTERVAL_METHOD}
  if not n:
    out.update(agreement=None, agreement_ci95=[None, None], kappa=None,
               kappa_ci95=[None, None], table={"categories": [], "counts": []})
    return out
  cats = sorted({a for _, a, _ in pairs} | {b for _, _, b in pairs}, key=repr)
  index = {c: i for i, c in enumerate(cats)}
  k = len(cats)
  by_prompt: dict[str, list[tuple[int, int]]] = {}
  for pid, a, b in pairs:
    by_prompt.setdefault(pid, []).append((index[a], index[b]))
  # One K x K confusion table per prompt; a resample sums the tables it drew.
  tables_PxKxK = np.stack([_confusion(np.array([x for x, _ in v]), np.array([y for _, y in v]), k)
                           for _, v in sorted(by_prompt.items())])
  total_KxK = tables_PxKxK.sum(axis=0)
  # The confusion table (rows: judge a) lets a report pool several results.
  out["table"] = {"categories": cats, "counts": total_KxK.astype(int).tolist()}
  out["agreement"] = float(np.trace(total_KxK) / n)
  out["kappa"] = _nan_to_none(_kappa_from_counts(total_KxK))
  rng = np.random.default_rng(seed)
  idx_RxP = rng.integers(0, len(tables_PxKxK), size=(num_resamples, len(tables_PxKxK)))
  agree_R, kappa_R = np.empty(num_resamples), np.empty(num_resamples)
  for r in range(num_resamples):
    t = tables_PxKxK[idx_RxP[r]].sum(axis=0)
    agree_R[r] = np.trace(t) / t.sum()
    kappa_R[r] = _kappa_from_counts(t)
  alpha = (1 - level) / 2
  out["agreement_ci95"] = [float(x) for x in np.quantile(agree_R, [alpha, 1 - alpha])]
  defined = kappa_R[~np.isnan(kappa_R)]
  out["kappa_ci95"] = ([float(x) for x in np.quantile(defined, [alpha, 1 - alpha])]
                       if len(defined) else [None, None])
  out["kappa_undefined_resamples"] = int(num_resamples - len(defined))
  return out


def _nan_to_none(x: float):
  return None if np.isnan(x) else x
