"""`python -m sftdiff.train` on multi-turn reasoning/tool data with real chat
templates and real vocabularies: a tiny random model of the real vocabulary
size, the template chosen in gin for a template-less (base) tokenizer."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from sftdiff.data import chat
from sftdiff.data import tokenizer as tokenizer_lib

import real_tokenizers

REPO = pathlib.Path(__file__).resolve().parents[2]
THINK = "<think>\nThe user wants a number.\n</think>\n\n"
CALL = {"type": "function", "function": {"name": "lookup", "arguments": {"q": "x"}}}


def _rows(with_tools):
  rows = []
  for i in range(6):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Pick {i}."},
                {"role": "assistant", "content": f"{THINK}\n{i}."},
                {"role": "user", "content": f"And {i + 1}?"}]
    if with_tools and i % 2:
      messages += [{"role": "assistant", "content": None, "tool_calls": [CALL]},
                   {"role": "tool", "content": str(i + 1)}]
    messages += [{"role": "assistant", "content": f"{THINK}{i + 1}."}]
    rows.append({"id": f"p{i}", "messages": messages})
  return rows


@pytest.mark.slow
@pytest.mark.parametrize("template, vocab, with_tools", [
    ("qwen3", "qwen3", True), ("olmo3_think", "dolma2", False), ("tulu3", "dolma2", False)])
def test_train_binary_with_real_template_and_vocabulary(tmp_path, template, vocab, with_tools):
  from sftdiff.testing.models import write_random_hf_checkpoint
  init = tmp_path / "init"
  shutil.copytree(real_tokenizers.tokenizer_dir(vocab), init)
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(init), chat_template=template)
  write_random_hf_checkpoint(init, "llama", vocab_size=tok.vocab_size)
  data = tmp_path / "data"
  data.mkdir()
  rows = _rows(with_tools)
  with open(data / "src.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  (tmp_path / "data.gin").write_text(
      "import sftdiff.data.train_data\n"
      f"train_data.DataConfig.data_dir = '{data}'\n"
      "train_data.DataConfig.prompt_set = 'source:s'\n"
      "train_data.DataConfig.sources = {'s': 'jsonl:src.jsonl'}\n"
      f"chat_tokenizer.chat_template = '{template}'\n")
  run = tmp_path / "run"
  args = [f"--gin_file={REPO / 'gin' / 'runs' / 'sft.gin'}", f"--gin_file={tmp_path / 'data.gin'}",
          "--gin.partitioning.PartitionConfig.num_devices=1",
          f"--gin.MODEL_DIR='{run}'", f"--gin.INITIAL_CHECKPOINT='{init}'",
          "--gin.ARM='s'", "--gin.TRAIN_STEPS=2", "--gin.SEED=0", "--gin.BATCH_SIZE=2",
          "--gin.SEQ_LEN=256", "--gin.CheckpointConfig.save_every=2",
          "--gin.LoggingConfig.log_every=1", "--gin.LoggingConfig.eval_every=0",
          "--gin.LoggingConfig.report_mfu=False", "--gin.make_train_data.eval_fraction=0.0"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
  proc = subprocess.run([sys.executable, "-m", "sftdiff.train", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  manifest = json.loads((run / "manifest.json").read_text())
  tokenization = manifest["tokenization"]
  assert tokenization["failed"] == 0 and tokenization["truncated"] == 0
  assert tokenization["chat_template"]["origin"] == f"shipped:{template}"
  # The manifest counts exactly the completion's masked tokens (the mask
  # test_chat_real checks against transformers), not the prompt's turns.
  expected = 0
  for r in rows:
    messages = [dict(m, content=m["content"] or "") for m in r["messages"]]
    ex = chat.tokenize_with_assistant_mask(tok, messages, trained_turns=[
        i for i in range(4, len(messages))])
    trained = tok.decode(ex.ids[ex.mask], skip_special_tokens=False)
    assert "wants a number" in trained and "Pick" not in trained
    if with_tools and "tool_calls" in r["messages"][4]:
      assert "lookup" in trained
    expected += ex.num_trainable
  assert manifest["trainable_tokens"]["s"] == expected
  # The chosen template is written into the run's tokenizer files.
  cfg = json.loads((run / "tokenizer" / "tokenizer_config.json").read_text())
  assert cfg["chat_template"] == tok.chat_template
  metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert any("loss" in json.dumps(m) for m in metrics)
