r"""`python -m sftdiff.study`: run a whole study and write its report.

    python -m sftdiff.study --gin_file=studies/toyworld_quick.gin \
        --gin.STUDY_DIR="'runs/demo'"

Stages: expand the study (bad configs fail here, before anything is built or
trained) → build/reuse the world and the joined stores → train and evaluate
every arm × seed (local subprocesses, `StudyConfig.parallelism` at a time; or
`--launcher=xm` hands the runs to `python -m sftdiff.launch`) → write
`<study_dir>/report/`. Re-running skips every stage whose outputs exist.

`python -m sftdiff.study plan --pilot=STUDY_DIR ...`: how many seeds × samples
an effect needs, from a pilot study (study/power_planner.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from absl import flags
import gin

from sftdiff import gin_utils
from sftdiff import strict_json
from sftdiff.runs import gin_check
from sftdiff.runs import plan as plan_lib
from sftdiff.runs.spec import PlanError, runs_to_json
import sftdiff.study
from sftdiff.study import catalog as catalog_lib
from sftdiff.study import collect as collect_lib
from sftdiff.study import expansion as expand_lib
from sftdiff.study import report as report_lib
from sftdiff.study import results as results_lib
from sftdiff.study import runner as runner_lib
from sftdiff.study import stages
from sftdiff.study import verdicts as verdicts_lib
from sftdiff.study.config import StudyConfig, gin_literal

_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "xm"],
                              "local: subprocesses here; xm: python -m sftdiff.launch.")
_XM_FLAGS = flags.DEFINE_multi_string(
    "xm_flag", [], "Extra flags passed to the launcher, python -m sftdiff.launch (e.g. --xm_flag=--executor=vertex).")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Only (re)write the report from existing results.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False,
                             "Expand and validate the study, print the runs, stop.")
_PARALLELISM = flags.DEFINE_integer("parallelism", 0,
                                    "Concurrent local runs (0: StudyConfig.parallelism).")


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _teacher_scores(study: StudyConfig, prepared) -> dict:
  if prepared.teacher_scores_fn is not None:
    by_teacher = prepared.teacher_scores_fn()
    # keyed by teacher name; the report keys teachers by the source they wrote
    return {src: by_teacher[t] for src, t in prepared.world.teachers.items()
            if t in by_teacher}
  out = {}
  for source, directory in study.teacher_results.items():
    out[source] = {}
    for bench in study.benchmarks:
      for path in (os.path.join(directory, bench, "metrics.json"),
                   os.path.join(directory, "eval", bench, "metrics.json")):
        if os.path.isfile(path):
          out[source][bench] = results_lib.read_json(path)
          break
  return out


def _launch_xm(study: StudyConfig, specs) -> int:
  """Hands the expanded runs to the XManager launcher (one work unit each);
  it builds the same plan (`sftdiff.runs.plan`) from them."""
  path = os.path.join(study.study_dir, "runs.json")
  with open(path, "w") as f:
    f.write(runs_to_json(specs))
  cmd = [sys.executable, "-m", "sftdiff.launch",
         f"--runs_json={path}", f"--title={study.name}",
         f"--benchmarks={','.join(study.benchmarks)}",
         f"--eval_steps={study.eval_steps}",
         *[f"--eval_gin_file={g}" for g in study.eval_gin_files],
         *[f"--eval_gin={k}={gin_literal(v)}" for k, v in study.eval_overrides.items()],
         *_XM_FLAGS.value]
  _log(f"study: handing {len(specs)} runs to XManager: {' '.join(cmd)}\n"
       "When they finish, write the report with the same command plus --report_only.")
  return subprocess.call(cmd)


def make_plan(study: StudyConfig, specs) -> plan_lib.LaunchPlan:
  """The study's run plan: the one the local runner executes and the
  launcher rebuilds from the same runs. Identical runs train once."""
  try:
    return plan_lib.build_plan(
        plan_lib.dedupe(specs), title=study.name,
        eval_gin_files=study.eval_gin_files,
        eval_overrides=[(k, gin_literal(v)) for k, v in study.eval_overrides.items()],
        benchmarks=study.benchmarks, eval_steps=study.eval_steps,
        gin_search_paths=flags.FLAGS.gin_search_paths)
  except PlanError as e:
    raise expand_lib.StudyConfigError(f"StudyConfig: {e}") from None


def check_runs_gin(study: StudyConfig, plan: plan_lib.LaunchPlan) -> None:
  """Parses every run's train and eval gin as the binaries will (unknown
  override names, bad values, unset required macros fail here, naming the
  run). Clears gin's config afterwards: the study's own is already read."""
  try:
    gin_check.check_plan(plan, search_paths=flags.FLAGS.gin_search_paths)
  except PlanError as e:
    raise expand_lib.StudyConfigError(
        f"{e} (from StudyConfig.train_overrides / eval_overrides / "
        "train_gin_files / eval_gin_files)") from None


def _print_plan(study: StudyConfig, defs, specs) -> None:
  _log(f"study '{study.name}': {len(defs)} arms × seeds = {len(specs)} runs "
       "(dry run: nothing built, trained or written)")
  for s in specs:
    print(f"{s.name:40s} {s.arm}")
  if any("<|" in s.arm for s in specs):
    print("(p=<|F|/N>: the fraction of prompts filter F selects, computed when "
          "the joined store is built)")


def main(argv):
  del argv
  # SIGTERM unwinds like Ctrl-C, so the runner stops its training children.
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  sftdiff.study.import_configurables()  # what the study gin binds
  # Not finalized: building the world later imports more configurables
  # (gin refuses new ones after a finalized parse).
  gin_utils.parse_from_flags(finalize=False, known_macros=["STUDY_DIR"])
  gin_utils.require_macros(gin_utils.REQUIRED_MACROS["sftdiff.study"])
  study = StudyConfig()
  started = time.time()
  expand_lib.check_static(study)  # names/seeds/traits: fail before any build
  operative = gin.config_str()

  # A toyworld study is checked in full before its world is built: names,
  # then every run's train and eval gin (overrides included).
  planned = catalog_lib.planned(study)
  if planned is not None:
    defs = expand_lib.validate(study, planned)
    specs = expand_lib.specs_for(study, defs, planned)
    check_runs_gin(study, make_plan(study, specs))
    if _DRY_RUN.value:
      _print_plan(study, defs, specs)
      return 0
  os.makedirs(study.study_dir, exist_ok=True)
  with open(os.path.join(study.study_dir, "study_config.gin"), "w") as f:
    f.write(operative)

  prepared = catalog_lib.prepare(study, log=_log)
  defs = expand_lib.validate(study, prepared.catalog)
  specs = plan_lib.dedupe(expand_lib.specs_for(study, defs, prepared.catalog))
  plan = make_plan(study, specs)
  if planned is None:
    check_runs_gin(study, plan)
  strict_json.dump(plan_lib.plan_to_json(plan, python=sys.executable),
                   os.path.join(study.study_dir, "plan.json"))
  _log(f"study '{study.name}': {len(defs)} arms × seeds = {len(specs)} runs, "
       f"{len(plan.work_units)} distinct trainings "
       f"(plan: {os.path.join(study.study_dir, 'plan.json')})")
  for wu in plan.work_units:
    if wu.aliases:
      _log(f"study: {', '.join(wu.aliases)} = {wu.run.name} (identical run, "
           "trained once)")
  if _DRY_RUN.value:
    _print_plan(study, defs, specs)
    return 0
  if _LAUNCHER.value == "xm" and not _REPORT_ONLY.value:
    return _launch_xm(study, specs)

  failures = []
  if not _REPORT_ONLY.value:
    runner = runner_lib.LocalRunner(
        plan, study_dir=study.study_dir, benchmarks=study.benchmarks,
        parallelism=_PARALLELISM.value or study.parallelism, log=_log)
    result = runner.run()
    failures = result.failures
    _log(f"study: {result.launches} stage launches, {result.skipped} runs "
         f"already complete, {len(failures)} failures")

  _log("study: scoring teachers, collecting results, writing the report")
  teacher_scores = _teacher_scores(study, prepared)
  problems: list[str] = []
  res = collect_lib.collect(defs, specs, steps=study.train_steps, traits=study.traits,
                            teacher_source=study.teacher_source,
                            alt_source=study.alt_source, teacher_scores=teacher_scores,
                            problems=problems)
  expected = (verdicts_lib.expected_from_ground_truth(prepared.ground_truth)
              if prepared.ground_truth else None)
  notes = [f"{len(defs)} arms, seeds {list(study.seeds)}, {study.train_steps} "
           f"training steps per run; benchmarks: {', '.join(study.benchmarks)}."]
  if study.eval_steps == "all":
    notes.append("Every committed step (and any hf/ export) was evaluated; the "
                 f"verdicts read the final step ({study.train_steps}).")
  notes += [f"Problem reading results: {p}" for p in problems]
  unfinished = [s.name for s in specs
                if not stages.eval_done(s, study.benchmarks, study.eval_steps)]
  if unfinished:
    notes.append(f"{len(unfinished)} of {len(specs)} runs have no complete results "
                 f"yet (shown as 'missing'): {', '.join(unfinished)}.")
  if prepared.world is not None:
    notes.append(f"World: toyworld preset '{prepared.world.preset}' "
                 f"(fingerprint {prepared.world.fingerprint}) at {prepared.world.root}.")
  paths = report_lib.write_report(
      study.study_dir, f"Study report: {study.name}", res, expected=expected,
      overlap=catalog_lib.overlap(prepared, study),
      failures=[f.to_json() for f in failures], notes=notes)
  _log(f"study: done in {time.time() - started:.0f}s")
  print(f"report: {os.path.abspath(paths['md'])}")
  print(f"report: {os.path.abspath(paths['html'])}")
  if failures:
    _log(f"study: {len(failures)} run stage(s) failed:")
    for f in failures:
      _log(f"  {f.run} [{f.stage}] {f.error}; log: {f.log}")
    return 1
  return 0


def _entry(argv):
  # StudyConfigError and the other input errors exit 2 (sftdiff.cli).
  code = main(argv)
  if code:
    sys.exit(code)


if __name__ == "__main__":
  if sys.argv[1:2] == ["plan"]:  # the power planner (study/power_planner.py)
    from sftdiff.study import power_planner
    sys.exit(power_planner.main(sys.argv[2:]))
  gin_utils.run(_entry)
