"""Incremental, resumable evaluation of one target on one benchmark.

Layout per evaluated target (a checkpoint dir, or a teacher's output dir):

    <target>/eval/<benchmark>/samples.jsonl    one line per (prompt, sample)
    <target>/eval/<benchmark>/verdicts.jsonl   one line per (sample, rater)
    <target>/eval/<benchmark>/metrics.json     metrics + everything needed to
                                               interpret them

Samples and verdicts are appended (and flushed to disk) as each chunk of
prompts completes, and judge replies go through the SQLite cache as they
arrive. A run killed at any point and re-run redoes no finished sampling,
makes no repeated judge calls and loses nothing written. A torn last line (a
kill during a write) is dropped on resume.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any, Callable, Sequence

from sftdiff.eval.autorater import Autorater
from sftdiff.eval.benchmarks.base import Benchmark, SampleResult
from sftdiff.eval.generators import stable_seed
from sftdiff.eval.types import Request, Verdict

log = logging.getLogger(__name__)

SAMPLES, VERDICTS, METRICS = "samples.jsonl", "verdicts.jsonl", "metrics.json"


# ---------------------------------------------------------------- jsonl io

def read_jsonl(path: pathlib.Path) -> list[dict]:
  """Records of a JSONL file, dropping (and truncating away) a torn tail."""
  if not path.exists():
    return []
  data = path.read_bytes()
  end = data.rfind(b"\n") + 1
  if end != len(data):  # a kill mid-write left a partial last line
    log.warning("%s: dropping a torn last line (%d bytes)", path, len(data) - end)
    with open(path, "r+b") as f:
      f.truncate(end)
    data = data[:end]
  out = []
  for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
    if line.strip():
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: corrupt record: {e}") from e
  return out


def append_jsonl(path: pathlib.Path, records: Sequence[dict]) -> None:
  if not records:
    return
  with open(path, "a", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


# ---------------------------------------------------------------- one bench

def evaluate(bench: Benchmark, out_dir: pathlib.Path, *,
             generator: Callable[[], Any] | Any,
             autorater: Autorater,
             target: dict[str, Any],
             seed: int = 0,
             prompts_per_chunk: int | None = None,
             judge_chunk: int = 64) -> dict[str, Any]:
  """Samples, rates and scores `bench` for one target; returns metrics.json.

  `generator` is a generator object or a zero-arg factory (called only if
  some sampling is still to do, so a finished target loads no model).
  `target` describes what is evaluated (name, path, fingerprint, ...).
  """
  out_dir.mkdir(parents=True, exist_ok=True)
  samples_path, verdicts_path = out_dir / SAMPLES, out_dir / VERDICTS
  prompts = list(bench.prompts)
  n = bench.sampling.n

  # --- sampling (skip prompts whose samples are all on disk)
  samples = {(r["prompt_id"], r["sample_index"]): r for r in read_jsonl(samples_path)}
  pending = [p for p in prompts
             if any((p.prompt_id, i) not in samples for i in range(n))]
  gen = None
  if pending:
    gen = generator() if callable(generator) and not hasattr(generator, "generate") else generator
    chunk = prompts_per_chunk or max(1, getattr(gen, "max_batch_size", 8) // n)
    log.info("%s/%s: sampling %d of %d prompts (n=%d)", target.get("name"), bench.name,
             len(pending), len(prompts), n)
    for start in range(0, len(pending), chunk):
      part = pending[start:start + chunk]
      reqs = [Request(p.messages, n=n, seed=stable_seed(seed, bench.name, p.prompt_id))
              for p in part]
      outs = gen.generate(reqs, bench.sampling)
      recs = []
      for p, req, comps in zip(part, reqs, outs):
        for i, c in enumerate(comps):
          if (p.prompt_id, i) in samples:
            continue
          rec = {"prompt_id": p.prompt_id, "sample_index": i, "subset": p.subset,
                 "seed": req.seed, "completion": c.text,
                 "finish_reason": c.finish_reason, "num_tokens": len(c.token_ids)}
          recs.append(rec)
          samples[(p.prompt_id, i)] = rec
      append_jsonl(samples_path, recs)

  # --- rating (skip samples already rated with this rater version)
  by_id = {p.prompt_id: p for p in prompts}
  wanted = [samples[(p.prompt_id, i)] for p in prompts for i in range(n)]
  verdicts: dict[tuple, Verdict] = {}
  for r in read_jsonl(verdicts_path):
    verdicts[(r["prompt_id"], r["sample_index"], r["rater"], r["rubric_version"])] = (
        Verdict.from_json(r))
  for rater in bench.raters:
    todo = [s for s in wanted
            if (s["prompt_id"], s["sample_index"], rater.name, rater.version) not in verdicts]
    for start in range(0, len(todo), judge_chunk):
      part = todo[start:start + judge_chunk]
      got = autorater.rate(rater, [(by_id[s["prompt_id"]], s["completion"]) for s in part])
      recs = []
      for s, v in zip(part, got):
        verdicts[(s["prompt_id"], s["sample_index"], rater.name, rater.version)] = v
        recs.append({"prompt_id": s["prompt_id"], "sample_index": s["sample_index"],
                     **v.to_json()})
      append_jsonl(verdicts_path, recs)

  # --- metrics
  rows = []
  for s in wanted:
    vs = {r.name: verdicts[(s["prompt_id"], s["sample_index"], r.name, r.version)]
          for r in bench.raters}
    rows.append(SampleResult(s["prompt_id"], s["sample_index"], s["subset"],
                             s["completion"], vs))
  judges = sorted({v.judge for row in rows for v in row.verdicts.values()})
  unscored = {r.name: sum(row.verdicts[r.name].unscored for row in rows) for r in bench.raters}
  result = {
      **bench.describe(),
      "target": target,
      "generator": getattr(gen, "settings", None) or target.get("generator"),
      "judges": judges,
      "num_samples": len(rows),
      "unscored": unscored,
      "seed": seed,
      "metrics": bench.metric(rows),
  }
  write_json_atomic(out_dir / METRICS, result)
  return result


# ------------------------------------------------------------ aggregation

def update_results(results_path: pathlib.Path, result: dict[str, Any]) -> None:
  """Upserts one (target, benchmark) line into the top-level results.jsonl."""
  key = (result["target"]["name"], result["benchmark"])
  rows = {}
  for r in read_jsonl(results_path):
    rows[(r["target"]["name"], r["benchmark"])] = r
  rows[key] = result
  tmp = results_path.with_name(results_path.name + ".tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    for k in sorted(rows):
      f.write(json.dumps(rows[k], sort_keys=True, ensure_ascii=False) + "\n")
  os.replace(tmp, results_path)
