r"""`python -m sftdiff.study plan`: seeds × samples from a pilot study.

    python -m sftdiff.study plan --pilot=STUDY_DIR [--effect=0.05,0.1,0.2]
        [--alpha=0.05] [--power=0.8] [--seeds=2,3,5,8] [--samples=64,128,...]
        [--traits=a,b] [--arms=a,b] [--baseline=ARM] [--out=PATH]

Reads the pilot's `study_config.gin` (written by `python -m sftdiff.study`)
for its arms, seeds, steps and traits, then every run's final-step eval
metrics (`collect.run_scores`), estimates each trait's seed and sample
variance (`power.pilot_components`) and prints, per trait, the power of the
verdict engine's "clearly above" at each effect × seeds × samples per seed,
and per effect and seed count the fewest samples reaching `--power`. With
`--baseline=ARM` the arm compared against (e.g. `alt_completions`, what the
`raises:` verdicts compare with) gets its own seed and sample variance,
estimated from that arm alone; otherwise both sides get the pooled one.
Writes the same as strict JSON (default `<pilot>/report/power.json`).
Exit 2 on bad input (a missing file, one seed, a metric the files lack),
naming the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Sequence

from sftdiff import layout
from sftdiff import strict_json
from sftdiff.study import collect
from sftdiff.study import power as power_lib
from sftdiff.study.expansion import arm_defs, run_dir
from sftdiff.study.spec import RunSpec

DEFAULT_EFFECTS = "0.05,0.1,0.2,0.3"
DEFAULT_SEEDS = "2,3,4,5,8,10"
SAMPLE_MULTIPLES = (0.5, 1, 2, 4)  # default samples grid: × the pilot's n per seed


class PilotError(ValueError):
  """The pilot study cannot be planned from; the message names the file."""


def _numbers(text: str, kind, flag: str) -> list:
  try:
    out = [kind(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise PilotError(f"--{flag}={text!r}: not a comma-separated list of "
                     f"{kind.__name__}s") from None
  if not out:
    raise PilotError(f"--{flag} is empty")
  return out


def read_pilot(pilot: str, traits: Sequence[str] = (), arms: Sequence[str] = (),
               baseline: str = ""
               ) -> tuple[dict[str, dict[str, list[power_lib.SeedEstimate]]], dict]:
  """trait → arm → per-seed estimates (`arms`, default all, and `baseline`),
  and the pilot's study settings."""
  from sftdiff import gin_utils
  from sftdiff.study import load_study
  from sftdiff.study.expansion import StudyConfigError
  config = os.path.join(pilot, "study_config.gin")
  if not os.path.isfile(config):
    raise PilotError(f"{config}: no such file (is {pilot!r} a study dir written "
                     "by python -m sftdiff.study?)")
  try:
    study = load_study([os.path.abspath(config)])
  except (gin_utils.GinConfigError, StudyConfigError) as e:
    raise PilotError(f"{config}: {e}") from None
  finally:
    import gin
    gin.clear_config()
  study = dataclasses.replace(study, study_dir=pilot)  # the pilot may have moved
  unknown = sorted(set(traits) - set(study.traits))
  if unknown:
    raise PilotError(f"--traits: {unknown} not in {config} StudyConfig.traits "
                     f"{sorted(study.traits)}")
  refs = {t: r for t, r in study.traits.items() if not traits or t in traits}
  if not refs:
    raise PilotError(f"{config}: StudyConfig.traits is empty: nothing to plan for")
  if baseline and baseline not in {d.name for d in arm_defs(study)}:
    raise PilotError(f"--baseline={baseline!r}: not an arm of {config}")
  defs = [d for d in arm_defs(study) if not arms or d.name in (*arms, baseline)]
  missing_arms = sorted(set(arms) - {d.name for d in defs})
  if missing_arms:
    raise PilotError(f"--arms: {missing_arms} are not arms of {config}")
  seeds = {d.name: tuple(d.seeds or study.seeds) for d in defs}
  if max((len(s) for s in seeds.values()), default=0) < 2:
    raise PilotError(f"{config}: StudyConfig.seeds = {list(study.seeds)}: a pilot "
                     "needs >= 2 seeds per arm to separate seed from sampling "
                     "variance")
  out: dict = {t: {} for t in refs}
  for d in defs:
    for seed in seeds[d.name]:
      spec = RunSpec(arm_name=d.name, arm=d.arm, seed=int(seed), gin_files=(),
                     overrides=(), model_dir=run_dir(study, d.name, int(seed)))
      ckpt = layout.step_dir(spec.model_dir, study.train_steps)
      for trait, ref in refs.items():
        path = layout.metrics_path(ckpt, ref.split(":", 1)[0])
        if not os.path.isfile(path):
          raise PilotError(f"{path}: missing (run {spec.name}, trait {trait!r}); "
                           "finish the pilot, or leave the arm out with --arms")
      try:
        scores = collect.run_scores(spec, study.train_steps, refs)
      except (KeyError, ValueError) as e:
        raise PilotError(str(e).strip("\"'")) from None
      for trait, e in scores.items():
        out[trait].setdefault(d.name, []).append(
            power_lib.SeedEstimate(e.value, e.lo, e.hi, e.n))
  settings = {"config": config, "seeds": list(study.seeds),
              "train_steps": study.train_steps, "traits": refs}
  return out, settings


def plan(per_trait, *, effects, seeds, samples, alpha, target, baseline: str = "",
         pooled_arms: Sequence[str] = ()) -> dict:
  """`baseline`: the arm compared against, estimated apart from the pooled
  `pooled_arms` (default: every arm but the baseline)."""
  out = {}
  for trait, arms in per_trait.items():
    pooled = set(pooled_arms) or set(arms) - {baseline}
    pool = {a: e for a, e in arms.items() if a in pooled}
    try:
      comps, used = power_lib.pilot_components(pool)
      base, base_used = (power_lib.pilot_components({baseline: arms[baseline]})
                         if baseline else (None, {}))
    except ValueError as e:
      raise PilotError(f"trait {trait!r}: {e}") from None
    n_pilot = max(1, round(sum(u["n_per_seed"] for u in used.values()) / len(used)))
    grid_n = samples or sorted({max(1, round(m * n_pilot)) for m in SAMPLE_MULTIPLES})
    grid = [{"effect": d, "seeds": s, "samples_per_seed": n,
             "power": power_lib.power(d, s, n, comps, base, alpha=alpha)}
            for d in effects for s in seeds for n in grid_n]
    needs = []
    for d in effects:
      for s in seeds:
        n = power_lib.samples_needed(d, s, target, comps, base, alpha=alpha)
        needs.append({"effect": d, "seeds": s, "samples_per_seed": n,
                      "why": "" if n is not None else (
                          f"seed variance alone: power < {target:g} at {s} seeds "
                          "with any number of samples")})
    out[trait] = {"seed_var": comps.seed_var, "sample_var": comps.sample_var,
                  "pilot_samples_per_seed": n_pilot, "arms": used,
                  "baseline": ({"arm": baseline, "seed_var": base.seed_var,
                                "sample_var": base.sample_var, **base_used[baseline]}
                               if baseline else None),
                  "grid": grid, "needs": needs}
  return out


def to_markdown(result: dict) -> str:
  lines = [f"# Power plan from {result['pilot']}", "",
           f"Decision: {result['rule']}; alpha = {result['alpha']:g}, target power "
           f"{result['target_power']:g}. Model: var(arm mean) = σ²_seed/S + "
           "σ²_sample/(S·N) (sftdiff/study/power.py)."]
  for trait, r in result["traits"].items():
    lines += ["", f"## {trait}", "",
              f"σ²_seed = {r['seed_var']:.3g}, σ²_sample = {r['sample_var']:.3g} "
              f"(from {len(r['arms'])} arms, {r['pilot_samples_per_seed']} samples "
              "per seed in the pilot).", "",
              (f"Against the baseline {r['baseline']['arm']}: σ²_seed = "
               f"{r['baseline']['seed_var']:.3g}, σ²_sample = "
               f"{r['baseline']['sample_var']:.3g} (its own seeds)." if r["baseline"]
               else "Against an arm with the same variance (no --baseline)."), "",
              "| effect | seeds | samples per seed | power |", "|---|---|---|---|"]
    lines += [f"| {g['effect']:g} | {g['seeds']} | {g['samples_per_seed']} | "
              f"{g['power']:.2f} |" for g in r["grid"]]
    lines += ["", f"Fewest samples per seed for power ≥ {result['target_power']:g}:", "",
              "| effect | seeds | samples per seed |", "|---|---|---|"]
    for n in r["needs"]:
      needed = n["samples_per_seed"]
      cell = needed if needed is not None else f"not reachable: {n['why']}"
      lines.append(f"| {n['effect']:g} | {n['seeds']} | {cell} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
  p = argparse.ArgumentParser(prog="python -m sftdiff.study plan",
                              description=__doc__.split("\n\n")[1])
  p.add_argument("--pilot", required=True, help="a study dir with >= 2 seeds")
  p.add_argument("--effect", default=DEFAULT_EFFECTS,
                 help="differences between two arms' means, on the trait's scale")
  p.add_argument("--alpha", type=float, default=0.05,
                 help="1 - the intervals' level (0.05: the report's 95%%)")
  p.add_argument("--power", type=float, default=0.8, help="target power")
  p.add_argument("--seeds", default=DEFAULT_SEEDS)
  p.add_argument("--samples", default="",
                 help="samples per seed (default: the pilot's n × 0.5, 1, 2, 4)")
  p.add_argument("--traits", default="", help="default: every trait of the pilot")
  p.add_argument("--arms", default="",
                 help="arms the variance is estimated from (default: all with >= 2 seeds)")
  p.add_argument("--baseline", default="",
                 help="the arm compared against, with its own variance (e.g. alt_completions)")
  p.add_argument("--out", default="", help="JSON path (default <pilot>/report/power.json)")
  args = p.parse_args(argv)
  try:
    effects = _numbers(args.effect, float, "effect")
    seeds = _numbers(args.seeds, int, "seeds")
    samples = _numbers(args.samples, int, "samples") if args.samples else []
    if min(seeds) < 2:
      raise PilotError(f"--seeds={args.seeds}: seed_t intervals need >= 2 seeds")
    if samples and min(samples) < 1:
      raise PilotError(f"--samples={args.samples}: need >= 1 sample per seed")
    if not 0 < args.alpha < 1 or not 0 < args.power < 1:
      raise PilotError(f"--alpha={args.alpha}, --power={args.power}: both in (0, 1)")
    pilot = os.path.abspath(args.pilot)
    arms = [a for a in args.arms.split(",") if a]
    per_trait, settings = read_pilot(pilot, [t for t in args.traits.split(",") if t],
                                     arms, args.baseline)
    result = {"pilot": pilot, "rule": power_lib.RULE, "alpha": args.alpha,
              "target_power": args.power, "study": settings,
              "traits": plan(per_trait, effects=effects, seeds=seeds, samples=samples,
                             alpha=args.alpha, target=args.power,
                             baseline=args.baseline, pooled_arms=arms)}
  except PilotError as e:
    print(f"plan: {e}", file=sys.stderr)
    return 2
  out = args.out or os.path.join(pilot, "report", "power.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  strict_json.dump(result, out, indent=1)
  print(to_markdown(result))
  print(f"plan: {out}")
  return 0
