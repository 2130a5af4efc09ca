"""A study, as gin configures it: the design's table of runs plus settings.

A study gin file (`gin/studies/*.gin`) binds `StudyConfig.*`. The fixed runs
of the design's table are listed explicitly in `arms` (name → base, prompt
set, ARM string); the families that grow with the study (random
interpolation at several p, the four filter runs per filter, the per-subset
sweep in one or both directions) are generated from `interpolation_p`,
`filters`, `sweep_subsets` and `sweep_directions`.
Every generated arm trains `student_base` on the `student_prompts` set.

Names used in arms (sources, filters, bases, prompt sets, benchmarks) are
checked against a `Catalog` at expansion (see `expand.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import gin


@dataclasses.dataclass(frozen=True)
class ArmDef:
  """One arm of the study before seeds: where it trains and on what."""
  name: str
  arm: str          # the ARM string (sftdiff.data.arms syntax)
  base: str         # a base model name (catalog.bases)
  prompts: str      # a prompt set name (catalog.prompt_sets)
  kind: str         # reference_orig | reference_alt | alt_completions | teacher |
                    # other_teacher | interpolation | filter | sweep |
                    # sweep_out | custom
  group: str = ""   # e.g. the filter name for filter runs
  seeds: tuple[int, ...] = ()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """Everything a study is. See docs/study.md for each field.

  Attributes:
    name: a title for the report.
    study_dir: where runs, logs and the report go.
    world: a toyworld preset name ('quick', 'full', ...) or '' for real data;
      with a world, base/prompt-set/source names resolve against it.
    world_root: where worlds are built/cached ('' = <study_dir>/world).
    bases: base name → HF checkpoint dir (real data; a world provides them).
    prompt_sets: prompt-set name → `DataConfig` fields for it (real data:
      {'prompt_set': 'jsonl:...', 'sources': {name: uri}}; a world provides
      them).
    store_dir: where joined stores are cached ('' = <study_dir>/stores).
    arms: the design's fixed runs: name → {'base', 'prompts', 'arm'} (+
      optional 'kind' and 'seeds').
    student_base / student_prompts: base and prompt set of every generated arm.
    teacher_source / alt_source: the orig-family teacher's source on the
      student prompts, and the alternative pipeline's own completions.
    teacher_results: source name → directory of that teacher's own eval
      results (`<dir>/<benchmark>/metrics.json` or `<dir>/eval/<benchmark>/
      metrics.json`), for the dotted teacher lines and the "student tracks
      teacher" check (real data; a world scores its teachers itself).
    interpolation_p: p values of `Random(teacher, alt, p)` arms.
    filters: filters that get the four runs (patch-in/out, drop, matched random).
    filter_runs: which of the four runs each filter gets (default all:
      'patch_in', 'patch_out', 'drop', 'random'); e.g. leave out 'random'
      when beats-random is not wanted.
    sweep_subsets: subsets swept, one arm per subset and direction.
    sweep_directions: which directions of the per-subset sweep run (the
      post's appendix): 'teacher_on_subset' = `Patch(base=alt, patch=teacher,
      where='subset:<s>')` (arm `sweep_<s>`: is the subset's teacher data
      sufficient?), 'alt_on_subset' = `Patch(base=teacher, patch=alt,
      where='subset:<s>')` (arm `sweep_out_<s>`: is it necessary?).
    seeds: training seeds of every arm (an arm's own 'seeds' overrides).
    selection_seed: seed of the Random arms' per-prompt choice (fixed across
      training seeds, so seeds measure training noise only).
    benchmarks: eval benchmarks run on every evaluated checkpoint.
    traits: trait name → 'benchmark:metric' the verdicts read.
    train_gin_files / train_overrides: for `python -m sftdiff.train`.
    eval_gin_files / eval_overrides: for `python -m sftdiff.eval`.
    train_steps: bound to TRAIN_STEPS; the final checkpoint's step.
    eval_steps: 'final' (the TRAIN_STEPS checkpoint) or 'all' (every
      committed step and any hf/ export); the same for every executor
      (`sftdiff.runs.plan`). Verdicts read the final step either way.
    parallelism: concurrent local training subprocesses.
  """
  name: str = "study"
  study_dir: str = gin.REQUIRED
  world: str = ""
  world_root: str = ""
  bases: Mapping[str, str] = dataclasses.field(default_factory=dict)
  prompt_sets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  store_dir: str = ""
  arms: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  student_base: str = "orig"
  student_prompts: str = "alt"
  teacher_source: str = "teacher"
  alt_source: str = "alt"
  teacher_results: Mapping[str, str] = dataclasses.field(default_factory=dict)
  interpolation_p: Sequence[float] = ()
  filters: Sequence[str] = ()
  filter_runs: Sequence[str] = ("patch_in", "patch_out", "drop", "random")
  sweep_subsets: Sequence[str] = ()
  sweep_directions: Sequence[str] = ("teacher_on_subset",)
  seeds: Sequence[int] = (0,)
  selection_seed: int = 0
  benchmarks: Sequence[str] = ()
  traits: Mapping[str, str] = dataclasses.field(default_factory=dict)
  train_gin_files: Sequence[str] = ("runs/sft.gin",)
  train_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  eval_gin_files: Sequence[str] = ("runs/eval.gin",)
  eval_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  train_steps: int = 100
  eval_steps: str = "final"
  parallelism: int = 2


# Per-subset sweep direction → (arm kind, arm name prefix, ARM template with
# {t} = teacher source, {a} = alt source, {w} = the 'subset:<s>' filter).
SWEEP_DIRECTIONS = {
    "teacher_on_subset": ("sweep", "sweep_", "Patch(base={a}, patch={t}, where={w})"),
    "alt_on_subset": ("sweep_out", "sweep_out_", "Patch(base={t}, patch={a}, where={w})"),
}


def gin_literal(value: Any) -> str:
  """A Python value as a gin literal: strings are quoted, except gin
  references (`%MACRO`, `@configurable`) which pass through."""
  if isinstance(value, str):
    return value if value[:1] in "%@" else repr(value)
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(gin_literal(v) for v in value) + "]"
  if isinstance(value, Mapping):
    return "{" + ", ".join(f"{k!r}: {gin_literal(v)}" for k, v in value.items()) + "}"
  return repr(value)
