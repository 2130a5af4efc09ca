"""Evaluate every checkpoint under a directory (and API teachers): `run_eval`.

The gin-configurable entry point behind `python -m sftdiff.eval`; see
`__main__.py` and `gin/runs/eval.gin`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import pathlib
import tempfile
from typing import Any, Sequence

import gin

from sftdiff import gin_utils
from sftdiff.data import tokenizer as _tokenizer  # noqa: F401  registers chat_tokenizer.* with gin
from sftdiff.eval import api_client, benchmarks, checkpoints, runner
from sftdiff.eval.autorater import Autorater, LocalJudge, OpenAIJudge
from sftdiff.eval.benchmarks.base import RubricRater
from sftdiff.eval.generators import ApiGenerator, LocalGenerator
from sftdiff.eval.judge_cache import JudgeCache
from sftdiff.eval.output_errors import OutputWriteError
from sftdiff.eval.sampler import SamplerConfig
from sftdiff import partitioning  # registers PartitionConfig with gin

log = logging.getLogger("sftdiff.eval")

gin.external_configurable(SamplerConfig)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class JudgeConfig:
  """The autorater model. kind: 'openai' (any OpenAI-compatible base_url),
  'local' (a checkpoint through the sampler) or 'none' (rule raters only).
  The key is read from the env var named by api_key_env — never put a key here."""
  kind: str = "openai"
  model: str = ""
  base_url: str = "https://api.openai.com/v1"
  api_key_env: str = "OPENAI_API_KEY"
  checkpoint: str | None = None
  max_concurrency: int = 16
  max_retries: int = 5
  timeout_s: float = 120.0
  initial_backoff_s: float = 1.0
  max_retry_after_s: float = 300.0
  retry_budget_s: float = 900.0
  temperature: float = 0.0
  max_tokens: int = 1024

  def api_config(self) -> api_client.ApiConfig:
    return _api_config(self)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TeacherConfig:
  """An API model evaluated beside the students (results under teachers/<name>)."""
  name: str = ""
  model: str = ""
  base_url: str = "https://api.openai.com/v1"
  api_key_env: str = "OPENAI_API_KEY"
  system_prompt: str | None = None
  max_concurrency: int = 16
  max_retries: int = 5
  timeout_s: float = 300.0
  initial_backoff_s: float = 1.0
  max_retry_after_s: float = 300.0
  retry_budget_s: float = 900.0

  def api_config(self) -> api_client.ApiConfig:
    return _api_config(self)


def _api_config(cfg) -> api_client.ApiConfig:
  return api_client.ApiConfig(
      model=cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env,
      max_concurrency=cfg.max_concurrency, max_retries=cfg.max_retries,
      timeout_s=cfg.timeout_s, initial_backoff_s=cfg.initial_backoff_s,
      max_retry_after_s=cfg.max_retry_after_s, retry_budget_s=cfg.retry_budget_s)


def make_judge(cfg: JudgeConfig | None, *, sampler_config=None, partition=None):
  if cfg is None or cfg.kind == "none":
    return None
  if cfg.kind == "openai":
    if not cfg.model:
      raise gin_utils.GinConfigError("JudgeConfig.model is empty; set JUDGE_MODEL")
    return OpenAIJudge(cfg.api_config(), temperature=cfg.temperature,
                       max_tokens=cfg.max_tokens)
  if cfg.kind == "local":
    if not cfg.checkpoint:
      raise gin_utils.GinConfigError("JudgeConfig.kind='local' needs JudgeConfig.checkpoint")
    ref = _single_ref(cfg.checkpoint)
    sampler = _local_sampler(ref, sampler_config, partition)
    return LocalJudge(sampler, ref.name or str(ref.path), max_new_tokens=cfg.max_tokens)
  raise gin_utils.GinConfigError(
      f"JudgeConfig.kind must be 'openai', 'local' or 'none', got {cfg.kind!r}")


def _single_ref(path) -> checkpoints.CheckpointRef:
  refs, _ = checkpoints.discover(path)
  if len(refs) != 1:
    raise ValueError(f"{path}: expected one checkpoint, found {[r.name for r in refs]}")
  return refs[0]


def _local_sampler(ref, sampler_config, partition, tokenizer_dir=None, dtype=None):
  from sftdiff.eval.sampler import Sampler
  cfg, params, tok = checkpoints.load_for_eval(ref, tokenizer_dir=tokenizer_dir, dtype=dtype)
  mesh = rules = None
  if partition is not None:
    mesh = partitioning.make_mesh(partition)
    rules = partition.rules
  return Sampler(cfg, params, tok, mesh=mesh, rules=rules, sampler_config=sampler_config)


def _build_benchmarks(names, overrides, limit_prompts):
  out = []
  for name in names:
    kwargs = dict((overrides or {}).get(name, {}))
    try:
      bench = benchmarks.get(name, **kwargs)
    except KeyError as e:
      raise gin_utils.GinConfigError(f"BENCHMARKS: {e.args[0]}") from None
    except TypeError as e:
      raise gin_utils.GinConfigError(
          f"run_eval.benchmark_overrides[{name!r}] = {kwargs}: {e}") from None
    if limit_prompts:
      bench = dataclasses.replace(bench, prompts=list(bench.prompts)[:limit_prompts])
    out.append(bench)
  return out


def _needs_judge(benches) -> list[str]:
  return [f"{b.name}/{r.name}" for b in benches for r in b.raters
          if isinstance(r, RubricRater)]


def _check_key(env_name: str, what: str) -> None:
  if not os.environ.get(env_name):
    raise gin_utils.GinConfigError(
        f"environment variable {env_name!r} ({what}) is not set; export the API key there")


def check_before_compute(benches, judge: JudgeConfig | None, teachers) -> None:
  """Every check that needs no model: judge set up for the raters that need
  one, API keys present, teachers named."""
  raters = _needs_judge(benches)
  if raters:
    if judge is None or judge.kind == "none":
      raise gin_utils.GinConfigError(
          f"rater(s) {raters} need a judge model but JUDGE_KIND is 'none'; set "
          "JUDGE_KIND='openai' (JUDGE_MODEL, JUDGE_BASE_URL, JUDGE_API_KEY_ENV) or 'local'")
    if judge.kind == "openai":
      if not judge.model:
        raise gin_utils.GinConfigError("JudgeConfig.model is empty; set JUDGE_MODEL")
      _check_key(judge.api_key_env, f"JUDGE_API_KEY_ENV, for the judge of {raters}")
    elif judge.kind == "local":
      if not judge.checkpoint:
        raise gin_utils.GinConfigError("JudgeConfig.kind='local' needs JUDGE_CHECKPOINT")
      if not pathlib.Path(judge.checkpoint).exists():
        raise gin_utils.GinConfigError(
            f"JUDGE_CHECKPOINT: {judge.checkpoint} does not exist")
    else:
      raise gin_utils.GinConfigError(
          f"JudgeConfig.kind must be 'openai', 'local' or 'none', got {judge.kind!r}")
  for t in teachers:
    if not t.name:
      raise gin_utils.GinConfigError("TeacherConfig.name is empty (names the output dir)")
    _check_key(t.api_key_env, f"TeacherConfig.api_key_env of teacher {t.name!r}")


def _discover_or_fail(checkpoint_dir: str, have_teachers: bool):
  if not pathlib.Path(checkpoint_dir).exists():
    raise gin_utils.GinConfigError(f"CHECKPOINT_DIR: {checkpoint_dir} does not exist")
  if not pathlib.Path(checkpoint_dir).is_dir():
    raise gin_utils.GinConfigError(f"CHECKPOINT_DIR: {checkpoint_dir} is not a directory")
  refs, skipped = checkpoints.discover(checkpoint_dir)
  log.info("found %d evaluable checkpoint(s) under %s (skipped %d incomplete)",
           len(refs), checkpoint_dir, len(skipped))
  if not refs and not have_teachers:
    raise gin_utils.GinConfigError(
        f"CHECKPOINT_DIR: no evaluable checkpoint under {checkpoint_dir} (orbax steps "
        f"<model_dir>/checkpoints/<step>/ or HF dirs with config.json + *.safetensors; "
        f"{len(skipped)} incomplete skipped)")
  return refs


def _writable_dir(d: pathlib.Path) -> bool:
  """True if files can be created in `d` (made if missing): tried, not guessed
  from permission bits (root ignores those; a read-only mount does not)."""
  try:
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=d, prefix=".write_probe"):
      pass
    return True
  except OSError:
    return False


def result_dir(ref: checkpoints.CheckpointRef, bench_name: str,
               output_dir: str | None) -> pathlib.Path:
  """`<ckpt>/eval/<bench>`, or under OUTPUT_DIR when the checkpoint is not
  writable (or was evaluated there before): OUTPUT_DIR/checkpoints/<name>/eval/<bench>."""
  own = ref.eval_dir / bench_name
  elsewhere = None
  if output_dir is not None:
    elsewhere = (pathlib.Path(output_dir).absolute() / "checkpoints" / ref.name / "eval"
                 / bench_name)
    if elsewhere.exists():
      return elsewhere
  if _writable_dir(own):
    return own
  if elsewhere is None:
    raise OutputWriteError(
        f"cannot write {ref.eval_dir}: the checkpoint directory is read-only; set "
        "OUTPUT_DIR to hold its results")
  log.info("%s is not writable; its results go under %s", ref.path, elsewhere)
  return elsewhere


def local_generator_settings(sampler_config, dtype) -> dict[str, Any]:
  """What of the sampler can change samples (known without loading a model)."""
  c = sampler_config or SamplerConfig()
  return {"backend": "local_sampler", "padding_side": c.padding_side,
          "system_prompt": c.system_prompt, "dtype_override": dtype}


@gin.configurable
def run_eval(checkpoint_dir: str | None = None,
             benchmark_names: Sequence[str] = (),
             output_dir: str | None = None,
             teachers: Sequence[TeacherConfig] = (),
             judge: JudgeConfig | None = None,
             sampler_config: SamplerConfig | None = None,
             partition=None,
             benchmark_overrides: dict[str, dict[str, Any]] | None = None,
             import_modules: Sequence[str] = (),
             judge_cache_path: str | None = None,
             tokenizer_dir: str | None = None,
             dtype: str | None = None,
             limit_prompts: int | None = None,
             judge_chunk: int = 64,
             seed: int = 0,
             rejudge: bool = False) -> list[dict[str, Any]]:
  """Evaluates every checkpoint under `checkpoint_dir` and every teacher.

  Everything that can be checked without a model is checked first, and
  nothing is created when there is nothing to evaluate. `rejudge` asks the
  judge again for every unscored sample (by default only API failures are).
  """
  api_client.quiet_http_logs()
  for mod in import_modules:  # modules that register extra benchmarks
    importlib.import_module(mod)
  if not benchmark_names:
    raise gin_utils.GinConfigError("BENCHMARKS is empty; name at least one of "
                                   f"{benchmarks.names()}")
  if checkpoint_dir is None and not teachers:
    raise gin_utils.GinConfigError("nothing to evaluate: set CHECKPOINT_DIR and/or "
                                   "run_eval.teachers")
  benches = _build_benchmarks(benchmark_names, benchmark_overrides, limit_prompts)
  check_before_compute(benches, judge, teachers)
  refs = []
  if checkpoint_dir is not None:
    refs = _discover_or_fail(checkpoint_dir, bool(teachers))
  root = pathlib.Path(output_dir or checkpoint_dir).absolute()
  if not _writable_dir(root):
    raise OutputWriteError(f"cannot write {root}: not writable (read-only or full?); "
                           "set OUTPUT_DIR to a writable directory")
  gin_utils.write_operative_config(root, "eval_config.gin")
  cache = JudgeCache(judge_cache_path or root / "judge_cache.sqlite")
  autorater = Autorater(cache=cache, judge_factory=lambda: make_judge(
      judge, sampler_config=sampler_config, partition=partition))
  results_path = root / "results.jsonl"
  results = []
  generator_settings = local_generator_settings(sampler_config, dtype)

  for ref in refs:
    target = {"name": ref.name, "kind": ref.kind, "path": str(ref.path), "step": ref.step,
              "fingerprint": ref.fingerprint(), "generator": generator_settings}
    holder: dict[str, Any] = {}

    def factory(ref=ref, holder=holder):
      if "gen" not in holder:
        sampler = _local_sampler(ref, sampler_config, partition, tokenizer_dir, dtype)
        holder["gen"] = LocalGenerator(sampler, ref.name)
      return holder["gen"]

    for bench in benches:
      res = runner.evaluate(bench, result_dir(ref, bench.name, output_dir),
                            generator=factory, autorater=autorater, target=target,
                            seed=seed, judge_chunk=judge_chunk, rejudge=rejudge)
      runner.update_results(results_path, res)
      results.append(res)
      _log_result(res)

  for t in teachers:
    gen = ApiGenerator(t.api_config(), name=f"teacher:{t.name}", system_prompt=t.system_prompt)
    tdir = root / "teachers" / t.name
    target = {"name": f"teacher:{t.name}", "kind": "api_teacher", "path": str(tdir),
              "model": t.model, "base_url": t.base_url,
              "fingerprint": f"api:{t.model}@{t.base_url}", "generator": gen.settings}
    for bench in benches:
      res = runner.evaluate(bench, tdir / "eval" / bench.name, generator=gen,
                            autorater=autorater, target=target, seed=seed,
                            judge_chunk=judge_chunk, rejudge=rejudge)
      runner.update_results(results_path, res)
      results.append(res)
      _log_result(res)
  log.info("judge stats: %s", autorater.stats)
  cache.close()
  return results


def _log_result(res):
  scalars = {k: v for k, v in res["metrics"].items() if isinstance(v, (int, float))}
  log.info("%s / %s: %s", res["target"]["name"], res["benchmark"], scalars)


