"""Builds a byte-level BPE tokenizer in Hugging Face format with a ChatML template.

Production code (toyworld's world tokenizer) and the test tokenizer
(`sftdiff.testing.tokenizer`) both build their tokenizers here, so
`ChatTokenizer.from_dir` and `transformers.AutoTokenizer.from_pretrained` load
either.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

EOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (EOS_TOKEN, IM_START, IM_END)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# ChatML (Qwen-style). Assistant content sits inside {% generation %} so that
# transformers' `return_assistant_tokens_mask=True` marks it; the end-of-turn
# token is outside the block (open-instruct additionally trains it).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{- raise_exception('Unknown role: ' + message['role']) }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] }}{%- endgeneration %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int) -> tokenizers.Tokenizer:
  """A byte-level BPE with the ChatML special tokens, trained on `texts`."""
  if vocab_size < 256 + len(SPECIAL_TOKENS):
    raise ValueError(
        f"vocab_size={vocab_size} is below the byte alphabet (256) plus "
        f"{len(SPECIAL_TOKENS)} special tokens"
    )
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.post_processor = processors.ByteLevel(trim_offsets=False)
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size,
      special_tokens=list(SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tok.train_from_iterator(list(texts), trainer=trainer)
  return tok


def tokenizer_config(chat_template: str = CHATML_TEMPLATE) -> dict:
  """The `tokenizer_config.json` contents for a tokenizer built here."""
  return {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": None,
      "eos_token": EOS_TOKEN,
      "pad_token": EOS_TOKEN,
      "unk_token": None,
      "model_max_length": 1 << 20,
      "clean_up_tokenization_spaces": False,
      "chat_template": chat_template,
  }


def write_tokenizer(
    tok: tokenizers.Tokenizer,
    directory: str,
    chat_template: str = CHATML_TEMPLATE,
    sort_keys: bool = False,
) -> str:
  """Writes TOKENIZER_FILES for `tok` into `directory`; returns it."""
  os.makedirs(directory, exist_ok=True)
  tok.save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(tokenizer_config(chat_template), f, indent=2, sort_keys=sort_keys)
  with open(os.path.join(directory, "special_tokens_map.json"), "w") as f:
    json.dump({"eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN}, f, indent=2)
  return directory
