"""Where a run's files live under its model directory (no JAX, no orbax).

The one spelling of the model-directory layout, in the spirit of T5X's
`checkpoints_utils`; train, eval, study, toyworld and launch ask it:

    <model_dir>/
      checkpoints/<step>/{state,data}   orbax steps (committed ones only count)
      checkpoints/<step>/eval/<benchmark>/metrics.json
      hf/                               Hugging Face export (config.json + *.safetensors)
      tokenizer/                        the tokenizer the run trained with
      model_config.json  manifest.json  tb/
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

CHECKPOINTS = "checkpoints"
EVAL = "eval"
HF = "hf"
TOKENIZER = "tokenizer"
MODEL_CONFIG = "model_config.json"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
TENSORBOARD = "tb"
# orbax writes a step under a tmp-suffixed name and renames it on commit; the
# committed step carries one of these markers.
TMP_MARKER = ".orbax-checkpoint-tmp"
COMMIT_MARKERS = ("commit_success.txt", "_CHECKPOINT_METADATA")

PathLike = str | os.PathLike


def checkpoints_dir(model_dir: PathLike) -> str:
  return os.path.join(model_dir, CHECKPOINTS)


def step_dir(model_dir: PathLike, step: int) -> str:
  return os.path.join(model_dir, CHECKPOINTS, str(int(step)))


def is_step_dir(path: PathLike) -> bool:
  """`.../checkpoints/<digits>` (committed or not)."""
  path = pathlib.Path(path)
  return path.parent.name == CHECKPOINTS and path.name.isdigit()


def is_committed_step(path: PathLike) -> bool:
  """True if orbax finalised this step directory (renamed from its tmp name
  and wrote its commit marker); a bare or half-written step is not."""
  path = pathlib.Path(path)
  if not path.is_dir() or TMP_MARKER in path.name or not path.name.isdigit():
    return False
  return any((path / m).exists() for m in COMMIT_MARKERS)


def committed_steps(model_dir: PathLike) -> list[int]:
  """Committed step numbers under `model_dir`, ascending."""
  root = pathlib.Path(checkpoints_dir(model_dir))
  if not root.is_dir():
    return []
  return sorted(int(d.name) for d in root.iterdir() if is_committed_step(d))


def hf_dir(model_dir: PathLike) -> str:
  return os.path.join(model_dir, HF)


def is_hf_dir(path: PathLike) -> bool:
  path = pathlib.Path(path)
  return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def eval_dir(checkpoint: PathLike) -> str:
  """Eval outputs of one checkpoint (a step dir or an HF dir)."""
  return os.path.join(checkpoint, EVAL)


def metrics_path(checkpoint: PathLike, benchmark: str) -> str:
  return os.path.join(checkpoint, EVAL, benchmark, METRICS)


def tokenizer_dir(model_dir: PathLike) -> str:
  return os.path.join(model_dir, TOKENIZER)


def model_config_path(model_dir: PathLike) -> str:
  return os.path.join(model_dir, MODEL_CONFIG)


def manifest_path(model_dir: PathLike) -> str:
  return os.path.join(model_dir, MANIFEST)


def tensorboard_dir(model_dir: PathLike) -> str:
  return os.path.join(model_dir, TENSORBOARD)


def missing_metrics(checkpoints: Sequence[PathLike],
                    benchmarks: Sequence[str]) -> list[tuple[str, str]]:
  """(checkpoint, benchmark) pairs whose metrics file is not written yet."""
  return [(str(c), b) for c in checkpoints for b in benchmarks
          if not os.path.isfile(metrics_path(c, b))]
