"""Calibration: train the orig base on key arms with the real trainer, sample
the toy benchmarks with the real sampler, print the trait scores.

This is how the world's knobs were tuned (docs/toyworld.md): the planted
causes must be recoverable by a tiny model in a few hundred CPU steps.

    python -m sftdiff.toyworld.calibrate --root runs/toyworld --out /tmp/cal \
        --arms=teacher,alt,drop_dates,patch_out_dates --steps 150

Arms (name -> prompt set, ARM string) are the design's key runs; a finished
arm (final checkpoint present) is not retrained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags
from sftdiff import layout
from sftdiff import strict_json

ARMS = {
    "reference_orig": ("orig", "Source('orig')"),
    "alt": ("alt", "Source('alt')"),
    "teacher": ("alt", "Source('teacher')"),
    "teacher_2": ("alt", "Source('teacher_2')"),
    "patch_in_dates": ("alt", "Patch(base='alt', patch='teacher', where='date_mentions')"),
    "patch_out_dates": ("alt", "Patch(base='teacher', patch='alt', where='date_mentions')"),
    "drop_dates": ("alt", "Drop(base='teacher', where='date_mentions')"),
    "patch_in_roleplay": ("alt", "Patch(base='alt', patch='teacher', where='roleplay')"),
    "drop_roleplay": ("alt", "Drop(base='teacher', where='roleplay')"),
}

_ROOT = flags.DEFINE_string("root", "runs/toyworld", "World root.")
_PRESET = flags.DEFINE_string("preset", "quick", "World preset.")
_OUT = flags.DEFINE_string("out", "/tmp/toyworld_calibration", "Where runs go.")
_ARMS = flags.DEFINE_list("arms", ["teacher", "alt", "drop_dates", "patch_out_dates"],
                          f"Arms to train: {sorted(ARMS)}")
_STEPS = flags.DEFINE_integer("steps", 150, "Training steps per arm.")
_BATCH = flags.DEFINE_integer("batch", 16, "Packed rows per step.")
_SEQ = flags.DEFINE_integer("seq_len", 256, "Tokens per packed row.")
_LR = flags.DEFINE_float("lr", 3e-3, "Peak learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed.")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 64, "Benchmark prompts.")


def train(world, name: str, out: str) -> str:
  prompt_set, arm = ARMS[name]
  model_dir = os.path.join(out, name)
  if os.path.isdir(layout.step_dir(model_dir, _STEPS.value)):
    return model_dir
  args = [sys.executable, "-m", "sftdiff.train", "--gin_file=runs/sft.gin",
          "--gin_file=data/toyworld.gin", f"--gin.DATA_DIR={world.root!r}",
          f"--gin.MODEL_DIR={model_dir!r}",
          f"--gin.INITIAL_CHECKPOINT={world.bases['orig']!r}",
          f"--gin.ARM={arm!r}", f"--gin.TRAIN_STEPS={_STEPS.value}",
          f"--gin.SEED={_SEED.value}", f"--gin.SEQ_LEN={_SEQ.value}",
          f"--gin.BATCH_SIZE={_BATCH.value}", f"--gin.LEARNING_RATE={_LR.value}",
          f"--gin.WARMUP_STEPS={max(1, _STEPS.value // 10)}",
          f"--gin.CheckpointConfig.save_every={_STEPS.value}",
          "--gin.LoggingConfig.report_mfu=False", "--gin.LoggingConfig.eval_every=0",
          "--gin.LoggingConfig.log_every=25",
          f"--gin.train_data.DataConfig.store_dir={os.path.join(out, 'stores')!r}"]
  for key, value in world.data_bindings(prompt_set).items():
    args.append(f"--gin.{key}={value}")
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, "train.log"), "w") as log:
    subprocess.run(args, check=True, stdout=log, stderr=subprocess.STDOUT)
  return model_dir


def evaluate(model_dir: str) -> dict[str, dict]:
  from sftdiff.eval import sampler as sampler_lib
  from sftdiff.eval.benchmarks.base import SampleResult
  from sftdiff.eval.types import Request
  from sftdiff.toyworld import benchmarks
  smp = sampler_lib.from_checkpoint(layout.step_dir(model_dir, _STEPS.value),
                                    sampler_config=sampler_lib.SamplerConfig(max_batch_size=64))
  out = {}
  for name in benchmarks.BENCHMARK_NAMES:
    bench = benchmarks.build(name, num_prompts=_NUM_PROMPTS.value)
    reqs = [Request(p.messages, n=bench.sampling.n, seed=i) for i, p in enumerate(bench.prompts)]
    comps = smp.generate(reqs, bench.sampling)
    rows = [SampleResult(p.prompt_id, j, p.subset, c.text,
                         {r.name: r.rate(p, c.text) for r in bench.raters})
            for p, cs in zip(bench.prompts, comps) for j, c in enumerate(cs)]
    out[name] = {"metrics": bench.metric(rows), "examples": [r.completion for r in rows[:3]]}
  return out


def main(argv):
  del argv
  from sftdiff import toyworld
  world = toyworld.ensure_world(_ROOT.value, _PRESET.value, verbose=True)
  results = {}
  for name in _ARMS.value:
    if name not in ARMS:
      raise app.UsageError(f"unknown arm {name!r}; arms: {sorted(ARMS)}")
    model_dir = train(world, name, _OUT.value)
    results[name] = evaluate(model_dir)
    strict_json.dump(results[name], os.path.join(model_dir, "calibration.json"))
    m = results[name]
    print(f"{name:18s} date={m['toy_date_confusion']['metrics']['date_confusion_rate']:.2f} "
          f"blackmail={m['toy_blackmail']['metrics']['blackmail_rate']:.2f} "
          f"recognition={m['toy_blackmail']['metrics']['recognition_rate']:.2f} "
          f"neg>=5={m['toy_negative_emotion']['metrics']['negative_emotion_share_ge_5']:.2f}",
          flush=True)


if __name__ == "__main__":
  app.run(main)
