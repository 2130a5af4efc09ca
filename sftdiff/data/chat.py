"""Chat formatting with assistant-only loss masks (open-instruct semantics).

For every assistant turn the trained span is that turn's content tokens plus
its end-of-turn token (e.g. `<|im_end|>`); system/user/tool turns, the
assistant header and anything the template emits after the end-of-turn token
(ChatML's trailing newline) stay masked. Multi-turn conversations train every
assistant turn.

The mask is template-agnostic: assistant turn i spans the tokens between the
rendering of messages[:i] with the generation prompt and the rendering of
messages[:i+1]. That only works if every such prefix tokenizes to a prefix of
the whole conversation; a template that breaks this (e.g. one that rewrites
earlier turns) gets a clear error.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Sequence

import numpy as np

from sftdiff.data.tokenizer import ChatTokenizer

ROLES = ("system", "user", "assistant", "tool")
OVERLONG_POLICIES = ("truncate", "drop")


class MessageFormatError(ValueError):
  """A conversation does not follow the canonical message schema."""


class TemplateNotPrefixConsistentError(ValueError):
  """The chat template renders a prefix of a conversation inconsistently."""


@dataclasses.dataclass(frozen=True)
class TokenizedExample:
  ids: np.ndarray  # int32[n]
  mask: np.ndarray  # bool[n]: True where the token is trained
  truncated: bool

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def num_trainable(self) -> int:
    return int(self.mask.sum())


def validate_messages(messages: Any, *, where: str = "messages") -> list[dict]:
  """Checks the canonical schema; returns the messages as a list of dicts.

  Each message is {"role": one of ROLES, "content": str}; extra keys are
  allowed (templates may use them, e.g. tool_calls).
  """
  if isinstance(messages, np.ndarray):
    messages = messages.tolist()
  if not isinstance(messages, (list, tuple)):
    raise MessageFormatError(
        f"{where}: expected a list of messages, got {type(messages).__name__}"
    )
  if not messages:
    raise MessageFormatError(f"{where}: empty conversation")
  for i, m in enumerate(messages):
    if not isinstance(m, dict):
      raise MessageFormatError(
          f"{where}[{i}]: expected a dict with 'role' and 'content', got "
          f"{type(m).__name__}"
      )
    if "role" not in m:
      raise MessageFormatError(f"{where}[{i}]: missing 'role'")
    if m["role"] not in ROLES:
      raise MessageFormatError(
          f"{where}[{i}]: unknown role {m['role']!r} (expected one of {ROLES})"
      )
    if "content" not in m:
      raise MessageFormatError(f"{where}[{i}] ({m['role']}): missing 'content'")
    if not isinstance(m["content"], str):
      raise MessageFormatError(
          f"{where}[{i}] ({m['role']}): 'content' must be a string, got "
          f"{type(m['content']).__name__}"
      )
  return list(messages)


def _not_prefix_consistent(what: str, path: str):
  return TemplateNotPrefixConsistentError(
      f"{path}: the chat template is not prefix-consistent: tokens of {what} "
      "are not a prefix of the tokens of the whole conversation, so "
      "assistant spans cannot be located (does the template rewrite earlier "
      "turns, e.g. strip reasoning?)"
  )


class _FullEncoding:
  """The whole conversation's tokens, and where a rendered prefix ends in them.

  Text after an added token (<|im_start|>, ...) tokenizes independently of the
  text before it, so a prefix's tokens are the whole conversation's tokens up
  to the prefix's last added token plus the tokens of the short tail after
  it: one small encode per prefix instead of re-encoding the prefix. Any
  mismatch falls back to encoding the whole prefix and comparing.
  """

  def __init__(self, tokenizer: ChatTokenizer, text: str):
    self.tokenizer = tokenizer
    self.text = text
    enc = tokenizer.tokenizer.encode(text, add_special_tokens=False)
    self.ids = enc.ids
    self.ends = [end for _, end in enc.offsets]
    self.added = tokenizer.added_token_ids

  def prefix_len(self, prefix: str, what: str) -> int:
    """len(encode(prefix)), which must equal a prefix of self.ids."""
    n = len(prefix)
    if self.text[:n] == prefix:
      within = bisect.bisect_right(self.ends, n)  # tokens ending by n
      j = within - 1
      while j >= 0 and self.ids[j] not in self.added:
        j -= 1
      if j >= 0 and self.ends[j] <= n:
        tail = self.tokenizer.encode(prefix[self.ends[j]:])
        k = j + 1 + len(tail)
        if self.ids[j + 1:k] == tail:
          return k
    ids = self.tokenizer.encode(prefix)
    if self.ids[: len(ids)] != ids:
      raise _not_prefix_consistent(what, self.tokenizer.path)
    return len(ids)


def assistant_spans(
    tokenizer: ChatTokenizer, messages: Sequence[dict]
) -> tuple[list[int], list[tuple[int, int]]]:
  """Token ids of the conversation and [start, end) of each trained span."""
  full = _FullEncoding(tokenizer, tokenizer.render(messages))
  stops = set(tokenizer.stop_ids)
  spans = []
  for i, m in enumerate(messages):
    if m["role"] != "assistant":
      continue
    start = full.prefix_len(
        tokenizer.render(messages[:i], add_generation_prompt=True),
        f"messages[:{i}] + generation prompt",
    )
    end = full.prefix_len(
        tokenizer.render(messages[: i + 1]), f"messages[:{i + 1}]"
    )
    # Train through the last end-of-turn/eos token of the turn; what follows
    # it (ChatML's "\n") is formatting, not something the model must emit.
    for j in range(end - 1, start - 1, -1):
      if full.ids[j] in stops:
        end = j + 1
        break
    spans.append((start, end))
  return full.ids, spans


def tokenize_with_assistant_mask(
    tokenizer: ChatTokenizer,
    messages: Sequence[dict],
    *,
    max_len: int | None = None,
    overlong: str = "truncate",
) -> TokenizedExample | None:
  """Token ids + assistant-only loss mask; None if dropped as over-long."""
  if overlong not in OVERLONG_POLICIES:
    raise ValueError(
        f"overlong={overlong!r}: expected one of {OVERLONG_POLICIES}"
    )
  if max_len is not None and max_len < 1:
    raise ValueError(f"max_len={max_len} must be positive")
  messages = validate_messages(messages)
  ids, spans = assistant_spans(tokenizer, messages)
  mask = np.zeros(len(ids), dtype=bool)
  for start, end in spans:
    mask[start:end] = True
  ids = np.asarray(ids, dtype=np.int32)
  truncated = False
  if max_len is not None and len(ids) > max_len:
    if overlong == "drop":
      return None
    ids, mask, truncated = ids[:max_len], mask[:max_len], True
  return TokenizedExample(ids=ids, mask=mask, truncated=truncated)
