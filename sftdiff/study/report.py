"""`<study_dir>/report/`: report.md + report.html + PNG figures + verdicts.json.

The report is built as a list of blocks (heading, text, table, figure) and
rendered twice, to Markdown and to self-contained-ish HTML (figures are files
beside it), so both always say the same thing.
"""

from __future__ import annotations

import html
import os
from typing import Any, Mapping, Sequence

from sftdiff import strict_json
from sftdiff.study import figures, judge_appendix
from sftdiff.study.verdicts import (INCONCLUSIVE, NOT_APPLICABLE, RULED_OUT,
                                    SUPPORTED, VERDICT_VALUES, StudyResults,
                                    Verdict, all_verdicts)

VERDICT_COLUMNS = ("trait", "hypothesis", "verdict", "evidence (95% intervals)",
                   "planted", "match", "seeds alone")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]):
  return ("table", list(header), [[str(c) for c in r] for r in rows])


def _arm_rows(res: StudyResults):
  rows = []
  for name, d in res.arms.items():
    fr = res.teacher_fraction.get(name, {})
    frac = (f"{fr['examples']:.3f} / {fr['tokens']:.3f}"
            if "examples" in fr and "tokens" in fr else
            f"{fr['examples']:.3f} / –" if "examples" in fr else "–")
    ests = [e for t in res.traits if (e := res.get(name, t))]
    seeds = max((e.seeds for e in ests), default=0)
    cells = [name, d.kind, d.base, d.prompts, f"`{d.arm}`", frac, seeds or "–"]
    cells += [_arm_cell(res, name, t) for t in res.traits]
    rows.append(cells)
  return rows


def _cell(e) -> str:
  """An estimate with its sample count, seeds and interval method."""
  if e is None:
    return "missing"
  if not e.defined:
    return e.fmt()
  return f"{e.fmt()} n={e.n}, {e.seeds} seed{'s' * (e.seeds != 1)} ({e.method})"


def _arm_cell(res: StudyResults, arm: str, trait: str) -> str:
  """An arm's pooled estimate; when none, why: every seed's statistic is
  undefined (eval's reason), or no result exists yet."""
  e = res.get(arm, trait)
  if e is not None:
    return _cell(e)
  undefined = [x for x in res.per_seed.get(arm, {}).get(trait, ()) if not x.defined]
  if undefined:
    return (f"undefined in {len(undefined)} seed{'s' * (len(undefined) != 1)} "
            f"({undefined[0].reason or 'no value'})")
  return "missing"


# The two directions of the per-subset sweep, side by side (the post's appendix).
SWEEP_DIRECTIONS = (("sweep", "teacher on subset, alt elsewhere"),
                    ("sweep_out", "alt on subset, teacher elsewhere"))


def _sweep_table(res: StudyResults):
  """(header, rows): per subset, both directions' teacher share and scores;
  a direction the study did not run says so."""
  by = {(d.group, d.kind): n for n, d in res.arms.items()
        if d.kind in dict(SWEEP_DIRECTIONS)}
  if not by:
    return None
  header = ["subset", *[f"teacher share ({label})" for _, label in SWEEP_DIRECTIONS]]
  header += [f"{t}: {label}" for t in res.traits for _, label in SWEEP_DIRECTIONS]
  rows = []
  for subset in sorted({g for g, _ in by}):
    names = [by.get((subset, kind)) for kind, _ in SWEEP_DIRECTIONS]
    cells = [subset]
    for n in names:
      fr = res.teacher_fraction.get(n, {}).get("examples") if n else None
      cells.append("not run" if n is None else "–" if fr is None else f"{fr:.3f}")
    for t in res.traits:
      cells += ["not run (StudyConfig.sweep_directions)" if n is None
                else _arm_cell(res, n, t) for n in names]
    rows.append(cells)
  return header, rows


def _methods(res: StudyResults) -> str:
  """Which interval methods the estimates use, with their seeds and n range."""
  n_by = {}
  for by_trait in res.scores.values():
    for e in by_trait.values():
      n_by.setdefault((e.method, e.seeds), []).append(e.n)
  names = {"sampling": "the eval's sampling interval (Wilson / prompt-clustered "
                       "bootstrap; no training noise)",
           "seed_t": "seed_t (t interval over seeds, variance floored by "
                     "sampling; study/stats.py)"}

  def n_text(ns):
    return f"n = {min(ns)}" if min(ns) == max(ns) else f"n = {min(ns)}–{max(ns)}"
  return "; ".join(f"{names.get(m, m)} from {s} seed{'s' * (s > 1)}, "
                   f"{n_text(ns)} samples per run"
                   for (m, s), ns in sorted(n_by.items())) + "." if n_by else "none."


# A "raises it" verdict and the "suffices" verdict of the same run.
_RAISES_SUFFICES = (("raises:", "sufficient:"), ("sweep_raises:", "sweep_sufficient:"))


def _fold_raises(vs: Sequence[Verdict]) -> tuple[list[Verdict], list[str]]:
  """The verdicts a summary lists, each 'raises it' folded into its
  'suffices': both supported → 'suffices' alone; both ruled out → 'does not
  raise it' alone; raises without sufficing → one phrase (returned apart)."""
  by_key = {v.key: v for v in vs}
  drop, partial = set(), []
  for v in vs:
    for raises, suffices in _RAISES_SUFFICES:
      other = by_key.get(suffices + v.key[len(raises):]) if v.key.startswith(raises) else None
      if other is None:
        continue
      if v.verdict == other.verdict == SUPPORTED:
        drop.add(v.key)
      elif v.verdict == other.verdict == RULED_OUT:
        drop.add(other.key)
      elif v.verdict == SUPPORTED and other.verdict == INCONCLUSIVE:
        drop |= {v.key, other.key}
        partial.append(f"{v.hypothesis}, without reaching half the teacher's effect")
  return [v for v in vs if v.key not in drop], partial


def _summary(res: StudyResults, verdicts: Sequence[Verdict]) -> list[str]:
  """One sentence per trait: what is supported, what is ruled out."""
  out = []
  for t in res.traits:
    vs = [v for v in verdicts if v.trait == t]
    if not vs:
      continue
    listed, partial = _fold_raises(vs)
    said = []
    for label, verdict in ((SUPPORTED, SUPPORTED), (RULED_OUT, RULED_OUT)):
      hyps = [v.hypothesis for v in listed if v.verdict == verdict]
      hyps += partial if verdict == SUPPORTED else []
      if hyps:
        said.append(f"{label}: {'; '.join(hyps)}")
    undecided = sum(v.verdict == INCONCLUSIVE for v in listed)
    moot = sum(v.verdict == NOT_APPLICABLE for v in listed)
    checked = [v for v in vs if v.match in ("match", "mismatch")]
    line = f"{t} — " + (". ".join(said) or "nothing decided")
    line += f". {undecided} inconclusive."
    if moot:
      line += (f" {moot} not applicable (the teacher adds nothing for a filter "
               "or subset to carry).")
    if checked:
      line += (f" Ground truth: {sum(v.match == 'match' for v in checked)}/"
               f"{len(checked)} checked match.")
    out.append(line)
  return out


def build_blocks(title: str, res: StudyResults, verdicts: Sequence[Verdict],
                 figs: Mapping[str, str], overlap: Mapping | None,
                 failures: Sequence[Mapping[str, str]],
                 notes: Sequence[str]) -> list:
  b: list = [("h1", title)]
  b += [("p", n) for n in notes]
  summary = _summary(res, verdicts)
  if summary:
    b.append(("h2", "Summary"))
    b += [("p", line) for line in summary]
  if failures:
    b.append(("h2", "Failed runs"))
    b.append(_table(("run", "stage", "error", "log"),
                    [(f["run"], f["stage"], f["error"], f["log"]) for f in failures]))
  b.append(("h2", "Verdicts"))
  b.append(("p", "Each verdict rests on non-overlapping 95% intervals and the "
                 "thresholds in docs/study.md. 'planted' is the toyworld ground "
                 "truth (empty for real data)."))
  b.append(_table(VERDICT_COLUMNS, [(v.trait, v.hypothesis, v.verdict, v.evidence,
                                     v.expected or "–", v.match or "–",
                                     v.seeds_alone or "1 seed")
                                    for v in verdicts]))
  b.append(("p", "Intervals: " + _methods(res) + " 'seeds alone': of the study's "
                 "seeds, how many give the same verdict from their own estimates."))
  checked = [v for v in verdicts if v.match in ("match", "mismatch")]
  unchecked = [v for v in verdicts if v.match == "unchecked"]
  if checked or unchecked:
    ok = sum(v.match == "match" for v in checked)
    line = f"Ground truth: {ok}/{len(checked)} checked verdicts match the planted causes."
    if unchecked:
      kinds = sorted({v.expected for v in unchecked})
      line += (f" {len(unchecked)} unchecked: the world's mechanism does not "
               f"decide them ({', '.join(kinds)}).")
    b.append(("p", line))
  b.append(("h2", "1. Main runs"))
  b.append(("img", figs.get("main", ""), "main runs"))
  if "interpolation" in figs:
    b.append(("h2", "2. Random interpolation"))
    b.append(("img", figs["interpolation"], "random interpolation"))
  if "filters" in figs:
    b.append(("h2", "3. Filter interventions"))
    b.append(("img", figs["filters"], "filter interventions"))
  b.append(("h2", "4. Filter overlaps and per-subset sweep"))
  if overlap and overlap.get("names"):
    b.append(("img", figs.get("overlap", ""), "filter overlap"))
    sizes = overlap.get("sizes") or {}
    if sizes:
      b.append(_table(("filter", "prompts selected"), sorted(sizes.items())))
  else:
    b.append(("p", "No filter overlap report available."))
  sweep = _sweep_table(res)
  if sweep:
    b.append(("p", "Per-subset sweep, both directions: teacher on the subset with "
                   "alt completions elsewhere (is the subset's teacher data "
                   "sufficient?) and alt completions on the subset with the "
                   "teacher elsewhere (is it necessary?). Values: mean over seeds "
                   "[95% interval], n, seeds, interval method."))
    b.append(_table(*sweep))
  b.append(("h2", "All runs"))
  b.append(("p", "teacher share = fraction of the orig-family teacher's rollouts "
                 "by examples / by trainable tokens (from the arm's manifest). "
                 "Values: mean over seeds [95% interval], n = samples summed over "
                 "seeds, and the interval's method (docs/study.md, 'Intervals')."))
  b.append(_table(("arm", "kind", "base", "prompts", "ARM", "teacher share", "seeds",
                   *res.traits), _arm_rows(res)))
  if res.teacher_scores:
    b.append(("h2", "Teachers scored directly"))
    b.append(_table(("source", *res.traits),
                    [(s, *[(_cell(sc.get(t)) if sc.get(t) else "–")
                           for t in res.traits])
                     for s, sc in sorted(res.teacher_scores.items())]))
  return b


def _md_cell(c: str) -> str:
  return c.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks, rel) -> str:
  out = []
  for blk in blocks:
    kind = blk[0]
    if kind == "h1":
      out.append(f"# {blk[1]}\n")
    elif kind == "h2":
      out.append(f"## {blk[1]}\n")
    elif kind == "p":
      out.append(blk[1] + "\n")
    elif kind == "img" and blk[1]:
      out.append(f"![{blk[2]}]({rel(blk[1])})\n")
    elif kind == "table":
      header, rows = blk[1], blk[2]
      out.append("| " + " | ".join(header) + " |")
      out.append("|" + "---|" * len(header))
      out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
      out.append("")
  return "\n".join(out) + "\n"


# Verdict cells are coloured by verdict (rows by match / mismatch).
_VERDICT_CELL = {v: f" class='v-{v.replace(' ', '-')}'" for v in VERDICT_VALUES}


def to_html(blocks, rel, title: str) -> str:
  e = html.escape
  out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
         "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
         "padding:3px 6px;vertical-align:top}.mismatch{background:#fdd}"
         ".match{background:#dfd}img{max-width:100%}"
         "td.v-supported{background:#b7e1b0}td.v-ruled-out{background:#f3b9b9}"
         "td.v-inconclusive{background:#eee;color:#555}"
         "td.v-not-applicable{background:#f7f7f7;color:#888}</style></head><body>"]
  for blk in blocks:
    kind = blk[0]
    if kind in ("h1", "h2"):
      out.append(f"<{kind}>{e(blk[1])}</{kind}>")
    elif kind == "p":
      out.append(f"<p>{e(blk[1])}</p>")
    elif kind == "img" and blk[1]:
      out.append(f"<p><img src='{e(rel(blk[1]))}' alt='{e(blk[2])}'></p>")
    elif kind == "table":
      out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in blk[1]) + "</tr>")
      for r in blk[2]:
        cls = " class='mismatch'" if "mismatch" in r else (
            " class='match'" if "match" in r else "")
        out.append(f"<tr{cls}>" + "".join(
            f"<td{_VERDICT_CELL.get(c, '')}>{e(c.strip('`'))}</td>" for c in r) + "</tr>")
      out.append("</table>")
  out.append("</body></html>")
  return "\n".join(out)


def write_report(study_dir: str, title: str, res: StudyResults, *,
                 expected: Mapping[tuple[str, str], str] | None = None,
                 overlap: Mapping | None = None,
                 failures: Sequence[Mapping[str, str]] = (),
                 notes: Sequence[str] = ()) -> dict[str, str]:
  """Writes the report; returns {'md', 'html', 'verdicts', ...figure paths}."""
  out_dir = os.path.join(study_dir, "report")
  os.makedirs(out_dir, exist_ok=True)
  verdicts = all_verdicts(res, expected)
  figs = figures.all_figures(res, out_dir, overlap)
  blocks = build_blocks(title, res, verdicts, figs, overlap, failures, notes)
  blocks += judge_appendix.blocks(study_dir)  # judge agreement, cost, disagreements (p16)
  rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731
  md = os.path.join(out_dir, "report.md")
  with open(md, "w") as f:
    f.write(to_markdown(blocks, rel))
  page = os.path.join(out_dir, "report.html")
  with open(page, "w") as f:
    f.write(to_html(blocks, rel, title))
  vpath = os.path.join(out_dir, "verdicts.json")
  strict_json.dump([v.to_json() for v in verdicts], vpath, indent=1)
  return {"md": md, "html": page, "verdicts": vpath, **figs}
