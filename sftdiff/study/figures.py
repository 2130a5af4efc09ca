"""The report's figures, one per claim (matplotlib, Agg backend, PNG).

Every point carries its 95% interval as an error bar; teacher scores are
dotted lines; linear expectations are computed from each run's manifest
(share of the orig-family teacher's rollouts by examples).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sftdiff.study.results import Estimate  # noqa: E402
from sftdiff.study.verdicts import StudyResults, source_of  # noqa: E402

MAIN_KINDS = ("reference_orig", "reference_alt", "alt_completions", "teacher",
              "other_teacher")
_FILTER_RUNS = ("patch_in", "patch_out", "drop", "random")


def _yerr(ests: Sequence[Estimate | None]):
  vals = np.array([e.value if e else np.nan for e in ests])
  lo = np.array([e.value - e.lo if e else 0.0 for e in ests])
  hi = np.array([e.hi - e.value if e else 0.0 for e in ests])
  return vals, np.clip(np.stack([lo, hi]), 0, None)


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main_runs(res: StudyResults, path: str) -> str:
  """(1) Grouped bars per trait for the main runs; teachers as dotted lines."""
  arms = [n for k in MAIN_KINDS for n, d in res.arms.items() if d.kind == k]
  traits = list(res.traits)
  fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(traits) + 2), 4.2))
  width = 0.8 / max(1, len(arms))
  colors = plt.cm.tab10(np.arange(len(arms)) % 10)
  for i, arm in enumerate(arms):
    vals, err = _yerr([res.get(arm, t) for t in traits])
    x = np.arange(len(traits)) - 0.4 + width * (i + 0.5)
    ax.bar(x, vals, width, yerr=err, capsize=3, color=colors[i], label=arm)
    src = source_of(res.arms[arm].arm)
    for j, t in enumerate(traits):  # the teacher this run learned from
      teacher = res.teacher_scores.get(src, {}).get(t) if src else None
      if teacher is not None:  # over this run's own bar, so lines stay apart
        ax.hlines(teacher.value, x[j] - width * 0.6, x[j] + width * 0.6,
                  colors=[colors[i]], linestyles="dotted", linewidth=2.5)
  ax.set_xticks(np.arange(len(traits)), traits)
  ax.set_ylabel("score (95% interval)")
  ax.set_title("Main runs; dotted over a bar: the score of the source that run "
               "trained on, scored directly", fontsize=10)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return _save(fig, path)


def _endpoints(res: StudyResults, trait: str):
  return (res.get(res.arm_of_kind("alt_completions"), trait),
          res.get(res.arm_of_kind("teacher"), trait))


def interpolation(res: StudyResults, path: str) -> str:
  """(2) Score vs share of orig-family rollouts, with the linear line."""
  traits = list(res.traits)
  fig, axes = plt.subplots(1, len(traits), figsize=(3.6 * len(traits), 3.4),
                           squeeze=False)
  for ax, trait in zip(axes[0], traits):
    ac, t = _endpoints(res, trait)
    pts = []
    if ac:
      pts.append((0.0, ac, "alt completions"))
    if t:
      pts.append((1.0, t, "teacher"))
    for name, d in res.arms.items():
      f = res.teacher_fraction.get(name, {}).get("examples")
      x = res.get(name, trait)
      if d.kind == "interpolation" and x is not None and f is not None:
        pts.append((f, x, name))
    pts.sort(key=lambda p: p[0])
    if pts:
      vals, err = _yerr([p[1] for p in pts])
      ax.errorbar([p[0] for p in pts], vals, yerr=err, fmt="o", capsize=3)
    if ac and t:
      ax.plot([0, 1], [ac.value, t.value], "k--", linewidth=1, label="linear")
      ax.legend(fontsize=7)
    ax.set_title(trait, fontsize=9)
    ax.set_xlabel("share of orig-family rollouts (examples)")
    ax.set_ylim(0, max(ax.get_ylim()[1], 0.1))  # a flat-zero trait stays readable
  axes[0][0].set_ylabel("score (95% interval)")
  return _save(fig, path)


def filters(res: StudyResults, path: str) -> str:
  """(3) Patch-in / patch-out / drop / matched random per filter vs linear."""
  groups = sorted({d.group for d in res.arms.values() if d.kind == "filter"})
  traits = list(res.traits)
  fig, axes = plt.subplots(len(groups) or 1, len(traits),
                           figsize=(3.6 * len(traits), 3.0 * max(1, len(groups))),
                           squeeze=False)
  for gi, group in enumerate(groups):
    names = {}
    for n, d in res.arms.items():
      if d.kind == "filter" and d.group == group:
        for r in _FILTER_RUNS:
          if n.startswith(r + "_"):
            names[r] = n
    runs = [r for r in _FILTER_RUNS if r in names]
    for ti, trait in enumerate(traits):
      ax = axes[gi][ti]
      ac, t = _endpoints(res, trait)
      vals, err = _yerr([res.get(names[r], trait) for r in runs])
      ax.bar(np.arange(len(runs)), vals, yerr=err, capsize=3,
             color=plt.cm.tab10(np.arange(len(runs))))
      if ac and t:
        for i, r in enumerate(runs):
          f = res.teacher_fraction.get(names[r], {}).get("examples")
          if f is not None:
            lin = ac.value + f * (t.value - ac.value)
            ax.hlines(lin, i - 0.4, i + 0.4, colors="k", linestyles="dashed")
        ax.axhline(ac.value, color="grey", linewidth=0.8, linestyle="dotted")
        ax.axhline(t.value, color="grey", linewidth=0.8, linestyle="dotted")
      ax.set_xticks(np.arange(len(runs)), [r.replace("_", "-") for r in runs],
                    fontsize=8)
      ax.set_title(f"{trait} · {group}", fontsize=9)
      ax.set_ylim(0, max(ax.get_ylim()[1], 0.1))
  fig.suptitle("Filter interventions (dashed: linear expectation at the run's "
               "fraction; dotted: alt completions / teacher)", fontsize=9)
  return _save(fig, path)


def overlap_matrix(names: Sequence[str], matrix: Sequence[Sequence[float]],
                   path: str, title: str = "Filter overlap (Jaccard)") -> str:
  """(4) The filters' overlap matrix as a heatmap with values."""
  # undefined cells (null in strict JSON: an empty filter) print "–", not nan
  m = np.asarray([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
  fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.0 * len(names) + 2))
  im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
  ax.set_yticks(range(len(names)), names, fontsize=8)
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, f"{m[i, j]:.2f}" if np.isfinite(m[i, j]) else "–", ha="center",
              va="center", color="w" if not m[i, j] >= 0.5 else "k", fontsize=8)
  fig.colorbar(im, ax=ax)
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def all_figures(res: StudyResults, out_dir: str,
                overlap: Mapping | None = None) -> dict[str, str]:
  import os
  paths = {"main": main_runs(res, os.path.join(out_dir, "fig1_main_runs.png"))}
  if any(d.kind == "interpolation" for d in res.arms.values()):
    paths["interpolation"] = interpolation(
        res, os.path.join(out_dir, "fig2_interpolation.png"))
  if any(d.kind == "filter" for d in res.arms.values()):
    paths["filters"] = filters(res, os.path.join(out_dir, "fig3_filters.png"))
  if overlap and overlap.get("names"):
    paths["overlap"] = overlap_matrix(overlap["names"], overlap["jaccard"],
                                      os.path.join(out_dir, "fig4_overlap.png"))
  return paths
