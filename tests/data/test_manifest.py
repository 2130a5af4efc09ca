"""manifest.json contents on the example store (exact counts and tokens)."""

import numpy as np
import pytest

from sftdiff.data import arms
from sftdiff.data import chat
from sftdiff.data import example_data
from sftdiff.data import store_build
from sftdiff.data import manifest
from sftdiff.data import sources
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.testing.tokenizer import write_test_tokenizer


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  d = tmp_path_factory.mktemp("manifest")
  paths = example_data.write_example_rollouts(str(d / "data"))
  prompts = sources.SourceSpec("prompts", "jsonl", paths["prompts"], role="prompts")
  srcs = [sources.SourceSpec(n, "jsonl", paths[n]) for n in ("alt", "teacher")]
  return store_build.build_store(prompts, srcs, str(d / "store"))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return tokenizer_lib.ChatTokenizer.from_dir(
      write_test_tokenizer(str(tmp_path_factory.mktemp("tok"))))


ARM = arms.Drop(base=arms.Patch(base="alt", patch="teacher", where="date_mentions"),
                where="subset:safety")


def test_counts_fractions_and_metadata(store):
  chosen = arms.select(ARM, store.selection_columns(), store.sources)
  m = manifest.build_manifest(ARM, store, chosen, arm_name="patch_in_no_safety")
  assert m["arm"] == str(ARM) and arms.parse_arm(m["arm"]) == ARM
  assert m["arm_name"] == "patch_in_no_safety"
  assert (m["num_prompts"], m["selected"], m["dropped"]) == (12, 10, 2)
  assert m["counts"] == {"alt": {"chat": 3, "code": 3, "_total": 6},
                         "teacher": {"chat": 3, "code": 1, "_total": 4}}
  assert m["fraction_examples"] == {"alt": 0.6, "teacher": 0.4}
  assert m["filters"] == ["date_mentions", "subset:safety"]
  assert m["store"]["fingerprint"] == store.fingerprint
  assert set(m["store"]["inputs"]["sources"]) == {"alt", "teacher"}
  assert m["prompt_id_provenance"]["prompt_set"] == {"id_field": 12}
  assert m["coverage"]["dropped_prompts"] == 0
  assert m["skipped"]["teacher"]["num_skipped"] == 0
  assert m["trainable_tokens"] is None


def test_trainable_tokens_match_the_loss_mask(store, tok):
  chosen = arms.select(ARM, store.selection_columns(), store.sources)
  m = manifest.build_manifest(ARM, store, chosen, tokenizer=tok)
  expected = {"alt": 0, "teacher": 0}
  for i, c in enumerate(chosen):
    if c == arms.DROP:
      continue
    rec = store[i]
    src = store.sources[c]
    ex = chat.tokenize_with_assistant_mask(tok, rec["prompt"] + rec["completions"][src])
    expected[src] += int(ex.mask.sum())
  assert m["trainable_tokens"] == expected and expected["teacher"] > 0
  total = sum(expected.values())
  assert m["fraction_trainable_tokens"]["teacher"] == pytest.approx(
      expected["teacher"] / total)
  short = manifest.build_manifest(ARM, store, chosen, tokenizer=tok, max_len=20)
  assert short["tokenization"]["truncated"] == 10
  dropped = manifest.build_manifest(ARM, store, chosen, tokenizer=tok, max_len=20,
                                    overlong="drop")
  assert dropped["tokenization"]["dropped_overlong"] == 10
  assert dropped["trainable_tokens"] == {"alt": 0, "teacher": 0}


def test_selection_hash(store):
  cols = store.selection_columns()
  h = lambda arm: manifest.build_manifest(
      arm, store, arms.select(arm, cols, store.sources))["selection_hash"]
  assert h(ARM) == h(arms.parse_arm(str(ARM)))
  assert h(ARM) != h(arms.Patch(base="alt", patch="teacher", where="date_mentions"))
  assert h(arms.Source("alt")) != h(arms.Source("teacher"))
  # Order-free: the same mixture listed in another order hashes the same.
  chosen = arms.select(ARM, cols, store.sources)
  perm = np.random.default_rng(0).permutation(len(chosen))
  assert manifest.selection_hash(cols["prompt_id"][perm], chosen[perm],
                                 store.sources) == h(ARM)


def test_write_and_read(store, tmp_path):
  chosen = arms.select("teacher", store.selection_columns(), store.sources)
  m = manifest.build_manifest("teacher", store, chosen)
  path = manifest.write_manifest(str(tmp_path / "run"), m)
  assert path.endswith("run/manifest.json")
  assert manifest.read_manifest(str(tmp_path / "run")) == m
