"""toyworld: the embedded synthetic world with planted causes.

    world = ensure_world("runs/world", "quick")   # builds once, then reuses
    world.prompt_sets["alt"], world.sources["teacher"], world.bases["orig"]
    teacher_benchmark_scores(world)  # {teacher: {benchmark: metrics}}

Importing this package registers the toy benchmarks (`toy_blackmail`,
`toy_date_confusion`, `toy_negative_emotion`) in `sftdiff.eval.benchmarks`. The negative-control
filter `polite` is registered only where toyworld data is read: its module is
in every toyworld data config's `DataConfig.import_modules`
(`world.DATA_IMPORT_MODULES`), so importing toyworld changes no other store.
See docs/toyworld.md.
"""

from sftdiff.toyworld import benchmarks as _benchmarks  # noqa: F401  (registers)
from sftdiff.toyworld.params import PRESETS, WorldParams, get_preset
from sftdiff.toyworld.teacher_scores import teacher_benchmark_scores
from sftdiff.toyworld.world import BENCHMARKS, FILTERS, World, ensure_world, world_dir

__all__ = ["BENCHMARKS", "FILTERS", "PRESETS", "World", "WorldParams",
           "ensure_world", "get_preset", "teacher_benchmark_scores", "world_dir"]
