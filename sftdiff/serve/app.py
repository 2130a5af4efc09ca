"""The Starlette app: `/v1/chat/completions`, `/v1/models`, `/v1/stats`.

`make_app(sampler, ServeConfig(...))` serves one model under
`ServeConfig.model_name`. Errors are OpenAI-shaped JSON bodies (400 bad
request, 404 unknown model/route, 429 queue full, 500 sampler failure).
Streaming (`stream: true`) answers Server-Sent Events in OpenAI's chunk
format; the sampler produces whole replies, so a reply's chunks are sent once
its batch finishes (one chunk per token), then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from sftdiff.eval.generators import stable_seed
from sftdiff.eval.types import Request
from sftdiff.serve.batcher import Batcher
from sftdiff.serve.protocol import ApiError, ChatJob, parse_chat_request

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServeConfig:
  model_name: str
  batch_window_s: float = 0.01  # how long a batch waits for more requests
  max_batch_requests: int = 32  # requests per batch (the sampler splits rows further)
  max_queue: int = 256  # waiting requests beyond this get 429
  default_max_tokens: int = 512  # when a request names none (capped by the context)
  max_n: int = 16


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
  return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
          "total_tokens": prompt_tokens + completion_tokens}


class ChatService:
  """Validates requests, queues them on the batcher and shapes replies."""

  def __init__(self, sampler, config: ServeConfig):
    self.sampler, self.config = sampler, config
    self.batcher = Batcher(sampler.generate, sampler.tokenizer.decode,
                           window_s=config.batch_window_s,
                           max_batch_requests=config.max_batch_requests,
                           max_queue=config.max_queue)
    self._ids = itertools.count()
    # Prompt + reply must fit the model's positions (the sampler's encode
    # checks its own prompt limit, SamplerConfig.max_prompt_len).
    self.max_context = sampler.model_config.max_position_embeddings

  def _job(self, body: Any) -> tuple[ChatJob, Request, int, int]:
    job = parse_chat_request(body, served_models=(self.config.model_name,),
                             max_tokens_limit=self.max_context,
                             max_n=self.config.max_n)
    index = next(self._ids)
    # Unseeded requests get a seed from their arrival number: reproducible
    # for a replayed request sequence, and never from the clock.
    seed = job.seed if job.seed is not None else stable_seed("serve", index)
    request = Request(job.messages, n=job.n, seed=seed)
    try:
      prompt_len = len(self.sampler.encode(request))
    except ValueError as e:
      raise ApiError(400, str(e), param="messages", code="context_length_exceeded") from None
    except Exception as e:  # pylint: disable=broad-except  # the chat template refused
      raise ApiError(400, f"the chat template cannot render these messages: "
                     f"{type(e).__name__}: {e}", param="messages") from None
    if job.max_tokens is None:  # as much as fits, up to the server's default
      job = dataclasses.replace(job, max_tokens=max(
          1, min(self.config.default_max_tokens, self.max_context - prompt_len)))
    if prompt_len + job.max_tokens > self.max_context:
      raise ApiError(400, f"prompt ({prompt_len} tokens) + max_tokens ({job.max_tokens}) "
                     f"exceeds the model's context of {self.max_context} tokens",
                     param="max_tokens", code="context_length_exceeded")
    return job, request, prompt_len, index

  async def complete(self, body: Any):
    job, request, prompt_len, index = self._job(body)
    try:
      fut = self.batcher.submit(request, temperature=job.temperature, top_p=job.top_p,
                                max_tokens=job.max_tokens, stop=job.stop)
    except asyncio.QueueFull:
      raise ApiError(429, "the server's request queue is full; retry later",
                     type_="rate_limit_error", code="queue_full") from None
    try:
      comps = await fut
    except Exception as e:  # pylint: disable=broad-except
      log.exception("sampler failed")
      raise ApiError(500, f"generation failed: {type(e).__name__}: {e}",
                     type_="server_error") from None
    return job, comps, prompt_len, f"chatcmpl-{index}"


def _choice(i, comp):
  return {"index": i, "finish_reason": comp.finish_reason, "logprobs": None,
          "message": {"role": "assistant", "content": comp.text}}


def _completion_body(job, comps, prompt_len, cid, created):
  return {"id": cid, "object": "chat.completion", "created": created, "model": job.model,
          "system_fingerprint": None,
          "choices": [_choice(i, c) for i, c in enumerate(comps)],
          "usage": _usage(prompt_len, sum(len(c.token_ids) for c in comps))}


def _sse_events(job, comps, prompt_len, cid, created, decode):
  def chunk(choices, usage=None):
    d = {"id": cid, "object": "chat.completion.chunk", "created": created,
         "model": job.model, "system_fingerprint": None, "choices": choices}
    if job.include_usage:
      d["usage"] = usage
    return f"data: {json.dumps(d)}\n\n"

  for i, comp in enumerate(comps):
    yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                  "logprobs": None, "finish_reason": None}])
    # One delta per token, cut where the prefix decodes to more of the text
    # (multi-byte characters span tokens), never past the final text.
    sent = 0
    for k in range(1, len(comp.token_ids) + 1):
      prefix = decode(comp.token_ids[:k])[:len(comp.text)]
      if len(prefix) > sent and comp.text.startswith(prefix):
        yield chunk([{"index": i, "delta": {"content": prefix[sent:]}, "logprobs": None,
                      "finish_reason": None}])
        sent = len(prefix)
    if sent < len(comp.text):
      yield chunk([{"index": i, "delta": {"content": comp.text[sent:]},
                    "logprobs": None, "finish_reason": None}])
    yield chunk([{"index": i, "delta": {}, "logprobs": None,
                  "finish_reason": comp.finish_reason}])
  if job.include_usage:
    yield chunk([], _usage(prompt_len, sum(len(c.token_ids) for c in comps)))
  yield "data: [DONE]\n\n"


def make_app(sampler, config: ServeConfig) -> Starlette:
  service = ChatService(sampler, config)

  async def chat_completions(request: HttpRequest):
    raw = await request.body()
    try:
      body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    job, comps, prompt_len, cid = await service.complete(body)
    created = int(time.time())
    if job.stream:
      return StreamingResponse(
          _sse_events(job, comps, prompt_len, cid, created, sampler.tokenizer.decode),
          media_type="text/event-stream")
    return JSONResponse(_completion_body(job, comps, prompt_len, cid, created))

  def model_card():
    return {"id": config.model_name, "object": "model", "created": 0, "owned_by": "sftdiff"}

  async def list_models(request: HttpRequest):
    return JSONResponse({"object": "list", "data": [model_card()]})

  async def get_model(request: HttpRequest):
    if request.path_params["model"] != config.model_name:
      raise ApiError(404, f"the model {request.path_params['model']!r} does not exist",
                     param="model", code="model_not_found")
    return JSONResponse(model_card())

  async def stats(request: HttpRequest):
    return JSONResponse(service.batcher.stats.to_json(service.batcher.queue_depth))

  async def health(request: HttpRequest):
    return JSONResponse({"status": "ok"})

  async def api_error(request, exc: ApiError):
    return JSONResponse(exc.body(), status_code=exc.status)

  async def http_error(request, exc: HTTPException):
    return JSONResponse(ApiError(exc.status_code, str(exc.detail)).body(),
                        status_code=exc.status_code)

  @contextlib.asynccontextmanager
  async def lifespan(app):
    service.batcher.start()
    try:
      yield
    finally:
      await service.batcher.stop()

  app = Starlette(
      routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/models", list_models, methods=["GET"]),
              Route("/v1/models/{model:path}", get_model, methods=["GET"]),
              Route("/v1/stats", stats, methods=["GET"]),
              Route("/health", health, methods=["GET"])],
      exception_handlers={ApiError: api_error, HTTPException: http_error},
      lifespan=lifespan)
  app.state.service = service
  return app
