"""Gathers a study's files into `StudyResults` for the verdicts and figures."""

from __future__ import annotations

import collections
import os
from typing import Any, Mapping, Sequence

from sftdiff import layout
from sftdiff.study import results as results_lib
from sftdiff.study import stages
from sftdiff.study.config import ArmDef
from sftdiff.study.spec import RunSpec
from sftdiff.study.verdicts import StudyResults


def _trait_refs(traits: Mapping[str, str]) -> dict[str, tuple[str, str]]:
  return {t: tuple(ref.split(":", 1)) for t, ref in traits.items()}


def run_scores(spec: RunSpec, steps: int, traits: Mapping[str, str],
               problems: list[str] | None = None) -> dict[str, results_lib.Estimate]:
  """trait → estimate for one run, read at its final step (evaluated whatever
  the study's `eval_steps`). Missing files are omitted (the report says
  'missing'); a metrics file without the trait's metric is a problem, listed."""
  ckpt = stages.final_checkpoint(spec, steps)
  out = {}
  for trait, (bench, metric) in _trait_refs(traits).items():
    path = layout.metrics_path(ckpt, bench)
    if os.path.isfile(path):
      try:
        out[trait] = results_lib.estimate_from(results_lib.read_json(path), metric,
                                               where=path)
      except (KeyError, ValueError) as e:
        if problems is None:
          raise
        problems.append(f"{spec.name}: trait {trait!r}: {e}")
  return out


def manifest_fraction(spec: RunSpec, source: str) -> dict[str, float]:
  path = layout.manifest_path(spec.model_dir)
  if not os.path.isfile(path):
    return {}
  return results_lib.source_fraction(results_lib.read_json(path), source)


def teacher_estimates(scores: Mapping[str, Mapping[str, Any]],
                      traits: Mapping[str, str]
                      ) -> dict[str, dict[str, results_lib.Estimate]]:
  """{source: {benchmark: metrics}} → {source: {trait: Estimate}}."""
  out = {}
  for source, by_bench in scores.items():
    out[source] = {}
    for trait, (bench, metric) in _trait_refs(traits).items():
      if bench in by_bench:
        try:
          out[source][trait] = results_lib.estimate_from(
              by_bench[bench], metric, where=f"teacher {source} / {bench}")
        except KeyError:
          pass
  return out


def collect(defs: Sequence[ArmDef], specs: Sequence[RunSpec], *, steps: int,
            traits: Mapping[str, str], teacher_source: str, alt_source: str,
            teacher_scores: Mapping[str, Mapping[str, Any]] | None = None,
            problems: list[str] | None = None) -> StudyResults:
  per_arm = collections.defaultdict(list)
  for spec in specs:
    per_arm[spec.arm_name].append(spec)
  scores, fractions, per_seed = {}, {}, {}
  for d in defs:
    runs = per_arm.get(d.name, [])
    by_trait = collections.defaultdict(list)
    for spec in runs:
      for trait, est in run_scores(spec, steps, traits, problems).items():
        by_trait[trait].append(est)
    scores[d.name] = {t: e for t, ests in by_trait.items()
                      if (e := results_lib.pool_seeds(ests)) is not None}
    per_seed[d.name] = dict(by_trait)
    for spec in runs:  # seeds share the selection; the first manifest tells
      frac = manifest_fraction(spec, teacher_source)
      if frac:
        fractions[d.name] = frac
        break
  return StudyResults(
      traits=list(traits), arms={d.name: d for d in defs}, scores=scores,
      teacher_fraction=fractions,
      teacher_scores=teacher_estimates(teacher_scores or {}, traits),
      teacher_source=teacher_source, alt_source=alt_source, per_seed=per_seed)
