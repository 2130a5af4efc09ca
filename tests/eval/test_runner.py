"""Discovery of checkpoints, incremental/resumable evaluation, SIGKILL + re-run."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from sftdiff.eval import checkpoints, metrics, runner
from sftdiff.eval.api_client import ApiConfig
from sftdiff.eval.autorater import Autorater
from sftdiff.eval.benchmarks.base import Benchmark, RuleRater
from sftdiff.eval.types import Completion, EvalPrompt, SamplingParams
from sftdiff.testing.judge_replies import date_confusion_reply, judged_response
from sftdiff.testing.openai_server import OpenAITestServer

REPO = pathlib.Path(__file__).resolve().parents[2]


def _write_orbax_model_dir(model_dir: pathlib.Path, tok_src: pathlib.Path):
  import jax
  import orbax.checkpoint as ocp
  from sftdiff.models.decoder import init_params
  from sftdiff.testing.models import tiny_config
  from sftdiff.train import checkpoints as train_ckpt
  cfg = tiny_config("llama", vocab_size=512)
  with ocp.CheckpointManager(model_dir / "checkpoints") as m:
    m.save(10, args=ocp.args.Composite(state=ocp.args.StandardSave(
        {"params": init_params(cfg, jax.random.PRNGKey(0))})))
    m.wait_until_finished()
  train_ckpt.write_model_config(str(model_dir), cfg)
  train_ckpt.copy_tokenizer(tok_src, model_dir / "tokenizer")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  d = tmp_path_factory.mktemp("hf")
  write_test_tokenizer(str(d))
  write_random_hf_checkpoint(d, "llama", vocab_size=512)
  return d


def test_discovery_skips_incomplete(tmp_path, hf_dir):
  import shutil
  shutil.copytree(hf_dir, tmp_path / "exported" / "hf")
  arm = tmp_path / "arm"
  _write_orbax_model_dir(arm, hf_dir)
  # An interrupted save (orbax's tmp dir) and a step dir orbax never committed.
  (arm / "checkpoints" / "20.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
  (arm / "checkpoints" / "30" / "state").mkdir(parents=True)
  refs, skipped = checkpoints.discover(tmp_path)
  assert [(r.kind, r.name, r.step) for r in refs] == [
      ("orbax", "arm/checkpoints/10", 10), ("hf", "exported/hf", None)]
  assert sorted(p.name for p in skipped) == ["20.orbax-checkpoint-tmp-1234", "30"]
  # A step dir given directly; an incomplete one given directly.
  assert [r.step for r in checkpoints.discover(arm / "checkpoints" / "10")[0]] == [10]
  assert checkpoints.discover(arm / "checkpoints" / "30")[0] == []
  # The orbax step loads for eval with the model dir's tokenizer.
  cfg, params, tok = checkpoints.load_for_eval(refs[0])
  assert cfg.vocab_size == 512 and tok.vocab_size == 512
  fp = refs[0].fingerprint()
  assert fp == refs[0].fingerprint() and fp != refs[1].fingerprint()


class CountingGenerator:
  max_batch_size = 6  # -> 2 prompts of n=3 per chunk

  def __init__(self):
    self.calls = 0
    self.settings = {"backend": "fake"}

  def generate(self, requests, sampling):
    self.calls += 1
    return [[Completion(f"{r.messages[-1]['content']} seed={r.seed} i={i} "
                        f"{'2024' if (r.seed + i) % 3 == 0 else '2026'}", (1, 2), "stop")
             for i in range(r.n)] for r in requests]


def _bench():
  prompts = [EvalPrompt(f"p{i}", ({"role": "user", "content": f"q{i}"},), "s") for i in range(6)]
  return Benchmark("toy", prompts, SamplingParams(max_new_tokens=4, n=3),
                   [RuleRater("says_2024", "r1", lambda p, c: "2024" in c)],
                   lambda rows: metrics.rate_metric(rows, "says_2024"))


def test_evaluate_is_incremental_and_drops_torn_lines(tmp_path):
  bench = _bench()
  gen = CountingGenerator()
  target = {"name": "x", "fingerprint": "f"}
  res = runner.evaluate(bench, tmp_path / "eval" / "toy", generator=gen,
                        autorater=Autorater(), target=target)
  assert res["num_samples"] == 18 and gen.calls == 3
  assert res["metrics"]["says_2024_n"] == 18 and res["rubric_versions"] == {"says_2024": "r1"}
  samples = (tmp_path / "eval" / "toy" / "samples.jsonl").read_text().splitlines()
  assert len(samples) == 18
  # Simulate a kill mid-write: drop the last prompt's samples, leave a torn line.
  with open(tmp_path / "eval" / "toy" / "samples.jsonl", "w") as f:
    f.write("\n".join(samples[:-3]) + "\n" + samples[-3][:20])
  gen2 = CountingGenerator()
  res2 = runner.evaluate(bench, tmp_path / "eval" / "toy", generator=lambda: gen2,
                         autorater=Autorater(), target=target)
  assert gen2.calls == 1 and res2["metrics"] == res["metrics"]
  assert (tmp_path / "eval" / "toy" / "samples.jsonl").read_text().splitlines() == samples
  # Complete: a factory generator is never even built.
  res3 = runner.evaluate(bench, tmp_path / "eval" / "toy",
                         generator=lambda: pytest.fail("must not sample"),
                         autorater=Autorater(), target=target)
  assert res3["metrics"] == res["metrics"]
  runner.update_results(tmp_path / "results.jsonl", res3)
  runner.update_results(tmp_path / "results.jsonl", res3)
  assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1


# ----------------------------------------------------------- SIGKILL resume

SECRET = "sk-eval-test-SECRET-777"


def _responder(messages, body):
  time.sleep(0.05)
  resp = judged_response(messages)
  if len(resp) % 2:
    return date_confusion_reply(True, resp)
  return date_confusion_reply(False)


def _cmd(ckpt, out, base_url):
  return [sys.executable, "-m", "sftdiff.eval", "--gin_file=runs/eval.gin",
          f"--gin.CHECKPOINT_DIR='{ckpt}'", "--gin.BENCHMARKS=['date_confusion']",
          f"--gin.OUTPUT_DIR='{out}'", "--gin.LIMIT_PROMPTS=8",
          f"--gin.JUDGE_BASE_URL='{base_url}'", "--gin.JUDGE_API_KEY_ENV='SFTDIFF_EVAL_TEST_KEY'",
          "--gin.JUDGE_MAX_CONCURRENCY=1",
          "--gin.run_eval.benchmark_overrides={'date_confusion': "
          "{'samples_per_prompt': 2, 'max_new_tokens': 8}}",
          "--gin.SamplerConfig.max_batch_size=4", "--gin.run_eval.judge_chunk=2",
          "--gin.run_eval.dtype='float32'", "--gin.run_eval.import_modules=[]"]


def _env(tmp_path):
  env = dict(os.environ, SFTDIFF_EVAL_TEST_KEY=SECRET,
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  return env


def _lines(path):
  return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path, hf_dir):
  import shutil
  env = _env(tmp_path)
  a, b = tmp_path / "a", tmp_path / "b"
  shutil.copytree(hf_dir, a)
  shutil.copytree(hf_dir, b)
  with OpenAITestServer(_responder) as server:
    full = subprocess.run(_cmd(a, tmp_path / "out_a", server.base_url), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    uninterrupted_calls = server.calls
    assert uninterrupted_calls == 16  # 8 prompts x 2 samples, one judge call each
    assert SECRET not in full.stderr + full.stdout

    server.reset_counts()
    verdicts_b = b / "eval" / "date_confusion" / "verdicts.jsonl"
    proc = subprocess.Popen(_cmd(b, tmp_path / "out_b", server.base_url), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while len(_lines(verdicts_b)) < 4 and proc.poll() is None and time.time() < deadline:
      time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_ok = server.ok_calls
    written_before = len(_lines(verdicts_b))
    assert 4 <= written_before < 16
    assert len(_lines(b / "eval" / "date_confusion" / "samples.jsonl")) == 16

    server.reset_counts()
    rerun = subprocess.run(_cmd(b, tmp_path / "out_b", server.base_url), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # Every reply received before the kill was kept: at most the one request
    # in flight at the kill (concurrency 1) is asked again.
    assert server.calls <= uninterrupted_calls - killed_ok + 1
    assert "sampling" not in rerun.stderr  # no sampling redone

  ea, eb = a / "eval" / "date_confusion", b / "eval" / "date_confusion"
  key = lambda r: (r["prompt_id"], r["sample_index"], r.get("rater", ""))
  for name in ("samples.jsonl", "verdicts.jsonl"):
    ra = sorted((json.loads(l) for l in _lines(ea / name)), key=key)
    rb = sorted((json.loads(l) for l in _lines(eb / name)), key=key)
    assert ra == rb, name
  ma, mb = (json.loads((e / "metrics.json").read_text()) for e in (ea, eb))
  assert ma["metrics"] == mb["metrics"] and ma["num_samples"] == mb["num_samples"] == 16
  assert ma["unscored"] == mb["unscored"]
  for text in [(ea / "metrics.json").read_text(), (tmp_path / "out_b" / "results.jsonl").read_text(),
               (tmp_path / "out_b" / "eval_config.gin").read_text()]:
    assert SECRET not in text
  res = [json.loads(l) for l in _lines(tmp_path / "out_b" / "results.jsonl")]
  assert len(res) == 1 and res[0]["target"]["fingerprint"]


def test_api_teacher_evaluated_beside_students(tmp_path, monkeypatch):
  from sftdiff.eval import benchmarks, run
  monkeypatch.setenv("TEACHER_KEY", SECRET)
  benchmarks.register("test_teacher_bench", lambda: _bench(), overwrite=True)
  with OpenAITestServer(lambda m, b: f"It is {'2024' if b['seed'] % 2 else '2026'}.") as server:
    teacher = run.TeacherConfig(name="gpt-x", api=ApiConfig(
        model="gpt-x", base_url=server.base_url, api_key_env="TEACHER_KEY",
        initial_backoff_s=0.01))
    kw = dict(checkpoint_dir=None, benchmark_names=["test_teacher_bench"],
              output_dir=str(tmp_path / "out"), teachers=[teacher], judge=None,
              import_modules=[])
    (res,) = run.run_eval(**kw)
    assert server.calls == 18
    server.reset_counts()
    (again,) = run.run_eval(**kw)
    assert server.calls == 0 and again["metrics"] == res["metrics"]
  d = tmp_path / "out" / "teachers" / "gpt-x" / "eval" / "test_teacher_bench"
  assert (d / "metrics.json").exists() and len(_lines(d / "samples.jsonl")) == 18
  assert res["target"]["name"] == "teacher:gpt-x" and res["generator"]["model"] == "gpt-x"
  assert 0 < res["metrics"]["says_2024_rate"] < 1
  (line,) = _lines(tmp_path / "out" / "results.jsonl")
  assert json.loads(line)["target"]["kind"] == "api_teacher"
  assert SECRET not in line + (tmp_path / "out" / "eval_config.gin").read_text()
