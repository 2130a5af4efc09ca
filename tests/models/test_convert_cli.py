"""`python -m sftdiff.models.convert` names what it cannot convert (rc 2)."""

import subprocess
import sys

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")


def _convert(*args):
  return subprocess.run([sys.executable, "-m", "sftdiff.models.convert", *args],
                        capture_output=True, text=True, check=False)


def _tiny_gguf(path, arch):
  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_block_count(1)
  writer.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def test_unsupported_architecture_exits_2_naming_it(tmp_path):
  _tiny_gguf(tmp_path / "m.gguf", "llama")
  out = _convert(f"--gguf={tmp_path / 'm.gguf'}", f"--out={tmp_path / 'hf'}")
  assert out.returncode == 2, out.stderr
  assert "architecture 'llama' is not supported" in out.stderr
  assert "gemma3" in out.stderr and "Traceback" not in out.stderr
  assert not (tmp_path / "hf").exists()


def test_missing_and_non_gguf_inputs_exit_2(tmp_path):
  out = _convert(f"--gguf={tmp_path / 'absent.gguf'}", f"--out={tmp_path / 'hf'}")
  assert out.returncode == 2 and "absent.gguf: no such file" in out.stderr
  (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all" * 10)
  out = _convert(f"--gguf={tmp_path / 'junk.gguf'}", f"--out={tmp_path / 'hf'}")
  assert out.returncode == 2, out.stderr
  assert "junk.gguf" in out.stderr and "Traceback" not in out.stderr


def test_unknown_chat_template_exits_2_naming_the_shipped_ones(tmp_path):
  _tiny_gguf(tmp_path / "m.gguf", "gemma3")
  out = _convert(f"--gguf={tmp_path / 'm.gguf'}", f"--out={tmp_path / 'hf'}",
                 "--chat_template=gemma9")
  assert out.returncode == 2, out.stderr
  assert "--chat_template=gemma9: neither a shipped template" in out.stderr
  assert "gemma3" in out.stderr and "Traceback" not in out.stderr
  assert not (tmp_path / "hf").exists()


def test_shipped_template_name_resolves_to_its_file():
  from sftdiff.models import convert
  path = convert.chat_template_path("gemma3")
  assert path.name == "gemma3.jinja" and "<start_of_turn>" in path.read_text()
