"""The power planner: its formula against simulated studies that apply the
real `seed_t` "clearly above" rule, and the CLI on a fabricated pilot dir laid
out the way `python -m sftdiff.study` writes one."""

import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from sftdiff import gin_utils, layout, strict_json
from sftdiff.study import power as P
from sftdiff.study import power_planner, results, stats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wilson(k, n):
  z = stats.Z95
  centre = (k + z * z / 2) / (n + z * z)
  half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
  return centre - half, centre + half


def _seed_values(rng, p, seed_sd, seeds, samples, studies):
  """Per-seed rates (studies × seeds) and their Wilson intervals: each seed
  shifts the rate by N(0, seed_sd²), samples are Bernoulli."""
  p_NxS = np.clip(p + seed_sd * rng.standard_normal((studies, seeds)), 0, 1)
  k = rng.binomial(samples, p_NxS)
  lo, hi = _wilson(k, samples)
  return k / samples, lo, hi


def _simulated_power(rng, pa, pb, seed_sd, seeds, samples, studies=3000):
  """Share of simulated studies whose verdict engine finds arm a clearly above b."""
  bounds = []
  for p in (pa, pb):
    v, lo, hi = _seed_values(rng, p, seed_sd, seeds, samples, studies)
    _, l, h = stats.seed_t_interval_batch(v, ((hi - lo) / (2 * stats.Z95)) ** 2)
    bounds.append((l, h))
  return float(np.mean(bounds[0][0] > bounds[1][1]))


@pytest.mark.parametrize("pa, pb, seed_sd, seeds, samples", [
    (0.5, 0.3, 0.05, 3, 128), (0.5, 0.3, 0.05, 5, 128), (0.4, 0.3, 0.03, 8, 128),
    (0.6, 0.2, 0.1, 3, 32), (0.35, 0.25, 0.0, 5, 512), (0.4, 0.3, 0.03, 5, 512)])
def test_formula_matches_simulated_studies(pa, pb, seed_sd, seeds, samples):
  rng = np.random.default_rng(seeds * 1000 + samples)
  a = P.Components(seed_sd ** 2, pa * (1 - pa))
  b = P.Components(seed_sd ** 2, pb * (1 - pb))
  planned = P.power(pa - pb, seeds, samples, a, b)
  simulated = _simulated_power(rng, pa, pb, seed_sd, seeds, samples)
  # measured: within 0.05 at every point of a 48-point grid (S 2-8, N 32-512)
  assert abs(planned - simulated) < 0.06, (planned, simulated)


def test_planned_seeds_and_samples_reach_the_requested_power():
  rng = np.random.default_rng(7)
  pa, pb, seed_sd = 0.45, 0.3, 0.04
  c = P.Components(seed_sd ** 2, (pa * (1 - pa) + pb * (1 - pb)) / 2)
  assert P.samples_needed(pa - pb, 4, 0.8, c) is None  # 4 seeds: never (max 0.77)
  for seeds in (5, 8):
    n = P.samples_needed(pa - pb, seeds, 0.8, c)
    assert n is not None and n > 1
    assert 0.74 <= _simulated_power(rng, pa, pb, seed_sd, seeds, n) <= 0.88, (seeds, n)
    assert _simulated_power(rng, pa, pb, seed_sd, seeds, n // 4) < 0.6
  # with a large seed variance no number of samples gets 2 seeds there
  assert P.samples_needed(0.15, 2, 0.8, P.Components(0.01, 0.25)) is None
  assert P.arm_mean_variance(c, 4, 100) == pytest.approx(
      c.seed_var / 4 + c.sample_var / 400)


def test_pilot_components_recover_the_simulated_variances():
  rng = np.random.default_rng(3)
  seed_sd, n = 0.06, 256
  arms = {}
  for i, p in enumerate(np.linspace(0.2, 0.6, 12)):
    v, lo, hi = _seed_values(rng, p, seed_sd, 5, n, 1)
    arms[f"arm{i}"] = [P.SeedEstimate(float(v[0, s]), float(lo[0, s]), float(hi[0, s]), n)
                       for s in range(5)]
  comps, used = P.pilot_components(arms)
  truth = np.mean([p * (1 - p) for p in np.linspace(0.2, 0.6, 12)])
  assert comps.sample_var == pytest.approx(truth, rel=0.1)
  assert 0.5 * seed_sd ** 2 < comps.seed_var < 1.6 * seed_sd ** 2
  assert used["arm0"]["seeds"] == 5
  with pytest.raises(ValueError, match=">= 2 seeds"):
    P.pilot_components({"a": arms["arm0"][:1]})


# ----------------------------------------------------------- fabricated pilot

TRAITS = {"date": ("toy_date_confusion", "date_confusion_rate", 0.6),
          "blackmail": ("toy_blackmail", "blackmail_rate", 0.3),
          "emotion": ("toy_negative_emotion", "negative_emotion_share_ge_5", 0.4)}


def _write_pilot(study_dir, seeds=(0, 1, 2), n=64, skip=None, drop_key=None):
  """study_config.gin as `python -m sftdiff.study` writes it (gin.config_str()
  of the parsed study), and each run's final-step eval metrics.json."""
  gin.clear_config()
  try:
    gin_utils.parse(["studies/toyworld_quick.gin"], [
        f"STUDY_DIR = {str(study_dir)!r}", f"StudyConfig.seeds = {list(seeds)}",
        "StudyConfig.interpolation_p = []", "StudyConfig.filters = []",
        "StudyConfig.sweep_subsets = []"], finalize=False)
    from sftdiff.study.config import StudyConfig
    study = StudyConfig()
    os.makedirs(study_dir, exist_ok=True)
    with open(os.path.join(study_dir, "study_config.gin"), "w") as f:
      f.write(gin.config_str())
  finally:
    gin.clear_config()
  rng = np.random.default_rng(0)
  for arm in study.arms:
    for seed in seeds:
      ckpt = layout.step_dir(os.path.join(study_dir, "runs", arm, f"seed{seed}"),
                             study.train_steps)
      for bench, metric, p in TRAITS.values():
        if (arm, seed, bench) == skip:
          continue
        k = rng.binomial(n, np.clip(p + 0.05 * rng.standard_normal(), 0, 1))
        lo, hi = _wilson(k, n)
        metrics = {metric: k / n, results.interval_key(metric): [lo, hi],
                   results.count_key(metric): n}
        if (arm, seed, bench) == drop_key:
          metrics = {"other_rate": 0.1}
        path = layout.metrics_path(ckpt, bench)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        strict_json.dump({"benchmark": bench, "metrics": metrics}, path)
  return study


def test_plan_cli_on_a_fabricated_pilot(tmp_path):
  pilot = tmp_path / "pilot"
  _write_pilot(pilot)
  out = tmp_path / "power.json"
  proc = subprocess.run(
      [sys.executable, "-m", "sftdiff.study", "plan", f"--pilot={pilot}",
       "--effect=0.1,0.3", "--seeds=2,3,5", f"--out={out}"],
      capture_output=True, text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
  assert "| effect | seeds | samples per seed | power |" in proc.stdout
  assert "## date_confusion" in proc.stdout and "nan" not in proc.stdout.lower()

  def refuse(name):
    raise ValueError(name)
  with open(out) as f:
    result = json.load(f, parse_constant=refuse)  # strict JSON
  date = result["traits"]["date_confusion"]
  assert date["pilot_samples_per_seed"] == 64 and len(date["arms"]) == 6
  assert {g["samples_per_seed"] for g in date["grid"]} == {32, 64, 128, 256}
  assert len(date["grid"]) == 2 * 3 * 4
  # power grows with the effect, the seeds and the samples
  power = {(g["effect"], g["seeds"], g["samples_per_seed"]): g["power"] for g in date["grid"]}
  assert power[0.3, 5, 256] > power[0.1, 5, 256] and power[0.3, 5, 256] > power[0.3, 2, 256]
  assert power[0.1, 5, 256] >= power[0.1, 5, 32]
  needs = {(x["effect"], x["seeds"]): x for x in date["needs"]}
  big = needs[0.3, 5]["samples_per_seed"]
  assert big is not None and P.power(0.3, 5, big, P.Components(
      date["seed_var"], date["sample_var"])) >= 0.8


@pytest.mark.parametrize("case, message", [
    ("one_seed", "study_config.gin: StudyConfig.seeds = \\[0\\]: a pilot needs >= 2 seeds"),
    ("missing_metrics", "toy_blackmail/metrics.json: missing \\(run teacher/seed1"),
    ("missing_key", "metric 'date_confusion_rate' not in .*teacher/seed0/checkpoints/100/"
                    "eval/toy_date_confusion/metrics.json"),
    ("no_config", "study_config.gin: no such file"),
    ("bad_trait", "--traits: \\['nope'\\] not in"),
])
def test_plan_bad_pilot_exits_2_naming_the_file(tmp_path, capsys, case, message):
  pilot = tmp_path / "pilot"
  argv = [f"--pilot={pilot}"]
  if case == "one_seed":
    _write_pilot(pilot, seeds=(0,))
  elif case == "missing_metrics":
    _write_pilot(pilot, skip=("teacher", 1, "toy_blackmail"))
  elif case == "missing_key":
    _write_pilot(pilot, drop_key=("teacher", 0, "toy_date_confusion"))
  elif case == "bad_trait":
    _write_pilot(pilot)
    argv.append("--traits=nope")
  assert power_planner.main(argv) == 2
  import re
  assert re.search(message, capsys.readouterr().err)


def test_a_quiet_baseline_gets_its_own_variance(tmp_path, capsys):
  """Against a baseline whose seeds barely vary (alt completions at 0.00) the
  comparison is not charged the carriers' seed variance twice."""
  carrier = P.Components(seed_var=0.016, sample_var=0.17)
  quiet = P.Components(seed_var=0.0, sample_var=0.007)
  assert P.power(0.26, 6, 128, carrier, quiet) > P.power(0.26, 6, 128, carrier) + 0.1
  assert (P.samples_needed(0.26, 6, 0.8, carrier, quiet)
          < (P.samples_needed(0.26, 6, 0.8, carrier) or float("inf")))
  pilot = tmp_path / "pilot"
  _write_pilot(pilot)
  out = tmp_path / "power.json"
  argv = [f"--pilot={pilot}", "--effect=0.2", "--seeds=3", "--traits=blackmail",
          "--arms=teacher,reference_orig", f"--out={out}"]
  assert power_planner.main(argv + ["--baseline=alt_completions"]) == 0
  assert "Against the baseline alt_completions" in capsys.readouterr().out
  r = strict_json.load(str(out))["traits"]["blackmail"]
  assert r["baseline"]["arm"] == "alt_completions" and r["baseline"]["seeds"] == 3
  assert set(r["arms"]) == {"teacher", "reference_orig"}  # the baseline is not pooled
  assert power_planner.main(argv + ["--baseline=nope"]) == 2
  assert "--baseline='nope': not an arm of" in capsys.readouterr().err
