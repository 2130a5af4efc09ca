"""The `sftdiff` console script and the shared error path (sftdiff/cli.py)."""

import errno
import subprocess
import sys

from sftdiff import cli
from sftdiff import gin_utils


def _sftdiff(*args, cwd):
  return subprocess.run([sys.executable, "-m", "sftdiff", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_with_a_line(tmp_path):
  proc = _sftdiff("--help", cwd=tmp_path)
  assert proc.returncode == 0
  lines = proc.stdout.splitlines()
  for command in ("train", "eval", "data", "study", "launch", "toyworld"):
    line, = [l for l in lines if l.startswith(f"  {command} ")]
    assert len(line.split()) > 3, line  # a description follows the name


def test_unknown_command_exits_2_and_names_it(tmp_path):
  proc = _sftdiff("trian", cwd=tmp_path)
  assert proc.returncode == 2
  assert "unknown command 'trian'" in proc.stderr and "  train " in proc.stderr


def test_user_errors_are_known_by_class_and_errno():
  assert cli.is_user_error(gin_utils.GinConfigError("x"))
  assert cli.is_user_error(OSError(errno.ENOSPC, "No space left on device", "/o/f"))
  assert cli.describe(OSError(errno.EROFS, "Read-only file system", "/o/f")) == (
      "cannot use /o/f: Read-only file system")
  assert not cli.is_user_error(RuntimeError("a bug"))
  assert not cli.is_user_error(ValueError("a bug"))


def test_a_missing_file_raised_with_a_message_is_a_user_error():
  e = FileNotFoundError("source 'prompts': no jsonl files at '/d/prompts.jsonl'")
  assert cli.is_user_error(e)
  assert cli.describe(e) == "source 'prompts': no jsonl files at '/d/prompts.jsonl'"
