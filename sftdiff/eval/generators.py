"""Where completions come from: a local checkpoint (sampler) or an API model.

Both implement `generate(requests, sampling) -> list[list[Completion]]` and
describe themselves (`identity`, `settings`) for results and rollout meta.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from sftdiff.eval import api_client
from sftdiff.eval.types import Completion, Request, SamplingParams


def stable_seed(*parts: Any) -> int:
  """A 31-bit seed from any printable parts (stable across runs/processes)."""
  h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
  return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


class LocalGenerator:
  """A Sampler over a local checkpoint."""

  def __init__(self, sampler, identity: str):
    self.sampler, self.identity = sampler, identity

  @property
  def max_batch_size(self) -> int:
    return self.sampler.config.max_batch_size

  @property
  def settings(self) -> dict[str, Any]:
    c = self.sampler.config
    return {"backend": "local_sampler", "padding_side": c.padding_side,
            "system_prompt": c.system_prompt, "max_batch_size": c.max_batch_size,
            "dtype": str(self.sampler.model_config.dtype)}

  def generate(self, requests: Sequence[Request], sampling: SamplingParams):
    return self.sampler.generate(requests, sampling)


class ApiGenerator:
  """An OpenAI-compatible chat model: one call per (request, sample).

  Each call carries `seed = stable_seed(request.seed, sample_index)` so
  providers that honour seeds reproduce samples.
  """

  max_batch_size = 64

  def __init__(self, config: api_client.ApiConfig, *, name: str | None = None,
               system_prompt: str | None = None):
    self.config = config
    self.client = api_client.ChatClient(config)
    self.identity = name or f"api:{config.identity}"
    self.system_prompt = system_prompt

  @property
  def settings(self) -> dict[str, Any]:
    return {"backend": "openai_compatible", "model": self.config.model,
            "base_url": self.config.base_url, "system_prompt": self.system_prompt}

  def generate(self, requests: Sequence[Request], sampling: SamplingParams):
    calls, index = [], []
    for ri, req in enumerate(requests):
      msgs = list(req.messages)
      if self.system_prompt and not (msgs and msgs[0]["role"] == "system"):
        msgs = [{"role": "system", "content": self.system_prompt}] + msgs
      for si in range(req.n):
        kwargs: dict[str, Any] = {"max_tokens": sampling.max_new_tokens,
                                  "temperature": sampling.temperature,
                                  "top_p": sampling.top_p,
                                  "seed": stable_seed(req.seed, si)}
        if sampling.stop_strings:
          kwargs["stop"] = list(sampling.stop_strings)[:4]
        if sampling.top_k:
          kwargs["extra_body"] = {"top_k": sampling.top_k}
        calls.append((msgs, kwargs))
        index.append((ri, si))
    texts = self.client.complete_many(calls)
    out: list[list[Completion | None]] = [[None] * r.n for r in requests]
    for (ri, si), text in zip(index, texts):
      if isinstance(text, Exception):
        raise text
      out[ri][si] = Completion(text, (), "api")
    return out
