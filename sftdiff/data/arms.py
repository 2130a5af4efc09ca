"""Arms: pure, deterministic rules `joined record -> chosen source | drop`.

  Source(s)                  always s
  Random(a, b, p, seed=0)    a with probability p, else b; per prompt,
                             u = mix64(id_hash(prompt_id) ^ mix64(seed)) / 2**64
                             and a iff u < p — order- and size-independent
  Patch(base, patch, where)  patch where filter `where` holds, base elsewhere
  Drop(base, where)          drop where `where` holds, base elsewhere

`a`, `b`, `base` and `patch` are source names or arms. Arms are parsed from the
string bound to the gin macro `ARM` with `parse_arm` (a safe `ast` walk, no
eval), e.g. `"Patch(base='alt', patch='teacher', where='date_mentions')"`;
`str(arm)` is the canonical spec and parses back to an equal arm.

`select(arm, columns, sources)` is vectorised over the store's index columns:
it returns an int16 array of source indices, `DROP` (-1) where dropped.
`check_arm` validates an arm against the store's sources/filters/subsets
(names only, from meta.json) before any record is read.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any, Mapping, Sequence, Union

import numpy as np

from sftdiff.data import filters as filters_lib

DROP = -1
_U64 = np.uint64


class ArmError(ValueError):
  """A bad arm spec; the message names the arm."""


@dataclasses.dataclass(frozen=True)
class Source:
  name: str

  def __str__(self) -> str:
    return f"Source({self.name!r})"


@dataclasses.dataclass(frozen=True)
class Random:
  a: "ArmLike"
  b: "ArmLike"
  p: float
  seed: int = 0

  def __post_init__(self):
    if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not (
        0.0 <= self.p <= 1.0):
      raise ArmError(f"{self._text()}: p={self.p!r} must be a number in [0, 1]")
    if isinstance(self.seed, bool) or not isinstance(self.seed, int):
      raise ArmError(f"{self._text()}: seed={self.seed!r} must be an int")

  def _text(self) -> str:
    return f"Random(a={_arg(self.a)}, b={_arg(self.b)}, p={self.p!r}, seed={self.seed!r})"

  def __str__(self) -> str:
    return self._text()


@dataclasses.dataclass(frozen=True)
class Patch:
  base: "ArmLike"
  patch: "ArmLike"
  where: str

  def __str__(self) -> str:
    return f"Patch(base={_arg(self.base)}, patch={_arg(self.patch)}, where={self.where!r})"


@dataclasses.dataclass(frozen=True)
class Drop:
  base: "ArmLike"
  where: str

  def __str__(self) -> str:
    return f"Drop(base={_arg(self.base)}, where={self.where!r})"


Arm = Union[Source, Random, Patch, Drop]
ArmLike = Union[Arm, str]
_CONSTRUCTORS = {"Source": Source, "Random": Random, "Patch": Patch, "Drop": Drop}


def _arg(x: ArmLike) -> str:
  return repr(x.name) if isinstance(x, Source) else (
      repr(x) if isinstance(x, str) else str(x))


def as_arm(x: ArmLike) -> Arm:
  if isinstance(x, str):
    return Source(x)
  if isinstance(x, (Source, Random, Patch, Drop)):
    return x
  raise ArmError(f"{x!r} is not an arm or a source name")


def _children(arm: Arm) -> list[Arm]:
  if isinstance(arm, Random):
    return [as_arm(arm.a), as_arm(arm.b)]
  if isinstance(arm, Patch):
    return [as_arm(arm.base), as_arm(arm.patch)]
  if isinstance(arm, Drop):
    return [as_arm(arm.base)]
  return []


def sources_of(arm: ArmLike) -> list[str]:
  arm = as_arm(arm)
  if isinstance(arm, Source):
    return [arm.name]
  return sorted({s for c in _children(arm) for s in sources_of(c)})


def filters_of(arm: ArmLike) -> list[str]:
  arm = as_arm(arm)
  own = [arm.where] if isinstance(arm, (Patch, Drop)) else []
  return sorted(set(own) | {f for c in _children(arm) for f in filters_of(c)})


# ----------------------------------------------------------------- parsing


def _literal(node: ast.AST, text: str) -> Any:
  if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
    return node.value
  if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
      and isinstance(node.operand, ast.Constant)):
    return -node.operand.value
  if isinstance(node, ast.Call):
    return _call(node, text)
  raise ArmError(f"arm {text!r}: unsupported expression "
                 f"{ast.unparse(node)!r} (use strings, numbers and arm calls)")


def _call(node: ast.Call, text: str) -> Arm:
  if not isinstance(node.func, ast.Name) or node.func.id not in _CONSTRUCTORS:
    raise ArmError(f"arm {text!r}: unknown arm {ast.unparse(node.func)!r}; "
                   f"expected one of {', '.join(_CONSTRUCTORS)}")
  args = [_literal(a, text) for a in node.args]
  kwargs = {k.arg: _literal(k.value, text) for k in node.keywords}
  if None in kwargs:
    raise ArmError(f"arm {text!r}: **kwargs are not allowed")
  try:
    return _CONSTRUCTORS[node.func.id](*args, **kwargs)
  except TypeError as e:
    raise ArmError(f"arm {text!r}: {node.func.id}: {e}") from e


def parse_arm(text: str) -> Arm:
  """Parses an arm spec string; a bare name means `Source(name)`."""
  if isinstance(text, (Source, Random, Patch, Drop)):
    return text
  if not isinstance(text, str) or not text.strip():
    raise ArmError(f"arm spec must be a non-empty string, got {text!r}")
  stripped = text.strip()
  if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", stripped) and (
      stripped not in _CONSTRUCTORS):
    return Source(stripped)
  try:
    tree = ast.parse(stripped, mode="eval")
  except SyntaxError as e:
    raise ArmError(f"arm {text!r}: not a valid expression ({e.msg})") from e
  if not isinstance(tree.body, ast.Call):
    raise ArmError(f"arm {text!r}: expected a call like Source('alt')")
  return _call(tree.body, text)


# -------------------------------------------------------------- validation


def check_arm(arm: ArmLike, *, sources: Sequence[str], filters: Sequence[str],
              subsets: Sequence[str] | None = None) -> Arm:
  """Names check before any data is read; raises ArmError naming the arm."""
  arm = parse_arm(arm) if isinstance(arm, str) else as_arm(arm)
  for s in sources_of(arm):
    if s not in sources:
      raise ArmError(f"arm {arm}: unknown source {s!r}; sources: {', '.join(sources)}")
  for f in filters_of(arm):
    try:
      filters_lib.check_name(f, sources=sources, stored=filters, subsets=subsets)
    except filters_lib.FilterError as e:
      raise ArmError(f"arm {arm}: {e}") from e
  return arm


# --------------------------------------------------------------- selection


def _mix64(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser (vectorised, wraps mod 2**64)."""
  with np.errstate(over="ignore"):
    x = np.asarray(x, dtype=_U64)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def uniform(id_hashes: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
  """Per-prompt uniform in [0, 1) from (seed, prompt_id hash): order-free."""
  key = _mix64(np.array([(seed * 0x9E3779B97F4A7C15 + salt) % 2**64], dtype=_U64))
  bits = _mix64(np.asarray(id_hashes, dtype=_U64) ^ key[0])
  return (bits >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def select(arm: ArmLike, columns: Mapping[str, np.ndarray],
           sources: Sequence[str]) -> np.ndarray:
  """int16 per prompt: index into `sources`, or DROP."""
  arm = as_arm(arm)
  n = len(columns["id_hash"])
  if isinstance(arm, Source):
    return np.full(n, list(sources).index(arm.name), dtype=np.int16)
  if isinstance(arm, Random):
    take_a = uniform(columns["id_hash"], arm.seed) < arm.p
    return np.where(take_a, select(arm.a, columns, sources),
                    select(arm.b, columns, sources)).astype(np.int16)
  where = filters_lib.mask(arm.where, columns, list(sources))
  base = select(arm.base, columns, sources)
  if isinstance(arm, Patch):
    return np.where(where, select(arm.patch, columns, sources), base).astype(np.int16)
  return np.where(where, np.int16(DROP), base).astype(np.int16)


def select_checked(arm: ArmLike, columns: Mapping[str, np.ndarray],
                   sources: Sequence[str]) -> np.ndarray:
  """`select` that fails (naming the arm) when the arm selects nothing."""
  chosen = select(arm, columns, sources)
  if not (chosen != DROP).any():
    raise ArmError(f"arm {as_arm(arm)} selects nothing: all "
                   f"{len(chosen)} prompts are dropped")
  return chosen


# ------------------------------------------------------------ arm families


def slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_")


def standard_filter_arms(filter_name: str, teacher: str, alt: str, seed: int,
                         columns: Mapping[str, np.ndarray],
                         sources: Sequence[str]) -> dict[str, Arm]:
  """The four runs per filter F: patch-in, patch-out, drop, matched random.

  `random` uses p = |F| / N over the store's prompts.
  """
  frac = float(filters_lib.mask(filter_name, columns, list(sources)).mean())
  s = slug(filter_name)
  return {
      f"patch_in_{s}": Patch(base=alt, patch=teacher, where=filter_name),
      f"patch_out_{s}": Patch(base=teacher, patch=alt, where=filter_name),
      f"drop_{s}": Drop(base=teacher, where=filter_name),
      f"random_{s}": Random(a=teacher, b=alt, p=round(frac, 6), seed=seed),
  }


def subset_sweep(subsets: Sequence[str], teacher: str, alt: str
                 ) -> dict[str, Arm]:
  """Per-subset patch-in arms: teacher on `subset:<name>`, alt elsewhere."""
  return {f"patch_in_subset_{slug(s)}": Patch(base=alt, patch=teacher,
                                              where=f"subset:{s}")
          for s in subsets}
