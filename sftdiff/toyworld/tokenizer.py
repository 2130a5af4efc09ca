"""The world's tokenizer: a byte-level BPE trained (with `tokenizers`) on the
world's own text, written in Hugging Face format with the ChatML template of
`sftdiff.testing.tokenizer`, so `ChatTokenizer.from_dir` and
`transformers.AutoTokenizer` both load it."""

from __future__ import annotations

import json
import os
from typing import Iterable

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from sftdiff.testing.tokenizer import EOS_TOKEN, SPECIAL_TOKENS, tokenizer_config

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> tokenizers.Tokenizer:
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.post_processor = processors.ByteLevel(trim_offsets=False)
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(list(texts), trainer=trainer)
  return tok


def write_tokenizer(tok: tokenizers.Tokenizer, directory: str) -> str:
  os.makedirs(directory, exist_ok=True)
  tok.save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(tokenizer_config(), f, indent=2, sort_keys=True)
  with open(os.path.join(directory, "special_tokens_map.json"), "w") as f:
    json.dump({"eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN}, f, indent=2)
  return directory
