"""What a study can refer to, built from its world (toyworld) or its gin.

`prepare(study)` resolves bases and prompt sets (from `ensure_world` when
`StudyConfig.world` names a toyworld preset), builds (or reuses) the joined
store of every prompt set once — before parallel training, so trainers only
ever reuse it — and returns the `Catalog` that `expand` checks against plus
what the report needs (filter overlaps, ground truth, teacher scores).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from typing import Any, Callable, Mapping

from sftdiff import strict_json
from sftdiff.study.config import StudyConfig, gin_literal
from sftdiff.study.expansion import Catalog, StudyConfigError


@dataclasses.dataclass
class Prepared:
  catalog: Catalog
  stores: dict[str, Any]                   # prompt set → JoinedStore
  world: Any = None                        # toyworld World, if any
  ground_truth: dict | None = None
  teacher_scores_fn: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None


def _data_configs(study: StudyConfig, world) -> dict[str, dict[str, Any]]:
  """prompt set → DataConfig fields."""
  if world is not None:
    from sftdiff.toyworld import world as world_lib
    return {ps: {"prompt_set": f"jsonl:{path}",
                 "sources": {s: f"jsonl:{world.sources[s]}"
                             for s in world.sources_on(ps)},
                 "import_modules": list(world_lib.DATA_IMPORT_MODULES)}
            for ps, path in world.prompt_sets.items()}
  out = {}
  for ps, fields in study.prompt_sets.items():
    if "prompt_set" not in fields or "sources" not in fields:
      raise StudyConfigError(f"StudyConfig.prompt_sets[{ps!r}] needs 'prompt_set' "
                             f"and 'sources' (DataConfig fields); got {sorted(fields)}")
    out[ps] = dict(fields)
  return out


def _benchmark_names() -> frozenset[str]:
  from sftdiff.eval import benchmarks
  return frozenset(benchmarks.names())


def planned(study: StudyConfig) -> Catalog | None:
  """The Catalog of a toyworld study from its preset alone: nothing is built,
  read or trained (for `--dry_run` and for checking every run's gin first).
  Matched-random fractions |F|/N are unknown until the store is built
  (`filter_fraction` returns None). None for a real-data study, whose names
  come from its data (`prepare`)."""
  if not study.world:
    return None
  from sftdiff import toyworld
  from sftdiff.data import filters as filters_lib
  from sftdiff.toyworld import world as world_lib
  import sftdiff.toyworld.benchmarks  # noqa: F401  (registers toy benchmarks)
  try:
    params = toyworld.get_preset(study.world)
  except KeyError as e:
    raise StudyConfigError(f"StudyConfig.world: {e.args[0]}") from None
  root = world_lib.world_dir(_world_root(study), study.world)
  configs = {ps: {"prompt_set": f"jsonl:{os.path.join(root, 'prompts', ps + '.jsonl')}",
                  "sources": {s.name: f"jsonl:{os.path.join(root, 'sources', s.name + '.jsonl')}"
                              for s in params.sources if s.prompt_set == ps},
                  "import_modules": list(world_lib.DATA_IMPORT_MODULES)}
             for ps in params.prompt_sets}
  for module in world_lib.DATA_IMPORT_MODULES:  # their filters are names arms may use
    importlib.import_module(module)
  return Catalog(
      bases={**{b.name: os.path.join(root, "bases", b.name) for b in params.bases},
             **study.bases},
      prompt_sets={ps: _store_bindings(study, fields) for ps, fields in configs.items()},
      sources={ps: frozenset(f["sources"]) for ps, f in configs.items()},
      subsets={ps: frozenset(params.prompt_sets[ps]) for ps in configs},
      filters=_filter_names(), benchmarks=_benchmark_names(),
      filter_fraction=lambda ps, f: None, train_overrides={"DATA_DIR": repr(root)})


def _world_root(study: StudyConfig) -> str:
  return study.world_root or os.path.join(study.study_dir, "world")


def _store_dir(study: StudyConfig) -> str:
  return study.store_dir or os.path.join(study.study_dir, "stores")


def _store_bindings(study: StudyConfig, fields: Mapping[str, Any]) -> dict[str, str]:
  bindings = {f"DataConfig.{k}": gin_literal(v) for k, v in fields.items()}
  bindings["DataConfig.store_dir"] = repr(_store_dir(study))
  return bindings


def prepare(study: StudyConfig, *, log=print) -> Prepared:
  from sftdiff.data import filters as filters_lib
  from sftdiff.data import train_data

  world = None
  bases = dict(study.bases)
  if study.world:
    from sftdiff import toyworld
    root = _world_root(study)
    log(f"study: building/reusing toyworld '{study.world}' under {root}")
    world = toyworld.ensure_world(root, study.world, verbose=True)
    bases = {**world.bases, **bases}
    import sftdiff.toyworld.benchmarks  # noqa: F401  (registers toy benchmarks)
  store_dir = _store_dir(study)
  configs = _data_configs(study, world)
  stores, sources, subsets, bindings = {}, {}, {}, {}
  for ps, fields in configs.items():
    cfg = train_data.DataConfig(store_dir=store_dir, **fields)
    log(f"study: joined store for prompt set {ps!r}")
    try:
      store = cfg.build()
    except Exception as e:  # name the prompt set; keep the library's message
      raise StudyConfigError(f"building the joined store of prompt set {ps!r} "
                             f"failed: {type(e).__name__}: {e}") from e
    stores[ps] = store
    sources[ps] = frozenset(store.sources)
    subsets[ps] = frozenset(store.subsets)
    bindings[ps] = _store_bindings(study, fields)

  def fraction(ps: str, f: str) -> float:
    store = stores[ps]
    return float(filters_lib.mask(f, store.selection_columns(), store.sources).mean())

  # gin/data/toyworld.gin (in the study's train gin files) requires DATA_DIR;
  # the per-prompt-set bindings above use absolute paths anyway.
  train_overrides = {"DATA_DIR": repr(world.root)} if world is not None else {}
  catalog = Catalog(bases=bases, prompt_sets=bindings, sources=sources,
                    subsets=subsets, filters=_filter_names(),
                    benchmarks=_benchmark_names(), filter_fraction=fraction,
                    train_overrides=train_overrides)
  prepared = Prepared(catalog=catalog, stores=stores, world=world)
  if world is not None:
    prepared.ground_truth = world.load_ground_truth()
    prepared.teacher_scores_fn = lambda: _toy_teacher_scores(world, study)
  return prepared


def overlap(prepared: Prepared, study: StudyConfig) -> dict[str, Any] | None:
  """The data side's overlap report of the study's filters on the student
  prompts, reshaped for the figure: names, Jaccard matrix, sizes."""
  from sftdiff.data import filters as filters_lib
  store = prepared.stores.get(study.student_prompts)
  if store is None:
    return None
  # every subset, not only the swept ones: shows which subsets a filter covers
  names = list(study.filters) + [f"subset:{s}" for s in store.subsets]
  rep = filters_lib.overlap_report(store.selection_columns(), names, store.sources)
  return {"names": names, "jaccard": [[rep["jaccard"][a][b] for b in names]
                                      for a in names],
          "sizes": {k: f"{rep['counts'][k]} ({rep['fraction'][k]:.1%})"
                    for k in names},
          "report": rep}


def _toy_teacher_scores(world, study: StudyConfig):
  """Teacher scores from toyworld, cached in <study_dir>/teachers.json."""
  path = os.path.join(study.study_dir, "teachers.json")
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  from sftdiff import toyworld
  scores = toyworld.teacher_benchmark_scores(world)
  scores = {t: {b: dict(m) for b, m in by_b.items()} for t, by_b in scores.items()}
  strict_json.dump(json.loads(json.dumps(scores, default=float)),
                   path, indent=1)
  return scores


def _filter_names() -> frozenset[str]:
  from sftdiff.data import filters as filters_lib
  return frozenset(filters_lib.registered()) | filters_lib.UNREGISTERED_NAMES
