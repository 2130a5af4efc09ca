"""Chat data through records → store → pipeline: schema, what is trained,
per-record failures under on_error."""

import json

import numpy as np
import pytest

from sftdiff.data import chat
from sftdiff.data import records
from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.data import train_data
from sftdiff.testing.tokenizer import write_test_tokenizer

CALL = {"type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_schema_keeps_tool_and_reasoning_fields():
  out = records.validate_messages([
      {"role": "user", "content": [{"type": "text", "text": "a"},
                                   {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": None, "tool_calls": [CALL]},
      {"role": "tool", "content": "1", "tool_call_id": "c1", "name": "f"},
      {"role": "assistant", "content": "done", "reasoning_content": "why"},
  ], "x.jsonl:3")
  assert out == [
      {"role": "user", "content": "ab"},
      {"role": "assistant", "content": "", "tool_calls": [CALL]},
      {"role": "tool", "content": "1", "tool_call_id": "c1", "name": "f"},
      {"role": "assistant", "content": "done", "reasoning_content": "why"},
  ]


@pytest.mark.parametrize("message, error", [
    ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
     "x.jsonl:3: messages[0].content[0] is a 'image_url' part"),
    ({"role": "assistant", "content": None}, "x.jsonl:3: messages[0] is missing field 'content'"),
    ({"role": "assistant", "content": "a", "tool_calls": "f"}, "tool_calls must be a list"),
])
def test_schema_errors_name_file_and_line(message, error):
  with pytest.raises(records.DataValidationError, match=error.replace("[", r"\[")
                     .replace("]", r"\]").replace("(", r"\(")):
    records.validate_messages([message], "x.jsonl:3")


# Raises for a conversation mentioning BOOM: a record the template rejects.
TEMPLATE = (
    "{% for m in messages %}{% if 'BOOM' in m.content %}"
    "{{ raise_exception('cannot render BOOM') }}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _conversation(i, text):
  return {"id": f"p{i}", "messages": [
      {"role": "user", "content": f"Hi {i}"},
      {"role": "assistant", "content": "Earlier answer."},
      {"role": "user", "content": f"Question {i}?"},
      {"role": "assistant", "content": text}]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("chat_pipeline")
  rows = [_conversation(i, f"Answer {i}.") for i in range(6)]
  rows[2] = _conversation(2, "BOOM")
  with open(d / "src.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  (d / "t.jinja").write_text(TEMPLATE)
  tok = tokenizer_lib.ChatTokenizer.from_dir(write_test_tokenizer(str(d / "tok")),
                                             chat_template=str(d / "t.jinja"))
  return d, tok


def _make(setup, tmp_path, on_error, **kw):
  d, tok = setup
  cfg = train_data.DataConfig(prompt_set="source:s", sources={"s": "jsonl:src.jsonl"},
                              data_dir=str(d), store_dir=str(tmp_path / "store"),
                              on_error=on_error)
  return train_data.make_train_data(tok, arm="Source('s')", seq_len=64, batch_size=2,
                                    seed=0, data=cfg, eval_fraction=0.0, num_epochs=1,
                                    **kw)


def test_skip_counts_the_failed_record_and_trains_the_rest(setup, tmp_path):
  data = _make(setup, tmp_path, "skip")
  tok = data.manifest["tokenization"]
  assert tok["failed"] == 1 and tok["failed_by_reason"] == {"template": 1}
  assert "prompt_id='p2'" in tok["failed_examples"][0]
  assert "cannot render BOOM" in tok["failed_examples"][0]
  assert tok["chat_template"]["origin"].endswith("t.jinja")
  batches = list(data.train)
  assert sum(int(b.loss_mask.sum()) for b in batches) == data.manifest[
      "trainable_tokens"]["s"]
  assert data.train.stats.failed == 1
  assert data.train.stats.examples == 5


def test_fail_names_the_record(setup, tmp_path):
  with pytest.raises(tokenizer_lib.ChatTemplateError, match="prompt_id='p2'"):
    _make(setup, tmp_path, "fail")


def test_only_the_completion_is_trained_unless_asked(setup, tmp_path):
  _, tok = setup
  data = _make(setup, tmp_path, "skip")
  record = data.train_records[0]
  assert record["num_prompt_turns"] == 3
  ex = chat.tokenize_with_assistant_mask(tok, record["messages"], trained_turns=[3])
  trained = tok.decode(ex.ids[ex.mask], skip_special_tokens=False)
  assert trained == record["messages"][3]["content"] + "<|im_end|>"
  every = _make(setup, tmp_path, "skip", train_all_assistant=True)
  assert every.manifest["tokenization"]["trained"] == "every assistant turn"
  per_record_extra = len(tok.encode("Earlier answer.<|im_end|>"))
  assert (every.manifest["trainable_tokens"]["s"]
          == data.manifest["trainable_tokens"]["s"] + 5 * per_record_extra)
  total = sum(int(b.loss_mask.sum()) for b in every.train)
  assert total == every.manifest["trainable_tokens"]["s"]


@pytest.mark.parametrize("policy", ["fail", "keep", "drop"])
def test_source_prompt_turns_are_checked_against_the_prompt_set(setup, tmp_path, policy):
  from sftdiff.data import store_build
  d, _ = setup
  with open(d / "src.jsonl") as f:
    rows = [json.loads(line) for line in f]
  prompts = [{"id": r["id"], "messages": r["messages"][:3]} for r in rows]
  prompts[4]["messages"][2] = {"role": "user", "content": "An edited question?"}
  with open(tmp_path / "prompts.jsonl", "w") as f:
    f.writelines(json.dumps(p) + "\n" for p in prompts)
  shutil_src = tmp_path / "src.jsonl"
  shutil_src.write_text((d / "src.jsonl").read_text())
  cfg = train_data.DataConfig(prompt_set="jsonl:prompts.jsonl",
                              sources={"s": "jsonl:src.jsonl"}, data_dir=str(tmp_path),
                              store_dir=str(tmp_path / "store"), prompt_mismatch=policy)
  if policy == "fail":
    with pytest.raises(store_build.CoverageError, match=r"prompt_mismatch='fail'.*\['p4'\]"):
      cfg.build()
    return
  store = cfg.build()
  mismatch = store.meta["prompt_mismatch"]
  assert mismatch["policy"] == policy and mismatch["count"] == {"s": 1}
  assert mismatch["examples"] == {"s": ["p4"]}
  ids = set(store.columns(["prompt_id"])["prompt_id"].tolist())
  assert ("p4" in ids) == (policy == "keep") and len(ids) == 5 + (policy == "keep")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS {% for t in tools %}"
    "{{ t.function.name }} {% endfor %}<|im_end|>\n{% endif %}" + TEMPLATE)


def test_prompt_tools_reach_the_template_through_the_store(setup, tmp_path):
  d, _ = setup
  prompts = [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Weather {i}?"}]}
             for i in range(4)]
  prompts[1]["tools"] = TOOLS
  completions = [{"id": p["id"], "completion": [{"role": "assistant", "content": "Sunny."}]}
                 for p in prompts]
  for name, rows in (("prompts", prompts), ("src", completions)):
    with open(tmp_path / f"{name}.jsonl", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  (tmp_path / "t.jinja").write_text(TOOL_TEMPLATE)
  tok = tokenizer_lib.ChatTokenizer.from_dir(write_test_tokenizer(str(tmp_path / "tok")),
                                             chat_template=str(tmp_path / "t.jinja"))
  cfg = train_data.DataConfig(prompt_set="jsonl:prompts.jsonl",
                              sources={"s": "jsonl:src.jsonl"}, data_dir=str(tmp_path),
                              store_dir=str(tmp_path / "store"))
  data = train_data.make_train_data(tok, arm="Source('s')", seq_len=64, batch_size=2,
                                    seed=0, data=cfg, eval_fraction=0.0, num_epochs=1)
  by_id = {r["prompt_id"]: r for r in data.train_records}
  assert by_id["p1"]["tools"] == TOOLS
  assert all("tools" not in by_id[p] for p in ("p0", "p2", "p3"))
  rendered = tok.render(by_id["p1"]["messages"], tools=by_id["p1"]["tools"])
  assert "TOOLS get_weather" in rendered
  trained_text = "".join(tok.decode(b.input_ids.reshape(-1), skip_special_tokens=False)
                         for b in data.train)
  assert trained_text.count("TOOLS get_weather") == 1  # p1's example, and only it
