"""Filters from autorater labels: the labels file an autorater run wrote.

`python -m sftdiff.eval label` (sftdiff/eval/autorate_labels.py) runs a rubric
over a prompt set's prompts, or over one source's completions, and writes

    <labels>.jsonl             {"prompt_id", "label", "evidence"} per scored prompt
    <labels>.jsonl.meta.json   what made them: rubric version, judge, field,
                               input digests, counts (unscored by reason), and
                               `version`, a hash of all of it

The labels file is read like any other (`register_labels_file` /
`DataConfig.labels_files`, same `unlabeled` / `unknown` policies: a prompt the
judge left unscored has no label). When the `.meta.json` sidecar is there, the
filter's version carries the labels version (so the joined store's
fingerprint changes with the judge, the rubric or the inputs), its
description names the judge and rubric, and its check — copied into every
arm manifest's `filter_checks` — names them too.

This module is on the data side and reads files only; the judging itself
lives in eval (data must not import eval).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from sftdiff import strict_json

FORMAT = "sftdiff.autorater_labels/1"
META_SUFFIX = ".meta.json"
META_KEYS = ("format", "version", "rubric_version", "judge", "field", "counts")


class AutoraterLabelsError(ValueError):
  """A labels sidecar that is not what an autorater run writes."""


def meta_path(labels_path: str) -> str:
  return labels_path + META_SUFFIX


def read_meta(labels_path: str) -> dict[str, Any] | None:
  """The sidecar of an autorater labels file, or None for a plain labels file."""
  path = meta_path(labels_path)
  if not os.path.exists(path):
    return None
  try:
    meta = strict_json.load(path)
  except (OSError, ValueError) as e:
    raise AutoraterLabelsError(f"{path}: unreadable autorater labels metadata: {e}") from None
  missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
  if missing or meta.get("format") != FORMAT:
    raise AutoraterLabelsError(
        f"{path}: not {FORMAT} metadata (missing {missing or 'nothing'}, format "
        f"{meta.get('format') if isinstance(meta, dict) else None!r}); rewrite it with "
        "`python -m sftdiff.eval label` or remove it")
  return meta


def annotate(f, labels_path: str):
  """`f` (a labels-file Filter) naming the autorater that made its labels."""
  meta = read_meta(labels_path)
  if meta is None:
    return f
  provenance = {"labels_version": meta["version"], "judge": meta["judge"],
                "rubric_version": meta["rubric_version"], "field": meta["field"],
                "judge_unscored": sum(meta["counts"].get("unscored", {}).values())}
  plain_check = f.check

  def check(prompt_ids: set[str]) -> dict[str, Any]:
    counts = plain_check(prompt_ids) if plain_check is not None else {}
    return {**counts, **provenance}

  return dataclasses.replace(
      f, version=f"autorater:{meta['version']}:{f.version}", check=check,
      description=(f"autorater labels from {labels_path}: rubric {meta['rubric_version']} "
                   f"on {meta['field']}, judge {meta['judge']}"))
