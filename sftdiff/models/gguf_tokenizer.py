"""A GGUF file's SentencePiece-BPE tokenizer metadata -> `tokenizer.json` and
`tokenizer_config.json` (built with the `tokenizers` library).

GGUF's 'llama' tokenizer model stores the SentencePiece vocabulary (pieces,
scores, token types) but no merges. SentencePiece BPE merges the adjacent pair
whose merged piece has the highest score, so merges are recovered as every
split of a piece into two vocabulary pieces, ranked by the merged piece's
score; user-defined pieces (whitespace and newline runs, HTML tags), which
SentencePiece matches whole, rank first.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, processors

from sftdiff import strict_json

# SentencePiece token types as GGUF stores them.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"  # SentencePiece's visible space


class UnsupportedTokenizerError(ValueError):
  """The GGUF's tokenizer is of a kind this converter does not build."""


def _field(reader, key, default=None):
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def _token_types(reader) -> np.ndarray:
  field = reader.fields["tokenizer.ggml.token_type"]
  return np.array([field.parts[i][0] for i in field.data], np.int32)


def _merges(pieces: list[str], scores: np.ndarray, types: np.ndarray) -> list[tuple[str, str]]:
  ids = {p: i for i, p in enumerate(pieces) if types[i] in (NORMAL, USER_DEFINED)}
  ranked = []
  for piece, i in ids.items():
    rank = (0 if types[i] == USER_DEFINED else 1, -float(scores[i]), i)
    for cut in range(1, len(piece)):
      left, right = piece[:cut], piece[cut:]
      if left in ids and right in ids:
        ranked.append((rank, ids[left], ids[right], left, right))
  ranked.sort()
  return [(left, right) for _, _, _, left, right in ranked]


def build_tokenizer(reader) -> tuple[tokenizers.Tokenizer, dict]:
  """(tokenizer, tokenizer_config dict) from a `gguf.GGUFReader`."""
  kind = _field(reader, "tokenizer.ggml.model")
  if kind != "llama":
    raise UnsupportedTokenizerError(
        f"tokenizer.ggml.model={kind!r} is not supported (supported: 'llama', "
        "SentencePiece BPE)")
  pieces = [p.replace(" ", SPACE) for p in _field(reader, "tokenizer.ggml.tokens")]
  scores = np.asarray(_field(reader, "tokenizer.ggml.scores"), np.float32)
  types = _token_types(reader)
  vocab = {p: i for i, p in enumerate(pieces)}
  if len(vocab) != len(pieces):
    raise UnsupportedTokenizerError("tokenizer.ggml.tokens has duplicate pieces")

  def special(key):
    value = _field(reader, f"tokenizer.ggml.{key}_token_id")
    return None if value is None else pieces[int(value)]

  unk = special("unknown")
  tok = tokenizers.Tokenizer(models.BPE(
      vocab=vocab, merges=_merges(pieces, scores, types), unk_token=unk, fuse_unk=True,
      byte_fallback=True))
  tok.normalizer = normalizers.Replace(" ", SPACE)
  tok.decoder = decoders.Sequence(
      [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
  # Control tokens (<bos>, <start_of_turn>, ...) are special; user-defined
  # pieces other than space runs (which the normalizer already turns into
  # vocabulary pieces) are matched whole, as SentencePiece does.
  tok.add_special_tokens([tokenizers.AddedToken(pieces[i], special=True, normalized=False)
                          for i in np.flatnonzero(types == CONTROL)])
  tok.add_tokens([tokenizers.AddedToken(pieces[i], special=False, normalized=False)
                  for i in np.flatnonzero(types == USER_DEFINED) if SPACE not in pieces[i]])
  bos = special("bos")
  add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
  if add_bos and bos is not None:
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
  config = {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": bos, "eos_token": special("eos"), "pad_token": special("padding"),
      "unk_token": unk, "add_bos_token": add_bos,
      "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
      "model_max_length": int(_field(reader, f"{_field(reader, 'general.architecture')}"
                                             ".context_length", 1 << 20)),
  }
  return tok, {k: v for k, v in config.items() if v is not None}


def write_tokenizer(reader, directory: pathlib.Path, chat_template: str | None = None):
  tok, config = build_tokenizer(reader)
  tok.save(str(directory / "tokenizer.json"))
  if chat_template is not None:
    config["chat_template"] = chat_template
  strict_json.dump(config, directory / "tokenizer_config.json")
