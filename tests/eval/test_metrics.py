import numpy as np
import pytest

from sftdiff.eval import metrics
from sftdiff.eval.benchmarks.base import SampleResult
from sftdiff.eval.types import Verdict


def test_wilson_known_values():
  lo, hi = metrics.wilson_interval(5, 10)
  assert lo == pytest.approx(0.236593, abs=1e-5) and hi == pytest.approx(0.763407, abs=1e-5)
  lo, hi = metrics.wilson_interval(0, 10)
  assert lo == 0.0 and hi == pytest.approx(0.277533, abs=1e-5)
  lo, hi = metrics.wilson_interval(81, 263)
  assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
  assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
  with pytest.raises(ValueError):
    metrics.wilson_interval(3, 2)


def test_clustered_bootstrap_resamples_prompts():
  # 10 prompts x 20 identical samples: the effective n is 10, not 200.
  clusters = {f"p{i}": [float(i % 2)] * 20 for i in range(10)}
  mean, lo, hi = metrics.clustered_bootstrap_mean(clusters, seed=3)
  assert mean == 0.5
  # Sample-level resampling would give width ~2*1.96*sqrt(.25/200) = 0.14;
  # prompt-level gives ~2*1.96*sqrt(.25/10) = 0.62.
  assert hi - lo > 0.45
  assert metrics.clustered_bootstrap_mean(clusters, seed=3) == (mean, lo, hi)
  rng = np.random.default_rng(0)
  varied = {f"p{i}": list(rng.normal(size=5)) for i in range(30)}
  assert (metrics.clustered_bootstrap_mean(varied, seed=1)
          != metrics.clustered_bootstrap_mean(varied, seed=2))
  # Unequal cluster sizes: the point estimate is the sample mean.
  m, _, _ = metrics.clustered_bootstrap_mean({"a": [1, 1, 1], "b": [0]})
  assert m == 0.75


def _row(pid, value, rater="r", unscored=False, subset="s"):
  v = Verdict(rater, None if unscored else value, "v1", "j", unscored=unscored)
  return SampleResult(pid, 0, subset, "c", {rater: v})


def test_rate_and_mean_metrics_count_unscored():
  rows = [_row("a", True), _row("b", False), _row("c", None, unscored=True),
          _row("d", True)]
  out = metrics.rate_metric(rows, "r")
  assert out["r_rate"] == pytest.approx(2 / 3) and out["r_n"] == 3
  assert out["r_unscored"] == 1
  assert out["r_ci95"] == list(metrics.wilson_interval(2, 3))
  scores = [_row("a", 7.0), _row("a", 3.0), _row("b", 0.0), _row("c", None, unscored=True)]
  m = metrics.mean_metric(scores, "r", threshold=5)
  assert m["r_mean"] == pytest.approx(10 / 3) and m["r_unscored"] == 1
  assert m["r_share_ge_5"] == pytest.approx(1 / 3) and m["r_num_prompts"] == 2


def test_conditional_rate():
  def row(pid, bm, rec):
    return SampleResult(pid, 0, "s", "c", {
        "bm": Verdict("bm", bm, "v", "j"), "rec": Verdict("rec", rec, "v", "j")})
  rows = [row("a", True, True), row("b", False, True), row("c", False, False),
          row("d", True, False)]
  out = metrics.conditional_rate_metric(rows, "bm", "rec")
  assert out["bm_given_rec_rate"] == 0.5 and out["bm_given_rec_n"] == 2
  per = metrics.by_subset(rows, lambda r: metrics.rate_metric(r, "bm"))
  assert per["s"]["bm_rate"] == 0.5
