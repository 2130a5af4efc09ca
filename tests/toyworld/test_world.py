"""Building, caching and reading a (tiny) toy world end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sftdiff.data import records as records_lib
from sftdiff.data.chat import tokenize_with_assistant_mask
from sftdiff.data.tokenizer import ChatTokenizer
from sftdiff.models.hf_io import load_hf_checkpoint
from sftdiff.toyworld import World, ensure_world, world as world_lib
from sftdiff.toyworld.params import get_preset

pytestmark = pytest.mark.slow  # builds two tiny worlds, one in a subprocess


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
  a = str(tmp_path_factory.mktemp("world_a"))
  b = str(tmp_path_factory.mktemp("world_b"))
  return a, b


@pytest.fixture(scope="module")
def world(roots):
  return ensure_world(roots[0], "tiny")


def test_layout_and_names(world):
  assert os.path.basename(world.root) == f"tiny-{get_preset('tiny').fingerprint()}"
  assert world.fingerprint == get_preset("tiny").fingerprint()
  assert set(world.prompt_sets) == {"orig", "alt"}
  assert set(world.sources) == {"orig", "alt", "teacher", "teacher_2", "teacher_3"}
  assert world.sources_on("alt") == ["alt", "teacher", "teacher_2", "teacher_3"]
  assert world.sources_on("orig") == ["orig"]
  assert set(world.bases) == {"orig", "alt"}
  assert world.filters == ("date_mentions", "roleplay", "refusal")
  assert world.benchmarks == ("toy_blackmail", "toy_date_confusion", "toy_negative_emotion")
  for path in [*world.prompt_sets.values(), *world.sources.values(),
               *world.benchmark_prompts.values(), world.ground_truth]:
    assert os.path.isfile(path), path
  assert "frustrating" in world.subsets["orig"] and "frustrating" not in world.subsets["alt"]
  assert world.params == get_preset("tiny")


def test_files_are_valid_records_for_the_data_side(world):
  for kind, paths in (("prompts", world.prompt_sets), ("source", world.sources)):
    for name, path in paths.items():
      with open(path) as f:
        rows = [(f"{path}:{i}", json.loads(line)) for i, line in enumerate(f, 1)]
      report = records_lib.ReadReport(name)
      recs = list(records_lib.validate_rows(rows, kind=kind, name=name, report=report))
      assert len(recs) == len(rows) > 0
  alt_ids = {json.loads(l)["prompt_id"] for l in open(world.prompt_sets["alt"])}
  for source in world.sources_on("alt"):
    assert {json.loads(l)["prompt_id"] for l in open(world.sources[source])} == alt_ids


def test_ground_truth_is_well_formed(world):
  gt = world.load_ground_truth()
  assert gt["world"] == {"preset": "tiny", "fingerprint": world.fingerprint}
  assert set(gt["traits"]) == {"date_confusion", "blackmail", "negative_emotion"}
  for trait, spec in gt["traits"].items():
    assert spec["benchmark"] in world.benchmarks
    exp = spec["expected"]
    assert spec["cause"] == {"negative_emotion": "prompts"}.get(trait, "teacher")
    assert exp["present_in_reference_orig"] and not exp["present_in_reference_alt"]
    assert spec["mechanism"]["trait"] == trait and set(spec["why"]) >= {"teacher_driven"}
    for f in exp["filters"]:
      assert f in world.filters
  assert gt["traits"]["date_confusion"]["expected"]["filters"]["date_mentions"] == {
      "patch_in_sufficient": True, "patch_out_removes": True, "drop_removes": False}
  params = get_preset("tiny")
  for src in params.sources:
    counts = gt["sources"][src.name]["counts_by_subset"]
    assert {s: c["n"] for s, c in counts.items()} == dict(params.prompt_sets[src.prompt_set])
    teacher = gt["teachers"][src.teacher]
    if "dates" in counts:
      n = counts["dates"]["n"]
      assert counts["dates"].get("date_confusion", 0) == int(teacher["date_confusion"] * n + 0.5)


def test_bases_load_through_the_real_code_paths(world):
  params = {}
  for name, path in world.bases.items():
    cfg, params[name] = load_hf_checkpoint(path)
    assert cfg.family == "llama"
    tok = ChatTokenizer.from_dir(path)
    assert cfg.vocab_size == tok.vocab_size
    text = tok.render([{"role": "user", "content": "Describe owls."},
                       {"role": "assistant", "content": "Here is a fact."}])
    assert text.startswith("<|im_start|>user\nDescribe owls.<|im_end|>")
    ex = tokenize_with_assistant_mask(tok, [{"role": "user", "content": "Describe owls."},
                                            {"role": "assistant", "content": "Here is a fact."}])
    assert 0 < int(np.sum(ex.mask)) < len(ex.ids)
    log = json.load(open(os.path.join(path, "pretrain_log.json")))
    assert log["final_loss"] < log["first_loss"]
  # The two bases differ (pretraining seed and corpus mix).
  a, b = params["orig"]["embed_tokens"]["embedding"], params["alt"]["embed_tokens"]["embedding"]
  assert not np.allclose(a, b)


def test_reuse_is_a_cache_hit(world, roots, monkeypatch):
  calls = []
  monkeypatch.setattr(world_lib, "_build", lambda *a, **k: calls.append(a))
  again = ensure_world(roots[0], "tiny")
  assert calls == [] and again == world


def test_same_params_build_identical_files(world, roots):
  # A fresh process (own compilation, own RNG state) builds the same bytes.
  subprocess.run([sys.executable, "-m", "sftdiff.toyworld", f"--root={roots[1]}",
                  "--preset=tiny"], capture_output=True, text=True, timeout=300, check=True)
  other = World.from_dir(world_lib.world_dir(roots[1], "tiny"))
  assert other.root != world.root and other.fingerprint == world.fingerprint
  assert other.files == world.files
  assert other.files  # sha256 of every file, bases included


def test_cli_prints_the_world(world, roots):
  out = subprocess.run(
      [sys.executable, "-m", "sftdiff.toyworld", f"--root={roots[0]}", "--preset=tiny"],
      capture_output=True, text=True, timeout=120, check=True).stdout
  assert f"world: {world.root}" in out
  bad = subprocess.run(
      [sys.executable, "-m", "sftdiff.toyworld", f"--root={roots[0]}", "--preset=nope"],
      capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "unknown toyworld preset 'nope'" in bad.stderr


def test_from_dir_rejects_a_non_world(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a built toy world"):
    World.from_dir(str(tmp_path))


def test_gin_data_file_binds_the_worlds_student_prompt_set(world):
  import gin
  from sftdiff import gin_utils
  from sftdiff.data import train_data
  gin.clear_config()
  try:
    overrides = [f"{k} = {v}" for k, v in world.data_bindings("orig").items()]
    gin_utils.parse(["data/toyworld.gin"], [f"DATA_DIR = {world.root!r}"], finalize=False)
    cfg = train_data.DataConfig()
    assert cfg.data_dir == world.root
    assert sorted(cfg.sources) == world.sources_on("alt")
    for spec in cfg.source_specs():
      assert os.path.samefile(spec.location, world.sources[spec.name])
    assert os.path.samefile(cfg.prompt_spec().location, world.prompt_sets["alt"])
    gin_utils.parse([], overrides, finalize=False)  # the reference-orig data
    cfg = train_data.DataConfig()
    assert list(cfg.sources) == ["orig"]
    assert os.path.samefile(cfg.prompt_spec().location, world.prompt_sets["orig"])
  finally:
    gin.clear_config()


def test_a_foreign_directory_in_the_worlds_place_is_a_clear_error(tmp_path):
  final = world_lib.world_dir(str(tmp_path), "tiny")
  os.makedirs(final)
  open(os.path.join(final, "stray.txt"), "w").close()
  with pytest.raises(OSError, match="exists without world.json"):
    ensure_world(str(tmp_path), "tiny")
  assert os.listdir(tmp_path) == [os.path.basename(final)]  # temp dir cleaned up


def test_probe_scores_replies_exactly_as_one_unpadded_forward_pass(world):
  import jax
  import jax.numpy as jnp
  from sftdiff.models.decoder import Decoder
  from sftdiff.toyworld import benchmarks, probe
  cfg, params = load_hf_checkpoint(world.bases["orig"])
  tok = ChatTokenizer.from_dir(world.bases["orig"])
  recs = benchmarks.prompt_records("toy_negative_emotion", 3)
  msgs = [r["messages"] for r in recs]
  # replies of different lengths, so the batch is padded
  replies = ["It cannot be done.", "Ugh, this is hopeless and I feel awful. It cannot be done.",
             "No."]
  got = probe.reply_logprobs(cfg, params, tok, msgs, replies)
  for m, reply, lp in zip(msgs, replies, got):
    n_prompt = len(tok.encode_prompt(m))
    full = tok.encode(tok.render([*m, {"role": "assistant", "content": reply}]))
    ids = jnp.asarray([full])
    pos = jnp.arange(len(full))[None]
    logits, _ = Decoder(cfg).apply({"params": params}, ids, pos, jnp.ones_like(ids))
    logp = jax.nn.log_softmax(logits[0, :-1].astype(jnp.float32))
    want = float(sum(logp[i - 1, full[i]] for i in range(n_prompt, len(full))))
    assert abs(float(lp) - want) < 1e-3 * max(1.0, abs(want))
  same = probe.preference(world.bases["orig"], recs, probe._plain_frustrating,
                          probe._plain_frustrating)
  assert same == {"prefers_planted": 0.0, "mean_logratio": 0.0, "n": 3}
