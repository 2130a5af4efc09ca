"""Finding evaluable checkpoints under a directory, and loading one for eval.

Evaluable:
  * orbax steps `<model_dir>/checkpoints/<step>/` that orbax finalised: the
    tmp-suffixed directory of an interrupted save, and a step directory
    without orbax's commit markers (commit_success.txt / _CHECKPOINT_METADATA),
    are skipped;
  * exported Hugging Face directories (`config.json` + `*.safetensors`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib

from sftdiff import layout

log = logging.getLogger(__name__)

TMP_MARKER = layout.TMP_MARKER
COMMIT_MARKERS = layout.COMMIT_MARKERS
SKIP_DIRS = {layout.EVAL, layout.TENSORBOARD, layout.TOKENIZER, "teachers", "__pycache__"}


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
  """One evaluable checkpoint. `name` is unique under the searched root."""
  kind: str  # "orbax" or "hf"
  path: pathlib.Path  # step dir or HF dir
  model_dir: pathlib.Path  # where the tokenizer / model config live
  step: int | None
  name: str

  @property
  def eval_dir(self) -> pathlib.Path:
    return pathlib.Path(layout.eval_dir(self.path))

  def fingerprint(self) -> str:
    """Identity of the weights: kind, path, step and the weight/config files'
    names, sizes, inodes and nanosecond mtimes (cheap — no file is read — and
    changed by any rewrite or replacement; eval outputs beside them do not
    count)."""
    h = hashlib.sha256(f"{self.kind}:{self.path.resolve()}:{self.step}".encode())
    if self.kind == "hf":
      files = [p for p in self.path.iterdir() if p.is_file() and (
          p.suffix == ".safetensors" or p.name in ("config.json",
                                                   "model.safetensors.index.json"))]
    else:
      files = [p for p in (self.path / "state").rglob("*") if p.is_file()]
      files.append(pathlib.Path(layout.model_config_path(self.model_dir)))
    for p in sorted(files):
      if p.exists():
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


is_hf_dir = layout.is_hf_dir


def is_committed_step(step_dir: pathlib.Path) -> bool:
  """True if orbax finalised this step directory (`layout.is_committed_step`:
  renamed from its tmp name, commit marker written; and orbax agrees)."""
  if not layout.is_committed_step(step_dir):
    return False
  from orbax.checkpoint import utils as ocp_utils
  try:
    finalized = bool(ocp_utils.is_checkpoint_finalized(step_dir))
  except (ValueError, OSError) as e:
    log.warning("cannot tell whether %s is committed (%s); skipping", step_dir, e)
    return False
  return finalized


def _steps_of(model_dir: pathlib.Path) -> tuple[list[CheckpointRef], list[pathlib.Path]]:
  refs, skipped = [], []
  ckpt_dir = pathlib.Path(layout.checkpoints_dir(model_dir))
  for d in sorted(ckpt_dir.iterdir(), key=lambda p: p.name):
    if not d.is_dir():
      continue
    if is_committed_step(d):
      refs.append(CheckpointRef("orbax", d, model_dir, int(d.name), ""))
    else:
      skipped.append(d)
  refs.sort(key=lambda r: r.step)
  return refs, skipped


def discover(root: str | os.PathLike) -> tuple[list[CheckpointRef], list[pathlib.Path]]:
  """(evaluable checkpoints, skipped incomplete dirs) under `root`.

  `root` may be a step dir, a model dir, an HF dir, or any directory holding
  several of them (searched recursively).
  """
  root = pathlib.Path(root).absolute()
  if not root.exists():
    raise FileNotFoundError(f"checkpoint path {root} does not exist")
  refs, skipped = [], []
  if root.parent.name == "checkpoints" and root.name.isdigit() or TMP_MARKER in root.name:
    if is_committed_step(root):
      refs.append(CheckpointRef("orbax", root, root.parent.parent, int(root.name), ""))
    else:
      skipped.append(root)
  else:
    stack = [root]
    while stack:
      d = stack.pop()
      if is_hf_dir(d):
        refs.append(CheckpointRef("hf", d, d, None, ""))
      if (d / "checkpoints").is_dir():
        r, s = _steps_of(d)
        refs += r
        skipped += s
      for child in sorted(d.iterdir(), reverse=True):
        if child.is_dir() and child.name not in SKIP_DIRS and child.name != "checkpoints":
          stack.append(child)
  named = []
  for r in refs:
    rel = r.path.relative_to(root) if r.path != root else pathlib.Path(r.path.name)
    named.append(dataclasses.replace(r, name=str(rel).replace(os.sep, "/")))
  named.sort(key=lambda r: r.name)
  for s in skipped:
    log.warning("skipping incomplete checkpoint %s (not committed by orbax)", s)
  return named, skipped


def load_for_eval(ref_or_path, *, tokenizer_dir=None, dtype: str | None = None):
  """(ModelConfig, params, ChatTokenizer) for a CheckpointRef or a path.

  The tokenizer loads as the trainer's does: a template chosen in gin
  (`chat_tokenizer.chat_template`, e.g. for a base checkpoint) counts.
  """
  from sftdiff.data.tokenizer import load_tokenizer
  if isinstance(ref_or_path, CheckpointRef):
    ref = ref_or_path
  else:
    refs, skipped = discover(ref_or_path)
    if len(refs) != 1:
      raise ValueError(f"{ref_or_path}: expected exactly one checkpoint, found "
                       f"{len(refs)} ({[r.name for r in refs]}; skipped {skipped})")
    ref = refs[0]
  overrides = {"dtype": dtype} if dtype else {}
  if ref.kind == "hf":
    from sftdiff.models.hf_io import load_hf_checkpoint
    cfg, params = load_hf_checkpoint(ref.path, **overrides)
    tok_candidates = (tokenizer_dir, ref.path)
  else:
    from sftdiff.train import checkpoints as train_ckpt
    cfg, params = train_ckpt.load_params(ref.path)
    if dtype:
      cfg = cfg.replace(dtype=dtype)
    tok_candidates = (tokenizer_dir, ref.model_dir)
  from sftdiff.train.checkpoints import find_tokenizer_dir
  tok = load_tokenizer(str(find_tokenizer_dir(*tok_candidates)))
  return cfg, params, tok
