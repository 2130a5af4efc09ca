"""`make validate`: every toyworld scenario through the real study, one matrix.

    python -m sftdiff.study.validation --out=runs/validate [--scenarios=a,b]
        [--seeds=0,1,2] [--size=quick|tiny] [--scenario_binding=S:BINDING ...]
        [-- extra study flags]

For each scenario (docs/toyworld.md "Scenarios") it runs `python -m
sftdiff.study` on `gin/studies/<scenario gin>` with the world preset of that
size, then reads the study's `report/verdicts.json`. It writes
`<out>/matrix.json` and `<out>/matrix.md`: scenario × trait × verdict key →
expected (derived ground truth) / observed / match, plus each scenario's own
report under `<out>/<scenario>/report/`. Exit status 1 when any checked
verdict is a mismatch, 2 on a usage error. `--scenario_binding=S:BINDING`
(repeatable) adds a study gin binding to scenario S only (the extra flags
after `--` go to every scenario). Every scenario's runs share one persistent
XLA compilation cache (`<out>/.jax_cache`): the scenarios' models have the
same shapes, so only the first compiles.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from typing import Sequence

from sftdiff import strict_json

SCENARIO_GINS = {"headline": "studies/toyworld_quick.gin",
                 "drop_works": "studies/scenario_drop_works.gin",
                 "prompt_driven": "studies/scenario_prompt_driven.gin",
                 "no_trait": "studies/scenario_no_trait.gin",
                 "locked_in": "studies/scenario_locked_in.gin",
                 "virulent": "studies/scenario_virulent.gin"}


def world_preset(scenario: str, size: str) -> str:
  base = {"headline": "quick"}.get(scenario, scenario)
  if size == "quick":
    return base
  return "tiny" if scenario == "headline" else f"{scenario}_tiny"


class StudyFailed(Exception):
  """A scenario's study exited non-zero (its own message is in its output)."""

  def __init__(self, scenario: str, returncode: int, study_dir: str):
    super().__init__(f"scenario {scenario}: the study exited {returncode} "
                     f"(logs under {study_dir})")
    self.returncode = returncode


def run_scenario(scenario: str, out: str, *, seeds: Sequence[int], size: str,
                 world_root: str, extra: Sequence[str]) -> str:
  """Runs one scenario's study; returns its study dir."""
  study_dir = os.path.join(out, scenario)
  cmd = [sys.executable, "-m", "sftdiff.study", f"--gin_file={SCENARIO_GINS[scenario]}",
         f"--gin.STUDY_DIR={study_dir!r}",
         f"--gin_bindings=StudyConfig.world = {world_preset(scenario, size)!r}",
         f"--gin_bindings=StudyConfig.world_root = {world_root!r}",
         f"--gin_bindings=StudyConfig.seeds = {list(seeds)!r}", *extra]
  print(f"[validate] {scenario}: {' '.join(cmd[2:])}", flush=True)
  proc = subprocess.run(cmd)
  if proc.returncode != 0:
    raise StudyFailed(scenario, proc.returncode, study_dir)
  return study_dir


def matrix_rows(scenario: str, verdicts: Sequence[dict]) -> list[dict]:
  return [{"scenario": scenario, "trait": v["trait"], "key": v["key"],
           "expected": v.get("expected") or "", "observed": v["verdict"],
           "match": v.get("match") or "", "seeds_alone": v.get("seeds_alone") or ""}
          for v in verdicts]


def summarise(rows: Sequence[dict]) -> dict[str, dict[str, int]]:
  out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in rows:
    out[r["scenario"]][r["match"] or "no ground truth"] += 1
  return {s: dict(sorted(c.items())) for s, c in sorted(out.items())}


def write_matrix(out: str, rows: Sequence[dict]) -> tuple[str, str]:
  summary = summarise(rows)
  jpath = os.path.join(out, "matrix.json")
  strict_json.dump({"summary": summary, "rows": list(rows)}, jpath)
  lines = ["# Scenario validation matrix", "",
           "expected = derived from each scenario's mechanism (docs/toyworld.md); "
           "unchecked = the mechanism does not decide it.", "",
           "| scenario | checked | match | mismatch | unchecked |", "|---|---|---|---|---|"]
  for s, c in summary.items():
    checked = c.get("match", 0) + c.get("mismatch", 0)
    lines.append(f"| {s} | {checked} | {c.get('match', 0)} | {c.get('mismatch', 0)} "
                 f"| {c.get('unchecked', 0)} |")
  lines += ["", "| scenario | trait | verdict key | expected | observed | match | seeds alone |",
            "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['scenario']} | {r['trait']} | {r['key']} | {r['expected'] or '–'} "
                 f"| {r['observed']} | {r['match'] or '–'} | {r['seeds_alone'] or '1 seed'} |")
  mpath = os.path.join(out, "matrix.md")
  with open(mpath, "w") as f:
    f.write("\n".join(lines) + "\n")
  return jpath, mpath


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  argv = argv[:argv.index("--")] if "--" in argv else argv
  p = argparse.ArgumentParser(prog="python -m sftdiff.study.validation")
  p.add_argument("--out", required=True)
  p.add_argument("--scenarios", default=",".join(SCENARIO_GINS))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--size", choices=("quick", "tiny"), default="quick")
  p.add_argument("--world_root", default="")
  p.add_argument("--scenario_binding", action="append", default=[],
                 help="SCENARIO:BINDING, a study gin binding for one scenario only")
  args = p.parse_args(argv)
  scenarios = [s for s in args.scenarios.split(",") if s]
  unknown = [s for s in scenarios if s not in SCENARIO_GINS]
  if unknown or not scenarios:
    print(f"--scenarios: unknown {unknown}; known: {', '.join(SCENARIO_GINS)}",
          file=sys.stderr)
    return 2
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError:
    print(f"--seeds: {args.seeds!r} is not a comma-separated list of integers",
          file=sys.stderr)
    return 2
  own: dict[str, list[str]] = collections.defaultdict(list)
  for item in args.scenario_binding:
    scenario, sep, binding = item.partition(":")
    if not sep or scenario not in scenarios or not binding.strip():
      print(f"--scenario_binding={item!r}: want SCENARIO:BINDING with SCENARIO one "
            f"of the run's scenarios {scenarios}", file=sys.stderr)
      return 2
    own[scenario].append(f"--gin_bindings={binding}")
  out = os.path.abspath(args.out)
  os.makedirs(out, exist_ok=True)
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(out, ".jax_cache"))
  world_root = os.path.abspath(args.world_root or os.path.join(out, "worlds"))
  rows = []
  for s in scenarios:
    try:
      study_dir = run_scenario(s, out, seeds=seeds, size=args.size,
                               world_root=world_root, extra=[*extra, *own[s]])
    except StudyFailed as e:  # a config error (2) stays 2; anything else is 1
      print(f"[validate] {e}", file=sys.stderr)
      return 2 if e.returncode == 2 else 1
    rows += matrix_rows(s, strict_json.load(os.path.join(study_dir, "report",
                                                         "verdicts.json")))
  jpath, mpath = write_matrix(out, rows)
  mismatches = [r for r in rows if r["match"] == "mismatch"]
  print(f"[validate] matrix: {mpath} ({jpath}); {len(mismatches)} mismatches")
  for r in mismatches:
    print(f"[validate] MISMATCH {r['scenario']} / {r['trait']} / {r['key']}: "
          f"expected {r['expected']}, observed {r['observed']}")
  return 1 if mismatches else 0


if __name__ == "__main__":
  sys.exit(main())
