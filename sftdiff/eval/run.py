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
import re
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


gin.external_configurable(api_client.ApiConfig)


def _teacher_api() -> api_client.ApiConfig:
  return api_client.ApiConfig(timeout_s=300.0)  # long rollouts


@gin.configurable
@dataclasses.dataclass(frozen=True)
class JudgeConfig:
  """The autorater model. kind: 'openai' (any OpenAI-compatible endpoint,
  `api`: model, base_url, api_key_env, concurrency, retries, timeouts — in
  gin a scoped `@judge/ApiConfig()`), 'local' (a checkpoint through the
  sampler) or 'none' (rule raters only). The key is read from the env var
  named by `api.api_key_env` — never put a key here. `name` labels the judge
  in a panel (metrics.json `judge_panel`, the `verdicts.<name>.jsonl` of a
  non-primary judge); the primary may leave it empty ("primary")."""
  kind: str = "openai"
  name: str = ""
  api: api_client.ApiConfig | None = dataclasses.field(default_factory=api_client.ApiConfig)
  checkpoint: str | None = None
  temperature: float = 0.0
  max_tokens: int = 1024


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TeacherConfig:
  """An API model evaluated beside the students (results under teachers/<name>);
  `api` as in JudgeConfig (in gin a scoped `@<teacher>/ApiConfig()`)."""
  name: str = ""
  api: api_client.ApiConfig | None = dataclasses.field(default_factory=_teacher_api)
  system_prompt: str | None = None


def _api_of(cfg, what: str) -> api_client.ApiConfig:
  if not isinstance(cfg.api, api_client.ApiConfig):
    raise gin_utils.GinConfigError(
        f"{what}.api must be an ApiConfig (gin: {what}.api = @<scope>/ApiConfig()), "
        f"got {cfg.api!r}")
  return cfg.api


def make_judge(cfg: JudgeConfig | None, *, sampler_config=None, partition=None,
               budget: api_client.TokenBudget | None = None):
  if cfg is None or cfg.kind == "none":
    return None
  if cfg.kind == "openai":
    api = _api_of(cfg, "JudgeConfig")
    if not api.model:
      raise gin_utils.GinConfigError("JudgeConfig.api.model is empty; set JUDGE_MODEL")
    return OpenAIJudge(api, temperature=cfg.temperature,
                       max_tokens=cfg.max_tokens, budget=budget)
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


PRIMARY = "primary"  # the primary judge's name when JudgeConfig.name is empty
_JUDGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def judge_names(judge: JudgeConfig | None, extra_judges: Sequence[JudgeConfig]) -> list[str]:
  """[primary name, *extra names], checked: distinct and usable in file names."""
  names = [(judge.name if judge is not None and judge.name else PRIMARY)]
  for i, j in enumerate(extra_judges):
    if not j.name:
      raise gin_utils.GinConfigError(
          f"run_eval.extra_judges[{i}]: JudgeConfig.name is empty; name each extra "
          "judge (it labels its verdicts and agreement)")
    names.append(j.name)
  for n in names:
    if not _JUDGE_NAME.match(n):
      raise gin_utils.GinConfigError(
          f"JudgeConfig.name {n!r}: use letters, digits, '_', '-', '.' (it names a file)")
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise gin_utils.GinConfigError(f"judge names must be distinct; repeated: {dup} "
                                   "(run_eval.judge / run_eval.extra_judges)")
  return names


def check_before_compute(benches, judge: JudgeConfig | None, teachers,
                         extra_judges: Sequence[JudgeConfig] = ()) -> None:
  """Every check that needs no model: judges set up for the raters that need
  one, API keys present, teachers named."""
  raters = _needs_judge(benches)
  judge_names(judge, extra_judges)
  if raters:
    if judge is None or judge.kind == "none":
      raise gin_utils.GinConfigError(
          f"rater(s) {raters} need a judge model but JUDGE_KIND is 'none'; set "
          "JUDGE_KIND='openai' (JUDGE_MODEL, JUDGE_BASE_URL, JUDGE_API_KEY_ENV) or 'local'")
    for j in (judge, *extra_judges):
      _check_judge(j, raters)
    _check_distinct_judges(judge_names(judge, extra_judges), [judge, *extra_judges])
  _check_teachers(teachers)


def _check_judge(judge: JudgeConfig, raters) -> None:
  label = f"judge {judge.name!r}" if judge.name else "the judge"
  if judge.kind == "openai":
    api = _api_of(judge, "JudgeConfig")
    if not api.model:
      raise gin_utils.GinConfigError(
          f"JudgeConfig.api.model is empty ({label}); set JUDGE_MODEL"
          + (f" or {judge.name}/ApiConfig.model" if judge.name else ""))
    _check_key(api.api_key_env,
               f"ApiConfig.api_key_env of {label}, for {raters}" if judge.name
               else f"JUDGE_API_KEY_ENV, for the judge of {raters}")
  elif judge.kind == "local":
    if not judge.checkpoint:
      raise gin_utils.GinConfigError(
          f"JudgeConfig.kind='local' needs JudgeConfig.checkpoint ({label}; JUDGE_CHECKPOINT)")
    if not pathlib.Path(judge.checkpoint).exists():
      raise gin_utils.GinConfigError(
          f"JudgeConfig.checkpoint of {label}: {judge.checkpoint} does not exist")
  else:
    raise gin_utils.GinConfigError(
        f"JudgeConfig.kind of {label} must be 'openai' or 'local' here (raters {raters} "
        f"need a judge), got {judge.kind!r}")


def _check_distinct_judges(names, configs) -> None:
  """Two names for one judge would report agreement 1 with itself: in gin an
  extra judge that binds no `@<name>/ApiConfig()` inherits the primary's."""
  seen: dict[tuple, str] = {}
  for name, c in zip(names, configs):
    what = (c.kind, c.api.identity if c.kind == "openai" else c.checkpoint,
            c.temperature, c.max_tokens)
    if what in seen:
      raise gin_utils.GinConfigError(
          f"judges {seen[what]!r} and {name!r} are the same judge ({what[1]}); give "
          f"{name!r} its own model, e.g. {name}/JudgeConfig.api = @{name}/ApiConfig() "
          f"and {name}/ApiConfig.model = '...'")
    seen[what] = name


def _check_teachers(teachers) -> None:
  for t in teachers:
    if not t.name:
      raise gin_utils.GinConfigError("TeacherConfig.name is empty (names the output dir)")
    api = _api_of(t, "TeacherConfig")
    if not api.model:
      raise gin_utils.GinConfigError(
          f"TeacherConfig.api.model of teacher {t.name!r} is empty; bind "
          f"{t.name}/ApiConfig.model")
    _check_key(api.api_key_env, f"ApiConfig.api_key_env of teacher {t.name!r}")


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
             rejudge: bool = False,
             extra_judges: Sequence[JudgeConfig] = (),
             max_judge_tokens: int | None = None) -> list[dict[str, Any]]:
  """Evaluates every checkpoint under `checkpoint_dir` and every teacher.

  `judge` is the primary judge (the headline metrics); each of
  `extra_judges` (each named) rates the same samples too, for agreement.
  `max_judge_tokens` caps the prompt + completion tokens all API judges
  together may spend in this run: once spent, the rest stay unscored with
  reason "budget" (a later run asks again).

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
  check_before_compute(benches, judge, teachers, extra_judges)
  names = judge_names(judge, extra_judges)
  try:
    budget = api_client.TokenBudget(max_judge_tokens)
  except ValueError as e:
    raise gin_utils.GinConfigError(f"run_eval.max_judge_tokens: {e}") from None
  refs = []
  if checkpoint_dir is not None:
    refs = _discover_or_fail(checkpoint_dir, bool(teachers))
  root = pathlib.Path(output_dir or checkpoint_dir).absolute()
  if not _writable_dir(root):
    raise OutputWriteError(f"cannot write {root}: not writable (read-only or full?); "
                           "set OUTPUT_DIR to a writable directory")
  gin_utils.write_operative_config(root, "eval_config.gin")
  cache = JudgeCache(judge_cache_path or root / "judge_cache.sqlite")
  def autorater_for(cfg):
    return Autorater(cache=cache, judge_factory=lambda: make_judge(
        cfg, sampler_config=sampler_config, partition=partition, budget=budget))
  autorater = autorater_for(judge)
  panel = {name: autorater_for(cfg) for name, cfg in zip(names[1:], extra_judges)}
  judging = dict(autorater=autorater, panel=panel, primary_judge=names[0],
                 judge_chunk=judge_chunk, rejudge=rejudge)
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
                            generator=factory, target=target, seed=seed, **judging)
      runner.update_results(results_path, res)
      results.append(res)
      _log_result(res)

  for t in teachers:
    gen = ApiGenerator(t.api, name=f"teacher:{t.name}", system_prompt=t.system_prompt)
    tdir = root / "teachers" / t.name
    target = {"name": f"teacher:{t.name}", "kind": "api_teacher", "path": str(tdir),
              "model": t.api.model, "base_url": t.api.base_url,
              "fingerprint": f"api:{t.api.identity}", "generator": gen.settings}
    for bench in benches:
      res = runner.evaluate(bench, tdir / "eval" / bench.name, generator=gen,
                            target=target, seed=seed, **judging)
      runner.update_results(results_path, res)
      results.append(res)
      _log_result(res)
  log.info("judge stats: %s", autorater.stats)
  for name, other in panel.items():
    log.info("judge %s stats: %s", name, other.stats)
  if budget.refused:
    log.warning("max_judge_tokens=%d spent (%d tokens): %d judge request(s) not sent; "
                "their samples are unscored with reason 'budget' and a rerun asks again",
                max_judge_tokens, budget.spent, budget.refused)
  cache.close()
  return results


def _log_result(res):
  scalars = {k: v for k, v in res["metrics"].items() if isinstance(v, (int, float))}
  log.info("%s / %s: %s", res["target"]["name"], res["benchmark"], scalars)


