"""`ensure_world(root, preset)`: build (once) and describe a toy world.

Layout of `<root>/<preset>-<fingerprint>/` (the fingerprint hashes the
world's parameters and WORLD_CODE_VERSION, so a changed knob builds a new
world next to the old one):

  prompts/{orig,alt}.jsonl        prompt sets {prompt_id, messages, subset, meta}
  sources/<source>.jsonl          rollouts {prompt_id, completion, source, meta}
  benchmarks/<benchmark>.jsonl    held-out benchmark prompts (for inspection)
  tokenizer/                      tokenizer.json, tokenizer_config.json (ChatML)
  bases/{orig,alt}/               HF dirs: config.json, model.safetensors, tokenizer
  ground_truth.json               the planted causes (see ground_truth.py)
  world.json                      this description + sha256 of every file above;
                                  written last, so its presence means complete
  build_log.json                  timings (not part of the fingerprinted content)

The build happens in a temporary directory renamed into place, so concurrent
builders and interrupted builds never leave a half-built world behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any

from sftdiff import strict_json
from sftdiff.toyworld import corpus, ground_truth, prompts, teachers
from sftdiff.toyworld.params import WORLD_CODE_VERSION, WorldParams, get_preset

FILTERS = tuple(ground_truth.FILTER_SUBSETS)  # the filters the ground truth speaks to
BENCHMARKS = ("toy_blackmail", "toy_date_confusion", "toy_negative_emotion")
# Modules every toyworld data config imports (`DataConfig.import_modules`):
# they register toyworld's own filters (`polite`) where its data is read only.
DATA_IMPORT_MODULES = ("sftdiff.toyworld.control_filter",)


@dataclasses.dataclass(frozen=True)
class World:
  """Paths and names of a built world (all paths absolute)."""
  root: str
  preset: str
  fingerprint: str
  prompt_sets: dict[str, str]          # prompt set -> JSONL
  sources: dict[str, str]              # source -> JSONL
  source_prompt_sets: dict[str, str]   # source -> prompt set it answers
  teachers: dict[str, str]             # source -> teacher name
  subsets: dict[str, list[str]]        # prompt set -> subsets
  bases: dict[str, str]                # base -> HF dir
  tokenizer_dir: str
  ground_truth: str
  benchmark_prompts: dict[str, str]    # benchmark -> JSONL
  filters: tuple[str, ...] = FILTERS
  benchmarks: tuple[str, ...] = BENCHMARKS
  files: dict[str, str] = dataclasses.field(default_factory=dict)  # rel path -> sha256

  @property
  def params(self) -> WorldParams:
    """The parameters this world was built with (from world.json)."""
    with open(os.path.join(self.root, "world.json")) as f:
      return WorldParams.from_json(json.load(f)["params"])

  def sources_on(self, prompt_set: str) -> list[str]:
    return sorted(s for s, p in self.source_prompt_sets.items() if p == prompt_set)

  def data_bindings(self, prompt_set: str) -> dict[str, str]:
    """gin bindings (NAME -> gin literal) that make `sftdiff.train` /
    `sftdiff.data` read `prompt_set` and every source answering it."""
    if prompt_set not in self.prompt_sets:
      raise KeyError(f"unknown prompt set {prompt_set!r}; sets: {sorted(self.prompt_sets)}")
    sources = {s: f"jsonl:{os.path.relpath(self.sources[s], self.root)}"
               for s in self.sources_on(prompt_set)}
    return {"train_data.DataConfig.data_dir": repr(self.root),
            "train_data.DataConfig.prompt_set":
                repr(f"jsonl:{os.path.relpath(self.prompt_sets[prompt_set], self.root)}"),
            "train_data.DataConfig.sources": repr(sources),
            "train_data.DataConfig.import_modules": repr(list(DATA_IMPORT_MODULES))}

  def load_ground_truth(self) -> dict[str, Any]:
    with open(self.ground_truth) as f:
      return json.load(f)

  @classmethod
  def from_dir(cls, directory: str) -> "World":
    path = os.path.join(directory, "world.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{directory} is not a built toy world (no world.json)")
    with open(path) as f:
      d = json.load(f)
    d = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
    d["filters"], d["benchmarks"] = tuple(d["filters"]), tuple(d["benchmarks"])
    return cls(**_absolute(d, os.path.abspath(directory)))


_PATH_FIELDS = ("prompt_sets", "sources", "bases", "benchmark_prompts")


def _absolute(d: dict[str, Any], root: str) -> dict[str, Any]:
  d = dict(d, root=root)
  for key in _PATH_FIELDS:
    d[key] = {k: os.path.join(root, v) for k, v in d[key].items()}
  d["tokenizer_dir"] = os.path.join(root, d["tokenizer_dir"])
  d["ground_truth"] = os.path.join(root, d["ground_truth"])
  return d


def _write_jsonl(path: str, records) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for rec in records:
      f.write(strict_json.dumps(rec, sort_keys=True) + "\n")


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def world_dir(root: str, preset: str) -> str:
  return os.path.join(os.path.abspath(root), f"{preset}-{get_preset(preset).fingerprint()}")


def ensure_world(root: str, preset: str = "quick", *, verbose: bool = False) -> World:
  """Builds the world of `preset` under `root` unless already built; returns it."""
  params = get_preset(preset)
  final = world_dir(root, preset)
  if os.path.exists(os.path.join(final, "world.json")):
    return World.from_dir(final)
  os.makedirs(os.path.dirname(final), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}-", dir=os.path.dirname(final))
  try:
    _build(params, preset, tmp, verbose=verbose)
    try:
      os.rename(tmp, final)
    except OSError as e:
      if not os.path.exists(os.path.join(final, "world.json")):
        raise OSError(f"cannot move the built world into {final}: it exists without "
                      f"world.json (not a complete world; remove it): {e}") from e
      shutil.rmtree(tmp, ignore_errors=True)  # another builder finished first
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return World.from_dir(final)


def _log(verbose: bool, msg: str) -> None:
  if verbose:
    print(f"[toyworld] {msg}", flush=True)


def _build(params: WorldParams, preset: str, out: str, *, verbose: bool) -> None:
  from sftdiff.toyworld import bases as bases_lib  # jax: only when building
  from sftdiff.toyworld import benchmarks as bench_lib
  from sftdiff.toyworld import tokenizer as tok_lib

  timings: dict[str, Any] = {}
  start = time.time()
  fingerprint = params.fingerprint()
  sets = {name: prompts.training_prompts(params, name) for name in params.prompt_sets}
  for name, records in sets.items():
    _write_jsonl(os.path.join(out, "prompts", f"{name}.jsonl"), records)

  counts, texts = {}, []
  for src in params.sources:
    if src.prompt_set not in sets:
      raise ValueError(f"WorldParams.sources[{src.name!r}]: unknown prompt set "
                       f"{src.prompt_set!r}")
    records = teachers.rollouts(params.teacher(src.teacher), params.negative_emotion,
                                sets[src.prompt_set], src.name)
    _write_jsonl(os.path.join(out, "sources", f"{src.name}.jsonl"), records)
    subset_of = {p["prompt_id"]: p["subset"] for p in sets[src.prompt_set]}
    counts[src.name] = ground_truth.source_counts(records, subset_of)
    texts += [r["completion"][0]["content"] for r in records]

  train_texts = {m["content"] for recs in sets.values() for p in recs for m in p["messages"]}
  for bench in BENCHMARKS:
    records = bench_lib.prompt_records(bench)
    clash = [r["prompt_id"] for r in records if r["messages"][0]["content"] in train_texts]
    if clash:
      raise AssertionError(f"benchmark {bench} prompts {clash[:3]} occur in training data")
    _write_jsonl(os.path.join(out, "benchmarks", f"{bench}.jsonl"), records)
  timings["data_s"] = round(time.time() - start, 2)
  _log(verbose, f"prompts and sources written ({timings['data_s']} s)")

  corpora = {b.name: corpus.sentences(b.seed, dict(b.corpus_mix), params.corpus_sentences)
             for b in params.bases}
  tok = tok_lib.train_tokenizer(
      [s for c in corpora.values() for s in c] + sorted(train_texts) + texts,
      params.vocab_size)
  tok_dir = tok_lib.write_tokenizer(tok, os.path.join(out, "tokenizer"))
  eos_id = tok.token_to_id("<|endoftext|>")
  base_logs = {}
  for base in params.bases:
    ids = [e.ids for e in tok.encode_batch(corpora[base.name])]
    base_logs[base.name] = bases_lib.build_base(
        base, os.path.join(out, "bases", base.name), tok_dir, ids,
        tok.get_vocab_size(), eos_id)
    _log(verbose, f"base {base.name}: {base_logs[base.name]}")
  timings["bases"] = base_logs

  with open(os.path.join(out, "ground_truth.json"), "w") as f:
    f.write(strict_json.dumps(ground_truth.build(params, preset, fingerprint, counts),
                              indent=2, sort_keys=True))

  files = {}
  for dirpath, _, filenames in os.walk(out):
    for name in filenames:
      path = os.path.join(dirpath, name)
      files[os.path.relpath(path, out)] = _sha256(path)
  desc = {
      "preset": preset, "fingerprint": fingerprint, "code_version": WORLD_CODE_VERSION,
      "prompt_sets": {n: f"prompts/{n}.jsonl" for n in sets},
      "sources": {s.name: f"sources/{s.name}.jsonl" for s in params.sources},
      "source_prompt_sets": {s.name: s.prompt_set for s in params.sources},
      "teachers": {s.name: s.teacher for s in params.sources},
      "subsets": {n: list(params.prompt_sets[n]) for n in sets},
      "bases": {b.name: f"bases/{b.name}" for b in params.bases},
      "tokenizer_dir": "tokenizer", "ground_truth": "ground_truth.json",
      "benchmark_prompts": {b: f"benchmarks/{b}.jsonl" for b in BENCHMARKS},
      "filters": list(FILTERS), "benchmarks": list(BENCHMARKS),
      "files": dict(sorted(files.items())),
      "params": params.to_json(),
  }
  timings["total_s"] = round(time.time() - start, 2)
  with open(os.path.join(out, "build_log.json"), "w") as f:
    f.write(strict_json.dumps(timings, indent=2))
  with open(os.path.join(out, "world.json"), "w") as f:
    f.write(strict_json.dumps(desc, indent=2, sort_keys=True))
  _log(verbose, f"world built in {timings['total_s']} s")
