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


def test_missing_include_is_named_not_an_importlib_crash(tmp_path):
  """gin's package-path reader needs importlib.util, which a fresh interpreter
  may not have imported; the include must fail as a named config error."""
  (tmp_path / "study.gin").write_text("include 'studies/no_such_base.gin'\n")
  code = ("import sys\nfrom sftdiff import gin_utils\ntry:\n"
          f"  gin_utils.parse(['study.gin'], [], [{str(tmp_path)!r}])\n"
          "except gin_utils.GinConfigError as e:\n  print(e)\n  sys.exit(3)\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=tmp_path, timeout=60)
  assert proc.returncode == 3, proc.stderr
  assert "studies/no_such_base.gin" in proc.stdout


def test_shipped_include_resolves_from_any_directory(tmp_path):
  """`include 'studies/toyworld_base.gin'` is found in the shipped configs."""
  import sftdiff.study
  sftdiff.study.import_configurables()
  gin_utils.parse(["studies/toyworld_quick.gin"], ["STUDY_DIR = '/s'"], finalize=False)
  assert gin.query_parameter("StudyConfig.world") == "quick"
  assert gin_utils.query_macro("STUDY_DIR") == "/s"


def test_unknown_macro_binding_names_closest(tmp_path):
  (tmp_path / "run.gin").write_text("LEARNING_RATE = 1e-5\nWARMUP = 0\n")
  with pytest.raises(gin_utils.GinConfigError,
                     match=r"LEARNING_RATEE.*closest: LEARNING_RATE"):
    gin_utils.parse(["run.gin"], ["LEARNING_RATEE = 3e-3"], [str(tmp_path)])


def test_macro_known_to_the_binary_or_referenced_is_accepted(tmp_path):
  (tmp_path / "run.gin").write_text("A = %B\n")
  gin_utils.parse(["run.gin"], ["B = 1", "C = 2"], [str(tmp_path)], known_macros=["C"],
                  finalize=False)
  assert gin_utils.query_macro("B") == 1 and gin_utils.query_macro("C") == 2


def test_resolve_gin_files(tmp_path):
  """The one resolver (binaries, the plan's gin check, local executors)."""
  (tmp_path / "runs").mkdir()
  (tmp_path / "runs" / "x.gin").write_text("")
  assert gin_utils.resolve_gin_files(
      ["runs/x.gin", "/abs.gin", "gs://b/c.gin", "runs/missing.gin"],
      ["/nonexistent", str(tmp_path)]) == [
          str(tmp_path / "runs" / "x.gin"), "/abs.gin", "gs://b/c.gin",
          "runs/missing.gin"]


def test_train_binary_requires_the_one_required_macro_list():
  """The trainer and the plan's gin check read the same list."""
  import sftdiff.train.__main__ as train_main
  assert train_main.REQUIRED_MACROS is gin_utils.REQUIRED_MACROS["sftdiff.train"]


def test_include_of_runs_file_with_a_runs_output_folder_on_sys_path(tmp_path, monkeypatch):
  # `make demo` leaves a `runs/` folder; under `python -m` the working
  # directory is on sys.path, where gin's package reader used to crash on it.
  (tmp_path / "runs").mkdir()
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  gin.clear_config()
  try:
    gin_utils.parse(["runs/calibrate.gin"], [], finalize=False)
    assert "JUDGE_MODEL" in gin_utils.bound_macros()  # eval.gin, included, was parsed
  finally:
    gin.clear_config()
