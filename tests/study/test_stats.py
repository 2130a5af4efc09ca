"""Coverage of the seed-aware intervals on simulated studies with seed variance."""

import numpy as np
import pytest

from sftdiff.study import stats

P_TRUE, TAU, PROMPTS, SAMPLES = 0.3, 0.5, 64, 2


def _logit(p):
  return np.log(p / (1 - p))


def _expit(x):
  return 1 / (1 + np.exp(-x))


def _truth():
  # the population mean over training seeds: E[expit(logit p + tau z)]
  z, w = np.polynomial.hermite_e.hermegauss(80)
  return float(np.sum(w * _expit(_logit(P_TRUE) + TAU * z)) / np.sum(w))


def _simulate(rng, studies, seeds):
  """Per-prompt rates (studies × seeds × prompts): each seed shifts the logit,
  each prompt has its own difficulty, samples are Bernoulli."""
  seed_NxS = TAU * rng.standard_normal((studies, seeds))
  prompt_NxSxP = 0.3 * rng.standard_normal((studies, seeds, PROMPTS))
  p = _expit(_logit(P_TRUE) + seed_NxS[..., None] + prompt_NxSxP)
  return rng.binomial(SAMPLES, p) / SAMPLES


def _wilson(k, n):
  z = stats.Z95
  centre = (k + z * z / 2) / (n + z * z)
  half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
  return centre - half, centre + half


def test_seed_t_intervals_cover_the_truth_and_sampling_only_ones_do_not():
  rng = np.random.default_rng(0)
  truth, n = _truth(), PROMPTS * SAMPLES
  scores = _simulate(rng, 400, 3)
  values_NxS = scores.mean(axis=2)
  lo, hi = _wilson(values_NxS * n, n)  # what eval reports per seed
  within = ((hi - lo) / (2 * stats.Z95)) ** 2
  mean, lo_N, hi_N = stats.seed_t_interval_batch(values_NxS, within)
  coverage = np.mean((lo_N <= truth) & (truth <= hi_N))
  assert coverage >= 0.93, coverage
  # pooling every sample as if independent (no seed variance) undercovers badly
  k = values_NxS.sum(axis=1) * n
  plo, phi = _wilson(k, 3 * n)
  assert np.mean((plo <= truth) & (truth <= phi)) < 0.85
  # the scalar function agrees with the batch one
  one = stats.seed_t_interval(values_NxS[0], lo[0], hi[0], bounds=(-1, 2))
  assert one == pytest.approx((mean[0], lo_N[0], hi_N[0]))


def test_hierarchical_bootstrap_covers_with_enough_seeds():
  rng = np.random.default_rng(1)
  truth = _truth()
  scores = _simulate(rng, 200, 10)
  hits = 0
  for i in range(200):
    _, lo, hi = stats.hierarchical_bootstrap(scores[i], num_boot=200, seed=i)
    hits += lo <= truth <= hi
  # percentile bootstraps run a little narrow at 10 seeds (measured 0.91);
  # the report's intervals use seed_t, which the test above holds to 0.93
  assert hits / 200 >= 0.88, hits / 200


def test_one_seed_is_refused():
  with pytest.raises(ValueError, match=">= 2 seeds"):
    stats.seed_t_interval([0.3], [0.2], [0.4])
