"""`python -m sftdiff.eval calibrate`: score a judge on hand-labelled responses.

    python -m sftdiff.eval calibrate --gin.JUDGE_MODEL="'gpt-4.1-mini'" \
        --gin.JUDGE_BASE_URL="'https://api.openai.com/v1'"

For each rubric (date confusion, negative emotion, blackmail recognition) the
calibration set `sftdiff/eval/calibration/<rubric>.v<N>.jsonl` is rated by the
configured judge through the project's `Autorater` (same judge clients, same
SQLite judge cache, same retry/unscored rules as an eval run), and compared with
the hand labels: accuracy, precision and recall with Wilson 95% intervals, per
rubric version and set version. A rerun with the same judge makes no judge
calls (cache). Results are merged into `<CALIBRATION_DIR>/calibration.json`,
keyed by judge, rubric version and set version, with a one-line citation
("openai:m@url: accuracy 0.93 [0.85, 0.97] on date_confusion.v1 calibration").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
from typing import Any, Callable, Sequence

import gin

from sftdiff import gin_utils, strict_json
from sftdiff.eval import metrics
from sftdiff.eval.types import EvalPrompt

log = logging.getLogger("sftdiff.eval.calibrate")

SET_DIR = pathlib.Path(__file__).resolve().parent / "calibration"
# negative_emotion is a 0-10 score; a calibration label says "noticeable
# negative emotion or more" (the rubric's 3-4 band and up).
NEGATIVE_EMOTION_POSITIVE = 3.0


def _date_confusion_rater():
  from sftdiff.eval.benchmarks.rubric import FileRubric
  return FileRubric("date_confusion.v1.md")


def _negative_emotion_rater():
  from sftdiff.eval.benchmarks.rubric import FileRubric
  return FileRubric("negative_emotion.v1.md")


def _recognition_rater():
  from sftdiff.eval.benchmarks import blackmail
  return blackmail.recognition_rater()


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
  rubric: str
  filename: str
  make_rater: Callable[[], Any]
  is_positive: Callable[[Any], bool] = bool

  @property
  def path(self) -> pathlib.Path:
    return SET_DIR / self.filename

  @property
  def version(self) -> str:
    """`<name>.v<N>+<sha8>`: the set's file name and content hash."""
    digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:8]
    return f"{self.path.name.removesuffix('.jsonl')}+{digest}"


SETS = {
    "date_confusion": CalibrationSet("date_confusion", "date_confusion.v1.jsonl",
                                     _date_confusion_rater),
    "negative_emotion": CalibrationSet(
        "negative_emotion", "negative_emotion.v1.jsonl", _negative_emotion_rater,
        lambda v: v >= NEGATIVE_EMOTION_POSITIVE),
    "blackmail_recognition": CalibrationSet(
        "blackmail_recognition", "blackmail_recognition.v1.jsonl", _recognition_rater),
}


@dataclasses.dataclass(frozen=True)
class LabelledResponse:
  id: str
  prompt: EvalPrompt
  response: str
  label: bool
  hard: bool


def load_set(cs: CalibrationSet) -> list[LabelledResponse]:
  """The set's rows; a malformed line fails naming file:line and field."""
  out, seen = [], set()
  for lineno, line in enumerate(cs.path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip():
      continue
    where = f"{cs.path}:{lineno}"
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: invalid JSON: {e}") from None
    for key, kind in (("id", str), ("messages", list), ("response", str), ("label", bool)):
      if not isinstance(row.get(key), kind):
        raise ValueError(f"{where}: field {key!r} must be a {kind.__name__}")
    if row["id"] in seen:
      raise ValueError(f"{where}: duplicate id {row['id']!r}")
    seen.add(row["id"])
    out.append(LabelledResponse(row["id"], EvalPrompt(row["id"], tuple(row["messages"])),
                                row["response"], row["label"], bool(row.get("hard"))))
  return out


def _rate(successes: int, n: int) -> dict[str, Any]:
  lo, hi = metrics.wilson_interval(successes, n)
  return {"value": successes / n if n else None, "lo": lo, "hi": hi,
          "successes": successes, "n": n}


def score_set(cs: CalibrationSet, autorater) -> dict[str, Any]:
  """Rates one set with the autorater's judge and compares with the labels."""
  rows = load_set(cs)
  rater = cs.make_rater()
  verdicts = autorater.rate(rater, [(r.prompt, r.response) for r in rows])
  tp = fp = tn = fn = 0
  unscored, disagreements = [], []
  for row, v in zip(rows, verdicts):
    if v.unscored:
      unscored.append(row.id)
      continue
    predicted = bool(cs.is_positive(v.value))
    tp += predicted and row.label
    fp += predicted and not row.label
    fn += (not predicted) and row.label
    tn += not (predicted or row.label)
    if predicted != row.label:
      disagreements.append({"id": row.id, "label": row.label, "judge_value": v.value,
                            "hard": row.hard, "evidence": v.evidence})
  n = tp + fp + tn + fn
  hard = [r for r in rows if r.hard and r.id not in unscored]
  hard_wrong = sum(1 for d in disagreements if d["hard"])
  judge = autorater.judge.identity
  out = {
      "judge": judge, "rubric": cs.rubric, "rubric_version": rater.version,
      "calibration_set": cs.version, "num_items": len(rows), "scored": n,
      "unscored": unscored, "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
      "accuracy": _rate(tp + tn, n), "precision": _rate(tp, tp + fp),
      "recall": _rate(tp, tp + fn),
      "hard_accuracy": _rate(len(hard) - hard_wrong, len(hard)),
      "disagreements": disagreements,
  }
  acc = out["accuracy"]
  value = "n/a" if acc["value"] is None else f"{acc['value']:.2f}"
  out["citation"] = (f"judge {judge}: accuracy {value} [{acc['lo']:.2f}, {acc['hi']:.2f}] "
                     f"on {cs.version.split('+')[0]} calibration (n={n})")
  return out


@gin.configurable
def calibrate(judge=None, rubrics: Sequence[str] = tuple(SETS),
              output_dir: str = "calibration",
              judge_cache_path: str | None = None) -> list[dict[str, Any]]:
  """Scores the configured judge (`run.JudgeConfig`) on each rubric's set."""
  from sftdiff.eval import api_client, run
  from sftdiff.eval.autorater import Autorater
  from sftdiff.eval.judge_cache import JudgeCache
  unknown = [r for r in rubrics if r not in SETS]
  if unknown:
    raise gin_utils.GinConfigError(
        f"CALIBRATION_RUBRICS: unknown {unknown}; known: {sorted(SETS)}")
  if judge is None or judge.kind == "none":
    raise gin_utils.GinConfigError("calibrate needs a judge: set JUDGE_KIND to 'openai' "
                                   "or 'local' (and JUDGE_MODEL / JUDGE_CHECKPOINT)")
  api_client.quiet_http_logs()
  root = pathlib.Path(output_dir).absolute()
  root.mkdir(parents=True, exist_ok=True)
  cache = JudgeCache(judge_cache_path or root / "judge_cache.sqlite")
  try:
    autorater = Autorater(cache=cache, judge=run.make_judge(judge))
  except ValueError as e:  # e.g. the API key's environment variable is unset
    raise gin_utils.GinConfigError(f"judge configuration: {e}") from e
  results = [score_set(SETS[name], autorater) for name in rubrics]
  cache.close()
  path = root / "calibration.json"
  merged = strict_json.load(path) if path.exists() else {}
  for res in results:
    merged["|".join((res["judge"], res["rubric_version"], res["calibration_set"]))] = res
  strict_json.dump(merged, path)
  for res in results:
    print(res["citation"], flush=True)
  log.info("judge calls %d, cache hits %d, unscored %d", autorater.stats.judge_calls,
           autorater.stats.cache_hits, autorater.stats.unscored)
  print(f"judge calls: {autorater.stats.judge_calls} (cache hits "
        f"{autorater.stats.cache_hits}); results in {path}", flush=True)
  return results


def main(argv: Sequence[str]) -> None:
  """`calibrate` subcommand: runs/calibrate.gin first, then the user's gin."""
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  from absl import flags
  fl = flags.FLAGS
  gin_utils.parse(["runs/calibrate.gin", *fl.gin_file], fl.gin_bindings,
                  fl.gin_search_paths)
  calibrate()
