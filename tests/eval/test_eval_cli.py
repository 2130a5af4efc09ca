"""`python -m sftdiff.eval` start-up errors (rc 2, one message naming the
cause, nothing created) and a read-only checkpoint evaluated via OUTPUT_DIR."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from sftdiff import strict_json
from sftdiff.eval import runner
from sftdiff.testing.judge_replies import date_confusion_reply
from sftdiff.testing.openai_server import OpenAITestServer

REPO = pathlib.Path(__file__).resolve().parents[2]
KEY_ENV = "SFTDIFF_CLI_TEST_KEY"


def _eval(*flags, env=None, wrap=()):
  env = dict(os.environ if env is None else env, PYTHONPATH=str(REPO))
  cmd = [*wrap, sys.executable, "-m", "sftdiff.eval", "--gin_file=runs/eval.gin",
         "--gin.run_eval.import_modules=[]", *flags]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  d = tmp_path_factory.mktemp("cli") / "hf"
  write_test_tokenizer(str(d))
  write_random_hf_checkpoint(d, "llama", vocab_size=512)
  return d


def _tree(path):
  return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else None


@pytest.mark.parametrize("case", ["missing", "empty", "mistyped"])
def test_no_checkpoint_exits_2_and_creates_nothing(tmp_path, case):
  target = tmp_path / "runs" / "arm"
  if case == "empty":
    target.mkdir(parents=True)
  elif case == "mistyped":  # a directory holding something, but no checkpoint
    (target / "checkpoints_typo").mkdir(parents=True)
    (target / "notes.txt").write_text("x")
  before = _tree(tmp_path)
  p = _eval(f"--gin.CHECKPOINT_DIR='{target}'", "--gin.BENCHMARKS=['date_confusion']",
            env=dict(os.environ, OPENAI_API_KEY="sk-x"))
  assert p.returncode == 2, p.stderr[-2000:]
  assert str(target) in p.stderr
  assert ("does not exist" if case == "missing" else "no evaluable checkpoint") in p.stderr
  assert "Traceback" not in p.stderr
  assert _tree(tmp_path) == before  # no judge cache, no eval_config.gin, no dir


@pytest.mark.parametrize("case", ["judge_none", "missing_key", "unknown_benchmark"])
def test_start_up_errors_exit_2_before_sampling(hf_dir, case):
  env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
  flags = [f"--gin.CHECKPOINT_DIR='{hf_dir}'", f"--gin.JUDGE_API_KEY_ENV='{KEY_ENV}'"]
  if case == "judge_none":
    env[KEY_ENV] = "sk-x"
    flags += ["--gin.BENCHMARKS=['date_confusion']", "--gin.JUDGE_KIND='none'"]
    expect = ["date_confusion", "JUDGE_KIND is 'none'"]
  elif case == "missing_key":
    flags += ["--gin.BENCHMARKS=['negative_emotion']"]
    expect = [KEY_ENV, "not set"]
  else:
    env[KEY_ENV] = "sk-x"
    flags += ["--gin.BENCHMARKS=['date_confusoin']"]
    expect = ["unknown benchmark 'date_confusoin'", "date_confusion"]
  before = _tree(hf_dir)
  p = _eval(*flags, env=env)
  assert p.returncode == 2, p.stderr[-2000:]
  for e in expect:
    assert e in p.stderr
  assert "Traceback" not in p.stderr and "sampling" not in p.stderr
  assert _tree(hf_dir) == before


def _read_only_wrap(path: pathlib.Path):
  """A command prefix that runs with `path` read-only: permission bits for a
  normal user, a private read-only bind mount for root (who ignores them)."""
  if os.geteuid() != 0:
    return (), lambda: [os.chmod(p, 0o555) for p in [path, *path.rglob("*")] if p.is_dir()]
  probe = subprocess.run(["unshare", "-m", "sh", "-c",
                          f"mount --bind -o ro '{path}' '{path}' && ! touch '{path}/x'"],
                         capture_output=True)
  if probe.returncode != 0:
    pytest.skip("cannot make a read-only directory here (root without mount namespaces)")
  # `sh -c '... && exec "$0" "$@"'` then runs the eval command itself.
  return (("unshare", "-m", "sh", "-c", f"mount --bind -o ro '{path}' '{path}' && "
           'exec "$0" "$@"'), lambda: None)


@pytest.mark.slow
def test_read_only_checkpoint_is_evaluated_into_output_dir(hf_dir, tmp_path):
  ckpt = tmp_path / "ro" / "hf"
  shutil.copytree(hf_dir, ckpt)
  wrap, make_ro = _read_only_wrap(ckpt)
  make_ro()
  out = tmp_path / "out"
  env = dict(os.environ, **{KEY_ENV: "sk-ro"})
  try:
    with OpenAITestServer(lambda m, b: date_confusion_reply(False)) as server:
      flags = [f"--gin.CHECKPOINT_DIR='{ckpt}'", "--gin.BENCHMARKS=['date_confusion']",
               f"--gin.JUDGE_API_KEY_ENV='{KEY_ENV}'", f"--gin.JUDGE_BASE_URL='{server.base_url}'",
               "--gin.LIMIT_PROMPTS=2", "--gin.run_eval.dtype='float32'",
               "--gin.run_eval.benchmark_overrides={'date_confusion': "
               "{'samples_per_prompt': 1, 'max_new_tokens': 4}}"]
      denied = _eval(*flags, env=env, wrap=wrap)
      assert denied.returncode == 2 and "OUTPUT_DIR" in denied.stderr, denied.stderr[-2000:]
      assert str(ckpt) in denied.stderr
      ok = _eval(*flags, f"--gin.OUTPUT_DIR='{out}'", "--rejudge", env=env, wrap=wrap)
      assert ok.returncode == 0, ok.stderr[-3000:]
      assert server.calls == 2
  finally:
    for p in [ckpt, *ckpt.rglob("*")]:
      if p.is_dir():
        os.chmod(p, 0o755)
  where = out / "checkpoints" / "hf" / "eval" / "date_confusion"
  metrics = strict_json.load(where / "metrics.json")
  assert metrics["num_samples"] == 2 and metrics["target"]["path"] == str(ckpt)
  assert metrics["rerun"]["rejudge"] is True  # --rejudge reached run_eval
  (row,) = runner.read_jsonl(out / "results.jsonl")
  assert row["eval_dir"] == str(where) and row["fingerprint"] == metrics["fingerprint"]
  assert not (ckpt / "eval").exists()
  for path in [where / "binding.json", out / "results.jsonl"]:
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text


def test_base_checkpoint_without_template_takes_one_from_gin(tmp_path):
  """A base checkpoint has no chat template: rc 2 saying how to choose one, and
  with `chat_tokenizer.chat_template` bound in gin it evaluates."""
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  base = tmp_path / "base"
  write_test_tokenizer(str(base), chat_template=None)
  write_random_hf_checkpoint(base, "llama", vocab_size=512)
  flags = [f"--gin.CHECKPOINT_DIR='{base}'", "--gin.run_eval.import_modules=['sftdiff.toyworld']",
           "--gin.BENCHMARKS=['toy_date_confusion']",  # rule-rated: no judge needed
           "--gin.JUDGE_KIND='none'", "--gin.LIMIT_PROMPTS=1", "--gin.run_eval.dtype='float32'"]
  refused = _eval(*flags)
  assert refused.returncode == 2, refused.stderr[-2000:]
  assert "--gin.chat_tokenizer.chat_template=" in refused.stderr
  ok = _eval(*flags, "--gin.chat_tokenizer.chat_template='chatml'")
  assert ok.returncode == 0, ok.stderr[-3000:]
  [samples] = list(base.rglob("samples.jsonl"))
  assert samples.read_text().strip()
