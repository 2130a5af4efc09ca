"""`manifest.json`: what exactly an arm trains on.

Fields:
  arm, arm_name            canonical spec (parses back with arms.parse_arm)
  num_prompts, selected, dropped
  counts                   {source: {subset: examples}} (+ `_total` per source),
                           by the source whose text is trained: a prompt the
                           arm gave to `teacher` but whose teacher completion
                           the store filled by `fallback:alt` counts as `alt`
  fallback_trained         {chosen source: {fallback source: examples}}: those
                           prompts (empty without a fallback policy)
  fraction_examples        {source: share of selected examples}
  trainable_tokens, fraction_trainable_tokens
                           {source: tokens the loss mask trains}, when a
                           tokenizer is given (null otherwise, with the reason)
  tokenization             max_len / overlong / on_error policy, what is
                           trained, the chat template (origin, sha256,
                           template_kwargs, pinned date), truncated/dropped
                           counts, per-record failures by reason
  selection_hash           sha256 of sorted `prompt_id\tsource` lines (dropped
                           prompts as `-`): same hash = same mixture
  store                    path, fingerprint and input fingerprints of the store
  prompt_id_provenance     id field vs content hash, per input
  coverage, skipped        the store's coverage counts and per-input skip counts
  prompt_mismatch          source records whose own prompt turns differ from
                           the prompt set's (policy, count, first ids)
  split                    train/eval example counts when a held-out slice exists
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import Any, Sequence

import numpy as np

from sftdiff import layout
from sftdiff import strict_json
from sftdiff.data import arms as arms_lib
from sftdiff.data import store as store_lib

MANIFEST_FILE = layout.MANIFEST


def selection_hash(prompt_ids: np.ndarray, chosen: np.ndarray,
                   sources: Sequence[str]) -> str:
  names = list(sources) + ["-"]  # DROP (-1) indexes the last entry.
  order = np.argsort(prompt_ids.astype(str), kind="stable")
  h = hashlib.sha256()
  for start in range(0, len(order), 65536):  # Hashed in blocks: same digest.
    h.update("".join(f"{prompt_ids[i]}\t{names[chosen[i]]}\n"
                     for i in order[start:start + 65536]).encode("utf-8"))
  return h.hexdigest()


def conversation(record: dict[str, Any], source: str) -> list[dict[str, str]]:
  """Prompt turns + the chosen source's completion: what gets tokenized."""
  return list(record["prompt"]) + list(record["completions"][source])


def pipeline_record(record: dict[str, Any], source: str) -> dict[str, Any]:
  """The pipeline's record: the conversation, where its completion starts
  (only the completion is trained unless train_all_assistant), tools."""
  out = {"messages": conversation(record, source),
         "num_prompt_turns": len(record["prompt"]),
         "prompt_id": record["prompt_id"], "source": source,
         "subset": record["subset"]}
  if record.get("tools") is not None:
    out["tools"] = record["tools"]
  return out


def trainable_tokens(store: store_lib.JoinedStore, chosen: np.ndarray,
                     tokenizer, *, max_len: int | None, overlong: str,
                     on_error: str = "fail", train_all_assistant: bool = False
                     ) -> tuple[dict[str, int], dict[str, Any]]:
  """Trained-token count per source over the selection, counting exactly the
  tokens the pipeline trains (+ truncation counts, failures by reason)."""
  from sftdiff.data import pipeline
  sources = store.sources
  per_source = {s: 0 for s in sources}
  counts: dict[str, Any] = {"truncated": 0, "dropped_overlong": 0,
                            "failed": 0, "failed_by_reason": {},
                            "failed_examples": []}
  picked = np.flatnonzero(chosen != arms_lib.DROP)
  for start in range(0, len(picked), 512):
    idx = picked[start:start + 512]
    for i, record in zip(idx, store.read(idx)):
      src = sources[chosen[i]]
      rec = pipeline_record(record, src)
      try:
        ex = pipeline.tokenize_record(tokenizer, rec, max_len=max_len,
                                      overlong=overlong,
                                      train_all_assistant=train_all_assistant)
      except pipeline.RECORD_ERRORS as e:
        if on_error != "skip":
          raise type(e)(f"prompt_id={rec['prompt_id']!r} source={src!r}: {e}") from e
        reason = pipeline.failure_reason(e)
        counts["failed"] += 1
        counts["failed_by_reason"][reason] = counts["failed_by_reason"].get(reason, 0) + 1
        if len(counts["failed_examples"]) < 5:
          counts["failed_examples"].append(
              f"prompt_id={rec['prompt_id']!r} source={src!r}: {e}"[:300])
        continue
      if ex is None:
        counts["dropped_overlong"] += 1
        continue
      counts["truncated"] += int(ex.truncated)
      per_source[src] += ex.num_trainable
  return per_source, counts


def trained_sources(store: store_lib.JoinedStore, chosen: np.ndarray
                    ) -> np.ndarray:
  """`chosen` with every prompt whose chosen completion is a coverage
  fallback's text re-pointed at the fallback source (what is trained)."""
  policy = store.meta["coverage"]["policy"]
  if not policy.startswith("fallback:"):
    return chosen
  sources = store.sources
  fallback = sources.index(policy.split(":", 1)[1])
  filled = store.columns([f"fallback@{s}" for s in sources])
  trained = np.array(chosen, copy=True)
  for s_idx, s in enumerate(sources):
    trained[(chosen == s_idx) & filled[f"fallback@{s}"]] = fallback
  return trained


def build_manifest(arm: arms_lib.ArmLike, store: store_lib.JoinedStore,
                   chosen: np.ndarray, *, arm_name: str | None = None,
                   tokenizer=None, max_len: int | None = None,
                   overlong: str = "truncate",
                   split: dict[str, int] | None = None,
                   on_error: str = "fail",
                   train_all_assistant: bool = False) -> dict[str, Any]:
  arm = arms_lib.as_arm(arm)
  sources = store.sources
  cols = store.columns(["prompt_id", "subset"])
  kept = chosen != arms_lib.DROP
  trained = trained_sources(store, chosen)
  counts: dict[str, dict[str, int]] = {}
  fallback_trained: dict[str, dict[str, int]] = {}
  for s_idx, s in enumerate(sources):
    sel = trained == s_idx
    moved = collections.Counter(
        sources[t] for t in trained[(chosen == s_idx) & (trained != s_idx)])
    if moved:
      fallback_trained[s] = dict(sorted(moved.items()))
    by_subset = collections.Counter(cols["subset"][sel].tolist())
    counts[s] = dict(sorted(by_subset.items()))
    counts[s]["_total"] = int(sel.sum())
  selected = int(kept.sum())
  manifest: dict[str, Any] = {
      "arm": str(arm), "arm_name": arm_name,
      "sources": sources, "filters": arms_lib.filters_of(arm),
      "num_prompts": int(len(chosen)), "selected": selected,
      "dropped": int(len(chosen) - selected),
      "counts": counts,
      "fallback_trained": fallback_trained,
      "fraction_examples": {s: (counts[s]["_total"] / selected if selected else 0.0)
                            for s in sources},
      "selection_hash": selection_hash(cols["prompt_id"], chosen, sources),
      "store": {"path": os.path.abspath(store.path),
                "fingerprint": store.fingerprint,
                "inputs": store.meta["inputs"]},
      "prompt_id_provenance": store.meta["prompt_id_provenance"],
      "coverage": store.meta["coverage"],
      "prompt_mismatch": store.meta.get("prompt_mismatch"),
      "skipped": {k: {"num_skipped": v["num_skipped"], "by_reason": v["skipped"]}
                  for k, v in store.meta["read_reports"].items()},
      "filter_checks": store.meta.get("filter_checks", {}),
  }
  if split is not None:
    manifest["split"] = split
  if tokenizer is None:
    manifest["trainable_tokens"] = None
    manifest["fraction_trainable_tokens"] = None
    manifest["tokenization"] = {"skipped": "no tokenizer given"}
  else:
    # By the trained source: a fallback-filled completion is its text.
    per_source, tcounts = trainable_tokens(
        store, trained, tokenizer, max_len=max_len, overlong=overlong,
        on_error=on_error, train_all_assistant=train_all_assistant)
    total = sum(per_source.values())
    manifest["trainable_tokens"] = per_source
    manifest["fraction_trainable_tokens"] = {
        s: (n / total if total else 0.0) for s, n in per_source.items()}
    manifest["tokenization"] = {
        "max_len": max_len, "overlong": overlong, "on_error": on_error,
        "trained": ("every assistant turn" if train_all_assistant
                    else "the source's completion turns"),
        "chat_template": tokenizer.template_record(), **tcounts}
  return manifest


def write_manifest(directory: str, manifest: dict[str, Any]) -> str:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, MANIFEST_FILE)
  strict_json.dump(manifest, path, indent=1, sort_keys=True)
  return path


def read_manifest(directory_or_path: str) -> dict[str, Any]:
  path = directory_or_path
  if os.path.isdir(path):
    path = os.path.join(path, MANIFEST_FILE)
  return strict_json.load(path)
