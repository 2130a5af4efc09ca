"""`python -m sftdiff.eval label`: an autorater run that writes a filter's labels.

    python -m sftdiff.eval label --gin.LABEL_PROMPTS="'prompts.jsonl'" \
        --gin.LABEL_OUTPUT="'labels/date_question.jsonl'" \
        --gin.LABEL_RUBRIC="'prompt_date_question.v1.md'" --gin.JUDGE_MODEL="'gpt-4.1-mini'"

A rubric (a file under `sftdiff/eval/rubrics/`, or any path) is run over a
prompt set's prompts (`field='prompt'`: the last user turn is judged, earlier
turns are its context) or over one source's completions
(`field='completion:<source>'`, with `LABEL_SOURCE` the source's JSONL). It goes
through the eval binary's `Autorater`: the same judge clients, SQLite judge
cache, one retry of an unparseable reply, unscored reasons ("api", "parse",
"budget") and `max_judge_tokens` budget. The output is the labels file a
filter reads (`DataConfig.labels_files`) plus its `.meta.json` sidecar — see
`sftdiff/data/autorater_filter.py` — naming the judge, the rubric version and
the labels version. Unscored prompts get no label (the filter's `unlabeled`
policy decides). A rerun makes no judge call for what is cached and asks again
for what the API or the budget left unscored.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
from typing import Any, Sequence

import gin

from sftdiff import gin_utils, strict_json
from sftdiff.data import autorater_filter, jsonl_files
from sftdiff.data.filters import completion_text
from sftdiff.eval.types import EvalPrompt

log = logging.getLogger("sftdiff.eval.label")


def _rows(path: str, what: str) -> list[dict[str, Any]]:
  if not pathlib.Path(path).is_file():
    raise gin_utils.GinConfigError(f"{what}: {path} does not exist")
  out = []
  for where, row in jsonl_files.jsonl_rows(path):
    if isinstance(row, Exception):
      raise gin_utils.GinConfigError(f"{what}: {row}")
    if not isinstance(row.get("prompt_id"), str):
      raise gin_utils.GinConfigError(f"{where}: field 'prompt_id' must be a string")
    out.append(dict(row, _where=where))
  return out


def judged_items(prompts: Sequence[dict], field: str,
                 completions: dict[str, Any] | None) -> list[tuple[str, EvalPrompt, str]]:
  """(prompt_id, context, judged text) per prompt with something to judge."""
  items = []
  for row in prompts:
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
      raise gin_utils.GinConfigError(f"{row['_where']}: field 'messages' must be a "
                                     "non-empty list of chat messages")
    pid = row["prompt_id"]
    if field == "prompt":
      *before, last = msgs
      items.append((pid, EvalPrompt(pid, tuple(before)), str(last.get("content", ""))))
    elif pid in completions:
      c = completions[pid]
      turns = c if isinstance(c, list) else [c if isinstance(c, dict)
                                             else {"role": "assistant", "content": str(c)}]
      items.append((pid, EvalPrompt(pid, tuple(msgs)), completion_text(turns)))
  return items


def labels_version(rubric_version: str, judge: str, field: str,
                   inputs: dict[str, str]) -> str:
  blob = strict_json.dumps({"rubric": rubric_version, "judge": judge, "field": field,
                            "inputs": inputs}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _digest(path: str) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()[:12]


def label(rater, autorater, *, prompts_path: str, output_path: str, field: str = "prompt",
          source_path: str | None = None) -> dict[str, Any]:
  """Rates and writes `output_path` + its sidecar; returns the sidecar."""
  if field != "prompt" and not (field.startswith("completion:") and source_path):
    raise gin_utils.GinConfigError(
        f"LABEL_FIELD must be 'prompt' or 'completion:<source>' (with LABEL_SOURCE), "
        f"got {field!r} (LABEL_SOURCE={source_path!r})")
  prompts = _rows(prompts_path, "LABEL_PROMPTS")
  completions = None
  inputs = {"prompts": _digest(prompts_path)}
  if field != "prompt":
    completions = {r["prompt_id"]: r.get("completion") for r in _rows(source_path, "LABEL_SOURCE")}
    inputs["source"] = _digest(source_path)
  items = judged_items(prompts, field, completions)
  verdicts = autorater.rate(rater, [(p, text) for _, p, text in items])
  labels, unscored = [], {}
  for (pid, _, _), v in zip(items, verdicts):
    if v.unscored:
      unscored.setdefault(v.reason or "unknown", []).append(pid)
    else:
      labels.append({"prompt_id": pid, "label": bool(v.value), "evidence": v.evidence})
  judge = autorater.judge.identity
  meta = {
      "format": autorater_filter.FORMAT, "rubric_version": rater.version, "judge": judge,
      "field": field, "inputs": {"prompts": str(pathlib.Path(prompts_path).absolute()),
                                 **({"source": str(pathlib.Path(source_path).absolute())}
                                    if source_path and field != "prompt" else {})},
      "input_digests": inputs,
      "version": labels_version(rater.version, judge, field, inputs),
      "counts": {"prompts": len(prompts), "judged": len(items), "labeled": len(labels),
                 "positive": sum(r["label"] for r in labels),
                 "unscored": {k: len(v) for k, v in sorted(unscored.items())}},
      "unscored_ids": {k: sorted(v) for k, v in sorted(unscored.items())},
      "judge_stats": {"calls": autorater.stats.judge_calls,
                      "cache_hits": autorater.stats.cache_hits},
  }
  out = pathlib.Path(output_path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(out.name + ".tmp")
  tmp.write_text("".join(strict_json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                         for r in labels), encoding="utf-8")
  tmp.replace(out)
  # The sidecar last: labels without it read as a plain labels file, never
  # as another run's autorater labels.
  strict_json.dump(meta, autorater_filter.meta_path(str(out)), indent=1, sort_keys=True)
  return meta


@gin.configurable
def autorate_labels(prompts_path: str | None = None, output_path: str | None = None,
                    rubric: str = "prompt_date_question.v1.md", field: str = "prompt",
                    source_path: str | None = None, judge=None,
                    max_judge_tokens: int | None = None,
                    judge_cache_path: str | None = None) -> dict[str, Any]:
  from sftdiff.eval import api_client, run
  from sftdiff.eval.autorater import Autorater
  from sftdiff.eval.benchmarks.rubric import FileRubric, RubricFileError
  from sftdiff.eval.judge_cache import JudgeCache
  if not prompts_path or not output_path:
    raise gin_utils.GinConfigError("set LABEL_PROMPTS (a prompt-set JSONL) and LABEL_OUTPUT")
  if judge is None or judge.kind == "none":
    raise gin_utils.GinConfigError("label needs a judge: set JUDGE_KIND to 'openai' or 'local'")
  try:
    rater = FileRubric(rubric)
  except RubricFileError as e:
    raise gin_utils.GinConfigError(f"LABEL_RUBRIC: {e}") from None
  api_client.quiet_http_logs()
  cache = JudgeCache(judge_cache_path or str(output_path) + ".judge_cache.sqlite")
  budget = api_client.TokenBudget(max_judge_tokens)
  try:
    autorater = Autorater(cache=cache, judge=run.make_judge(judge, budget=budget))
  except ValueError as e:  # e.g. the API key's environment variable is unset
    raise gin_utils.GinConfigError(f"judge configuration: {e}") from e
  try:
    meta = label(rater, autorater, prompts_path=prompts_path, output_path=output_path,
                 field=field, source_path=source_path)
  finally:
    cache.close()
  print(f"labels: {output_path} ({meta['counts']}); judge calls "
        f"{meta['judge_stats']['calls']}, cache hits {meta['judge_stats']['cache_hits']}",
        flush=True)
  return meta


def main(argv: Sequence[str]) -> None:
  """`label` subcommand: runs/label.gin first, then the user's gin."""
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  from absl import flags
  fl = flags.FLAGS
  gin_utils.parse(["runs/label.gin", *fl.gin_file], fl.gin_bindings, fl.gin_search_paths)
  autorate_labels()
