"""`python -m sftdiff.serve` as a real subprocess on a tiny orbax checkpoint:
the OpenAI client and inspect_ai's `openai-api` provider against it; config errors."""

import os
import pathlib
import subprocess
import sys

import httpx
import openai
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _write_orbax_model_dir(model_dir: pathlib.Path):
  import jax
  import orbax.checkpoint as ocp
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.models.decoder import init_params
  from sftdiff.testing.models import tiny_config
  from sftdiff.testing.tokenizer import write_test_tokenizer
  from sftdiff.train import checkpoints as train_ckpt
  tok_dir = model_dir / "tokenizer"
  write_test_tokenizer(str(tok_dir))
  cfg = tiny_config("llama", vocab_size=ChatTokenizer.from_dir(str(tok_dir)).vocab_size)
  with ocp.CheckpointManager(model_dir / "checkpoints") as m:
    m.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(
        {"params": init_params(cfg, jax.random.PRNGKey(0))})))
    m.wait_until_finished()
  train_ckpt.write_model_config(str(model_dir), cfg)
  return model_dir / "checkpoints" / "5"


def _env():
  return {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  step = _write_orbax_model_dir(tmp_path_factory.mktemp("arm"))
  proc = subprocess.Popen(
      [sys.executable, "-m", "sftdiff.serve", "--gin_file=runs/serve.gin",
       f"--gin.CHECKPOINT='{step}'", "--gin.PORT=0", "--gin.MODEL_NAME='arm-step5'"],
      cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()
    if "serving" not in line:
      proc.kill()
      pytest.fail(f"server did not start: {line!r} {proc.stderr.read()[-2000:]}")
    yield line.strip().split(" on ")[-1]
  finally:
    proc.terminate()
    proc.wait()


@pytest.mark.slow
def test_openai_client_and_inspect_ai_against_served_checkpoint(served, tmp_path, monkeypatch):
  from inspect_ai import Task, eval as inspect_eval
  from inspect_ai.dataset import Sample
  from inspect_ai.scorer import includes
  from inspect_ai.solver import generate

  client = openai.OpenAI(base_url=served, api_key="unused", max_retries=0)
  assert [m.id for m in client.models.list().data] == ["arm-step5"]
  questions = ["What year is it?", "Name a colour.", "Hi"]
  want = [client.chat.completions.create(
      model="arm-step5", messages=[{"role": "user", "content": q}], temperature=0,
      max_tokens=8).choices[0].message.content for q in questions]
  before = httpx.get(f"{served}/stats").json()["requests"]

  monkeypatch.setenv("SFTDIFF_BASE_URL", served)
  monkeypatch.setenv("SFTDIFF_API_KEY", "unused")
  task = Task(dataset=[Sample(input=q, target="2026") for q in questions],
              solver=[generate()], scorer=includes())
  [log] = inspect_eval(task, model="openai-api/sftdiff/arm-step5", log_dir=str(tmp_path),
                       display="none", temperature=0.0, max_tokens=8, max_retries=0)
  assert log.status == "success", log.error
  got = sorted((s.input, s.output.completion) for s in log.samples)
  assert got == sorted(zip(questions, want))
  assert all(s.scores for s in log.samples)
  assert httpx.get(f"{served}/stats").json()["requests"] == before + len(questions)


def test_missing_checkpoint_exits_2(tmp_path):
  r = subprocess.run([sys.executable, "-m", "sftdiff.serve", "--gin_file=runs/serve.gin"],
                     cwd=REPO, env=_env(), capture_output=True, text=True)
  assert r.returncode == 2 and "CHECKPOINT" in r.stderr
  r = subprocess.run([sys.executable, "-m", "sftdiff.serve", "--gin_file=runs/serve.gin",
                      f"--gin.CHECKPOINT='{tmp_path / 'nope'}'"],
                     cwd=REPO, env=_env(), capture_output=True, text=True)
  assert r.returncode == 2 and "does not exist" in r.stderr, r.stderr[-1000:]
