"""`python -m sftdiff.eval --checkpoint_dir=A --checkpoint_dir=B`: several
checkpoints in one process give byte for byte the files each gives alone,
compile the sampler once for all, and a dir that fails does not stop the rest."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FLAGS = ("--gin_file=runs/eval.gin", "--gin.run_eval.import_modules=['sftdiff.toyworld']",
         "--gin.BENCHMARKS=['toy_date_confusion', 'toy_blackmail']",  # rule-rated
         "--gin.JUDGE_KIND='none'", "--gin.LIMIT_PROMPTS=3", "--gin.run_eval.dtype='float32'")
COMPILING = re.compile(r"Compiling \S+ with global shapes")


def _eval(*flags):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_LOG_COMPILES="1")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every compile shows as one, no cache hit
  return subprocess.run([sys.executable, "-m", "sftdiff.eval", *FLAGS, *flags], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """Two checkpoints of one model config (different weights)."""
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  root = tmp_path_factory.mktemp("several")
  dirs = []
  for seed in (1, 2):
    d = root / f"run{seed}" / "hf"
    write_test_tokenizer(str(d))
    write_random_hf_checkpoint(d, "llama", seed=seed, vocab_size=512)
    dirs.append(d)
  return dirs


def _outputs(ckpt: pathlib.Path) -> dict[str, bytes]:
  """Every file the eval wrote under a checkpoint dir (not the weights)."""
  out = {}
  for p in sorted(ckpt.rglob("*")):
    rel = str(p.relative_to(ckpt))
    if p.is_file() and (rel.startswith("eval/") or rel in ("results.jsonl",
                                                             "eval_config.gin")):
      out[rel] = p.read_bytes()
  assert (ckpt / "judge_cache.sqlite").exists()
  return out


def _clean(ckpt: pathlib.Path) -> None:
  shutil.rmtree(ckpt / "eval")
  for name in ("results.jsonl", "eval_config.gin", "judge_cache.sqlite"):
    (ckpt / name).unlink()


@pytest.mark.slow
def test_several_dirs_equal_each_alone_and_compile_once(checkpoints):
  a, b = checkpoints
  alone = {}
  for d in (a, b):
    p = _eval(f"--gin.CHECKPOINT_DIR='{d}'")
    assert p.returncode == 0, p.stderr[-3000:]
    alone[d] = _outputs(d)
    assert any(k.endswith("metrics.json") for k in alone[d])
    _clean(d)
  assert alone[a] != alone[b]  # other weights, other samples

  missing = a.parent.parent / "no_such_run"
  p = _eval(f"--checkpoint_dir={a}", f"--checkpoint_dir={missing}", f"--checkpoint_dir={b}")
  # The missing dir fails as it would alone (rc 2, named); the others are done.
  assert p.returncode == 2, p.stderr[-3000:]
  assert f"CHECKPOINT_DIR: {missing} does not exist" in p.stderr
  assert "Traceback" not in p.stderr
  for d in (a, b):
    assert _outputs(d) == alone[d]  # byte for byte: samples, verdicts, metrics, ...

  # What the second checkpoint of the same model config compiled: nothing.
  first, _, rest = p.stderr.partition("checkpoint dir 2/3")
  assert len(COMPILING.findall(first)) > 0  # the log shows compiles at all
  _, _, last = rest.partition("checkpoint dir 3/3")
  assert "sampling" in last and COMPILING.findall(last) == []


def test_checkpoint_dir_flag_and_binding_together_exit_2(tmp_path):
  p = _eval(f"--checkpoint_dir={tmp_path / 'a'}", f"--gin.CHECKPOINT_DIR='{tmp_path}'")
  assert p.returncode == 2, p.stderr[-3000:]
  assert "--checkpoint_dir and --gin.CHECKPOINT_DIR" in p.stderr
  assert list(tmp_path.iterdir()) == []
