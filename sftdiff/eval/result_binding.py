"""What one benchmark result belongs to, and keeping results of other weights apart.

A result directory `<...>/eval/<benchmark>/` holds samples, verdicts and
metrics of exactly one *binding*: the checkpoint fingerprint, the sampler
settings that can change samples, the benchmark's sampling params and
version, and the seed (`binding.json`). Verdicts are further keyed by rater
and rubric version inside it. When a run's binding differs from the one on
disk (new weights under the same path, other settings), the old files move
to `superseded/<old key>/` — labelled by their own `binding.json` and
`metrics.json` — and sampling starts afresh: results of two bindings never
mix. A result whose binding comes back is moved back instead of re-made.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
from typing import Any

from sftdiff import strict_json
from sftdiff.eval.output_errors import writing

log = logging.getLogger(__name__)

BINDING = "binding.json"
SUPERSEDED = "superseded"
RESULT_FILES = ("samples.jsonl", "verdicts.jsonl", "metrics.json")
UNBOUND = "unbound"  # results written before bindings existed


def make_binding(bench, target: dict[str, Any], seed: int) -> dict[str, Any]:
  return {"fingerprint": target.get("fingerprint"),
          "generator": target.get("generator"),
          "sampling": bench.sampling.to_json(),
          "benchmark": bench.name,
          "benchmark_version": bench.version,
          "seed": seed}


def binding_key(binding: dict[str, Any]) -> str:
  blob = strict_json.dumps(binding, sort_keys=True, ensure_ascii=False)
  return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def read_binding(out_dir: pathlib.Path) -> dict[str, Any] | None:
  path = out_dir / BINDING
  return strict_json.load(path) if path.exists() else None


def _move_all(src: pathlib.Path, dst: pathlib.Path) -> None:
  """Moves the result files (binding last, so a kill mid-way is redone)."""
  with writing(dst):
    dst.mkdir(parents=True, exist_ok=True)
    # verdicts.<judge>.jsonl: the verdicts of judges other than the primary.
    extra = tuple(sorted(p.name for p in src.glob("verdicts.*.jsonl")))
    for name in RESULT_FILES + extra + (BINDING,):
      if (src / name).exists():
        os.replace(src / name, dst / name)


def bind(out_dir: pathlib.Path, binding: dict[str, Any]) -> dict[str, Any]:
  """Makes `out_dir` hold the result of `binding`; returns what happened.

  {"key", "superseded": old key or None, "restored": bool}.
  """
  key = binding_key(binding)
  with writing(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
  current = read_binding(out_dir)
  info = {"key": key, "superseded": None, "restored": False}
  if current is not None and current.get("key") == key:
    return info
  has_files = any((out_dir / n).exists() for n in RESULT_FILES)
  if current is not None or has_files:
    old_key = current["key"] if current is not None else UNBOUND
    old_fp = (current or {}).get("binding", {}).get("fingerprint")
    log.warning("%s: results belong to another binding (key %s, fingerprint %s; now "
                "%s, fingerprint %s); keeping them under %s/%s and starting afresh",
                out_dir, old_key, old_fp, key, binding.get("fingerprint"), SUPERSEDED,
                old_key)
    _move_all(out_dir, out_dir / SUPERSEDED / old_key)
    info["superseded"] = old_key
  earlier = out_dir / SUPERSEDED / key
  if (earlier / BINDING).exists():
    log.info("%s: restoring the earlier result of this binding from %s", out_dir, earlier)
    _move_all(earlier, out_dir)
    info["restored"] = True
    return info
  with writing(out_dir / BINDING):
    strict_json.dump({"key": key, "binding": binding}, out_dir / BINDING, sort_keys=True)
  return info


def record_generator(out_dir: pathlib.Path, settings: dict[str, Any] | None) -> None:
  """Keeps the full settings of the generator that made the samples."""
  if not settings:
    return
  current = read_binding(out_dir) or {}
  if current.get("sampled_with") == settings:
    return
  current["sampled_with"] = settings
  with writing(out_dir / BINDING):
    strict_json.dump(current, out_dir / BINDING, sort_keys=True)
