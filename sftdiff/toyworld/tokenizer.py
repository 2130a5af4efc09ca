"""The world's tokenizer: a byte-level BPE trained on the world's own text,
written in Hugging Face format with the ChatML template of
`sftdiff.data.bpe_builder`, so `ChatTokenizer.from_dir` and
`transformers.AutoTokenizer` both load it."""

from __future__ import annotations

from typing import Iterable

import tokenizers

from sftdiff.data import bpe_builder
from sftdiff.data.bpe_builder import TOKENIZER_FILES  # noqa: F401  (re-exported)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> tokenizers.Tokenizer:
  return bpe_builder.train_bpe(texts, vocab_size)


def write_tokenizer(tok: tokenizers.Tokenizer, directory: str) -> str:
  return bpe_builder.write_tokenizer(tok, directory, sort_keys=True)
