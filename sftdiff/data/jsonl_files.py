"""Reading the text files people have: compressed or not, with a BOM or not,
and with bad bytes reported at their line instead of a codec traceback.

* Compression is recognised by the file's magic bytes (gzip, bzip2, xz), so a
  `.jsonl.gz` is read whatever it is called.
* A UTF-8 byte-order mark at the start of the file is dropped (`utf-8-sig`).
* Each line is decoded strictly on its own: undecodable bytes become a
  `DataValidationError('file:line', 'undecodable_bytes', ...)` for that line
  only; the next line is read normally.
* JSON escapes that decode to lone surrogates (`"\\ud800"`) are text no UTF-8
  consumer (tf.data, Arrow, a tokenizer) accepts: `'invalid_text'`.
* A file that cannot be read as the compression it claims (truncated gzip)
  is `'unreadable_file'` at the line where reading stopped.

Errors are yielded, not raised, so a reader's `on_error` policy applies.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zlib
from typing import Any, Iterator

from sftdiff.data import records as records_lib

BOM = b"\xef\xbb\xbf"
# Magic bytes -> opener.
_COMPRESSIONS = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open),
                 (b"\xfd7zXZ\x00", lzma.open))
# Name suffixes of compressions read here (for listing shard directories).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)
# A \uXXXX escape of a surrogate half (pairs are fine; lone halves are not).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _open_binary(path: str):
  with open(path, "rb") as f:
    head = f.read(6)
  for magic, opener in _COMPRESSIONS:
    if head.startswith(magic):
      return opener(path, "rb")
  return open(path, "rb")


def raw_lines(path: str) -> Iterator[tuple[int, bytes | records_lib.DataValidationError]]:
  """`(lineno, bytes of the line)`, BOM dropped; a read failure is yielded as
  an `unreadable_file` error and ends the file."""
  lineno = 0
  try:
    with _open_binary(path) as f:
      for lineno, line in enumerate(f, start=1):
        if lineno == 1 and line.startswith(BOM):
          line = line[len(BOM):]
        yield lineno, line
  except _READ_ERRORS as e:
    if isinstance(e, OSError) and e.errno is not None:
      raise  # A path problem (missing, permissions): not the file's content.
    where = f"{path}:{lineno + 1}"
    yield lineno + 1, records_lib.DataValidationError(
        where, "unreadable_file", f"cannot read the rest of the file ({e})")


def decode_line(line: bytes, where: str) -> str:
  """Strict UTF-8; raises DataValidationError naming the first bad byte."""
  try:
    return line.decode("utf-8")
  except UnicodeDecodeError as e:
    raise records_lib.DataValidationError(
        where, "undecodable_bytes",
        f"not UTF-8: byte {line[e.start:e.start + 1]!r} at byte column "
        f"{e.start + 1} ({e.reason})") from None


def text_lines(path: str) -> Iterator[tuple[int, str | records_lib.DataValidationError]]:
  """`(lineno, decoded line)` for every line, errors yielded in place."""
  for lineno, line in raw_lines(path):
    if isinstance(line, records_lib.DataValidationError):
      yield lineno, line
      continue
    try:
      yield lineno, decode_line(line, f"{path}:{lineno}")
    except records_lib.DataValidationError as e:
      yield lineno, e


def _check_text(value: Any, where: str) -> None:
  if isinstance(value, str):
    try:
      value.encode("utf-8")
    except UnicodeEncodeError as e:
      raise records_lib.DataValidationError(
          where, "invalid_text",
          f"lone surrogate {value[e.start]!r} (a \\u{ord(value[e.start]):04x} "
          "escape without its pair) is not valid text") from None
  elif isinstance(value, dict):
    for k, v in value.items():
      _check_text(k, where)
      _check_text(v, where)
  elif isinstance(value, list):
    for v in value:
      _check_text(v, where)


def jsonl_rows(path: str) -> Iterator[tuple[str, Any]]:
  """`(where, row dict | DataValidationError)` for every non-blank line; a
  file without one yields a single `empty_file` error naming it."""
  rows = 0
  for lineno, line in raw_lines(path):
    where = f"{path}:{lineno}"
    if isinstance(line, records_lib.DataValidationError):
      rows += 1
      yield where, line
      continue
    if not line or line.isspace():
      continue
    rows += 1
    try:
      row = records_lib.parse_json_line(decode_line(line, where), where)
      # Substring tests first: far cheaper than the regex on every line.
      if ((b"\\ud" in line or b"\\uD" in line)
          and _SURROGATE_ESCAPE.search(line)):
        _check_text(row, where)
    except records_lib.DataValidationError as e:
      yield where, e
      continue
    yield where, row
  if not rows:
    yield path, empty_file_error(path)


def empty_file_error(path: str) -> records_lib.DataValidationError:
  return records_lib.DataValidationError(path, "empty_file",
                                         "empty file (no rows)")
