"""toyworld: the embedded synthetic world with planted causes.

    world = ensure_world("runs/world", "quick")   # builds once, then reuses
    world.prompt_sets["alt"], world.sources["teacher"], world.bases["orig"]
    teacher_benchmark_scores(world)  # {teacher: {benchmark: metrics}}

Importing this package registers the toy benchmarks (`toy_blackmail`,
`toy_date_confusion`, `toy_negative_emotion`) in `sftdiff.eval.benchmarks`
and the negative-control filter `polite` in `sftdiff.data.filters`.
See docs/toyworld.md.
"""

from sftdiff.toyworld import benchmarks as _benchmarks  # noqa: F401  (registers)
from sftdiff.toyworld import control_filter as _control_filter  # noqa: F401  (registers `polite`)
from sftdiff.toyworld.params import PRESETS, WorldParams, get_preset
from sftdiff.toyworld.teacher_scores import teacher_benchmark_scores
from sftdiff.toyworld.world import BENCHMARKS, FILTERS, World, ensure_world, world_dir

__all__ = ["BENCHMARKS", "FILTERS", "PRESETS", "World", "WorldParams",
           "ensure_world", "get_preset", "teacher_benchmark_scores", "world_dir"]
