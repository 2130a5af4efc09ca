"""A tiny, deterministic Hugging Face-format tokenizer for tests.

`write_test_tokenizer(dir)` trains a byte-level BPE (built by
`sftdiff.data.bpe_builder`) on a fixed built-in text and writes
`tokenizer.json` + `tokenizer_config.json` (ChatML chat template) so that
both `sftdiff.data.tokenizer.ChatTokenizer` and
`transformers.AutoTokenizer.from_pretrained` load it.
"""

from sftdiff.data.bpe_builder import (  # noqa: F401  (re-exported for tests)
    CHATML_TEMPLATE,
    EOS_TOKEN,
    IM_END,
    IM_START,
    SPECIAL_TOKENS,
    tokenizer_config,
    train_bpe,
    write_tokenizer,
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


def write_test_tokenizer(
    directory: str, vocab_size: int = 512, chat_template: str = CHATML_TEMPLATE
) -> str:
  """Writes tokenizer.json + tokenizer_config.json into `directory`; returns it."""
  # Repeat the corpus so that merge counts are well above the minimum.
  tok = train_bpe(_CORPUS.splitlines() * 4, vocab_size)
  return write_tokenizer(tok, directory, chat_template)
