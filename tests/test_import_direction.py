"""Imports inside sftdiff/ only go down the layers of docs/architecture.md
("Import direction"): models -> data -> train -> eval -> study/launch, with the
shared leaves below and the apps above.

Every module is parsed with `ast` (nothing is imported), so lazy imports inside
functions count, and so does `importlib.import_module("sftdiff....")` with a
literal name (an import hidden from readers is still an import).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sftdiff"

# Lowest first. A module may import its own unit and any unit of a LOWER tier;
# units in the same tier are siblings and do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "strict_json", "cli"),  # leaves: no sftdiff imports
    ("gin_utils",),                      # gin flags/errors (uses cli's error path)
    ("layout", "partitioning"),          # JAX-free paths; mesh + sharding rules
    ("models",),
    ("data",),
    ("train",),
    ("eval",),
    ("toyworld", "serve"),               # a synthetic world / a server, both on eval
    ("runs",),                           # the JAX-free run plan, below study and launch
    ("study",),                          # orchestration: expand a study, run its plan
    ("launch",),                         # XManager/JobSet executors (may expand a study)
    ("testing",),                        # test helpers: production never imports them
    ("__main__",),                       # `sftdiff <command>` dispatcher
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}

# Edges other branches are removing (issue 17) that may still be here when this
# test lands. (importing file relative to sftdiff/, imported unit) -> why.
# The integrator deletes an entry once the merge removes its edge; an entry
# whose edge is gone fails `test_allowlist_has_no_stale_entries`.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def _unit_of_file(path: pathlib.Path) -> str:
  rel = path.relative_to(PACKAGE)
  return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_modules(tree: ast.AST, module: str, is_package: bool):
  """(line, dotted name) of every sftdiff module `tree` imports."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: resolve against this module's package.
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
      if base == "sftdiff":  # `from sftdiff import gin_utils`
        for alias in node.names:
          yield node.lineno, f"sftdiff.{alias.name}"
      else:
        yield node.lineno, base
    elif (isinstance(node, ast.Call) and node.args
          and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)
          and ((isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module")
               or (isinstance(node.func, ast.Name)
                   and node.func.id in ("import_module", "__import__")))):
      yield node.lineno, node.args[0].value


def _edges():
  """(file relative to sftdiff/, line, importing unit, imported unit)."""
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE)
    module = ".".join(("sftdiff",) + rel.with_suffix("").parts)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    src = _unit_of_file(path)
    for line, name in _imported_modules(tree, module, path.name == "__init__.py"):
      parts = name.split(".")
      if parts[0] != "sftdiff" or len(parts) < 2:
        continue
      dst = parts[1]
      if dst != src:
        yield rel.as_posix(), line, src, dst


def test_every_unit_is_placed_in_a_layer():
  units = {_unit_of_file(p) for p in PACKAGE.rglob("*.py")}
  unplaced = sorted(units - set(RANK))
  assert not unplaced, (f"place {unplaced} in LAYERS here and in "
                        "docs/architecture.md ('Import direction')")


def test_imports_only_go_down():
  upward = []
  for rel, line, src, dst in _edges():
    if dst not in RANK or src not in RANK:
      continue  # Reported by test_every_unit_is_placed_in_a_layer.
    if RANK[dst] >= RANK[src] and (rel, dst) not in ALLOWED_UPWARD:
      upward.append(f"sftdiff/{rel}:{line}: {src} (tier {RANK[src]}) imports "
                    f"sftdiff.{dst} (tier {RANK[dst]})")
  assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_allowlist_has_no_stale_entries():
  present = {(rel, dst) for rel, _, _, dst in _edges()}
  stale = sorted(set(ALLOWED_UPWARD) - present)
  assert not stale, f"these edges are gone; delete them from ALLOWED_UPWARD: {stale}"


@pytest.mark.parametrize("source, found", [
    ("from sftdiff.eval import rollouts\n", "sftdiff.eval"),
    ("def f():\n  import sftdiff.eval.run\n", "sftdiff.eval.run"),
    ("from sftdiff import eval\n", "sftdiff.eval"),
    ("import importlib\nimportlib.import_module('sftdiff.eval.rollouts')\n",
     "sftdiff.eval.rollouts"),
    ("from ..eval import rollouts\n", "sftdiff.eval"),
])
def test_the_scanner_sees_every_import_spelling(source, found):
  # As if in sftdiff/data/__main__.py: relative `..` is the sftdiff package.
  names = [n for _, n in _imported_modules(ast.parse(source), "sftdiff.data.__main__",
                                           False)]
  assert any(n.startswith(found) for n in names), names
