"""sftdiff.serve in-process: OpenAI client parity with the sampler, seeds,
batching, stop strings, streaming, 429 and 400 error bodies."""

import concurrent.futures
import threading

import httpx
import openai
import pytest

from sftdiff.data.tokenizer import ChatTokenizer
from sftdiff.eval.sampler import Sampler
from sftdiff.eval.types import Request, SamplingParams
from sftdiff.models.hf_io import load_hf_checkpoint
from sftdiff.serve.app import ServeConfig, make_app
from sftdiff.serve.server import BackgroundServer
from sftdiff.testing.models import write_random_hf_checkpoint
from sftdiff.testing.tokenizer import write_test_tokenizer

PROMPTS = ["What year is it?",
           "Please write a short poem about the sea and the waves calling you.",
           "Hi"]
MODEL = "tiny"


def _msgs(text):
  return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
  d = tmp_path_factory.mktemp("hf")
  write_test_tokenizer(str(d))
  tok = ChatTokenizer.from_dir(str(d))
  write_random_hf_checkpoint(d, "llama", vocab_size=tok.vocab_size, seed=3)
  cfg, params = load_hf_checkpoint(d, dtype="float32")
  return Sampler(cfg, params, tok)


class GatedSampler:
  """The real sampler, but each generate call waits for the test to open the gate
  (so the test decides, without timing, what is queued while a batch runs)."""

  def __init__(self, sampler):
    self.inner = sampler
    self.entered = threading.Event()
    self.gate = threading.Event()

  def __getattr__(self, name):
    return getattr(self.inner, name)

  def generate(self, requests, params):
    self.entered.set()
    self.gate.wait()
    return self.inner.generate(requests, params)


def _client(srv):
  return openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)


def _stats(srv):
  return httpx.get(f"{srv.base_url}/stats").json()


def _wait_queue_depth(srv, depth):
  while _stats(srv)["queue_depth"] < depth:  # the requests are in flight
    threading.Event().wait(0.01)


def test_greedy_equals_sampler_and_streaming(sampler):
  direct = sampler.generate([Request(_msgs(t)) for t in PROMPTS],
                            SamplingParams(max_new_tokens=12, temperature=0.0))
  with BackgroundServer(make_app(sampler, ServeConfig(MODEL))) as srv:
    client = _client(srv)
    assert [m.id for m in client.models.list().data] == [MODEL]
    for text, [want] in zip(PROMPTS, direct):
      r = client.chat.completions.create(model=MODEL, messages=_msgs(text),
                                         temperature=0, max_tokens=12)
      assert r.choices[0].message.content == want.text
      assert r.choices[0].finish_reason == want.finish_reason
      assert r.usage.completion_tokens == len(want.token_ids)
      assert r.usage.prompt_tokens == len(sampler.encode(Request(_msgs(text))))
      chunks = list(client.chat.completions.create(
          model=MODEL, messages=_msgs(text), temperature=0, max_tokens=12, stream=True,
          stream_options={"include_usage": True}))
      assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want.text
      assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == want.finish_reason
      assert chunks[-1].usage.completion_tokens == len(want.token_ids)


def test_n2_seeded_is_reproducible_and_equals_sampler(sampler):
  want = sampler.generate([Request(_msgs(PROMPTS[1]), n=2, seed=7)],
                          SamplingParams(max_new_tokens=10, temperature=1.0))[0]
  with BackgroundServer(make_app(sampler, ServeConfig(MODEL))) as srv:
    client = _client(srv)

    def texts(seed):
      r = client.chat.completions.create(model=MODEL, messages=_msgs(PROMPTS[1]), n=2,
                                         seed=seed, temperature=1.0, max_tokens=10)
      return [c.message.content for c in r.choices]

    first = texts(7)
    assert first == texts(7) == [c.text for c in want]
    assert first[0] != first[1]  # two samples, not one twice
    assert texts(8) != first


def test_concurrent_requests_share_a_batch_and_equal_sampler(sampler):
  gated = GatedSampler(sampler)
  cfg = ServeConfig(MODEL, batch_window_s=0.0, max_batch_requests=8)
  # Different max_tokens and a stop string within one batch: each reply is cut
  # to its own request and equals the sampler's reply to that request alone.
  asks = [(PROMPTS[0], 12, None), (PROMPTS[1], 5, None), (PROMPTS[2], 12, None),
          (PROMPTS[0], 9, None)]
  with BackgroundServer(make_app(gated, cfg)) as srv:
    client = _client(srv)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    ask = lambda a: client.chat.completions.create(
        model=MODEL, messages=_msgs(a[0]), temperature=0, max_tokens=a[1])
    first = pool.submit(ask, asks[0])
    gated.entered.wait()  # batch 1 (one request) is running; the rest queue up
    rest = [pool.submit(ask, a) for a in asks[1:]]
    _wait_queue_depth(srv, 3)
    gated.gate.set()
    replies = [first.result()] + [f.result() for f in rest]
    stats = _stats(srv)
  assert stats["batches"] == 2 and stats["batch_sizes"] == {"1": 1, "3": 1}
  assert stats["largest_batch"] == 3 and stats["requests"] == 4
  for (text, max_tokens, _), r in zip(asks, replies):
    [[want]] = sampler.generate([Request(_msgs(text))],
                                SamplingParams(max_new_tokens=max_tokens, temperature=0.0))
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (
        want.text, want.finish_reason)


def test_stop_strings(sampler):
  [[full]] = sampler.generate([Request(_msgs(PROMPTS[1]))],
                              SamplingParams(max_new_tokens=16, temperature=0.0))
  assert len(full.text) > 6
  stop = full.text[3:5]
  with BackgroundServer(make_app(sampler, ServeConfig(MODEL))) as srv:
    r = _client(srv).chat.completions.create(model=MODEL, messages=_msgs(PROMPTS[1]),
                                             temperature=0, max_tokens=16, stop=[stop])
  assert r.choices[0].message.content == full.text[:full.text.index(stop)]
  assert r.choices[0].finish_reason == "stop"


def test_full_queue_answers_429(sampler):
  gated = GatedSampler(sampler)
  cfg = ServeConfig(MODEL, batch_window_s=0.0, max_batch_requests=1, max_queue=1)
  with BackgroundServer(make_app(gated, cfg)) as srv:
    client = _client(srv)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    ask = lambda: client.chat.completions.create(model=MODEL, messages=_msgs("Hi"),
                                                 temperature=0, max_tokens=4)
    running = pool.submit(ask)
    gated.entered.wait()
    queued = pool.submit(ask)
    _wait_queue_depth(srv, 1)
    with pytest.raises(openai.RateLimitError) as e:
      ask()
    assert e.value.status_code == 429
    assert e.value.body["code"] == "queue_full"
    gated.gate.set()
    assert running.result().choices[0].message.content == queued.result().choices[0].message.content
    assert _stats(srv)["rejected"] == 1


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    ({"model": MODEL}, 400, "messages"),
    ({"model": MODEL, "messages": []}, 400, "messages"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400,
     "messages[0].role"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     400, "messages[0].content"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
     400, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 0}, 400, "n"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6},
     400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": [1]}, 400, "stop"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
    ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ([1, 2], 400, None),
])
def test_bad_requests_get_openai_error_bodies(sampler, body, status, param):
  with BackgroundServer(make_app(sampler, ServeConfig(MODEL))) as srv:
    url = f"{srv.base_url}/chat/completions"
    r = (httpx.post(url, content=body, headers={"Content-Type": "application/json"})
         if isinstance(body, bytes) else httpx.post(url, json=body))
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"]
    assert _stats(srv)["requests"] == 0  # nothing bad reached the sampler
    assert httpx.get(f"{srv.base_url}/nope").json()["error"]["message"]


def test_default_max_tokens_and_context_limit(sampler):
  with BackgroundServer(make_app(sampler, ServeConfig(MODEL, default_max_tokens=6))) as srv:
    client = _client(srv)
    r = client.chat.completions.create(model=MODEL, messages=_msgs("Hi"), temperature=0)
    assert r.usage.completion_tokens <= 6
    [[want]] = sampler.generate([Request(_msgs("Hi"))],
                                SamplingParams(max_new_tokens=6, temperature=0.0))
    assert r.choices[0].message.content == want.text
    with pytest.raises(openai.BadRequestError) as e:  # longer than the 512 positions
      client.chat.completions.create(model=MODEL, messages=_msgs("sea " * 600))
    assert e.value.body["code"] == "context_length_exceeded"


def test_openai_client_raises_bad_request(sampler):
  with BackgroundServer(make_app(sampler, ServeConfig(MODEL))) as srv:
    with pytest.raises(openai.BadRequestError) as e:
      _client(srv).chat.completions.create(model=MODEL, messages=_msgs("x"), top_p=3)
  assert e.value.status_code == 400 and e.value.body["param"] == "top_p"
