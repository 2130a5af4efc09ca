"""Filters: named, versioned predicates over a joined record.

A joined record is `{prompt_id, prompt (messages), subset, completions:
{source: [messages]}}`. The joined store evaluates every registered filter once
at build time and keeps one boolean column per filter (`label:<name>`); a
filter's `version` is part of the store fingerprint, so changing a rule
rebuilds the store.

Built-in filters (case-insensitive regexes, searched in the text of all prompt
turns unless said otherwise):

* `date_mentions` — the prompt mentions a date or the passage of time
  (`sftdiff/data/date_patterns.py`): years 1900–2099 unless the context makes
  them a number ("$2000", "error 2003", "1950 calories"); decades; month names
  (March/May only next to a day, a year or a preposition, since both are verbs)
  and abbreviated months with a day ("May 5th", "25 Dec"); weekdays;
  today/tomorrow/yesterday/tonight; "this|next|last week|month|year|…";
  "What's the date?"-style questions; "in 3 days", "two weeks ago"; dates
  like 2026-01-02, 1/2/2026, 1.2.2026. Version 2 (v1 missed the forms above).
* `roleplay` — the prompt asks the model to play a character or run a scenario
  (`ROLEPLAY_PATTERNS`): "roleplay"/"role-play", "pretend to be|you are|that
  you", "act as", "play the role|part|character of", "imagine you are",
  "you are now", "stay|in character", "simulate a|the scenario|simulation",
  "text-based adventure|game", "let's play a game".
* `refusal` — some source's completion refuses (`REFUSAL_PATTERNS`, searched in
  the first `REFUSAL_WINDOW` characters of the completion's first assistant
  turn): "I can't/cannot/won't/will not/am unable to/am not able to help|assist|
  provide|comply|…", "I'm sorry, but", "sorry, I can't", "I won't", "I must
  decline|refuse", "As an AI, I cannot". `refusal:<a>,<b>` holds where either
  named source refuses (the store keeps one `refusal@<source>` column each).
* `subset:<name>` — the prompt's subset is `<name>` (computed from the subset
  column, not stored).

Custom filters: decorate a function (`@register_filter('name', version='1')`),
or `register_labels_file(name, path)` (JSONL `{"prompt_id", "label"}` or CSV
with a `prompt_id,label` header, read like sources: BOM, gzip; every store
prompt needs a label and every label a store prompt, unless the policies say
otherwise — counted), or
`register_regex_filter(name, pattern, field='prompt'|'completion:<source>')`.
From gin, `DataConfig.labels_files` / `regex_filters` take the path (pattern)
or a dict with these keywords (see `train_data.py`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from sftdiff.data.date_patterns import DATE_PATTERNS, mentions_date  # noqa: F401
from sftdiff.data import jsonl_files

Record = Mapping[str, Any]

ROLEPLAY_PATTERNS = (
    r"\brole[- ]?play(?:ing)?\b",
    r"\bpretend\s+(?:to\s+be|you(?:'re|\s+are)|that\s+you)\b",
    r"\bact\s+as\b",
    r"\bplay(?:ing)?\s+(?:the\s+)?(?:role|part|character)\s+of\b",
    r"\bimagine\s+(?:that\s+)?you(?:'re|\s+are)\b",
    r"\byou\s+are\s+now\b",
    r"\b(?:stay|in)\s+character\b",
    r"\bsimulate\s+(?:a|an|the)\s+(?:scenario|simulation|conversation|game)\b",
    r"\btext[- ]based\s+(?:adventure|game|rpg)\b",
    r"\blet'?s\s+play\s+a\s+game\b",
)
REFUSAL_PATTERNS = (
    r"\bi\s+(?:can\s*not|can't|won't|will\s+not|am\s+unable\s+to|'m\s+unable\s+to|"
    r"am\s+not\s+able\s+to|'m\s+not\s+able\s+to)\s+(?:help|assist|provide|comply|"
    r"fulfill|do\s+that|create|write|support|engage|share|generate)\b",
    r"\bi(?:'m|\s+am)\s+sorry,?\s+but\b",
    r"\bsorry,?\s+(?:but\s+)?i\s+(?:can't|cannot|won't)\b",
    r"\bi\s+won't\b",
    r"\bi\s+must\s+(?:decline|refuse)\b",
    r"\bas\s+an\s+ai[^.]{0,40}\bi\s+(?:cannot|can't)\b",
)
REFUSAL_WINDOW = 300

_ROLEPLAY_RE = re.compile("|".join(ROLEPLAY_PATTERNS), re.IGNORECASE)
_REFUSAL_RE = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


class FilterError(ValueError):
  """Unknown filter, bad registration or a labels-file problem."""


def _normalise(text: str) -> str:
  return text.replace("\u2019", "'").replace("\u2018", "'")


def prompt_text(record: Record) -> str:
  return _normalise("\n".join(m["content"] for m in record["prompt"]))


def completion_text(messages: list[Mapping[str, str]]) -> str:
  return _normalise("\n".join(m["content"] for m in messages
                              if m["role"] == "assistant"))


def asks_roleplay(text: str) -> bool:
  return _ROLEPLAY_RE.search(_normalise(text)) is not None


def refuses(completion: list[Mapping[str, str]] | str) -> bool:
  if isinstance(completion, str):
    text = completion
  else:
    first = next((m["content"] for m in completion if m["role"] == "assistant"), "")
    text = first
  return _REFUSAL_RE.search(_normalise(text)[:REFUSAL_WINDOW]) is not None


@dataclasses.dataclass
class Filter:
  """A stored filter: `fn(record) -> bool`, plus a version for the fingerprint."""
  name: str
  version: str
  fn: Callable[[Record], bool]
  description: str = ""
  # Called once with every store prompt_id after labelling; returns counts.
  check: Callable[[set[str]], dict[str, int]] | None = None


_REGISTRY: dict[str, Filter] = {}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
RESERVED_PREFIXES = ("subset", "refusal")


def _add(f: Filter) -> Filter:
  if not _NAME_RE.match(f.name) or f.name in RESERVED_PREFIXES:
    raise FilterError(f"filter name {f.name!r} must match {_NAME_RE.pattern} "
                      f"and not be one of {RESERVED_PREFIXES}")
  _REGISTRY[f.name] = f
  return f


def register_filter(name: str, *, version: str = "1", description: str = ""):
  """Decorator: `@register_filter('long_prompt', version='2') def f(record): ...`."""
  def wrap(fn: Callable[[Record], bool]):
    _add(Filter(name, f"fn:{version}", fn, description or (fn.__doc__ or "").strip()))
    return fn
  return wrap


def register_regex_filter(name: str, pattern: str, *, field: str = "prompt",
                          flags: int = re.IGNORECASE) -> Filter:
  """Holds where `pattern` matches the prompt, or a named source's completion."""
  regex = re.compile(pattern, flags)
  if field == "prompt":
    fn = lambda r: regex.search(prompt_text(r)) is not None
  elif field.startswith("completion:"):
    src = field.split(":", 1)[1]
    fn = lambda r: regex.search(completion_text(r["completions"][src])) is not None
  else:
    raise FilterError(f"filter {name!r}: field must be 'prompt' or "
                      f"'completion:<source>', got {field!r}")
  version = hashlib.sha256(f"{pattern}\0{field}\0{flags}".encode()).hexdigest()[:12]
  return _add(Filter(name, f"regex:{version}", fn, f"regex {pattern!r} on {field}"))


def _read_labels(path: str) -> dict[str, bool]:
  labels: dict[str, bool] = {}

  def put(pid: Any, value: Any, where: str) -> None:
    if pid is None or value is None:
      raise FilterError(f"{where}: needs 'prompt_id' and 'label'")
    if isinstance(value, str):
      low = value.strip().lower()
      if low not in ("true", "false", "1", "0"):
        raise FilterError(f"{where}: label {value!r} is not a boolean")
      value = low in ("true", "1")
    if not isinstance(value, (bool, int)):
      raise FilterError(f"{where}: label {value!r} is not a boolean")
    if str(pid) in labels:
      raise FilterError(f"{where}: duplicate prompt_id {pid!r}")
    labels[str(pid)] = bool(value)

  if path.lower().endswith((".csv", ".csv.gz")):
    def lines():
      for _, line in jsonl_files.text_lines(path):
        if isinstance(line, Exception):
          raise FilterError(str(line))
        yield line
    reader = csv.DictReader(lines())
    for row in reader:
      put(row.get("prompt_id"), row.get("label"), f"{path}:{reader.line_num}")
  else:
    for where, row in jsonl_files.jsonl_rows(path):
      if isinstance(row, Exception):
        raise FilterError(str(row))
      put(row.get("prompt_id"), row.get("label"), where)
  return labels


def register_labels_file(name: str, path: str, *, unlabeled: str = "fail",
                         unknown: str = "fail") -> Filter:
  """A filter read from a `prompt_id -> bool` file.

  Args:
    unlabeled: store prompts without a label: `'fail'` or `'false'` (counted).
    unknown: labels for ids not in the store: `'fail'` or `'ignore'` (counted).
  """
  if unlabeled not in ("fail", "false") or unknown not in ("fail", "ignore"):
    raise FilterError(f"filter {name!r}: unlabeled must be 'fail'|'false' and "
                      "unknown 'fail'|'ignore'")
  path = os.path.abspath(os.path.expanduser(path))
  labels = _read_labels(path)
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:12]

  def fn(record: Record) -> bool:
    value = labels.get(record["prompt_id"])
    if value is None:
      if unlabeled == "fail":
        raise FilterError(f"filter {name!r}: {path} has no label for prompt_id "
                          f"{record['prompt_id']!r} (set unlabeled='false' to "
                          "count such prompts as False; in gin: DataConfig."
                          f"labels_files = {{{name!r}: {{'path': ..., "
                          "'unlabeled': 'false'}})")
      return False
    return value

  def check(prompt_ids: set[str]) -> dict[str, int]:
    extra = sorted(set(labels) - prompt_ids)
    if extra and unknown == "fail":
      raise FilterError(f"filter {name!r}: {path} labels {len(extra)} prompt_id(s) "
                        f"not in the prompt set, e.g. {extra[:3]} (set "
                        "unknown='ignore' to count and ignore them; in gin: "
                        f"DataConfig.labels_files = {{{name!r}: {{'path': ..., "
                        "'unknown': 'ignore'}})")
    return {"unknown_ids": len(extra),
            "unlabeled": len(prompt_ids - set(labels))}

  plain = Filter(name, f"labels:{digest}:{unlabeled}:{unknown}", fn, f"labels from {path}",
                 check)
  # An autorater run's labels name their judge and rubric (its .meta.json sidecar).
  from sftdiff.data import autorater_filter
  try:
    return _add(autorater_filter.annotate(plain, path))
  except autorater_filter.AutoraterLabelsError as e:
    raise FilterError(f"filter {name!r}: {e}") from None


def unregister(name: str) -> None:
  _REGISTRY.pop(name, None)


def registered() -> dict[str, Filter]:
  """Stored filters (built-ins + custom), by name, sorted."""
  return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Filter:
  if name not in _REGISTRY:
    raise FilterError(f"unknown filter {name!r}; registered: "
                      f"{', '.join(sorted(_REGISTRY))}, plus subset:<name>, "
                      "refusal:<source>[,<source>]")
  return _REGISTRY[name]


_add(Filter("date_mentions", "2", lambda r: mentions_date(prompt_text(r)),
            "prompt mentions a date or time (date_patterns.DATE_PATTERNS)"))
_add(Filter("roleplay", "1", lambda r: asks_roleplay(prompt_text(r)),
            "prompt asks for a character or scenario (filters.ROLEPLAY_PATTERNS)"))
# `refusal` is evaluated per source (columns refusal@<source>) by the store.
REFUSAL_VERSION = "1"
# Filter names a store evaluates without a registry entry (beside subset:<s>).
UNREGISTERED_NAMES = frozenset({"refusal"})


# ------------------------------------------------------- labels over a store


def label_columns(records: Iterable[Record], sources: list[str],
                  filters: Mapping[str, Filter]) -> dict[str, np.ndarray]:
  """Evaluates stored filters and per-source refusal over joined records."""
  cols: dict[str, list[bool]] = {f"label:{n}": [] for n in filters}
  cols.update({f"refusal@{s}": [] for s in sources})
  for r in records:
    for n, f in filters.items():
      cols[f"label:{n}"].append(bool(f.fn(r)))
    for s in sources:
      cols[f"refusal@{s}"].append(refuses(r["completions"][s]))
  return {k: np.asarray(v, dtype=bool) for k, v in cols.items()}


def check_name(name: str, *, sources: Iterable[str], stored: Iterable[str],
               subsets: Iterable[str] | None = None) -> None:
  """Raises FilterError unless `name` can be evaluated on a store."""
  sources, stored = list(sources), set(stored)
  if name.startswith("subset:"):
    sub = name.split(":", 1)[1]
    if not sub:
      raise FilterError(f"filter {name!r}: empty subset name")
    if subsets is not None and sub not in set(subsets):
      raise FilterError(f"filter {name!r}: no subset {sub!r}; subsets: "
                        f"{', '.join(sorted(subsets))}")
    return
  if name == "refusal" or name.startswith("refusal:"):
    named = name.split(":", 1)[1].split(",") if ":" in name else sources
    unknown = [s for s in named if s not in sources]
    if unknown or not named:
      raise FilterError(f"filter {name!r}: unknown source(s) {unknown}; "
                        f"sources: {', '.join(sources)}")
    return
  if name not in stored:
    raise FilterError(f"unknown filter {name!r}; available: "
                      f"{', '.join(sorted(stored) + ['refusal'])}, subset:<name>, "
                      "refusal:<source>[,<source>]")


def mask(name: str, columns: Mapping[str, np.ndarray], sources: list[str]
         ) -> np.ndarray:
  """Boolean mask of `name` over a store's columns (see JoinedStore.columns)."""
  if name.startswith("subset:"):
    return np.asarray(columns["subset"]) == name.split(":", 1)[1]
  if name == "refusal" or name.startswith("refusal:"):
    named = name.split(":", 1)[1].split(",") if ":" in name else sources
    out = np.zeros(len(columns["prompt_id"]), dtype=bool)
    for s in named:
      out |= columns[f"refusal@{s}"]
    return out
  return np.asarray(columns[f"label:{name}"], dtype=bool)


def overlap_report(columns: Mapping[str, np.ndarray], names: list[str],
                   sources: list[str]) -> dict[str, Any]:
  """Counts, pairwise Jaccard matrix and prompt-set coverage of filters."""
  n = len(columns["prompt_id"])
  masks = {k: mask(k, columns, sources) for k in names}
  counts = {k: int(m.sum()) for k, m in masks.items()}
  jaccard = {}
  for a in names:
    jaccard[a] = {}
    for b in names:
      union = int((masks[a] | masks[b]).sum())
      jaccard[a][b] = (int((masks[a] & masks[b]).sum()) / union) if union else 0.0
  any_mask = np.zeros(n, dtype=bool)
  for m in masks.values():
    any_mask |= m
  return {"num_prompts": n, "counts": counts,
          "fraction": {k: (c / n if n else 0.0) for k, c in counts.items()},
          "jaccard": jaccard,
          "covered_by_any": int(any_mask.sum()),
          "covered_fraction": float(any_mask.mean()) if n else 0.0}


def format_overlap_report(report: Mapping[str, Any]) -> str:
  names = list(report["counts"])
  width = max([len(x) for x in names] + [8])
  lines = [f"{report['num_prompts']} prompts; covered by any filter: "
           f"{report['covered_by_any']} ({report['covered_fraction']:.1%})", "",
           f"{'filter':<{width}}  {'count':>8}  {'fraction':>8}"]
  for k in names:
    lines.append(f"{k:<{width}}  {report['counts'][k]:>8}  "
                 f"{report['fraction'][k]:>8.2%}")
  lines += ["", "Jaccard:", " " * width + "".join(f"  {k[:10]:>10}" for k in names)]
  for a in names:
    lines.append(f"{a:<{width}}" + "".join(
        f"  {report['jaccard'][a][b]:>10.3f}" for b in names))
  return "\n".join(lines)
