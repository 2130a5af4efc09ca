"""`serve(...)`: load a checkpoint and run the app under uvicorn (gin-configurable)."""

from __future__ import annotations

import logging
import pathlib
import socket
import sys

import gin

from sftdiff import gin_utils
from sftdiff.data import tokenizer as _tokenizer  # noqa: F401  registers chat_tokenizer.* with gin
from sftdiff.eval import sampler as sampler_lib
from sftdiff.serve.app import ServeConfig, make_app

log = logging.getLogger("sftdiff.serve")


def bind_socket(host: str, port: int) -> socket.socket:
  """A listening socket (port 0: any free port), so the real port can be announced."""
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((host, port))
  except OSError as e:
    raise gin_utils.GinConfigError(f"cannot listen on {host}:{port} (HOST/PORT): {e}") from e
  sock.listen(2048)
  return sock


def run_app(app, sock: socket.socket, *, log_level: str = "warning") -> None:
  import uvicorn
  server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                         timeout_keep_alive=30))
  server.run(sockets=[sock])


@gin.configurable
def serve(checkpoint: str = gin.REQUIRED, host: str = "127.0.0.1", port: int = 8000,
          model_name: str | None = None, batch_window_s: float = 0.01,
          max_batch_requests: int = 32, max_queue: int = 256,
          default_max_tokens: int = 512, max_n: int = 16,
          sampler_batch_size: int = 32, padding_side: str = "left",
          system_prompt: str | None = None,
          tokenizer_dir: str | None = None, dtype: str | None = None) -> None:
  """Serves `checkpoint` (orbax step/model dir or HF dir) until interrupted."""
  path = pathlib.Path(checkpoint)
  if not path.exists():
    raise gin_utils.GinConfigError(f"CHECKPOINT {checkpoint!r} does not exist")
  try:
    config = ServeConfig(model_name=model_name or path.name, batch_window_s=batch_window_s,
                         max_batch_requests=max_batch_requests, max_queue=max_queue,
                         default_max_tokens=default_max_tokens, max_n=max_n)
    sampler_config = sampler_lib.SamplerConfig(
        max_batch_size=sampler_batch_size, padding_side=padding_side,
        system_prompt=system_prompt)
    sampler = sampler_lib.from_checkpoint(path, sampler_config=sampler_config,
                                          tokenizer_dir=tokenizer_dir, dtype=dtype)
  except ValueError as e:
    raise gin_utils.GinConfigError(f"CHECKPOINT {checkpoint!r}: {e}") from e
  sock = bind_socket(host, port)
  bound = sock.getsockname()[1]
  # The one line a caller (or test) waits for; the port is real even for PORT=0.
  print(f"sftdiff.serve: serving {config.model_name!r} on http://{host}:{bound}/v1",
        flush=True)
  sys.stdout.flush()
  run_app(make_app(sampler, config), sock)


class BackgroundServer:
  """Runs an app under uvicorn in a thread on a free 127.0.0.1 port (tests, benches).

      with BackgroundServer(make_app(sampler, ServeConfig("m"))) as srv:
        openai.OpenAI(base_url=srv.base_url, api_key="x")...
  """

  def __init__(self, app, host: str = "127.0.0.1"):
    import threading
    import uvicorn
    self._sock = bind_socket(host, 0)
    self.host, self.port = host, self._sock.getsockname()[1]
    self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    self._thread = threading.Thread(target=self._server.run,
                                    kwargs={"sockets": [self._sock]}, daemon=True)

  @property
  def base_url(self) -> str:
    return f"http://{self.host}:{self.port}/v1"

  def __enter__(self) -> "BackgroundServer":
    import time
    self._thread.start()
    while not self._server.started:  # startup (lifespan) has run once this is set
      if not self._thread.is_alive():
        raise RuntimeError("the server thread exited during startup")
      time.sleep(0.01)
    return self

  def __exit__(self, *exc) -> None:
    self._server.should_exit = True
    self._thread.join()
    self._sock.close()
