"""`python -m sftdiff.data build` on data files with bad bytes, gzip shards and
an empty file: rc 2 naming the file and line, or a build that counts skips."""

import gzip
import os
import subprocess
import sys

import pytest

from sftdiff.data import example_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _build(data_dir, *gin_args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "sftdiff.data", "build", "--gin_file=data/example.gin",
       f"--gin.DATA_DIR='{data_dir}'", *gin_args], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=240)


@pytest.fixture()
def data_dir(tmp_path):
  d = str(tmp_path / "data")
  example_data.write_example_rollouts(d)
  return d


@pytest.mark.slow
def test_bad_bytes_exit_2_naming_file_and_line(data_dir):
  path = os.path.join(data_dir, "alt.jsonl")
  with open(path, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  lines[2] = lines[2].replace(b"Alt answer", b"Alt \xe9answer")  # Latin-1 byte
  with open(path, "wb") as f:
    f.writelines(lines)
  proc = _build(data_dir)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert f"{path}:3: not UTF-8: byte b'\\xe9'" in proc.stderr
  assert "Traceback" not in proc.stderr
  # Under skip the row is counted and, the alt completion of p03 missing, the
  # coverage policy drops its prompt.
  proc = _build(data_dir, "--gin.train_data.DataConfig.on_error='skip'",
                "--gin.train_data.DataConfig.missing='drop_prompt'")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "11 prompts, sources alt, teacher" in proc.stdout
  assert "alt: skipped 1 rows {'undecodable_bytes': 1}" in proc.stdout


@pytest.mark.slow
def test_gzip_shards_and_an_empty_file(data_dir):
  # The teacher's rollouts as a directory of gzip shards.
  shards = os.path.join(data_dir, "teacher")
  os.makedirs(shards)
  with open(os.path.join(data_dir, "teacher.jsonl"), "rb") as f:
    lines = f.readlines()
  for i in range(3):
    with gzip.open(os.path.join(shards, f"part-{i}.jsonl.gz"), "wb") as f:
      f.writelines(lines[i::3])
  proc = _build(data_dir, "--gin.train_data.DataConfig.sources="
                "{'alt': 'jsonl:alt.jsonl', 'teacher': 'jsonl:teacher'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "12 prompts, sources alt, teacher" in proc.stdout
  assert "teacher: lacking 0" in proc.stdout
  empty = os.path.join(data_dir, "prompts.jsonl")
  open(empty, "w").close()
  proc = _build(data_dir)
  assert proc.returncode == 2
  assert f"{empty}: empty file (no rows)" in proc.stderr
  assert "Traceback" not in proc.stderr
