"""The production BPE/ChatML builder (used by toyworld and the test tokenizer)."""

import json
import os

import pytest

from sftdiff.data import bpe_builder
from sftdiff.data.tokenizer import ChatTokenizer


def test_built_tokenizer_loads_and_renders_chatml(tmp_path):
  tok = bpe_builder.train_bpe(["hello world, the assistant replies"] * 8, 300)
  out = bpe_builder.write_tokenizer(tok, str(tmp_path / "tok"), sort_keys=True)
  assert sorted(os.listdir(out)) == sorted(bpe_builder.TOKENIZER_FILES)
  chat = ChatTokenizer.from_dir(out)
  text = chat.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
  assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
  with open(os.path.join(out, "tokenizer_config.json")) as f:
    assert list(json.load(f)) == sorted(bpe_builder.tokenizer_config())


def test_vocab_below_bytes_plus_specials_is_rejected():
  with pytest.raises(ValueError, match="below the byte alphabet"):
    bpe_builder.train_bpe(["x"], 256)
