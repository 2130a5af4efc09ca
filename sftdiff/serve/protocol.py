"""OpenAI chat-completions request parsing and response bodies.

`parse_chat_request(body, ...)` turns a decoded JSON body into a
`ChatJob` (messages, n, seed, sampling knobs) or raises `ApiError` carrying
the HTTP status and OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

MAX_STOP_STRINGS = 4  # OpenAI's limit
ROLES = ("system", "developer", "user", "assistant", "tool")
# Fields that would change what a reply means and that this server cannot honour.
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "logprobs",
               "top_logprobs", "logit_bias", "audio", "prediction")


class ApiError(Exception):
  """An error answered to the client as an OpenAI-style JSON body."""

  def __init__(self, status: int, message: str, *, param: str | None = None,
               type_: str = "invalid_request_error", code: str | None = None):
    super().__init__(message)
    self.status, self.message, self.param, self.type, self.code = (
        status, message, param, type_, code)

  def body(self) -> dict[str, Any]:
    return {"error": {"message": self.message, "type": self.type,
                      "param": self.param, "code": self.code}}


@dataclasses.dataclass(frozen=True)
class ChatJob:
  """One validated chat-completions request."""
  model: str
  messages: tuple[dict, ...]
  n: int
  seed: int | None
  temperature: float
  top_p: float
  max_tokens: int | None  # None: not given (the server picks what fits)
  stop: tuple[str, ...]
  stream: bool
  include_usage: bool


def _bad(message: str, param: str | None = None) -> ApiError:
  return ApiError(400, message, param=param)


def _number(body, name, default, lo, hi, *, integer=False):
  value = body.get(name)
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, (int, float)) or (
      integer and not isinstance(value, int)):
    kind = "an integer" if integer else "a number"
    raise _bad(f"'{name}' must be {kind}, got {value!r}", name)
  if not lo <= value <= hi:
    raise _bad(f"'{name}' must be in [{lo}, {hi}], got {value!r}", name)
  return value


def _content_text(content, index: int) -> str:
  """A message's content as text: a string or a list of text parts."""
  param = f"messages[{index}].content"
  if content is None:
    return ""
  if isinstance(content, str):
    return content
  if isinstance(content, list):
    parts = []
    for part in content:
      if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(
          part.get("text"), str):
        raise _bad(f"{param}: only text parts are supported "
                   f"(got {str(part)[:80]!r})", param)
      parts.append(part["text"])
    return "".join(parts)
  raise _bad(f"{param} must be a string or a list of text parts", param)


def _messages(raw) -> tuple[dict, ...]:
  if not isinstance(raw, list) or not raw:
    raise _bad("'messages' must be a non-empty list", "messages")
  out = []
  for i, m in enumerate(raw):
    if not isinstance(m, dict):
      raise _bad(f"messages[{i}] must be an object", f"messages[{i}]")
    role = m.get("role")
    if role not in ROLES:
      raise _bad(f"messages[{i}].role must be one of {list(ROLES)}, got {role!r}",
                 f"messages[{i}].role")
    msg = {"role": "system" if role == "developer" else role,
           "content": _content_text(m.get("content"), i)}
    for key in ("name", "tool_call_id", "reasoning_content"):
      if isinstance(m.get(key), str):
        msg[key] = m[key]
    out.append(msg)
  return tuple(out)


def _stop(raw) -> tuple[str, ...]:
  if raw is None:
    return ()
  stops = [raw] if isinstance(raw, str) else raw
  if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
    raise _bad("'stop' must be a string or a list of strings", "stop")
  if len(stops) > MAX_STOP_STRINGS:
    raise _bad(f"'stop' takes at most {MAX_STOP_STRINGS} strings", "stop")
  return tuple(s for s in stops if s)


def parse_chat_request(body: Any, *, served_models: tuple[str, ...],
                       max_tokens_limit: int, max_n: int) -> ChatJob:
  if not isinstance(body, dict):
    raise _bad("the request body must be a JSON object")
  model = body.get("model")
  if not isinstance(model, str) or not model:
    raise _bad("'model' is required", "model")
  if model not in served_models:
    raise ApiError(404, f"the model {model!r} does not exist; served: "
                   f"{list(served_models)}", param="model", code="model_not_found")
  for name in UNSUPPORTED:
    value = body.get(name)
    if value not in (None, False, [], {}, "none"):
      raise _bad(f"'{name}' is not supported by this server", name)
  messages = _messages(body.get("messages"))
  n = _number(body, "n", 1, 1, max_n, integer=True)
  seed = body.get("seed")
  if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
    raise _bad(f"'seed' must be an integer, got {seed!r}", "seed")
  temperature = float(_number(body, "temperature", 1.0, 0.0, 2.0))
  top_p = float(_number(body, "top_p", 1.0, 0.0, 1.0))
  if top_p == 0.0:
    raise _bad("'top_p' must be > 0", "top_p")
  # max_completion_tokens is the newer name; either may be sent.
  mt_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None \
      else "max_tokens"
  max_tokens = _number(body, mt_name, None, 1, max_tokens_limit, integer=True)
  stream = body.get("stream", False)
  if not isinstance(stream, bool):
    raise _bad("'stream' must be a boolean", "stream")
  opts = body.get("stream_options") or {}
  if not isinstance(opts, dict):
    raise _bad("'stream_options' must be an object", "stream_options")
  return ChatJob(model=model, messages=messages, n=n, seed=seed,
                 temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                 max_tokens=max_tokens, stop=_stop(body.get("stop")), stream=stream,
                 include_usage=bool(opts.get("include_usage", False)))
