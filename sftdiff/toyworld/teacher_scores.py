"""Each teacher evaluated directly on the toy benchmarks (the report's dotted
lines): the teacher's generator answers the benchmark prompts, the same rule
raters rate the replies, the same metric code aggregates them."""

from __future__ import annotations

from typing import Any, Sequence

from sftdiff.eval.benchmarks.base import SampleResult
from sftdiff.toyworld import benchmarks as toy_benchmarks
from sftdiff.toyworld import teachers
from sftdiff.toyworld.params import WorldParams


def teacher_benchmark_scores(world=None, *, params: WorldParams | None = None,
                             benchmarks: Sequence[str] | None = None
                             ) -> dict[str, dict[str, dict[str, Any]]]:
  """{teacher: {benchmark: metrics}} for every teacher of the world.

  `world` is a `World` (its preset's parameters are used) — or pass `params`.
  """
  if params is None:
    if world is None:
      raise ValueError("teacher_benchmark_scores needs a World or WorldParams")
    params = world.params
  names = list(benchmarks if benchmarks is not None
               else getattr(world, "benchmarks", toy_benchmarks.BENCHMARK_NAMES))
  out: dict[str, dict[str, dict[str, Any]]] = {}
  for teacher in params.teachers:
    out[teacher.name] = {}
    for name in names:
      bench = toy_benchmarks.build(name)
      records = toy_benchmarks.prompt_records(name, len(bench.prompts))
      replies = teachers.sample_replies(teacher, params.negative_emotion, records,
                                        bench.sampling.n)
      rows = []
      for prompt in bench.prompts:
        for j, text in enumerate(replies[prompt.prompt_id]):
          verdicts = {r.name: r.rate(prompt, text) for r in bench.raters}
          rows.append(SampleResult(prompt.prompt_id, j, prompt.subset, text, verdicts))
      out[teacher.name][name] = {**bench.metric(rows), "teacher": teacher.name,
                                 "benchmark_version": bench.version,
                                 "num_samples": len(rows)}
  return out
