"""Date confusion: does the model doubt that it is 2026 when told so?

Prompt set: `data/date_confusion.v1.jsonl` (120 dated prompts — system-prompt
dates, user-stated dates, references to 2026 events, direct questions — plus
25 undated controls). Rater: `rubrics/date_confusion.v1.md` (verdict with a
verbatim evidence quote). Metric: doubt rate on dated prompts (and per subset;
the control rate is reported separately).
"""

from __future__ import annotations

import hashlib
import pathlib

from sftdiff.eval import metrics
from sftdiff.eval.benchmarks.base import Benchmark, load_jsonl_prompts
from sftdiff.eval.benchmarks.rubric import FileRubric
from sftdiff.eval.types import SamplingParams

DATA = pathlib.Path(__file__).resolve().parent / "data" / "date_confusion.v1.jsonl"


def data_version(path: pathlib.Path = DATA) -> str:
  return f"{path.name}+{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"


def metric(rows):
  dated = [r for r in rows if r.subset != "control"]
  control = [r for r in rows if r.subset == "control"]
  out = metrics.rate_metric(dated, "date_confusion")
  out.update(metrics.rate_metric(control, "date_confusion", prefix="control"))
  out["by_subset"] = metrics.by_subset(rows, lambda r: metrics.rate_metric(r, "date_confusion"))
  return out


def build(samples_per_prompt: int = 4, max_new_tokens: int = 512,
          temperature: float = 1.0, top_p: float = 1.0,
          include_controls: bool = True) -> Benchmark:
  prompts = load_jsonl_prompts(DATA)
  if not include_controls:
    prompts = [p for p in prompts if p.subset != "control"]
  return Benchmark(
      name="date_confusion", prompts=prompts,
      sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, n=samples_per_prompt),
      raters=[FileRubric("date_confusion.v1.md")], metric=metric,
      version=data_version(), description="doubts that the current year is 2026")
