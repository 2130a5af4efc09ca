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
  tokenization             max_len / overlong policy, truncated/dropped counts
  selection_hash           sha256 of sorted `prompt_id\tsource` lines (dropped
                           prompts as `-`): same hash = same mixture
  store                    path, fingerprint and input fingerprints of the store
  prompt_id_provenance     id field vs content hash, per input
  coverage, skipped        the store's coverage counts and per-input skip counts
  split                    train/eval example counts when a held-out slice exists
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import Any, Sequence

import numpy as np

from sftdiff import strict_json
from sftdiff.data import arms as arms_lib
from sftdiff.data import joined as joined_lib

MANIFEST_FILE = "manifest.json"


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
  """Prompt turns + the chosen source's completion: what gets trained on."""
  return list(record["prompt"]) + list(record["completions"][source])


def trainable_tokens(store: joined_lib.JoinedStore, chosen: np.ndarray,
                     tokenizer, *, max_len: int | None, overlong: str
                     ) -> tuple[dict[str, int], dict[str, int]]:
  """Trained-token count per source over the selection (+ truncation counts)."""
  from sftdiff.data import chat
  sources = store.sources
  per_source = {s: 0 for s in sources}
  counts = {"truncated": 0, "dropped_overlong": 0}
  picked = np.flatnonzero(chosen != arms_lib.DROP)
  for start in range(0, len(picked), 512):
    idx = picked[start:start + 512]
    for i, record in zip(idx, store.read(idx)):
      src = sources[chosen[i]]
      ex = chat.tokenize_with_assistant_mask(
          tokenizer, conversation(record, src), max_len=max_len, overlong=overlong)
      if ex is None:
        counts["dropped_overlong"] += 1
        continue
      counts["truncated"] += int(ex.truncated)
      per_source[src] += ex.num_trainable
  return per_source, counts


def trained_sources(store: joined_lib.JoinedStore, chosen: np.ndarray
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


def build_manifest(arm: arms_lib.ArmLike, store: joined_lib.JoinedStore,
                   chosen: np.ndarray, *, arm_name: str | None = None,
                   tokenizer=None, max_len: int | None = None,
                   overlong: str = "truncate",
                   split: dict[str, int] | None = None) -> dict[str, Any]:
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
    per_source, tcounts = trainable_tokens(store, trained, tokenizer,
                                           max_len=max_len, overlong=overlong)
    total = sum(per_source.values())
    manifest["trainable_tokens"] = per_source
    manifest["fraction_trainable_tokens"] = {
        s: (n / total if total else 0.0) for s, n in per_source.items()}
    manifest["tokenization"] = {"max_len": max_len, "overlong": overlong, **tcounts}
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
