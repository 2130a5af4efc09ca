"""The report's judge section: agreement between judges, judge token cost,
budget-unscored counts, and an appendix of the samples the judges disagree on.

Read from every `metrics.json` under the study directory (students'
`<ckpt>/eval/<bench>/` and teachers'); a study judged by one judge and with no
token counts gets no section. Agreement is pooled over runs by summing each
result's confusion table (so κ here is the κ of all the study's samples
together); the per-run κ range beside it shows how much runs differ.
"""

from __future__ import annotations

import collections
import glob
import os
from typing import Any, Sequence

from sftdiff import strict_json
from sftdiff.eval import agreement

MAX_APPENDIX_ROWS = 100


def _results(study_dir: str) -> list[tuple[str, dict[str, Any]]]:
  out = []
  pattern = os.path.join(study_dir, "**", "eval", "*", "metrics.json")
  for path in sorted(glob.glob(pattern, recursive=True)):
    if f"{os.sep}superseded{os.sep}" in path:
      continue
    try:
      m = strict_json.load(path)
    except (OSError, ValueError):
      continue  # the report lists unreadable results elsewhere
    run = os.path.relpath(os.path.dirname(os.path.dirname(os.path.dirname(path))), study_dir)
    out.append((run, m))
  return out


def _fmt(x, digits=2) -> str:
  return "–" if x is None else f"{x:.{digits}f}"


def _pool(pairs: Sequence[dict[str, Any]]) -> tuple[int, int, float | None]:
  """(n, agreements, κ) of summed confusion tables."""
  counts: dict[tuple, int] = collections.Counter()
  cats: set = set()
  for p in pairs:
    t = p.get("table") or {}
    cs = t.get("categories") or []
    for i, a in enumerate(cs):
      for j, b in enumerate(cs):
        counts[a, b] += t["counts"][i][j]
    cats |= set(cs)
  order = sorted(cats, key=repr)
  table = [[counts[a, b] for b in order] for a in order]
  n = sum(p["n"] for p in pairs)
  kappa = agreement.kappa_from_table(table) if order else float("nan")
  return n, sum(p["agreements"] for p in pairs), (None if kappa != kappa else kappa)


def agreement_rows(results) -> list[tuple[str, ...]]:
  grouped = collections.defaultdict(list)
  for _, m in results:
    for rater, pairs in ((m.get("judge_panel") or {}).get("agreement") or {}).items():
      for p in pairs:
        grouped[m.get("benchmark", "?"), rater, " vs ".join(p["judges"])].append(p)
  rows = []
  for (bench, rater, judges), pairs in sorted(grouped.items()):
    n, agree, kappa = _pool(pairs)
    per_run = sorted(p["kappa"] for p in pairs if p.get("kappa") is not None)
    spread = f"{per_run[0]:.2f} – {per_run[-1]:.2f}" if per_run else "–"
    rows.append((bench, rater, judges, str(len(pairs)), str(n),
                 _fmt(agree / n if n else None), _fmt(kappa), spread))
  return rows


def _budget_unscored(m) -> int:
  return sum(r.get("budget", 0) for r in (m.get("unscored_reasons") or {}).values())


def token_rows(results) -> list[tuple[str, ...]]:
  """(benchmark, judge, prompt, completion, total tokens, budget-unscored of the
  primary judge) summed over results."""
  sums = collections.defaultdict(lambda: [0, 0, 0])
  for _, m in results:
    primary = (m.get("judge_panel") or {}).get("primary", "primary")
    for judge, t in (m.get("judge_tokens") or {}).items():
      total = t.get("total") or {}
      s = sums[m.get("benchmark", "?"), judge]
      s[0] += total.get("prompt_tokens", 0)
      s[1] += total.get("completion_tokens", 0)
      if judge == primary:
        s[2] += _budget_unscored(m)
  return [(bench, judge, str(p), str(c), str(p + c), str(b))
          for (bench, judge), (p, c, b) in sorted(sums.items()) if p + c or b]


def appendix_rows(results) -> tuple[list[tuple[str, ...]], int]:
  rows, total = [], 0
  for run, m in results:
    panel = m.get("judge_panel") or {}
    total += panel.get("num_disagreements", 0)
    for d in panel.get("disagreements", []):
      if len(rows) >= MAX_APPENDIX_ROWS:
        break
      said = "; ".join(
          f"{name}: {v.get('value')}"
          + (f" — “{v['evidence']}”" if v.get("evidence") else "")
          for name, v in d["verdicts"].items())
      rows.append((run, m.get("benchmark", "?"), d["rater"],
                   f"{d['prompt_id']}#{d['sample_index']}", said, d["completion"][:200]))
  return rows, total


def blocks(study_dir: str) -> list:
  """Report blocks (the shapes `report.build_blocks` makes), [] when none apply."""
  results = _results(study_dir)
  agree, tokens = agreement_rows(results), token_rows(results)
  out: list = []
  if agree:
    out.append(("h2", "Judge agreement"))
    out.append(("p", "Raw agreement and Cohen's κ between judges, per benchmark and "
                     "rubric rater, pooled over the study's runs (summed confusion "
                     "tables); per-run κ range beside it. Each result's own κ interval "
                     "(in its metrics.json): " + agreement.INTERVAL_METHOD + ". The "
                     "headline numbers above are the primary judge's."))
    out.append(("table", ("benchmark", "rater", "judges", "results", "samples",
                          "agreement", "κ (pooled)", "κ per run"), agree))
  if tokens:
    out.append(("h2", "Judge cost"))
    out.append(("p", "Prompt and completion tokens the judges used (from each API "
                     "reply's usage, summed over runs and reruns); 'budget' counts "
                     "samples left unscored because max_judge_tokens was spent."))
    out.append(("table", ("benchmark", "judge", "prompt tokens", "completion tokens",
                          "total", "unscored: budget"), tokens))
  rows, total = appendix_rows(results)
  if rows:
    out.append(("h2", "Appendix: samples the judges disagree on"))
    more = f" (first {len(rows)} of {total})" if total > len(rows) else ""
    out.append(("p", f"{total} disagreeing sample(s){more}, with each judge's verdict "
                     "and quoted evidence."))
    out.append(("table", ("run", "benchmark", "rater", "sample", "verdicts (evidence)",
                          "response"), rows))
  return out
