"""Results bound to the checkpoint fingerprint and sampler settings: weights
swapped under an evaluated dir are re-sampled into a fresh result, the old one
kept and labelled, never mixed."""

import logging

import pytest

from sftdiff import strict_json
from sftdiff.eval import result_binding, run, runner
from sftdiff.eval.api_client import ApiConfig
from sftdiff.eval.autorater import Autorater
from sftdiff.eval.sampler import SamplerConfig
from sftdiff.testing.judge_replies import date_confusion_reply
from sftdiff.testing.openai_server import OpenAITestServer

from tests.eval.test_runner import CountingGenerator, _bench

KEY_ENV = "SFTDIFF_BINDING_TEST_KEY"


def test_settings_change_supersedes_and_a_returning_binding_is_restored(tmp_path):
  bench, out = _bench(), tmp_path / "eval" / "toy"
  a = {"name": "x", "fingerprint": "fa", "generator": {"padding_side": "left"}}
  b = {**a, "generator": {"padding_side": "right"}}
  gen = CountingGenerator()
  res_a = runner.evaluate(bench, out, generator=gen, autorater=Autorater(), target=a)
  assert gen.calls == 3 and res_a["rerun"]["superseded"] is None
  res_b = runner.evaluate(bench, out, generator=gen, autorater=Autorater(), target=b)
  assert gen.calls == 6  # other settings: sampled afresh
  assert res_b["rerun"]["superseded"] == res_a["binding_key"] != res_b["binding_key"]
  old = out / "superseded" / res_a["binding_key"]
  assert strict_json.load(old / "binding.json")["binding"]["generator"] == a["generator"]
  assert strict_json.load(old / "metrics.json")["binding_key"] == res_a["binding_key"]
  assert len(runner.read_jsonl(old / "samples.jsonl")) == 18
  # Back to the first settings: the kept result is moved back, nothing sampled.
  res_a2 = runner.evaluate(bench, out, generator=lambda: pytest.fail("must not sample"),
                           autorater=Autorater(), target=a)
  assert res_a2["rerun"]["restored"] and res_a2["metrics"] == res_a["metrics"]
  assert (out / "superseded" / res_b["binding_key"] / "binding.json").exists()


def test_results_written_before_bindings_are_kept_apart(tmp_path):
  bench, out = _bench(), tmp_path / "eval" / "toy"
  out.mkdir(parents=True)
  (out / "samples.jsonl").write_text('{"prompt_id": "p0", "sample_index": 0}\n')
  gen = CountingGenerator()
  res = runner.evaluate(bench, out, generator=gen, autorater=Autorater(),
                        target={"name": "x", "fingerprint": "f"})
  assert gen.calls == 3 and res["rerun"]["superseded"] == result_binding.UNBOUND
  assert (out / "superseded" / "unbound" / "samples.jsonl").exists()


def _judge(messages, body):
  return date_confusion_reply(False)


@pytest.fixture
def hf_model(tmp_path):
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  d = tmp_path / "model" / "hf"
  write_test_tokenizer(str(d))
  write_random_hf_checkpoint(d, "llama", vocab_size=512)
  return d


def _run(ckpt, out, server, **over):
  judge = run.JudgeConfig(kind="openai", api=ApiConfig(
      model="judge-m", base_url=server.base_url, api_key_env=KEY_ENV, initial_backoff_s=0.01))
  kw = dict(checkpoint_dir=str(ckpt), benchmark_names=["date_confusion"],
            output_dir=str(out), judge=judge, import_modules=[], limit_prompts=2,
            dtype="float32", sampler_config=SamplerConfig(max_batch_size=4),
            benchmark_overrides={"date_confusion": {"samples_per_prompt": 2,
                                                    "max_new_tokens": 4}})
  kw.update(over)
  (res,) = run.run_eval(**kw)
  return res


def test_weights_swapped_under_an_evaluated_dir_are_resampled(hf_model, tmp_path,
                                                              monkeypatch, caplog):
  from sftdiff.testing.models import write_random_hf_checkpoint
  monkeypatch.setenv(KEY_ENV, "sk-binding")
  caplog.set_level(logging.INFO)
  out = tmp_path / "out"
  with OpenAITestServer(_judge) as server:
    first = _run(hf_model, out, server)
    assert first["num_samples"] == 4
    caplog.clear()
    again = _run(hf_model, out, server)
    assert "sampling" not in caplog.text and again["fingerprint"] == first["fingerprint"]
    # New weights at the same path (as export_hf=True rewriting MODEL_DIR/hf/).
    write_random_hf_checkpoint(hf_model, "llama", seed=1, vocab_size=512)
    caplog.clear()
    second = _run(hf_model, out, server)
  assert "sampling 2 of 2 prompts" in caplog.text
  assert second["fingerprint"] != first["fingerprint"]
  assert second["rerun"]["superseded"] == first["binding_key"]
  d = hf_model / "eval" / "date_confusion"
  assert strict_json.load(d / "metrics.json")["target"]["fingerprint"] == second["fingerprint"]
  kept = d / "superseded" / first["binding_key"]
  assert strict_json.load(kept / "metrics.json")["fingerprint"] == first["fingerprint"]
  assert len(runner.read_jsonl(d / "samples.jsonl")) == 4
  # results.jsonl: one line per binding, the new one current.
  rows = runner.read_jsonl(out / "results.jsonl")
  assert sorted((r["fingerprint"], r["current"]) for r in rows) == sorted(
      [(first["fingerprint"], False), (second["fingerprint"], True)])
  assert all(r["generator"]["backend"] == "local_sampler" for r in rows)


def test_read_only_checkpoint_needs_output_dir(hf_model, tmp_path, monkeypatch):
  """Read-only is simulated by making `mkdir` of the eval dir fail as on a
  read-only mount (root ignores permission bits); the subprocess test in
  test_eval_cli.py uses a real read-only bind mount."""
  import errno
  import os
  monkeypatch.setenv(KEY_ENV, "sk-binding")
  real_mkdir = os.mkdir

  def mkdir(path, *a, **k):
    if str(path).startswith(str(hf_model)):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return real_mkdir(path, *a, **k)

  monkeypatch.setattr(os, "mkdir", mkdir)
  with OpenAITestServer(_judge) as server:
    with pytest.raises(run.OutputWriteError, match="OUTPUT_DIR"):
      _run(hf_model, None, server, output_dir=None)
    res = _run(hf_model, tmp_path / "out", server)
  where = tmp_path / "out" / "checkpoints" / "hf" / "eval" / "date_confusion"
  assert res["eval_dir"] == str(where) and (where / "metrics.json").exists()
  assert not (hf_model / "eval").exists()
