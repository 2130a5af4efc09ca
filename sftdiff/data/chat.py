"""Chat formatting with assistant-only loss masks.

What is trained of an assistant turn: everything the model emits after the
template's assistant header, through the turn's end-of-turn token — its
reasoning (`<think>` opener included), content and tool calls, then
`<|im_end|>`/`<|eot_id|>`/`<end_of_turn>`/eos. The header, other roles' turns
and what the template emits after the end-of-turn token (ChatML's "\n") stay
masked. Which assistant turns are trained is the caller's choice
(`trained_turns`); the pipeline trains the source's completion only, unless
asked to train every assistant turn.

Method (one render, character offsets): the whole conversation is rendered once
and tokenized once with offsets. Each assistant turn is located in the
rendered text by its header (the template's own generation prompt, minus a
trailing reasoning opener such as OLMo 3 Think's `<think>`), searched in order
after the previous turn; its span runs from the first token that ends past
the header to the first end-of-turn token after it. Nothing assumes that the
rendering of a prefix is a prefix of the rendering (Qwen 3 rewrites earlier
turns, OLMo 3 Instruct closes the last turn with eos), and a BPE token that
merges the header's last characters with the content's first (`\n` + `\n`)
counts as trained, as in transformers' `return_assistant_tokens_mask`. The
turn's content is checked to be inside its span, so a template that drops it
is reported, not silently mis-masked.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from typing import Any, Sequence

import numpy as np

from sftdiff.data.tokenizer import ChatTokenizer

ROLES = ("system", "user", "assistant", "tool")
OVERLONG_POLICIES = ("truncate", "drop")
# A trailing reasoning opener of a generation prompt (OLMo 3 Think's
# "<think>", Qwen 3's "<think>\n\n</think>\n\n" without thinking) belongs to
# the trained reply, not to the header.
_REASONING_OPENER = re.compile(r"<think>(\s*</think>)?\s*$")


class MessageFormatError(ValueError):
  """A conversation does not follow the canonical message schema."""


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

  Each message has a `role` in ROLES and a string `content` (None is allowed
  for an assistant turn with `tool_calls`); other keys (tool_calls,
  tool_call_id, name, reasoning_content) pass through to the template.
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
    content = m["content"]
    if content is None and m.get("tool_calls"):
      continue
    if not isinstance(content, str):
      raise MessageFormatError(
          f"{where}[{i}] ({m['role']}): 'content' must be a string (or null "
          f"with tool_calls), got {type(content).__name__}"
      )
  return list(messages)


class MaskError(ValueError):
  """An assistant turn cannot be located in the rendered conversation."""


def _header(tokenizer: ChatTokenizer, messages: Sequence[dict], i: int,
            tools) -> str:
  """The assistant header before messages[i]: the generation prompt the
  template appends to messages[:i], minus a trailing reasoning opener."""
  context = list(messages[:i]) or [{"role": "user", "content": "."}]
  bare = tokenizer.render(context, tools=tools)
  prompted = tokenizer.render(context, add_generation_prompt=True, tools=tools)
  if not prompted.startswith(bare) or len(prompted) == len(bare):
    raise MaskError(
        f"turn {i}: the template's generation prompt is not an append-only "
        f"suffix (rendering without it: ...{bare[-40:]!r}; with it: "
        f"...{prompted[-40:]!r})")
  header = _REASONING_OPENER.sub("", prompted[len(bare):])
  if not header:
    raise MaskError(f"turn {i}: the generation prompt is only a reasoning "
                    "opener; no header to locate the turn by")
  return header


def _visible_content(message: dict) -> str:
  """The part of a turn's content every template renders (after reasoning)."""
  content = message.get("content") or ""
  return content.split("</think>")[-1].strip()


def assistant_spans(
    tokenizer: ChatTokenizer,
    messages: Sequence[dict],
    *,
    trained_turns: Sequence[int] | None = None,
    tools: Sequence[dict] | None = None,
) -> tuple[list[int], list[tuple[int, int]]]:
  """Token ids of the conversation and [start, end) of each trained span.

  `trained_turns`: indices of the assistant messages to train (default:
  every assistant message).
  """
  text = tokenizer.render(messages, tools=tools)
  enc = tokenizer.tokenizer.encode(text, add_special_tokens=False)
  ids = enc.ids
  ends = [end for _, end in enc.offsets]
  stops = set(tokenizer.stop_ids)
  wanted = None if trained_turns is None else set(trained_turns)
  spans = []
  cursor = 0  # characters before it belong to earlier messages
  for i, m in enumerate(messages):
    if m["role"] != "assistant":
      seen = m.get("content")
      if isinstance(seen, str) and seen.strip():
        at = text.find(seen.strip(), cursor)
        cursor = at + len(seen.strip()) if at >= 0 else cursor
      continue
    header = _header(tokenizer, messages, i, tools)
    h = text.find(header, cursor)
    if h < 0:
      raise MaskError(
          f"turn {i} (assistant): its header {header!r} does not occur in the "
          f"rendered conversation after character {cursor}")
    body = h + len(header)
    first = bisect.bisect_right(ends, body)  # first token ending past header
    last = next((j for j in range(first, len(ids)) if ids[j] in stops), None)
    if last is None:
      raise MaskError(
          f"turn {i} (assistant): no end-of-turn token {sorted(stops)} after "
          f"its header at character {body}")
    eot_char = enc.offsets[last][0]
    trained = wanted is None or i in wanted
    visible = _visible_content(m)
    if trained and visible and visible not in text[body:eot_char]:
      raise MaskError(
          f"turn {i} (assistant): content {visible[:60]!r} is not in the "
          f"rendered turn {text[body:eot_char][:120]!r} (the template dropped "
          "or rewrote it)")
    if trained:
      spans.append((first, last + 1))
    cursor = ends[last]
  return ids, spans


def tokenize_with_assistant_mask(
    tokenizer: ChatTokenizer,
    messages: Sequence[dict],
    *,
    max_len: int | None = None,
    overlong: str = "truncate",
    trained_turns: Sequence[int] | None = None,
    tools: Sequence[dict] | None = None,
) -> TokenizedExample | None:
  """Token ids + assistant-only loss mask; None if dropped as over-long.

  `trained_turns`: indices of the assistant messages whose spans are trained
  (default every assistant turn); `tools` reach the template.
  """
  if overlong not in OVERLONG_POLICIES:
    raise ValueError(
        f"overlong={overlong!r}: expected one of {OVERLONG_POLICIES}"
    )
  if max_len is not None and max_len < 1:
    raise ValueError(f"max_len={max_len} must be positive")
  messages = validate_messages(messages)
  ids, spans = assistant_spans(tokenizer, messages,
                               trained_turns=trained_turns, tools=tools)
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
