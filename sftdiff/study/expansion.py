"""Study → arms × seeds → RunSpecs. Pure: everything it checks against comes
in a `Catalog` (what bases, prompt sets, sources, filters and benchmarks
exist), so a bad study fails here, before any training.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from typing import Callable, Mapping

from sftdiff.study.config import SWEEP_DIRECTIONS, ArmDef, StudyConfig, gin_literal
from sftdiff.study.spec import RunSpec


class StudyConfigError(ValueError):
  """The study configuration is wrong; the message names the arm/field."""


@dataclasses.dataclass(frozen=True)
class Catalog:
  """What a study may refer to.

  Attributes:
    bases: base name → initial checkpoint (HF dir), bound to INITIAL_CHECKPOINT.
    prompt_sets: prompt-set name → gin bindings (NAME → gin literal) that make
      the train binary read that prompt set and its sources.
    sources: prompt-set name → the source names available on it.
    subsets: prompt-set name → its subset names (for `subset:<name>` filters).
    filters: registered filter names (besides `subset:<name>`).
    benchmarks: registered benchmark names.
    filter_fraction: (prompt set, filter) → |F|/N, for the matched-random arm
      (None: not known yet; the arm keeps its `p=<|F|/N>` placeholder).
    train_overrides: bindings every training run gets (e.g. a world's root).
  """
  bases: Mapping[str, str]
  prompt_sets: Mapping[str, Mapping[str, str]]
  sources: Mapping[str, frozenset[str]]
  subsets: Mapping[str, frozenset[str]]
  filters: frozenset[str]
  benchmarks: frozenset[str]
  filter_fraction: Callable[[str, str], float]
  train_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)


# Arm constructors and the meaning of their positional arguments
# (sftdiff.data.arms syntax; DESIGN.md "Arm").
_ARM_PARAMS = {
    "Source": ("source",),
    "Random": ("a", "b", "p", "seed"),
    "Patch": ("base", "patch", "where"),
    "Drop": ("base", "where"),
}
_SOURCE_PARAMS = ("source", "a", "b", "base", "patch")
# Kinds an explicit arm may have (the verdicts read the first five).
EXPLICIT_KINDS = ("reference_orig", "reference_alt", "alt_completions", "teacher",
                  "other_teacher", "custom")


def arm_names_used(arm: str) -> tuple[set[str], set[str]]:
  """(sources, filters) an ARM string refers to; ValueError if malformed."""
  try:
    tree = ast.parse(arm, mode="eval").body
  except SyntaxError as e:
    raise ValueError(f"cannot parse ARM {arm!r}: {e.msg}") from None
  sources, filters = set(), set()

  def visit(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      sources.add(node.value)  # a bare string is a source
      return
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _ARM_PARAMS):
      raise ValueError(f"unknown arm expression {ast.unparse(node)!r} in {arm!r}; "
                       f"arms are {', '.join(_ARM_PARAMS)}")
    params = _ARM_PARAMS[node.func.id]
    if len(node.args) > len(params):
      raise ValueError(f"{node.func.id} takes at most {len(params)} arguments: {arm!r}")
    named = dict(zip(params, node.args))
    for kw in node.keywords:
      if kw.arg not in params:
        raise ValueError(f"{node.func.id} has no argument {kw.arg!r} "
                         f"(it takes {', '.join(params)}): {arm!r}")
      named[kw.arg] = kw.value
    for param, value in named.items():
      if param in _SOURCE_PARAMS:
        visit(value)
      elif param == "where":
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
          raise ValueError(f"where= must be a filter name string: {arm!r}")
        filters.add(value.value)
      elif param == "p":
        p = ast.literal_eval(value)
        if not 0.0 <= float(p) <= 1.0:
          raise ValueError(f"Random p={p} outside [0, 1]: {arm!r}")

  visit(tree)
  return sources, filters


def _q(name: str) -> str:
  return repr(name)


# The four runs of a filter (DESIGN.md "Arm"), in report order.
FILTER_RUNS = ("patch_in", "patch_out", "drop", "random")


def _checked_list(values, field: str, allowed) -> list[str]:
  """A list-of-names StudyConfig field, checked against `allowed`."""
  if isinstance(values, str):
    raise StudyConfigError(f"StudyConfig.{field} = {values!r} must be a list, "
                           f"e.g. {list(allowed)}")
  for v in values:
    if v not in allowed:
      raise StudyConfigError(f"StudyConfig.{field}: unknown value {v!r}; "
                             f"allowed: {', '.join(allowed)}")
  if len(set(values)) != len(values):
    raise StudyConfigError(f"StudyConfig.{field} has duplicates: {list(values)}")
  return list(values)


def arm_defs(study: StudyConfig) -> list[ArmDef]:
  """The study's arms (explicit + generated), names not yet validated."""
  defs = []
  for name, spec in study.arms.items():
    missing = [k for k in ("base", "prompts", "arm") if k not in spec]
    if missing:
      raise StudyConfigError(
          f"StudyConfig.arms[{name!r}] lacks {', '.join(missing)} "
          "(each arm needs 'base', 'prompts' and 'arm')")
    unknown = set(spec) - {"base", "prompts", "arm", "kind", "seeds", "group"}
    if unknown:
      raise StudyConfigError(f"StudyConfig.arms[{name!r}] has unknown keys "
                             f"{sorted(unknown)}")
    kind = spec.get("kind", "custom")
    if kind not in EXPLICIT_KINDS:
      raise StudyConfigError(f"StudyConfig.arms[{name!r}] has unknown kind {kind!r}; "
                             f"kinds: {', '.join(EXPLICIT_KINDS)}")
    defs.append(ArmDef(name=name, arm=spec["arm"], base=spec["base"],
                       prompts=spec["prompts"], kind=spec.get("kind", "custom"),
                       group=spec.get("group", ""),
                       seeds=tuple(spec.get("seeds", ()))))
  t, a = _q(study.teacher_source), _q(study.alt_source)
  gen = dict(base=study.student_base, prompts=study.student_prompts)
  for p in study.interpolation_p:
    defs.append(ArmDef(
        name=f"random_p{float(p):g}", kind="interpolation", group=f"{float(p):g}",
        arm=f"Random(a={t}, b={a}, p={float(p)!r}, seed={study.selection_seed})",
        **gen))
  runs = _checked_list(study.filter_runs, "filter_runs", FILTER_RUNS)
  for f in study.filters:
    arms = {
        "patch_in": f"Patch(base={a}, patch={t}, where={_q(f)})",
        "patch_out": f"Patch(base={t}, patch={a}, where={_q(f)})",
        "drop": f"Drop(base={t}, where={_q(f)})",
        # p is filled in by expand() from the catalog: |F|/N on the prompt set.
        "random": f"Random(a={t}, b={a}, p=<|{f}|/N>, seed={study.selection_seed})",
    }
    defs += [ArmDef(name=f"{r}_{f}", kind="filter", group=f, arm=arms[r], **gen)
             for r in FILTER_RUNS if r in runs]
  directions = _checked_list(study.sweep_directions, "sweep_directions", SWEEP_DIRECTIONS)
  for s in study.sweep_subsets:
    for direction in directions:
      kind, prefix, arm = SWEEP_DIRECTIONS[direction]
      defs.append(ArmDef(name=f"{prefix}{s}", kind=kind, group=s,
                         arm=arm.format(a=a, t=t, w=_q("subset:" + s)), **gen))
  return defs


def _check_arm(d: ArmDef, catalog: Catalog) -> None:
  where = f"study arm {d.name!r} ({d.arm})"
  if d.base not in catalog.bases:
    raise StudyConfigError(f"{where}: unknown base {d.base!r}; known bases: "
                           f"{sorted(catalog.bases)}")
  if d.prompts not in catalog.prompt_sets:
    raise StudyConfigError(f"{where}: unknown prompt set {d.prompts!r}; known: "
                           f"{sorted(catalog.prompt_sets)}")
  try:
    sources, filters = arm_names_used(d.arm)
  except ValueError as e:
    raise StudyConfigError(f"{where}: {e}") from None
  known_sources = catalog.sources.get(d.prompts, frozenset())
  for s in sorted(sources - set(known_sources)):
    raise StudyConfigError(
        f"{where}: unknown source {s!r} on prompt set {d.prompts!r}; known "
        f"sources: {sorted(known_sources)}")
  subsets = catalog.subsets.get(d.prompts, frozenset())
  for f in sorted(filters):
    if f.startswith("subset:"):
      if f[len("subset:"):] not in subsets:
        raise StudyConfigError(
            f"{where}: unknown subset {f[len('subset:'):]!r} on prompt set "
            f"{d.prompts!r}; known subsets: {sorted(subsets)}")
    elif f not in catalog.filters:
      raise StudyConfigError(f"{where}: unknown filter {f!r}; known filters: "
                             f"{sorted(catalog.filters)} and subset:<name>")


def check_static(study: StudyConfig) -> list[ArmDef]:
  """Checks what needs no catalog (seeds, names, traits); returns the arms."""
  if not isinstance(study.study_dir, str) or not study.study_dir:
    raise StudyConfigError(
        "StudyConfig.study_dir is not set: bind the STUDY_DIR macro, e.g. "
        "--gin.STUDY_DIR=\"'/tmp/study'\" (sftdiff.study) or "
        "--study_gin=\"STUDY_DIR='/tmp/study'\" (launcher)")
  if not study.seeds:
    raise StudyConfigError("StudyConfig.seeds is empty")
  if len(set(study.seeds)) != len(study.seeds):
    raise StudyConfigError(f"StudyConfig.seeds has duplicates: {list(study.seeds)}")
  if len(set(study.benchmarks)) != len(study.benchmarks):
    raise StudyConfigError(
        f"StudyConfig.benchmarks has duplicates: {list(study.benchmarks)}")
  for trait, ref in study.traits.items():
    bench, _, metric = ref.partition(":")
    if bench not in study.benchmarks or not metric:
      raise StudyConfigError(
          f"StudyConfig.traits[{trait!r}] = {ref!r} must be 'benchmark:metric' "
          f"with a benchmark from StudyConfig.benchmarks {list(study.benchmarks)}")
  defs = arm_defs(study)
  seen = {}
  for d in defs:
    if d.name in seen:
      raise StudyConfigError(
          f"duplicate run name {d.name!r}: arm {d.arm!r} and arm "
          f"{seen[d.name].arm!r} (rename one in StudyConfig.arms)")
    seen[d.name] = d
    try:
      RunSpec(arm_name=d.name, arm=d.arm, seed=0, gin_files=(), overrides=(),
              model_dir="")
    except ValueError as e:
      raise StudyConfigError(f"study arm {d.name!r}: {e}") from None
  return defs


def validate(study: StudyConfig, catalog: Catalog) -> list[ArmDef]:
  """Checks the whole study; returns its arms with matched-random p filled."""
  defs = check_static(study)
  for b in study.benchmarks:
    if b not in catalog.benchmarks:
      raise StudyConfigError(f"StudyConfig.benchmarks: unknown benchmark {b!r}; "
                             f"registered: {sorted(catalog.benchmarks)}")
  for teacher in study.teacher_results:
    if teacher not in catalog.sources.get(study.student_prompts, ()):
      raise StudyConfigError(
          f"StudyConfig.teacher_results: unknown source {teacher!r} on prompt "
          f"set {study.student_prompts!r}")
  out = []
  for d in defs:
    if "<|" in d.arm:
      f = d.group
      _check_arm(dataclasses.replace(d, arm=d.arm.replace(f"<|{f}|/N>", "0.5")),
                 catalog)
      p = catalog.filter_fraction(d.prompts, f)
      if p is None:  # a planned catalog: |F|/N is known once the store is built
        out.append(d)
        continue
      p = float(p)
      if not 0.0 < p < 1.0:
        raise StudyConfigError(
            f"study arm {d.name!r}: filter {f!r} selects a fraction {p} of prompt "
            f"set {d.prompts!r}; the filter runs need 0 < |F|/N < 1")
      d = dataclasses.replace(d, arm=d.arm.replace(f"<|{f}|/N>", f"{p:.6g}"))
    _check_arm(d, catalog)
    out.append(d)
  return out


def run_dir(study: StudyConfig, arm_name: str, seed: int) -> str:
  return os.path.join(study.study_dir, "runs", arm_name, f"seed{seed}")


def specs_for(study: StudyConfig, defs: list[ArmDef], catalog: Catalog) -> list[RunSpec]:
  specs = []
  for d in defs:
    overrides = {**catalog.train_overrides, **catalog.prompt_sets[d.prompts],
                 "INITIAL_CHECKPOINT": repr(catalog.bases[d.base]),
                 "TRAIN_STEPS": str(int(study.train_steps))}
    overrides.update({k: gin_literal(v) for k, v in study.train_overrides.items()})
    for seed in (d.seeds or tuple(study.seeds)):
      specs.append(RunSpec(
          arm_name=d.name, arm=d.arm, seed=int(seed),
          gin_files=tuple(study.train_gin_files),
          overrides=tuple(overrides.items()),
          model_dir=run_dir(study, d.name, int(seed))))
  return specs


def expand(study: StudyConfig, catalog: Catalog) -> list[RunSpec]:
  """The study as RunSpecs (arms × seeds); StudyConfigError if it is wrong."""
  return specs_for(study, validate(study, catalog), catalog)
