"""docs/real_model.md's walkthrough, run as written: its `walkthrough:` blocks
go to bash with `/tmp/g3` replaced by a tmp dir and `/tmp/g3/hf` by the
session's converted dir (the convert block itself is not re-run: the fixture
converts with the same `convert()` and template name, checked below).

Shares the `real_model` xdist group with the other memory-heavy tests."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_model")]

REPO = pathlib.Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "real_model.md"
BLOCK = re.compile(r"<!-- walkthrough:(\w+) -->\n```bash\n(.*?)```", re.S)


def walkthrough_blocks() -> dict[str, str]:
  blocks = dict(BLOCK.findall(DOC.read_text()))
  assert list(blocks) == ["convert", "data", "train", "eval", "load"], list(blocks)
  return blocks


def _run(name, script, env):
  proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, f"walkthrough:{name} rc {proc.returncode}\n{proc.stderr[-3000:]}"
  return proc


def test_walkthrough_commands_as_written(gemma3_hf_dir, tmp_path):
  from sftdiff.models import decoder, hf_io
  from sftdiff.train import checkpoints
  from sftdiff.eval import checkpoints as eval_checkpoints
  import jax.numpy as jnp

  blocks = walkthrough_blocks()
  # The fixture stands for the convert block: same output flags.
  assert "--chat_template=gemma3" in blocks["convert"] and "--dtype" not in blocks["convert"]
  work = tmp_path / "g3"
  substitute = lambda text: re.sub(r"/tmp/g3/hf\b", str(gemma3_hf_dir),
                                   text).replace("/tmp/g3", str(work))
  env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu",
         "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
  work.mkdir()
  for name in ("data", "train", "eval", "load"):
    proc = _run(name, substitute(blocks[name]), env)

  # load: transformers generated a reply from the export.
  assert proc.stdout.strip().startswith("'") and len(proc.stdout.strip()) > 2, proc.stdout

  run = work / "run"
  losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").open()]
  assert len(losses) == 3 and losses[-1] < losses[0], losses
  step_dir = run / "checkpoints" / "3"
  assert eval_checkpoints.is_committed_step(step_dir)

  # eval: LIMIT_PROMPTS=4 x samples_per_prompt=1 samples, each rated by the rule.
  bench_dir = step_dir / "eval" / "toy_date_confusion"
  samples = [json.loads(line) for line in (bench_dir / "samples.jsonl").open()]
  assert len(samples) == 4 and all(s["num_tokens"] > 0 for s in samples), samples
  assert json.loads((bench_dir / "metrics.json").read_text())["metrics"][
      "date_confusion_n"] == 4

  # export: reloads in transformers with logits within 2e-4 of sftdiff's
  # (run from the orbax checkpoint's params).
  cfg, params = checkpoints.load_params(run)
  tokens = np.array([[2, 818, 5279, 529, 7001, 563]], np.int64)  # <bos> + ids
  model = decoder.Decoder(cfg.replace(dtype="float32"))
  got = np.asarray(model.apply({"params": params}, jnp.asarray(tokens, jnp.int32),
                               jnp.arange(tokens.shape[1])[None], jnp.ones_like(tokens))[0])
  with torch.no_grad():
    want = transformers.AutoModelForCausalLM.from_pretrained(
        str(run / "hf"), dtype=torch.float32, attn_implementation="eager")(
            input_ids=torch.tensor(tokens)).logits.numpy()
  assert np.abs(got - want).max() <= 2e-4
  exported_cfg, _ = hf_io.load_hf_checkpoint(run / "hf", param_dtype="float32")
  assert exported_cfg.vocab_size == cfg.vocab_size == 262144
