"""`python -m sftdiff.toyworld --root DIR [--preset quick]`: build (or reuse)
a toy world and print where it is."""

from __future__ import annotations

import json

from absl import app, flags

_ROOT = flags.DEFINE_string("root", "runs/toyworld", "Directory that holds worlds.")
_PRESET = flags.DEFINE_string("preset", "quick", "World preset (see toyworld/params.py).")
_TEACHER_SCORES = flags.DEFINE_bool("teacher_scores", False,
                                    "Also print each teacher's toy benchmark scores.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from sftdiff import toyworld
  try:
    world = toyworld.ensure_world(_ROOT.value, _PRESET.value, verbose=True)
  except KeyError as e:
    raise app.UsageError(str(e.args[0])) from None
  print(f"world: {world.root}")
  print(f"bases: {json.dumps(world.bases)}")
  print(f"sources: {json.dumps(world.sources)}")
  print(f"ground truth: {world.ground_truth}")
  if _TEACHER_SCORES.value:
    scores = toyworld.teacher_benchmark_scores(world)
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
  app.run(main)
