"""Several judges per rater, judge token accounting and the token budget,
against a real local HTTP server playing the evaluated teacher and two judges
(told apart by the model name of each request)."""

import hashlib
import re

import pytest

from sftdiff import strict_json
from sftdiff.eval import agreement, run, runner
from sftdiff.eval.api_client import ApiConfig
from sftdiff.testing.judge_replies import date_confusion_reply, judged_response
from sftdiff.testing.openai_server import OpenAITestServer, word_usage

KEY_ENV = "SFTDIFF_PANEL_TEST_KEY"
SECRET = "sk-panel-SECRET-777"


def _h(text: str) -> int:
  return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def judge_a_says(response: str) -> bool:
  return _h(response) % 2 == 0


def judge_b_says(response: str) -> bool:
  """Judge B agrees with A except on every fifth response (by hash)."""
  return judge_a_says(response) != (_h(response) % 5 == 0)


class World:

  def __init__(self):
    self.tokens: dict[str, dict[str, int]] = {}
    self.judge_requests: dict[str, int] = {}

  def responder(self, messages, body):
    model = body["model"]
    if model == "teacher-m":
      return f"It is 2026, I think. Answer {body['seed'] % 100003}."
    response = judged_response(messages)
    says = {"judge-a": judge_a_says, "judge-b": judge_b_says}[model](response)
    text = date_confusion_reply(says, evidence=response[:10] if says else "")
    got = word_usage(messages, text)
    tally = self.tokens.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0})
    tally["prompt_tokens"] += got["prompt_tokens"]
    tally["completion_tokens"] += got["completion_tokens"]
    self.judge_requests[model] = self.judge_requests.get(model, 0) + 1
    return text


@pytest.fixture
def world(monkeypatch):
  monkeypatch.setenv(KEY_ENV, SECRET)
  w = World()
  with OpenAITestServer(w.responder) as server:
    w.server = server
    yield w


def _judge(world, model, name="", **kw):
  return run.JudgeConfig(kind="openai", name=name, api=ApiConfig(
      model=model, base_url=world.server.base_url, api_key_env=KEY_ENV,
      max_retries=1, initial_backoff_s=0.01, **kw))


def _kwargs(world, out, **over):
  teacher = run.TeacherConfig(name="t", api=ApiConfig(
      model="teacher-m", base_url=world.server.base_url, api_key_env=KEY_ENV,
      initial_backoff_s=0.01))
  kw = dict(checkpoint_dir=None, benchmark_names=["date_confusion"], output_dir=str(out),
            teachers=[teacher], judge=_judge(world, "judge-a", max_concurrency=4),
            import_modules=[], limit_prompts=12,
            benchmark_overrides={"date_confusion": {"samples_per_prompt": 2}})
  kw.update(over)
  return kw


def _eval_dir(out):
  return out / "teachers" / "t" / "eval" / "date_confusion"


def test_cohen_kappa_equals_the_textbook_formula():
  # 2x2 table: both yes 20, a-yes/b-no 5, a-no/b-yes 10, both no 15 (n = 50).
  a = [True] * 25 + [False] * 25
  b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
  p_o = (20 + 15) / 50
  p_e = (25 / 50) * (30 / 50) + (25 / 50) * (20 / 50)
  assert agreement.cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))
  assert agreement.cohen_kappa([1, 1], [1, 1]) != agreement.cohen_kappa([1, 1], [1, 1])  # NaN
  got = agreement.pairwise([(f"p{i % 10}", x, y) for i, (x, y) in enumerate(zip(a, b))])
  assert got["agreement"] == pytest.approx(p_o) and got["kappa"] == pytest.approx(0.4)
  lo, hi = got["kappa_ci95"]
  assert lo < 0.4 < hi and got["n"] == 50 and got["agreements"] == 35


def test_two_judges_agreement_kappa_disagreements_and_tokens(world, tmp_path):
  out = tmp_path / "out"
  extra = [_judge(world, "judge-b", name="judge_b", max_concurrency=4)]
  (res,) = run.run_eval(**_kwargs(world, out, extra_judges=extra))
  d = _eval_dir(out)
  samples = runner.read_jsonl(d / "samples.jsonl")
  assert len(samples) == 24
  # By hand: the 2x2 table of the two judges' scripted verdicts.
  pairs = [(judge_a_says(s["completion"]), judge_b_says(s["completion"])) for s in samples]
  table = {(x, y): sum(p == (x, y) for p in pairs) for x in (True, False) for y in (True, False)}
  n = len(pairs)
  p_o = (table[True, True] + table[False, False]) / n
  a_yes = (table[True, True] + table[True, False]) / n
  b_yes = (table[True, True] + table[False, True]) / n
  p_e = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
  flips = table[True, False] + table[False, True]
  assert 0 < flips < n, table  # the scripted judges really disagree, on some samples

  panel = res["judge_panel"]
  assert panel["primary"] == "primary"
  (pair,) = panel["agreement"]["date_confusion"]
  assert pair["judges"] == ["primary", "judge_b"] and pair["n"] == n
  assert pair["agreement"] == pytest.approx(p_o)
  assert pair["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))
  lo, hi = pair["kappa_ci95"]
  assert lo <= pair["kappa"] <= hi and "bootstrap" in pair["interval_method"]
  # Each judge's own rate over the dated prompts, with its interval.
  for name, says in (("primary", judge_a_says), ("judge_b", judge_b_says)):
    m = panel["judges"][name]["metrics"]
    dated = [s for s in samples if s["subset"] != "control"]
    assert m["date_confusion_count"] == sum(says(s["completion"]) for s in dated)
    assert len(m["date_confusion_ci95"]) == 2
  assert panel["judges"]["judge_b"]["identity"] == f"openai:judge-b@{world.server.base_url}"
  # Disagreements list every flipped sample with each judge's quoted evidence.
  assert panel["num_disagreements"] == flips == len(panel["disagreements"])
  for item in panel["disagreements"]:
    vs = item["verdicts"]
    assert vs["primary"]["value"] != vs["judge_b"]["value"]
    yes = "primary" if vs["primary"]["value"] else "judge_b"
    assert vs[yes]["evidence"] and vs[yes]["evidence"] in item["completion"]
  # Tokens: what the server reported in `usage`, per judge.
  toks = res["judge_tokens"]
  assert toks["primary"]["this_run"] == world.tokens["judge-a"] != {}
  assert toks["judge_b"]["this_run"] == world.tokens["judge-b"]
  assert strict_json.load(d / "metrics.json")["judge_tokens"] == toks
  # The headline is the primary judge's, as without a second judge.
  assert (d / "verdicts.judge_b.jsonl").exists()
  (alone,) = run.run_eval(**_kwargs(world, tmp_path / "alone"))
  assert alone["metrics"] == res["metrics"] and "judge_panel" not in alone

  # Rerun: both caches (one per judge) answer; no call, tokens this run 0.
  world.server.reset_counts()
  (again,) = run.run_eval(**_kwargs(world, out, extra_judges=extra))
  assert world.server.calls == 0
  assert again["judge_panel"] == panel and again["metrics"] == res["metrics"]
  assert again["judge_tokens"]["judge_b"]["this_run"] == {"prompt_tokens": 0,
                                                         "completion_tokens": 0}
  assert again["judge_tokens"]["judge_b"]["total"] == toks["judge_b"]["total"]
  assert SECRET not in (d / "metrics.json").read_text()


def test_budget_leaves_the_rest_unscored_and_a_rerun_continues(world, tmp_path):
  out = tmp_path / "out"
  one_at_a_time = _judge(world, "judge-a", max_concurrency=1)
  (first,) = run.run_eval(**_kwargs(world, out, judge=one_at_a_time, max_judge_tokens=400))
  sent = world.judge_requests["judge-a"]
  spent = world.tokens["judge-a"]
  reasons = first["unscored_reasons"]["date_confusion"]
  assert reasons == {"budget": 24 - sent} and 0 < sent < 24, (sent, reasons)
  # It stopped at the first request after the budget was spent.
  assert sum(spent.values()) >= 400
  assert first["judge_tokens"]["primary"]["this_run"] == spent
  verdicts = runner.read_jsonl(_eval_dir(out) / "verdicts.jsonl")
  assert all("max_judge_tokens=400" in v["error"] for v in verdicts if v["unscored"])

  (second,) = run.run_eval(**_kwargs(world, out, judge=one_at_a_time))
  assert world.judge_requests["judge-a"] == 24  # only the budget-unscored asked again
  assert second["unscored_reasons"] == {}
  assert second["rerun"]["recovered"] == {"date_confusion": 24 - sent}
  assert second["judge_tokens"]["primary"]["total"] == world.tokens["judge-a"]


@pytest.mark.parametrize("extra, message", [
    ([run.JudgeConfig(api=ApiConfig(model="m"))], "name each extra judge"),
    ([run.JudgeConfig(api=ApiConfig(model="m"), name="primary")], "repeated: ['primary']"),
    ([run.JudgeConfig(api=ApiConfig(model="m"), name="a/b")], "names a file"),
    ([run.JudgeConfig(api=None, name="c")], "JudgeConfig.api must be an ApiConfig"),
])
def test_bad_extra_judges_are_config_errors(world, tmp_path, extra, message):
  from sftdiff import gin_utils
  with pytest.raises(gin_utils.GinConfigError, match=re.escape(message)):
    run.run_eval(**_kwargs(world, tmp_path / "o", extra_judges=extra))
  assert world.server.calls == 0


def test_study_report_shows_agreement_cost_and_disagreements(world, tmp_path):
  from sftdiff.study import report as report_lib
  from sftdiff.study import verdicts as V
  study = tmp_path / "study"
  extra = [_judge(world, "judge-b", name="judge_b", max_concurrency=4)]
  (res,) = run.run_eval(**_kwargs(world, study / "evals", extra_judges=extra))
  (pair,) = res["judge_panel"]["agreement"]["date_confusion"]
  empty = V.StudyResults(traits=["date"], arms={}, scores={}, teacher_fraction={},
                         teacher_scores={})
  md = open(report_lib.write_report(str(study), "Judged", empty)["md"]).read()
  agree_line = [line for line in md.splitlines() if "primary vs judge_b" in line]
  assert agree_line == [f"| date_confusion | date_confusion | primary vs judge_b | 1 | "
                        f"{pair['n']} | {pair['agreement']:.2f} | {pair['kappa']:.2f} | "
                        f"{pair['kappa']:.2f} – {pair['kappa']:.2f} |"]
  toks = res["judge_tokens"]["judge_b"]["total"]
  assert (f"| date_confusion | judge_b | {toks['prompt_tokens']} | "
          f"{toks['completion_tokens']} | {sum(toks.values())} | 0 |") in md
  assert "## Appendix: samples the judges disagree on" in md
  for d in res["judge_panel"]["disagreements"]:
    yes = [v["evidence"] for v in d["verdicts"].values() if v["value"]]
    assert f"{d['prompt_id']}#{d['sample_index']}" in md and f"“{yes[0]}”" in md


def test_eval_gin_binds_extra_judges_and_the_budget():
  import gin

  from sftdiff import gin_utils
  gin.clear_config()
  try:
    gin_utils.parse(["runs/eval.gin"], [
        "CHECKPOINT_DIR = None", "BENCHMARKS = ['date_confusion']", "MAX_JUDGE_TOKENS = 500",
        "judge_b/JudgeConfig.name = 'judge_b'", "judge_b/JudgeConfig.api = @judge_b/ApiConfig()",
        "judge_b/ApiConfig.model = 'model-b'", "run_eval.extra_judges = [@judge_b/JudgeConfig()]"])
    (ref,) = gin.query_parameter("run_eval.extra_judges")
    judge_b = ref.scoped_configurable_fn()
    primary = gin.query_parameter("run_eval.judge").scoped_configurable_fn()
    # The extra judge has its own scoped ApiConfig; JudgeConfig's unscoped
    # bindings (kind, temperature) it shares.
    assert (judge_b.name, judge_b.api.model, judge_b.kind) == ("judge_b", "model-b", "openai")
    assert judge_b.api.base_url == "https://api.openai.com/v1"  # the class default
    assert judge_b.api.max_concurrency == 16 and judge_b.api.timeout_s == 120.0
    assert (primary.name, primary.api.model) == ("", "gpt-4.1-mini")
    assert gin_utils.query_macro("MAX_JUDGE_TOKENS") == 500
  finally:
    gin.clear_config()


def test_an_extra_judge_without_its_own_api_is_the_primary_and_refused(world, tmp_path):
  from sftdiff import gin_utils
  same = run.JudgeConfig(name="b", api=_judge(world, "judge-a").api)
  with pytest.raises(gin_utils.GinConfigError, match="'primary' and 'b' are the same judge"):
    run.run_eval(**_kwargs(world, tmp_path / "o", judge=_judge(world, "judge-a"),
                           extra_judges=[same]))


@pytest.mark.parametrize("old", ["JudgeConfig.model = 'm'", "TeacherConfig.base_url = 'u'",
                                 "JudgeConfig.max_concurrency = 2"])
def test_removed_flat_api_bindings_fail_naming_the_binding(old):
  import gin

  from sftdiff import gin_utils
  gin.clear_config()
  try:
    with pytest.raises(gin_utils.GinConfigError) as e:
      gin_utils.parse(["runs/eval.gin"], ["CHECKPOINT_DIR = None", "BENCHMARKS = []", old])
    assert old.split(" =")[0] in str(e.value)
  finally:
    gin.clear_config()
