"""Incremental, resumable evaluation of one target on one benchmark.

Layout per evaluated target (a checkpoint dir, or a teacher's output dir):

    <target>/eval/<benchmark>/binding.json     what the result belongs to
                                               (fingerprint, sampler settings,
                                               benchmark version, seed)
    <target>/eval/<benchmark>/samples.jsonl    one line per (prompt, sample)
    <target>/eval/<benchmark>/verdicts.jsonl   one line per (sample, rater)
    <target>/eval/<benchmark>/metrics.json     metrics + everything needed to
                                               interpret them
    <target>/eval/<benchmark>/superseded/<key>/  results of earlier bindings

Samples and verdicts are appended (and flushed to disk) as each chunk of
prompts completes, and judge replies go through the SQLite cache as they
arrive. A run killed at any point and re-run redoes no finished sampling,
makes no repeated judge calls and loses nothing written. A torn last line (a
kill during a write) is dropped on resume. A re-run asks the judge again for
samples left unscored by an API failure (and, with `rejudge`, for every
unscored sample); see `result_binding.py` for what happens when the weights
or settings changed.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
from typing import Any, Callable, Sequence

import tqdm

from sftdiff import strict_json
from sftdiff.eval import judge_panel, result_binding
from sftdiff.eval.autorater import NUM_PARSE_ATTEMPTS, Autorater
from sftdiff.eval.benchmarks.base import Benchmark, RubricRater, SampleResult
from sftdiff.eval.generators import stable_seed
from sftdiff.eval.output_errors import writing
from sftdiff.eval.types import Request, Verdict

log = logging.getLogger(__name__)

SAMPLES, VERDICTS, METRICS = "samples.jsonl", "verdicts.jsonl", "metrics.json"
# Unscored for a reason a later run can fix by asking again.
RETRIED_REASONS = ("api", "budget")
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens")


def progress(total: int, desc: str) -> tqdm.tqdm:
  """A stderr progress bar (off when stderr is not a terminal, e.g. in tests)."""
  return tqdm.tqdm(total=total, desc=desc, unit="item", file=sys.stderr,
                   disable=None, leave=False, dynamic_ncols=True)


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
        out.append(strict_json.loads(line))
      except ValueError as e:
        raise ValueError(f"{path}:{lineno}: corrupt record: {e}") from e
  return out


def append_jsonl(path: pathlib.Path, records: Sequence[dict]) -> None:
  """Appends strict-JSON lines and fsyncs; a failed write names the file."""
  if not records:
    return
  text = "".join(strict_json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                 for r in records)
  with writing(path):
    with open(path, "a", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
  with writing(path):
    strict_json.dump(obj, path, indent=2, sort_keys=True)


# ---------------------------------------------------------------- one bench

def evaluate(bench: Benchmark, out_dir: pathlib.Path, *,
             generator: Callable[[], Any] | Any,
             autorater: Autorater,
             target: dict[str, Any],
             seed: int = 0,
             prompts_per_chunk: int | None = None,
             judge_chunk: int = 64,
             rejudge: bool = False,
             panel: dict[str, Autorater] | None = None,
             primary_judge: str = "primary") -> dict[str, Any]:
  """Samples, rates and scores `bench` for one target; returns metrics.json.

  `autorater` is the primary judge (the headline metrics); `panel` names the
  other judges, whose verdicts go to `verdicts.<name>.jsonl` and whose
  metrics and agreement with the others go to metrics.json's `judge_panel`.

  `generator` is a generator object or a zero-arg factory (called only if
  some sampling is still to do, so a finished target loads no model).
  `target` describes what is evaluated (name, path, fingerprint, generator
  settings, ...); with the benchmark and seed it is the result's binding.
  """
  binding = result_binding.make_binding(bench, target, seed)
  bound = result_binding.bind(out_dir, binding)
  samples_path, verdicts_path = out_dir / SAMPLES, out_dir / VERDICTS
  prompts = list(bench.prompts)
  n = bench.sampling.n

  # --- sampling (skip prompts whose samples are all on disk)
  samples = {(r["prompt_id"], r["sample_index"]): r for r in read_jsonl(samples_path)}
  pending = [p for p in prompts
             if any((p.prompt_id, i) not in samples for i in range(n))]
  if pending:
    gen = generator() if callable(generator) and not hasattr(generator, "generate") else generator
    result_binding.record_generator(out_dir, getattr(gen, "settings", None))
    chunk = prompts_per_chunk or max(1, getattr(gen, "max_batch_size", 8) // n)
    log.info("%s/%s: sampling %d of %d prompts (n=%d)", target.get("name"), bench.name,
             len(pending), len(prompts), n)
    with progress(len(pending) * n, f"{bench.name}: sampling") as bar:
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
        bar.update(len(part) * n)

  # --- rating: the primary judge (headline metrics), then every other judge
  by_id = {p.prompt_id: p for p in prompts}
  wanted = [samples[(p.prompt_id, i)] for p in prompts for i in range(n)]
  where = f"{target.get('name')}/{bench.name}"
  usage_before = {name: _judge_usage(a) for name, a in [(primary_judge, autorater),
                                                        *(panel or {}).items()]}
  stats_before = _judge_stats(autorater)
  verdicts, retried, recovered = _rate(bench.raters, wanted, by_id, verdicts_path, autorater,
                                       rejudge=rejudge, judge_chunk=judge_chunk, where=where)
  rubric = [r for r in bench.raters if isinstance(r, RubricRater)]
  panel_verdicts = {}
  for name, other in sorted((panel or {}).items()):
    if rubric:
      panel_verdicts[name], _, _ = _rate(rubric, wanted, by_id, out_dir / panel_verdicts_file(name),
                                   other, rejudge=rejudge, judge_chunk=judge_chunk,
                                   where=f"{where} [{name}]")

  # --- metrics
  rows = []
  for s in wanted:
    vs = {r.name: verdicts[(s["prompt_id"], s["sample_index"], r.name, r.version)]
          for r in bench.raters}
    rows.append(SampleResult(s["prompt_id"], s["sample_index"], s["subset"],
                             s["completion"], vs))
  judges = sorted({v.judge for row in rows for v in row.verdicts.values()})
  unscored = {r.name: sum(row.verdicts[r.name].unscored for row in rows) for r in bench.raters}
  reasons: dict[str, dict[str, int]] = {}
  for row in rows:
    for name, v in row.verdicts.items():
      if v.unscored:
        by = reasons.setdefault(name, {})
        by[v.reason or "unknown"] = by.get(v.reason or "unknown", 0) + 1
  panel_rows = {name: judge_panel.rows_with(rows, vs, rubric)
                for name, vs in panel_verdicts.items()}
  identities = {name: ", ".join(sorted({row.verdicts[r.name].judge for row in rs for r in rubric}))
                for name, rs in [(primary_judge, rows), *panel_rows.items()]}
  on_disk = result_binding.read_binding(out_dir) or {}
  result = {
      **bench.describe(),
      "target": target,
      "fingerprint": target.get("fingerprint"),
      "binding_key": bound["key"],
      "eval_dir": str(out_dir),
      "generator": on_disk.get("sampled_with") or target.get("generator"),
      "judges": judges,
      "num_samples": len(rows),
      "unscored": unscored,
      "unscored_reasons": reasons,
      "rerun": {"rejudge": rejudge, "retried_unscored": retried, "recovered": recovered,
                "superseded": bound["superseded"], "restored": bound["restored"]},
      "judge_http": _delta(_judge_stats(autorater), stats_before),
      "judge_tokens": _token_totals(out_dir, usage_before,
                                    {primary_judge: autorater, **(panel or {})}, identities),
      "seed": seed,
      "metrics": bench.metric(rows),
  }
  if panel_rows:
    result["judge_panel"] = judge_panel.summarize(
        bench, primary_judge, {primary_judge: rows, **panel_rows}, identities)
  write_json_atomic(out_dir / METRICS, result)
  return strict_json.sanitize(result)  # what metrics.json holds (NaN -> null)


def panel_verdicts_file(judge_name: str) -> str:
  """Where a non-primary judge's verdicts go (beside the primary's)."""
  return f"verdicts.{judge_name}.jsonl"


def _rate(raters, wanted, by_id, verdicts_path: pathlib.Path, autorater: Autorater, *,
          rejudge: bool, judge_chunk: int, where: str) -> dict[tuple, Verdict]:
  """Rates `wanted` samples with `raters` (skip samples already rated with
  this rater version, except those an API failure or the token budget left
  unscored, and under `rejudge` any unscored one); returns every verdict."""
  verdicts: dict[tuple, Verdict] = {}
  for r in read_jsonl(verdicts_path):
    verdicts[(r["prompt_id"], r["sample_index"], r["rater"], r["rubric_version"])] = (
        Verdict.from_json(r))
  retried: dict[str, int] = {}
  recovered: dict[str, int] = {}
  for rater in raters:
    todo, bases = [], []
    for s in wanted:
      old = verdicts.get((s["prompt_id"], s["sample_index"], rater.name, rater.version))
      if old is None:
        todo.append(s)
        bases.append(0)
      elif old.unscored and (old.reason in RETRIED_REASONS or rejudge):
        todo.append(s)
        # An API failure gets the same attempt numbers again; a rejudged parse
        # failure gets fresh ones (its earlier replies stay cached).
        bases.append(old.attempt_base + (NUM_PARSE_ATTEMPTS if old.reason == "parse" else 0))
        retried[rater.name] = retried.get(rater.name, 0) + 1
    if not todo:
      continue
    with progress(len(todo), f"{where}: rating {rater.name}") as bar:
      for start in range(0, len(todo), judge_chunk):
        part = todo[start:start + judge_chunk]
        got = autorater.rate(rater, [(by_id[s["prompt_id"]], s["completion"]) for s in part],
                             attempt_bases=bases[start:start + judge_chunk])
        recs = []
        for s, v in zip(part, got):
          key = (s["prompt_id"], s["sample_index"], rater.name, rater.version)
          if key in verdicts and not v.unscored:
            recovered[rater.name] = recovered.get(rater.name, 0) + 1
          verdicts[key] = v
          recs.append({"prompt_id": s["prompt_id"], "sample_index": s["sample_index"],
                       **v.to_json()})
        append_jsonl(verdicts_path, recs)
        bar.update(len(part))
  for name, k in retried.items():
    log.info("%s: re-rated %d formerly unscored sample(s) with %s; %d recovered",
             where, k, name, recovered.get(name, 0))

  return verdicts, retried, recovered


def _judge_usage(autorater: Autorater) -> dict[str, int]:
  fn = getattr(autorater.built_judge, "usage", None)
  return fn() if fn is not None else {}


def _token_totals(out_dir: pathlib.Path, before: dict[str, dict[str, int]],
                  autoraters: dict[str, Autorater],
                  identities: dict[str, str]) -> dict[str, dict[str, Any]]:
  """Judge tokens per judge on this benchmark: spent by this run, and in total
  over the runs of this result (the earlier total is read back from the
  metrics.json it replaces; a superseded result starts again from 0)."""
  earlier = {}
  if (out_dir / METRICS).exists():
    earlier = strict_json.load(out_dir / METRICS).get("judge_tokens") or {}
  out = {}
  for name, a in autoraters.items():
    now = _delta(_judge_usage(a), before.get(name, {}))
    run = {k: int(now.get(k, 0)) for k in TOKEN_FIELDS}
    prev = (earlier.get(name) or {}).get("total") or {}
    out[name] = {"judge": identities.get(name, ""), "this_run": run,
                 "total": {k: int(prev.get(k, 0)) + run[k] for k in TOKEN_FIELDS}}
  return out


def _judge_stats(autorater: Autorater) -> dict[str, float]:
  judge = autorater.built_judge
  fn = getattr(judge, "http_stats", None)
  return fn() if fn is not None else {}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
  return {k: round(v - before.get(k, 0), 3) for k, v in after.items()}


# ------------------------------------------------------------ aggregation

def update_results(results_path: pathlib.Path, result: dict[str, Any]) -> None:
  """Upserts one (target, benchmark, binding) line into results.jsonl.

  Lines of the same target and benchmark under an earlier binding (other
  weights or settings) stay, with `"current": false`; each line names its
  fingerprint and binding key.
  """
  def key(r):
    return (r["target"]["name"], r["benchmark"], r.get("binding_key", ""))
  rows = {key(r): r for r in read_jsonl(results_path)}
  for k, r in rows.items():
    if k[:2] == key(result)[:2]:
      r["current"] = False
  rows[key(result)] = {**result, "current": True}
  text = "".join(strict_json.dumps(rows[k], sort_keys=True, ensure_ascii=False) + "\n"
                 for k in sorted(rows))
  tmp = results_path.with_name(results_path.name + ".tmp")
  with writing(tmp):
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, results_path)
