"""Prompts filled by a `fallback:<source>` coverage policy are counted under the
source whose text is trained; store meta and manifests are strict JSON."""

import json
import math
import os

import pytest

from sftdiff import strict_json
from sftdiff.data import arms
from sftdiff.data import chat
from sftdiff.data import example_data
from sftdiff.data import store as store_lib
from sftdiff.data import store_build
from sftdiff.data import manifest
from sftdiff.data import sources
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.testing.tokenizer import write_test_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return tokenizer_lib.ChatTokenizer.from_dir(
      write_test_tokenizer(str(tmp_path_factory.mktemp("tok"))))


def _inputs(d, teacher_ids):
  paths = example_data.write_example_rollouts(str(d / "data"))
  with open(paths["teacher"]) as f:
    rows = [l for l in f if json.loads(l)["prompt_id"] in teacher_ids]
  with open(paths["teacher"], "w") as f:
    f.writelines(rows)
  prompts = sources.SourceSpec("prompts", "jsonl", paths["prompts"], role="prompts")
  srcs = [sources.SourceSpec(n, "jsonl", paths[n]) for n in ("alt", "teacher")]
  return prompts, srcs


def _tokens(tok, store, pids, source):
  total = 0
  for record in store:
    if record["prompt_id"] in pids:
      total += chat.tokenize_with_assistant_mask(
          tok, manifest.conversation(record, source)).num_trainable
  return total


def test_empty_teacher_with_fallback_is_counted_as_alt(tmp_path, tok):
  prompts, srcs = _inputs(tmp_path, teacher_ids=())
  with pytest.raises(Exception, match=r"teacher.jsonl: empty file \(no rows\)"):
    store_build.build_store(prompts, srcs, str(tmp_path / "store"),
                       missing="fallback:alt")
  store = store_build.build_store(prompts, srcs, str(tmp_path / "store"),
                             missing="fallback:alt", on_error="skip")
  assert store.meta["read_reports"]["teacher"]["skipped"] == {"empty_file": 1}
  arm = arms.Source("teacher")
  m = manifest.build_manifest(arm, store, arms.select(arm, store.selection_columns(),
                                                      store.sources), tokenizer=tok)
  assert m["counts"]["teacher"] == {"_total": 0}
  assert m["counts"]["alt"] == {"_total": 12, "chat": 6, "code": 4, "safety": 2}
  assert m["fraction_examples"] == {"alt": 1.0, "teacher": 0.0}
  assert m["fallback_trained"] == {"teacher": {"alt": 12}}
  assert m["trainable_tokens"] == {
      "alt": _tokens(tok, store, set(example_data.PROMPTS), "alt"), "teacher": 0}
  assert m["fraction_trainable_tokens"] == {"alt": 1.0, "teacher": 0.0}


def test_partial_teacher_with_fallback_counts_only_the_filled_prompts(tmp_path, tok):
  have = {"p01", "p02", "p07", "p11"}
  prompts, srcs = _inputs(tmp_path, teacher_ids=have)
  store = store_build.build_store(prompts, srcs, str(tmp_path / "store"),
                             missing="fallback:alt")
  cols = store.columns(["prompt_id", "fallback@teacher", "fallback@alt"])
  assert {p for p, f in zip(cols["prompt_id"], cols["fallback@teacher"]) if f} == (
      set(example_data.PROMPTS) - have)
  assert not cols["fallback@alt"].any()
  # Patch-in on subset:chat: teacher where chat (p01..p06), alt elsewhere.
  arm = arms.Patch(base="alt", patch="teacher", where="subset:chat")
  chosen = arms.select(arm, store.selection_columns(), store.sources)
  m = manifest.build_manifest(arm, store, chosen, tokenizer=tok)
  assert m["counts"]["teacher"] == {"_total": 2, "chat": 2}  # p01, p02
  assert m["counts"]["alt"] == {"_total": 10, "chat": 4, "code": 4, "safety": 2}
  assert m["fallback_trained"] == {"teacher": {"alt": 4}}
  assert m["trainable_tokens"] == {
      "teacher": _tokens(tok, store, {"p01", "p02"}, "teacher"),
      "alt": _tokens(tok, store, set(example_data.PROMPTS) - {"p01", "p02"}, "alt")}
  # The arm's own choice is what the selection hash pins.
  assert m["selection_hash"] == manifest.selection_hash(
      store.columns(["prompt_id"])["prompt_id"], chosen, store.sources)
  # Without a fallback nothing moves.
  full_prompts, full_srcs = _inputs(tmp_path / "full", set(example_data.PROMPTS))
  full = store_build.build_store(full_prompts, full_srcs, str(tmp_path / "full_store"))
  m = manifest.build_manifest(arm, full, arms.select(arm, full.selection_columns(),
                                                     full.sources))
  assert m["fallback_trained"] == {} and m["counts"]["teacher"]["_total"] == 6


def test_store_meta_and_manifest_are_strict_json(tmp_path):
  prompts, srcs = _inputs(tmp_path, set(example_data.PROMPTS))
  store = store_build.build_store(prompts, srcs, str(tmp_path / "store"))
  strict_json.load(os.path.join(store.path, store_lib.META_FILE))
  arm = arms.Source("alt")
  m = manifest.build_manifest(arm, store, arms.select(arm, store.selection_columns(),
                                                      store.sources))
  m["note"] = {"score": math.nan, "ratio": math.inf}
  path = manifest.write_manifest(str(tmp_path / "arm"), m)
  with open(path) as f:
    text = f.read()
  assert "NaN" not in text and "Infinity" not in text
  back = manifest.read_manifest(str(tmp_path / "arm"))
  assert back["note"] == {"score": None, "ratio": None}
  assert back["counts"] == m["counts"]
  with open(path, "w") as f:
    f.write('{"selected": NaN}')
  with pytest.raises(ValueError, match="NaN"):
    manifest.read_manifest(path)
