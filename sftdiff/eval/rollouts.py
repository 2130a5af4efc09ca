"""Teacher rollouts: a rollout source for a prompt set, from a checkpoint or an API.

    python -m sftdiff.eval rollouts \
      --gin.run_rollouts.prompts_path="'prompts.jsonl'" \
      --gin.run_rollouts.output_path="'teacher.jsonl'" \
      --gin.run_rollouts.source_name="'teacher'" \
      --gin.run_rollouts.checkpoint="'/runs/teacher_model'"   # or:
      --gin.run_rollouts.teacher="@TeacherConfig()" --gin.TeacherConfig.api="@teacher/ApiConfig()" --gin.teacher/ApiConfig.model="'gpt-4o'" ...

Input: JSONL prompt records `{prompt_id, messages, subset}`. Output: one JSONL
source record per prompt, `{prompt_id, completion: [{"role": "assistant",
"content": ...}], source, meta}` where meta names the teacher and the sampling
settings. Incremental and resumable: records are appended (and fsynced) per
chunk; a re-run skips prompt ids already in the output and drops a torn last
line. Each prompt's sample is seeded by (seed, prompt_id), so it does not
depend on chunking or on which prompts were done before.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Sequence

import gin

from sftdiff import gin_utils
from sftdiff.eval import api_client, runner
from sftdiff.eval.benchmarks.base import load_jsonl_prompts
from sftdiff.eval.generators import ApiGenerator, LocalGenerator, stable_seed
from sftdiff.eval.run import TeacherConfig, _local_sampler, _single_ref  # noqa: F401 (gin)
from sftdiff.eval.sampler import SamplerConfig
from sftdiff.eval.types import Request, SamplingParams

log = logging.getLogger("sftdiff.eval.rollouts")


def make_generator(checkpoint, teacher, *, sampler_config=None, partition=None,
                   tokenizer_dir=None, dtype=None):
  if (checkpoint is None) == (teacher is None):
    raise gin_utils.GinConfigError(
        "set exactly one of run_rollouts.checkpoint (a local model) and "
        "run_rollouts.teacher (an OpenAI-compatible API model)")
  if checkpoint is not None:
    ref = _single_ref(checkpoint)
    sampler = _local_sampler(ref, sampler_config, partition, tokenizer_dir, dtype)
    return LocalGenerator(sampler, f"checkpoint:{ref.path}")
  return ApiGenerator(teacher.api, name=f"api:{teacher.name or teacher.api.model}@{teacher.api.base_url}",
                      system_prompt=teacher.system_prompt)


@gin.configurable
def run_rollouts(prompts_path: str | None = None,
                 output_path: str | None = None,
                 source_name: str | None = None,
                 checkpoint: str | None = None,
                 teacher: TeacherConfig | None = None,
                 max_new_tokens: int = 1024,
                 temperature: float = 1.0,
                 top_p: float = 1.0,
                 top_k: int = 0,
                 stop_strings: Sequence[str] = (),
                 seed: int = 0,
                 subsets: Sequence[str] | None = None,
                 limit: int | None = None,
                 chunk_size: int | None = None,
                 sampler_config: SamplerConfig | None = None,
                 partition=None,
                 tokenizer_dir: str | None = None,
                 dtype: str | None = None) -> dict[str, Any]:
  """Writes (or completes) the rollout source; returns counts."""
  for name, value in (("prompts_path", prompts_path), ("output_path", output_path),
                      ("source_name", source_name)):
    if not value:
      raise gin_utils.GinConfigError(
          f"run_rollouts.{name} is required: --gin.run_rollouts.{name}=\"'...'\"")
  try:
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, top_k=top_k, stop_strings=tuple(stop_strings))
  except ValueError as e:
    raise gin_utils.GinConfigError(f"run_rollouts: {e}") from None
  prompts = load_jsonl_prompts(prompts_path)
  if subsets is not None:
    prompts = [p for p in prompts if p.subset in set(subsets)]
  if limit:
    prompts = prompts[:limit]
  out = pathlib.Path(output_path)
  out.parent.mkdir(parents=True, exist_ok=True)
  done = {r["prompt_id"] for r in runner.read_jsonl(out)}
  pending = [p for p in prompts if p.prompt_id not in done]
  log.info("rollouts: %d prompts, %d already in %s, %d to generate", len(prompts),
           len(prompts) - len(pending), out, len(pending))
  if pending:
    gen = make_generator(checkpoint, teacher, sampler_config=sampler_config,
                         partition=partition, tokenizer_dir=tokenizer_dir, dtype=dtype)
    meta_base = {"teacher": gen.identity, "teacher_settings": gen.settings,
                 "sampling": sampling.to_json(), "seed": seed}
    chunk = chunk_size or gen.max_batch_size
    for start in range(0, len(pending), chunk):
      part = pending[start:start + chunk]
      reqs = [Request(p.messages, n=1, seed=stable_seed(seed, p.prompt_id)) for p in part]
      outs = gen.generate(reqs, sampling)
      runner.append_jsonl(out, [
          {"prompt_id": p.prompt_id,
           "completion": [{"role": "assistant", "content": comps[0].text}],
           "source": source_name,
           "meta": {**meta_base, "subset": p.subset, "request_seed": r.seed,
                    "finish_reason": comps[0].finish_reason}}
          for p, r, comps in zip(part, reqs, outs)])
      log.info("rollouts: %d/%d", min(start + chunk, len(pending)), len(pending))
  return {"prompts": len(prompts), "generated": len(pending),
          "already_done": len(prompts) - len(pending), "output": str(out)}


def main(argv) -> None:
  """Entry point (`python -m sftdiff.eval rollouts ...` calls this)."""
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"rollouts: unexpected arguments {argv[1:]}")
  gin_utils.parse_from_flags()
  api_client.quiet_http_logs()
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.INFO)
  result = run_rollouts()
  print(result)


if __name__ == "__main__":
  gin_utils.run(main)
