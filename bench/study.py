"""Where a study's time goes: per stage and per phase, from one run's files.

  python bench/study.py --study_dir=runs/demo          # an existing study (seconds)
  python bench/study.py --run --study_dir=/tmp/quick   # run the quick study first
  python bench/study.py --run --study_dir=/tmp/quick_grouped \
      --gin.MultiArmGrouping.max_arms=8                 # arms sharing train processes

Nothing in the study is instrumented for this: the phases are read from what a
study already leaves behind — `logs/launches.jsonl` (when each stage
started), the stages' logs (absl timestamps of the trainer's `step N` lines
and of the eval's per-benchmark lines), `metrics.jsonl` (steady step times)
and the modification times of the files each phase writes last
(`config.gin`, `manifest.json`, the committed checkpoint, `samples.jsonl`,
`verdicts.jsonl`, `metrics.json`, the report). With `--run`, the study's own
output lines are timestamped as they arrive, which adds the study process's
start and the world/store phase, the CPU seconds of every process the study
ran (user + sys of the study and its waited-for children, from
`getrusage(RUSAGE_CHILDREN)`), and JAX's compile log (`JAX_LOG_COMPILES=1`):
per stage, the XLA compilations requested and how many the persistent
compilation cache served (the runner points every stage at one cache,
`<study_dir>/.jax_cache`). The CPU seconds of each stage come from the
runner's `logs/finished.jsonl` (with or without `--run`). Extra flags go to the study (e.g.
`--gin.MultiArmGrouping.max_arms=8`: several arms per train process).

Train stage phases: start (process start, imports, gin, input checks: launch
→ config.gin), setup (tokenizer, initial checkpoint, data pipeline and
manifest: → manifest.json), compile (state init + first-step compilation:
the first logged window minus its steps at the steady rate), steps (train
steps at the steady rate), checkpoint (last step → committed checkpoint).
A grouped eval job (`--checkpoint_dir=` per run, one process) counts as one
stage: each later checkpoint's start runs from the previous one's last
metrics.json to its eval_config.gin (gin parsed again, no new process).
A multi-arm train job (several runs in one process: its launch lists their
`model_dirs`) counts as one stage: setup ends at its last manifest, steps
are its group steps (every arm's) at the steady rate, and as it logs no step
lines its compile phase also holds the final checkpoint save.
Eval stage phases: start (launch → eval_config.gin), load (→ the first
benchmark's binding.json), then per benchmark sampling (incl. its
compilations, → samples.jsonl), judging (→ verdicts.jsonl) and metrics
(→ metrics.json). Stages run `parallelism` at a time, so phase sums are
stage-seconds, not wall seconds; the wall time is printed separately.
The numbers are indicative only when the run was not quiet (bench/_load.py:
load > 1 at start, or other processes used more than a core; the study's
own stages do not count).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import threading
import time

from _load import LoadGuard

REPO = pathlib.Path(__file__).resolve().parent.parent
QUICK_STUDY = "studies/toyworld_quick.gin"
ABSL_TIME = re.compile(r"^[IWE](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})")
STEP_LINE = re.compile(r"\bstep (\d+): ")
BENCH_LINE = re.compile(r"\] \d+/(\S+): sampling ")
# With JAX_LOG_COMPILES=1 (jax/_src/interpreters/pxla.py, jax/_src/compiler.py).
COMPILE_LINE = re.compile(r"Compiling \S+ with global shapes")
CACHE_HIT_LINE = re.compile(r"Persistent compilation cache hit for ")


def _mtime(path: pathlib.Path) -> float | None:
  return path.stat().st_mtime if path.exists() else None


def _newest(directory: pathlib.Path) -> float | None:
  times = [p.stat().st_mtime for p in directory.rglob("*") if p.is_file()]
  return max(times) if times else None


def _absl_time(line: str, near: float) -> float | None:
  """Epoch seconds of an absl log line (local time, no year: taken from `near`)."""
  m = ABSL_TIME.match(line)
  if not m:
    return None
  month, day, hh, mm, ss, us = (int(g) for g in m.groups())
  year = datetime.datetime.fromtimestamp(near).year
  return datetime.datetime(year, month, day, hh, mm, ss, us).timestamp()


def _find(study_dir: pathlib.Path, relative: str) -> pathlib.Path:
  """A path the study recorded relative to its own working directory."""
  p = pathlib.Path(relative)
  if p.is_absolute() and p.exists():
    return p
  parts = p.parts
  for k in range(len(parts)):
    candidate = study_dir.joinpath(*parts[k:])
    if candidate.exists():
      return candidate
  return p


def _compiles(log_path: pathlib.Path) -> tuple[int, int]:
  """(XLA compilations requested, persistent-cache hits) in a stage's log."""
  text = log_path.read_text(errors="replace") if log_path.exists() else ""
  return len(COMPILE_LINE.findall(text)), len(CACHE_HIT_LINE.findall(text))


def _train_phases(launch, log_path: pathlib.Path, model_dirs: list[pathlib.Path]):
  """Phases of one train process (one run, or several arms of a multi-arm
  job: setup ends with the last arm's manifest, the steps are all arms')."""
  t0 = launch["time"]
  phases = {}
  model_dir = model_dirs[0]
  configs = [_mtime(d / "config.gin") for d in model_dirs]
  manifests = [_mtime(d / "manifest.json") for d in model_dirs]
  config = min(configs) if all(configs) else None
  manifest = max(manifests) if all(manifests) else None
  if config:
    phases["train: start (process, imports, gin)"] = config - t0
  if config and manifest:
    phases["train: setup (tokenizer, init ckpt, data, manifest)"] = manifest - config
  step_times = {}
  for line in log_path.read_text(errors="replace").splitlines():
    m = STEP_LINE.search(line)
    t = _absl_time(line, t0)
    if m and t:
      step_times[int(m.group(1))] = t
  rows = [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().splitlines()
          if '"step_time_s"' in l] if (model_dir / "metrics.jsonl").exists() else []
  if not rows or not manifest:
    return phases
  steady = ([r["step_time_s"] for r in rows[1:]] or [rows[0]["step_time_s"]])
  steady_s = sum(steady) / len(steady)
  last = rows[-1]["step"]
  ends = []
  for d in model_dirs:
    if _newest(d / "checkpoints" / str(last)):
      # The eval writes into the step dir later: only the checkpoint's own files.
      own = [_newest(d / "checkpoints" / str(last) / sub) for sub in ("state", "data")]
      committed = _mtime(d / "checkpoints" / str(last) / "commit_success.txt")
      ends.append(committed or max(t for t in own if t))
  phases["train: steps"] = last * steady_s
  if step_times:
    first = min(step_times)
    phases["train: compile (state init, first-step compile)"] = max(
        step_times[first] - manifest - first * steady_s, 0.0)
    if ends:
      phases["train: checkpoint save"] = max(max(ends) - step_times[max(step_times)], 0.0)
  elif ends:  # a multi-arm job logs no step lines: compile and save in one
    phases["train: compile (state init, first-step compile)"] = max(
        max(ends) - manifest - last * steady_s, 0.0)
  phases["_steady_step_s"] = steady_s
  return phases


def _eval_dirs(cmd) -> list[str]:
  """The checkpoint dirs an eval launch evaluates (one, or a group's)."""
  single = [a.split("=", 1)[1].strip("'\"") for a in cmd
            if a.startswith("--gin.CHECKPOINT_DIR=")]
  return single + [a.split("=", 1)[1] for a in cmd if a.startswith("--checkpoint_dir=")]


def _eval_phases(launch, ckpt_dirs: list[pathlib.Path], benchmarks):
  """Phases of one eval process; in a grouped one each later checkpoint's
  "start" runs from the previous one's last metrics.json (gin parsed again)."""
  phases = collections.Counter()
  t0 = launch["time"]
  for ckpt_dir in ckpt_dirs:
    for name, seconds in _one_eval_phases(t0, ckpt_dir, benchmarks).items():
      phases[name] += seconds
    ends = [_mtime(ckpt_dir / "eval" / b / "metrics.json") for b in benchmarks]
    t0 = max((t for t in ends if t), default=t0)
  return dict(phases)


def _one_eval_phases(t0, ckpt_dir: pathlib.Path, benchmarks):
  phases = collections.Counter()
  started = _mtime(ckpt_dir / "eval_config.gin")
  if started:
    phases["eval: start (process, imports, gin)"] = started - t0
  bindings = {b: _mtime(ckpt_dir / "eval" / b / "binding.json") for b in benchmarks}
  firsts = [t for t in bindings.values() if t]
  if started and firsts:
    phases["eval: load checkpoint + setup"] = min(firsts) - started
  for b in benchmarks:
    d = ckpt_dir / "eval" / b
    t_bind, t_samp = bindings[b], _mtime(d / "samples.jsonl")
    t_verd, t_metr = _mtime(d / "verdicts.jsonl"), _mtime(d / "metrics.json")
    if t_bind and t_samp:
      phases["eval: sampling (incl. compile)"] += t_samp - t_bind
    if t_samp and t_verd:
      phases["eval: judging"] += t_verd - t_samp
    if t_verd and t_metr:
      phases["eval: metrics"] += t_metr - t_verd
  return dict(phases)


def breakdown(study_dir: pathlib.Path, study_lines=None):
  """{phase: [seconds per stage]}, wall seconds and notes."""
  launches = [json.loads(l) for l in (study_dir / "logs" / "launches.jsonl")
              .read_text().splitlines()]
  phases = collections.defaultdict(list)
  steady = []
  compiles = collections.defaultdict(lambda: [0, 0])
  for launch in launches:
    log_path = _find(study_dir, launch["log"])
    counts = _compiles(log_path)
    compiles[launch["stage"]][0] += counts[0]
    compiles[launch["stage"]][1] += counts[1]
    if launch["stage"] == "train":
      model_dirs = ([_find(study_dir, d) for d in launch["model_dirs"]]
                    if "model_dirs" in launch else
                    [pathlib.Path(str(log_path)[:-len(".train.log")])])
      got = _train_phases(launch, log_path, model_dirs)
      if "_steady_step_s" in got:
        steady.append(got.pop("_steady_step_s"))
    else:
      ckpt_dirs = [_find(study_dir, d) for d in _eval_dirs(launch["cmd"])]
      bench_arg = next(a for a in launch["cmd"] if a.startswith("--gin.BENCHMARKS="))
      benchmarks = re.findall(r"'([^']+)'", bench_arg.split("=", 1)[1])
      got = _eval_phases(launch, ckpt_dirs, benchmarks)
    for name, seconds in got.items():
      phases[name].append(seconds)
  start = _mtime(study_dir / "study_config.gin")
  plan = _mtime(study_dir / "plan.json")
  first_launch = min(l["time"] for l in launches)
  last_eval = max(_mtime(_find(study_dir, d) / "results.jsonl") or 0
                  for l in launches for d in _eval_dirs(l["cmd"]))
  report_end = _newest(study_dir / "report")
  study = {}
  if start and plan:
    study["study: world + stores (reuse or build), plan"] = plan - start
  study["study: plan -> first launch"] = first_launch - (plan or first_launch)
  study["study: stages (wall)"] = last_eval - first_launch
  if report_end:
    study["study: teachers, collect, report"] = report_end - last_eval
  if study_lines:
    t_run, t_first = study_lines[0][0], study_lines[1][0] if len(study_lines) > 1 else None
    if start:
      study["study: process start, imports, gin (--run)"] = start - t_run
    del t_first
  wall = (report_end or last_eval) - (study_lines[0][0] if study_lines else start)
  return phases, study, wall, steady, launches, dict(compiles)


def run_study(study_dir: pathlib.Path, extra):
  """Runs the quick study (`make demo`'s command), timestamping its output lines."""
  cmd = [sys.executable, "-m", "sftdiff.study", f"--gin_file={QUICK_STUDY}",
         f"--gin.STUDY_DIR='{study_dir}'", *extra]
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_LOG_COMPILES="1")
  lines = [(time.time(), "$ " + " ".join(cmd))]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)

  def read():
    for line in proc.stdout:
      lines.append((time.time(), line.rstrip()))
  reader = threading.Thread(target=read)
  reader.start()
  rc = proc.wait()
  reader.join()
  (study_dir / "logs").mkdir(parents=True, exist_ok=True)
  with open(study_dir / "logs" / "bench_study_output.txt", "w") as f:
    for t, line in lines:
      f.write(f"{t:.3f} {line}\n")
  if rc:
    sys.exit(f"the study exited {rc}; its output: {study_dir}/logs/bench_study_output.txt")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study_dir", required=True)
  parser.add_argument("--run", action="store_true", help="run the quick study first")
  parser.add_argument("--json_out", default=None)
  args, extra = parser.parse_known_args()
  # The load matters only while this bench runs the study; a finished
  # study's times were taken whenever it ran.
  guard = LoadGuard("bench/study.py") if args.run else None
  study_dir = pathlib.Path(args.study_dir).absolute()
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  lines = run_study(study_dir, extra) if args.run else None
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  phases, study, wall, steady, launches, compiles = breakdown(study_dir, lines)
  stages = collections.Counter(l["stage"] for l in launches)
  print(f"study {study_dir}: {dict(stages)} stage launches, wall {wall:.1f} s")
  trained = sum(len(l.get("runs", [l["run"]])) for l in launches if l["stage"] == "train")
  evaluated = sum(len(_eval_dirs(l["cmd"])) for l in launches if l["stage"] == "eval")
  print(f"  process starts: {len(launches)} stages (+1 study); runs trained: {trained}, "
        f"checkpoint dirs evaluated: {evaluated}")
  if lines:
    print(f"  CPU seconds (study + every stage, user + sys): {cpu_s:.1f} s")
  finished = study_dir / "logs" / "finished.jsonl"
  ends = [json.loads(l) for l in finished.read_text().splitlines()] if finished.exists() else []
  stage_cpu = collections.Counter()
  for end in ends:
    stage_cpu[end["stage"]] += end["cpu_s"] or 0.0
  for stage, seconds in sorted(stage_cpu.items()):
    print(f"  {stage} stages: {seconds:.1f} CPU s (user + sys, from the runner's wait4)")
  for stage, (requested, hits) in sorted(compiles.items()):
    if requested:
      print(f"  {stage}: {requested} XLA compilations requested, {hits} served by the "
            f"persistent cache ({100 * hits / requested:.0f}% hit rate)")
  if not any(r for r, _ in compiles.values()):
    print("  (no compile log: JAX_LOG_COMPILES=1 is set with --run)")
  for name, seconds in study.items():
    print(f"  {name:55s} {seconds:8.1f} s")
  total = sum(sum(v) for v in phases.values())
  print(f"  per phase, summed over stages ({total:.1f} stage-seconds):")
  for name, values in sorted(phases.items()):
    s = sum(values)
    print(f"  {name:55s} {s:8.1f} s  {100 * s / max(total, 1e-9):5.1f}%  "
          f"({len(values)} stages, {s / len(values):.2f} s each)")
  if steady:
    print(f"  steady train step: {sum(steady) / len(steady) * 1e3:.0f} ms (mean over stages)")
  if guard:
    guard.finish()  # quiet = nothing but the study and its stages used the CPU
  else:
    print("(read from a finished study: the load when it ran is not known here)")
  if args.json_out:
    from sftdiff import strict_json  # pylint: disable=g-import-not-at-top
    sys.path.insert(0, str(REPO))
    strict_json.dump({"study_dir": str(study_dir), "wall_s": wall, "study": study,
                      "phases": {k: sum(v) for k, v in phases.items()},
                      "stage_launches": dict(stages), "runs_trained": trained,
                      "cpu_s": cpu_s if lines else None,
                      "stage_cpu_s": dict(stage_cpu),
                      "compiles": {k: {"requested": r, "cache_hits": h}
                                   for k, (r, h) in compiles.items()},
                      "load": guard.summary() if guard else None}, args.json_out)


if __name__ == "__main__":
  main()
