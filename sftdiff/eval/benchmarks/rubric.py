"""Versioned LLM-judge rubrics stored as files under `sftdiff/eval/rubrics/`.

A rubric file has a small header and two sections:

    ---
    name: date_confusion
    version: 1
    kind: binary            # binary (verdict yes/no) or score (0-10)
    ---
    [system]
    ...
    [user]
    ... {{CONVERSATION}} ... {{RESPONSE}} ...

The judge must answer with one JSON object holding `criteria`, `evidence`
(a verbatim quote), `reasoning` and `verdict` ("yes"/"no" or an integer
0-10). Where the header defines consistency, the parser checks it and treats
a contradiction as an unparseable reply (retried once, then unscored):

    positive_iff_any: a, b    # verdict positive  <=>  some listed criterion "yes"
    positive_requires: c      # a positive verdict needs criterion c "yes"

A positive verdict's evidence must also occur (verbatim, "..." joining
fragments) in the judged text. The version recorded with every verdict is `<name>/v<version>+<sha8>`
— the hash of the file, so an edited rubric can never pass for the old one.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
from typing import Callable

from sftdiff.eval.benchmarks.base import (ParsedVerdict, RubricParseError,
                                          RubricRater)
from sftdiff.eval.types import EvalPrompt

RUBRIC_DIR = pathlib.Path(__file__).resolve().parent.parent / "rubrics"


class RubricFileError(ValueError):
  pass


def _normalise(s: str) -> str:
  s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
  return re.sub(r"\s+", " ", s).strip().lower().strip("\"'")


def quote_found(quote: str, text: str) -> bool:
  """True if every fragment of `quote` (split on ellipses) occurs in text."""
  hay = _normalise(text)
  parts = [p for p in re.split(r"\.\.\.|\u2026|\[\.\.\.\]", quote)]
  parts = [_normalise(p) for p in parts if len(_normalise(p)) >= 4]
  return bool(parts) and all(p in hay for p in parts)


def extract_json_object(reply: str) -> dict:
  """The last top-level JSON object in the reply (fences allowed)."""
  candidates = []
  depth, start, in_str, esc = 0, None, False, False
  for i, ch in enumerate(reply):
    if in_str:
      if esc:
        esc = False
      elif ch == "\\":
        esc = True
      elif ch == '"':
        in_str = False
      continue
    if ch == '"' and depth > 0:
      in_str = True
    elif ch == "{":
      if depth == 0:
        start = i
      depth += 1
    elif ch == "}" and depth > 0:
      depth -= 1
      if depth == 0:
        candidates.append(reply[start:i + 1])
  for cand in reversed(candidates):
    try:
      obj = json.loads(cand)
    except json.JSONDecodeError:
      continue
    if isinstance(obj, dict):
      return obj
  raise RubricParseError("no JSON object in judge reply")


def format_conversation(messages) -> str:
  return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


class FileRubric(RubricRater):
  """A rubric loaded from a versioned file; the judge answers in strict JSON.

  `response_view(prompt, completion)` chooses what part of the completion the
  judge sees (e.g. only the scratchpad for the recognition rater); evidence
  quotes must be found in that text.
  """

  def __init__(self, filename: str, *, rater_name: str | None = None,
               response_view: Callable[[EvalPrompt, str], str] | None = None,
               require_quote_match: bool = True):
    path = RUBRIC_DIR / filename
    if not path.exists():
      raise RubricFileError(f"rubric file not found: {path}")
    text = path.read_text(encoding="utf-8")
    self.path = path
    self.header, self.system, self.user = _parse_rubric_file(text, path)
    self.kind = self.header.get("kind", "binary")
    if self.kind not in ("binary", "score"):
      raise RubricFileError(f"{path}: header 'kind' must be binary or score, got {self.kind!r}")
    self.name = rater_name or self.header["name"]
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    self.version = f"{self.header['name']}/v{self.header['version']}+{sha}"
    self.response_view = response_view or (lambda p, c: c)
    self.require_quote_match = require_quote_match
    self.positive_iff_any = _names(self.header.get("positive_iff_any"))
    self.positive_requires = _names(self.header.get("positive_requires"))
    for c in self.positive_iff_any + self.positive_requires:
      if f'"{c}"' not in self.user:
        raise RubricFileError(f"{path}: header names criterion {c!r}, which the "
                              "[user] section's reply format does not ask for")

  def messages(self, prompt, completion):
    conversation = format_conversation(
        [m for m in prompt.messages if m["role"] != "system"])
    system_ctx = "\n".join(m["content"] for m in prompt.messages if m["role"] == "system")
    user = (self.user.replace("{{SYSTEM_PROMPT}}", system_ctx or "(none)")
            .replace("{{CONVERSATION}}", conversation)
            .replace("{{RESPONSE}}", self.response_view(prompt, completion)))
    return [{"role": "system", "content": self.system},
            {"role": "user", "content": user}]

  def parse(self, reply, prompt, completion):
    obj = extract_json_object(reply)
    for key in ("evidence", "reasoning", "verdict"):
      if key not in obj:
        raise RubricParseError(f"judge JSON lacks field {key!r}")
    evidence = obj["evidence"] if isinstance(obj["evidence"], str) else json.dumps(obj["evidence"])
    reasoning = str(obj["reasoning"])
    raw = obj["verdict"]
    if self.kind == "binary":
      v = str(raw).strip().lower()
      if v not in ("yes", "no", "true", "false"):
        raise RubricParseError(f"verdict must be 'yes' or 'no', got {raw!r}")
      value = v in ("yes", "true")
      positive = value
    else:
      try:
        value = float(raw)
      except (TypeError, ValueError):
        raise RubricParseError(f"verdict must be an integer 0-10, got {raw!r}") from None
      if not 0 <= value <= 10:
        raise RubricParseError(f"verdict must be within 0-10, got {raw!r}")
      positive = value > 0
    self._check_criteria(obj.get("criteria"), positive, raw)
    if positive and not evidence.strip():
      raise RubricParseError("a positive verdict needs an evidence quote")
    if (positive and self.require_quote_match and
        not quote_found(evidence, self.response_view(prompt, completion))):
      raise RubricParseError("the evidence quote does not occur in the response")
    return ParsedVerdict(value=value, evidence=evidence[:1000], reasoning=reasoning[:2000])

  def _check_criteria(self, criteria, positive: bool, verdict) -> None:
    names = list(dict.fromkeys(self.positive_iff_any + self.positive_requires))
    if not names:
      return
    if not isinstance(criteria, dict):
      raise RubricParseError("judge JSON lacks the 'criteria' object the rubric asks for")
    said = {}
    for name in names:
      raw = criteria.get(name)
      v = str(raw).strip().lower()
      if v not in ("yes", "no", "true", "false"):
        raise RubricParseError(f"criteria.{name} must be 'yes' or 'no', got {raw!r}")
      said[name] = v in ("yes", "true")
    if self.positive_iff_any and positive != any(said[n] for n in self.positive_iff_any):
      shown = {n: "yes" if said[n] else "no" for n in self.positive_iff_any}
      raise RubricParseError(f"self-contradictory reply: criteria {shown} but verdict "
                             f"{verdict!r}")
    missing = [n for n in self.positive_requires if positive and not said[n]]
    if missing:
      raise RubricParseError(f"self-contradictory reply: verdict {verdict!r} but "
                             f"criteria {missing} are 'no'")


def _names(value: str | None) -> list[str]:
  return [n.strip() for n in (value or "").split(",") if n.strip()]


def _parse_rubric_file(text: str, path) -> tuple[dict, str, str]:
  m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
  if not m:
    raise RubricFileError(f"{path}: must start with a '---' header block")
  header = {}
  for lineno, line in enumerate(m.group(1).splitlines(), 2):
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    if ":" not in line:
      raise RubricFileError(f"{path}:{lineno}: header lines are 'key: value'")
    k, v = line.split(":", 1)
    header[k.strip()] = v.strip()
  for key in ("name", "version"):
    if key not in header:
      raise RubricFileError(f"{path}: header lacks {key!r}")
  body = m.group(2)
  sm = re.search(r"^\[system\]\n(.*?)^\[user\]\n(.*)$", body, re.S | re.M)
  if not sm:
    raise RubricFileError(f"{path}: body needs a [system] then a [user] section")
  user = sm.group(2).strip() + "\n"
  if "{{RESPONSE}}" not in user:
    raise RubricFileError(f"{path}: [user] section must contain {{{{RESPONSE}}}}")
  return header, sm.group(1).strip(), user
