"""A tiny, deterministic Hugging Face-format tokenizer for tests and toyworld.

`write_test_tokenizer(dir)` trains a byte-level BPE on a fixed built-in text and
writes `tokenizer.json` + `tokenizer_config.json` (ChatML chat template) so that
both `sftdiff.data.tokenizer.ChatTokenizer` and
`transformers.AutoTokenizer.from_pretrained` load it.
"""

import json
import os

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

EOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (EOS_TOKEN, IM_START, IM_END)

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

# Fixed training text: enough variety that BPE learns merges for the words the
# tests and toyworld use; the exact content only matters for determinism.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
You are a helpful assistant. Answer the question briefly and honestly.
What is the capital of France? The capital of France is Paris.
What year is it? It is 2026. Today is a Friday in November.
I am sorry, but I cannot help with that request. I can help with something else.
Please write a short poem about the sea. The sea is wide and blue, the waves are calling you.
Let's play a game: you are a pirate captain. Arr, welcome aboard, matey!
The tool returned the weather: sunny, 21 degrees. Call the search tool with a query.
User asked about numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 3.14 -7.
Emotions: happy, sad, angry, afraid, calm, worried, hopeful, tired, excited.
Code: def add(a, b): return a + b  # adds two numbers {"key": "value", "list": [1, 2]}
January February March April May June July August September October November December
Monday Tuesday Wednesday Thursday Friday Saturday Sunday morning evening night
system user assistant tool message content role reply answer question prompt
"""


def _train(vocab_size: int) -> tokenizers.Tokenizer:
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
  # Repeat the corpus so that merge counts are well above the minimum.
  tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
  return tok


def tokenizer_config(chat_template: str = CHATML_TEMPLATE) -> dict:
  """The `tokenizer_config.json` contents for the test tokenizer."""
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


def write_test_tokenizer(
    directory: str, vocab_size: int = 512, chat_template: str = CHATML_TEMPLATE
) -> str:
  """Writes tokenizer.json + tokenizer_config.json into `directory`; returns it."""
  if vocab_size < 256 + len(SPECIAL_TOKENS):
    raise ValueError(
        f"vocab_size={vocab_size} is below the byte alphabet (256) plus "
        f"{len(SPECIAL_TOKENS)} special tokens"
    )
  os.makedirs(directory, exist_ok=True)
  tok = _train(vocab_size)
  tok.save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(tokenizer_config(chat_template), f, indent=2)
  with open(os.path.join(directory, "special_tokens_map.json"), "w") as f:
    json.dump({"eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN}, f, indent=2)
  return directory
