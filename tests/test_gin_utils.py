"""Gin plumbing shared by the binaries: flag rewriting, required macros, errors."""

import subprocess
import sys
import textwrap

import gin
import pytest

from sftdiff import gin_utils


def test_rewrite_gin_args_turns_dotted_flags_into_bindings():
  argv = ["prog", "--gin.MODEL_DIR='/tmp/x'", "--gin_file=a.gin", "--gin.N=3"]
  assert gin_utils.rewrite_gin_args(argv) == [
      "prog", "--gin_bindings=MODEL_DIR = '/tmp/x'", "--gin_file=a.gin",
      "--gin_bindings=N = 3"]


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config(clear_constants=True)
  yield
  gin.clear_config(clear_constants=True)


def test_required_macro_missing_is_named(tmp_path):
  (tmp_path / "run.gin").write_text("MODEL_DIR = %gin.REQUIRED\nSTEPS = 3\n")
  gin_utils.parse(["run.gin"], [], [str(tmp_path)], finalize=False)
  with pytest.raises(gin_utils.GinConfigError, match="MODEL_DIR"):
    gin_utils.require_macros(["MODEL_DIR", "STEPS"])


def test_required_macro_bound_by_override_passes(tmp_path):
  (tmp_path / "run.gin").write_text("MODEL_DIR = %gin.REQUIRED\n")
  gin_utils.parse(["run.gin"], ["MODEL_DIR = '/m'"], [str(tmp_path)],
                  finalize=False)
  gin_utils.require_macros(["MODEL_DIR"])
  assert gin_utils.query_macro("MODEL_DIR") == "/m"


def test_unknown_binding_fails_with_gins_message(tmp_path):
  with pytest.raises(gin_utils.GinConfigError, match="no_such_function"):
    gin_utils.parse([], ["no_such_function.x = 1"], [str(tmp_path)])


def test_missing_gin_file_is_named(tmp_path):
  with pytest.raises(gin_utils.GinConfigError, match="nope.gin"):
    gin_utils.parse(["nope.gin"], [], [str(tmp_path)])


def test_operative_config_written(tmp_path):
  @gin.configurable("gin_utils_test_fn")
  def fn(x=1):
    return x

  gin_utils.parse([], ["gin_utils_test_fn.x = 7"], [str(tmp_path)],
                  finalize=False)
  assert fn() == 7
  path = gin_utils.write_operative_config(tmp_path / "out")
  assert "gin_utils_test_fn.x = 7" in path.read_text()


def test_binary_exits_2_with_message_on_config_error(tmp_path):
  script = tmp_path / "binary.py"
  script.write_text(textwrap.dedent("""
      from sftdiff import gin_utils
      def main(argv):
        gin_utils.parse_from_flags()
        gin_utils.require_macros(["MODEL_DIR"])
      gin_utils.run(main)
  """))
  (tmp_path / "r.gin").write_text("MODEL_DIR = %gin.REQUIRED\n")
  proc = subprocess.run(
      [sys.executable, str(script), "--gin_file=r.gin",
       f"--gin_search_paths={tmp_path}"], capture_output=True, text=True)
  assert proc.returncode == 2
  assert "MODEL_DIR" in proc.stderr
  proc = subprocess.run(
      [sys.executable, str(script), "--gin_file=r.gin",
       f"--gin_search_paths={tmp_path}", "--gin.MODEL_DIR='/x'"],
      capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr


def test_relative_gin_file_resolves_despite_same_named_folder_in_cwd(
    tmp_path, monkeypatch):
  # A plain `runs/` output folder in the working directory must not shadow
  # the search path's `runs/sft.gin` (gin would read it as a package file).
  search = tmp_path / "gin"
  (search / "runs").mkdir(parents=True)
  (search / "runs" / "x.gin").write_text("X = 5\n")
  work = tmp_path / "work"
  (work / "runs").mkdir(parents=True)
  monkeypatch.chdir(work)
  monkeypatch.syspath_prepend(str(work))
  gin_utils.parse(["runs/x.gin"], [], [str(search)], finalize=False)
  assert gin_utils.query_macro("X") == 5
