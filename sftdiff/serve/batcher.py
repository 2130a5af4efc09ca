"""Request batching in front of the sampler.

Requests wait in a bounded asyncio queue (`QueueFull` -> the app answers
429). One worker takes the first waiting request, then gathers more until
`window_s` has passed or `max_batch_requests` are in hand, and runs them as
one batch: one `Sampler.generate` call per distinct (temperature, top_p)
group, in a single background thread (JAX work never blocks the event loop).

Within a group the batch is generated to the largest `max_tokens` asked and
each reply is cut to its own; a row's tokens depend only on its own seed and
step, so the cut reply equals the one generated alone. Stop strings are
applied per request after decoding.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
from typing import Callable, Sequence

from sftdiff.eval.sampler import truncate_at_stop_strings
from sftdiff.eval.types import Completion, Request, SamplingParams

Generate = Callable[[Sequence[Request], SamplingParams], list[list[Completion]]]


@dataclasses.dataclass
class Work:
  request: Request
  temperature: float
  top_p: float
  max_tokens: int
  stop: tuple[str, ...]
  future: asyncio.Future


@dataclasses.dataclass
class BatchStats:
  batches: int = 0  # batches run
  requests: int = 0  # requests answered through batches
  sampler_calls: int = 0  # Sampler.generate calls (one per sampling group)
  largest_batch: int = 0  # most requests in one batch
  rejected: int = 0  # 429s: the queue was full
  batch_sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def to_json(self, queue_depth: int) -> dict:
    return {"batches": self.batches, "requests": self.requests,
            "sampler_calls": self.sampler_calls, "largest_batch": self.largest_batch,
            "rejected": self.rejected, "queue_depth": queue_depth,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}


def cut_completion(comp: Completion, max_tokens: int, stop: Sequence[str],
                   decode: Callable[[Sequence[int]], str]) -> Completion:
  """`comp` as if generated with its own max_tokens and stop strings."""
  ids, text, finish = comp.token_ids, comp.text, comp.finish_reason
  if len(ids) >= max_tokens:
    # A stop token at index >= max_tokens would not have been reached.
    if len(ids) > max_tokens:
      ids = ids[:max_tokens]
      text = decode(ids)
    finish = "length"
  text, hit = truncate_at_stop_strings(text, stop)
  return Completion(text, tuple(ids), "stop" if hit else finish)


class Batcher:

  def __init__(self, generate: Generate, decode: Callable[[Sequence[int]], str], *,
               window_s: float, max_batch_requests: int, max_queue: int):
    if max_batch_requests < 1 or max_queue < 1 or window_s < 0:
      raise ValueError("Batcher: max_batch_requests and max_queue must be >= 1, "
                       "window_s >= 0")
    self._generate, self._decode = generate, decode
    self.window_s, self.max_batch_requests = window_s, max_batch_requests
    self._queue: asyncio.Queue[Work] = asyncio.Queue(maxsize=max_queue)
    self._executor = concurrent.futures.ThreadPoolExecutor(1, "sampler")
    self._task: asyncio.Task | None = None
    self.stats = BatchStats()

  @property
  def queue_depth(self) -> int:
    return self._queue.qsize()

  def start(self) -> None:
    self._task = asyncio.get_running_loop().create_task(self._run())

  async def stop(self) -> None:
    if self._task is not None:
      self._task.cancel()
      try:
        await self._task
      except asyncio.CancelledError:
        pass
    self._executor.shutdown(wait=True)

  def submit(self, request: Request, *, temperature: float, top_p: float,
             max_tokens: int, stop: tuple[str, ...]) -> asyncio.Future:
    """Queues one request; raises asyncio.QueueFull when the queue is full."""
    fut = asyncio.get_running_loop().create_future()
    try:
      self._queue.put_nowait(Work(request, temperature, top_p, max_tokens, stop, fut))
    except asyncio.QueueFull:
      self.stats.rejected += 1
      raise
    return fut

  async def _gather(self) -> list[Work]:
    loop = asyncio.get_running_loop()
    batch = [await self._queue.get()]
    deadline = loop.time() + self.window_s
    while len(batch) < self.max_batch_requests:
      if not self._queue.empty():
        batch.append(self._queue.get_nowait())
        continue
      left = deadline - loop.time()
      if left <= 0:
        break
      try:
        batch.append(await asyncio.wait_for(self._queue.get(), left))
      except asyncio.TimeoutError:
        break
    return [w for w in batch if not w.future.cancelled()]

  async def _run(self) -> None:
    loop = asyncio.get_running_loop()
    while True:
      batch = await self._gather()
      if not batch:
        continue
      self.stats.batches += 1
      self.stats.requests += len(batch)
      self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
      self.stats.batch_sizes[len(batch)] += 1
      groups: dict[tuple[float, float], list[Work]] = {}
      for w in batch:
        groups.setdefault((w.temperature, w.top_p), []).append(w)
      for (temperature, top_p), works in groups.items():
        params = SamplingParams(max_new_tokens=max(w.max_tokens for w in works),
                                temperature=temperature, top_p=top_p)
        self.stats.sampler_calls += 1
        try:
          outs = await loop.run_in_executor(
              self._executor, self._generate, [w.request for w in works], params)
        except Exception as e:  # pylint: disable=broad-except
          for w in works:
            if not w.future.done():
              w.future.set_exception(e)
          continue
        for w, comps in zip(works, outs):
          if not w.future.done():
            w.future.set_result([cut_completion(c, w.max_tokens, w.stop, self._decode)
                                 for c in comps])
