"""A small OpenAI-compatible `/v1/chat/completions` server for tests/benches.

Runs `http.server` in a background thread on 127.0.0.1 (random port). Replies
come from scripted texts (`add_replies`, used first, in order) or else from
`responder(messages, body) -> str`; faults can be injected per request:
"500", "503", "429", "429:<Retry-After value>" (seconds or an HTTP-date, sent
as the `Retry-After` header), "timeout" (sleeps past the client's timeout),
"malformed" (a body that is not JSON), "no_choices" (JSON without choices).
`outage = True` answers every request with a 503 until it is set back.
Every request is counted (`calls`), so tests can assert that a re-run made no
new calls; the Authorization headers seen are kept (`auth_headers`), and each
request's arrival on the monotonic clock (`arrivals`), to measure backoffs.
Each reply carries a `usage` block: by default `word_usage` (whitespace words
of the request's message contents / of the reply), so tests can compute the
expected token sums by hand; `usage_fn(messages, text) -> dict | None` replaces
it (None: a reply without `usage`).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Callable, Iterable

FAULTS = ("500", "503", "429", "timeout", "malformed", "no_choices")


def _known(fault: str) -> bool:
  return fault in FAULTS or fault.startswith("429:")


def echo_responder(messages, body) -> str:
  return "echo: " + str(messages[-1]["content"])[:200]


def word_usage(messages, text: str) -> dict[str, int]:
  """OpenAI-shaped usage counting whitespace-separated words."""
  prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
  completion = len(text.split())
  return {"prompt_tokens": prompt, "completion_tokens": completion,
          "total_tokens": prompt + completion}


class _Server(http.server.ThreadingHTTPServer):
  request_queue_size = 256  # the default (5) refuses bursts of concurrent clients
  daemon_threads = True


class OpenAITestServer:

  def __init__(self, responder: Callable[[list, dict], str] = echo_responder, *,
               faults: Iterable[str | None] = (),
               fault_fn: Callable[[int, list], str | None] | None = None,
               timeout_sleep_s: float = 1.0,
               usage_fn: Callable[[list, str], dict | None] = word_usage):
    self.responder = responder
    self.usage_fn = usage_fn
    self._faults = list(faults)
    self.fault_fn = fault_fn
    self.timeout_sleep_s = timeout_sleep_s
    self.calls = 0
    self.ok_calls = 0
    self.faults_served: list[str] = []
    self.auth_headers: list[str] = []
    self.bodies: list[dict] = []
    self.arrivals: list[float] = []
    self.outage = False
    self._replies: list[str] = []
    self._lock = threading.Lock()
    self._httpd = _Server(("127.0.0.1", 0), self._handler())
    self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

  @property
  def port(self) -> int:
    return self._httpd.server_address[1]

  @property
  def base_url(self) -> str:
    return f"http://127.0.0.1:{self.port}/v1"

  def add_faults(self, faults: Iterable[str | None]) -> None:
    with self._lock:
      self._faults.extend(faults)

  def add_replies(self, texts: Iterable[str]) -> None:
    """Texts answered (in order) before the responder is asked again."""
    with self._lock:
      self._replies.extend(texts)

  def reset_counts(self) -> None:
    with self._lock:
      self.calls = self.ok_calls = 0
      self.faults_served.clear()
      self.arrivals.clear()
      self.bodies.clear()

  def start(self) -> "OpenAITestServer":
    self._thread.start()
    return self

  def stop(self) -> None:
    self._httpd.shutdown()
    self._httpd.server_close()

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

  def _next_fault(self, index: int, messages: list) -> str | None:
    with self._lock:
      fault = self._faults.pop(0) if self._faults else None
    if fault is None and self.fault_fn is not None:
      fault = self.fault_fn(index, messages)
    if fault is None and self.outage:
      fault = "503"
    if fault is not None and not _known(fault):
      raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
    return fault

  def _handler(self):
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):  # keep test output quiet
        pass

      def _send(self, code: int, payload: bytes, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers:
          self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

      def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
          self._send(404, b'{"error": {"message": "not found"}}')
          return
        body = json.loads(raw or b"{}")
        with server._lock:
          index = server.calls
          server.calls += 1
          server.arrivals.append(time.monotonic())
          server.auth_headers.append(self.headers.get("Authorization", ""))
          server.bodies.append(body)
        messages = body.get("messages", [])
        fault = server._next_fault(index, messages)
        if fault is not None:
          with server._lock:
            server.faults_served.append(fault)
        if fault == "500":
          self._send(500, b'{"error": {"message": "injected 500"}}')
          return
        if fault == "503":
          self._send(503, b'{"error": {"message": "injected outage"}}')
          return
        if fault == "429":
          self._send(429, b'{"error": {"message": "injected 429"}}',
                     headers=[("retry-after-ms", "1")])
          return
        if fault is not None and fault.startswith("429:"):
          self._send(429, b'{"error": {"message": "injected 429"}}',
                     headers=[("Retry-After", fault[len("429:"):])])
          return
        if fault == "timeout":
          time.sleep(server.timeout_sleep_s)
        if fault == "malformed":
          self._send(200, b"this is not json {")
          return
        if fault == "no_choices":
          self._send(200, json.dumps({"id": "x", "object": "chat.completion",
                                      "created": 0, "model": "m"}).encode())
          return
        with server._lock:
          scripted = server._replies.pop(0) if server._replies else None
        text = scripted if scripted is not None else server.responder(messages, body)
        with server._lock:
          server.ok_calls += 1
        resp = {
            "id": f"chatcmpl-{index}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "test"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
        }
        usage = server.usage_fn(messages, text)
        if usage is not None:
          resp["usage"] = usage
        try:
          self._send(200, json.dumps(resp).encode())
        except (BrokenPipeError, ConnectionResetError):
          pass  # the client gave up (timeout fault)

    return Handler
