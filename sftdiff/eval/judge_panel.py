"""Several judges on one benchmark: each judge's metrics, their agreement, and
the samples they disagree on (the `judge_panel` block of metrics.json).

The primary judge's verdicts make the headline metrics (unchanged by adding
judges). Every other judge rates the same samples with the benchmark's rubric
raters; rule raters need no judge, so their verdicts are shared by all.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

from sftdiff.eval import agreement
from sftdiff.eval.benchmarks.base import Benchmark, RubricRater, SampleResult
from sftdiff.eval.types import Verdict

MAX_LISTED_DISAGREEMENTS = 200  # per benchmark; the count is always complete
EXCERPT_CHARS = 400


def _category(v: Verdict):
  return bool(v.value) if isinstance(v.value, bool) else float(v.value)


def _scored(v: Verdict | None) -> bool:
  return v is not None and not v.unscored and v.value is not None


def summarize(bench: Benchmark, primary: str, rows_by_judge: Mapping[str, Sequence[SampleResult]],
              identities: Mapping[str, str]) -> dict[str, Any]:
  """`rows_by_judge[name]`: the samples with that judge's verdicts (same order)."""
  names = [primary] + sorted(n for n in rows_by_judge if n != primary)
  rubric = [r.name for r in bench.raters if isinstance(r, RubricRater)]
  judges = {}
  for name in names:
    rows = rows_by_judge[name]
    judges[name] = {
        "identity": identities.get(name, ""),
        "metrics": bench.metric(rows),
        "unscored": {r: sum(not _scored(row.verdicts.get(r)) for row in rows) for r in rubric},
    }
  agree: dict[str, list[dict[str, Any]]] = {}
  disagreements: list[dict[str, Any]] = []
  count = 0
  for rater in rubric:
    for a, b in itertools.combinations(names, 2):
      triples = []
      for ra, rb in zip(rows_by_judge[a], rows_by_judge[b]):
        va, vb = ra.verdicts.get(rater), rb.verdicts.get(rater)
        if _scored(va) and _scored(vb):
          triples.append((ra.prompt_id, _category(va), _category(vb)))
      agree.setdefault(rater, []).append({"judges": [a, b], **agreement.pairwise(triples)})
    for i, row in enumerate(rows_by_judge[primary]):
      vs = {n: rows_by_judge[n][i].verdicts.get(rater) for n in names}
      values = {_category(v) for v in vs.values() if _scored(v)}
      if len(values) < 2:
        continue
      count += 1
      if len(disagreements) < MAX_LISTED_DISAGREEMENTS:
        disagreements.append({
            "prompt_id": row.prompt_id, "sample_index": row.sample_index,
            "subset": row.subset, "rater": rater,
            "completion": row.completion[:EXCERPT_CHARS],
            "verdicts": {n: ({"value": v.value, "evidence": v.evidence[:EXCERPT_CHARS],
                              "reasoning": v.reasoning[:EXCERPT_CHARS]} if _scored(v)
                             else {"value": None, "unscored_reason": v.reason if v else ""})
                         for n, v in vs.items()}})
  return {"primary": primary, "judges": judges, "agreement": agree,
          "num_disagreements": count, "disagreements": disagreements}


def rows_with(rows: Sequence[SampleResult], verdicts: Mapping[tuple, Verdict],
              raters: Sequence[RubricRater]) -> list[SampleResult]:
  """`rows` with their rubric verdicts replaced by another judge's."""
  out = []
  for row in rows:
    vs = dict(row.verdicts)
    for r in raters:
      vs[r.name] = verdicts[(row.prompt_id, row.sample_index, r.name, r.version)]
    out.append(SampleResult(row.prompt_id, row.sample_index, row.subset, row.completion, vs))
  return out
