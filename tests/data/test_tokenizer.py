"""ChatTokenizer vs transformers on the test tokenizer."""

import json
import os
import shutil

import pytest
import transformers

from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.testing import tokenizer as test_tokenizer

CONVERSATIONS = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What year is it?"},
        {"role": "assistant", "content": "It is 2026."},
        {"role": "user", "content": "And the month?"},
        {"role": "assistant", "content": "November. 🙂 Ünïcode"},
    ],
    [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Call the search tool."},
        {"role": "tool", "content": '{"weather": "sunny", "degrees": 21}'},
        {"role": "assistant", "content": "It is sunny, 21 degrees."},
    ],
    [{"role": "user", "content": "  leading spaces\n\nand newlines\t"}],
]


def test_write_is_deterministic(tmp_path):
  a = test_tokenizer.write_test_tokenizer(str(tmp_path / "a"))
  b = test_tokenizer.write_test_tokenizer(str(tmp_path / "b"))
  for name in ("tokenizer.json", "tokenizer_config.json"):
    with open(os.path.join(a, name)) as fa, open(os.path.join(b, name)) as fb:
      assert fa.read() == fb.read(), name


def test_special_ids(tok):
  assert tok.vocab_size == 512
  assert tok.eos_id == tok.token_to_id("<|endoftext|>")
  assert tok.pad_id == tok.eos_id
  assert set(tok.stop_ids) == {tok.eos_id, tok.token_to_id("<|im_end|>")}


@pytest.mark.parametrize("conv", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_render_matches_transformers(tok, hf_tok, conv, add_generation_prompt):
  ours = tok.render(conv, add_generation_prompt=add_generation_prompt)
  theirs = hf_tok.apply_chat_template(
      conv, tokenize=False, add_generation_prompt=add_generation_prompt
  )
  assert ours == theirs
  assert ours.endswith("<|im_start|>assistant\n") == add_generation_prompt


@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_encode_matches_transformers(tok, hf_tok, conv):
  text = tok.render(conv)
  ids = tok.encode(text)
  assert ids == hf_tok.encode(text, add_special_tokens=False)
  assert ids.count(tok.token_to_id("<|im_start|>")) == len(conv)
  assert tok.decode(ids, skip_special_tokens=False) == text
  assert "<|im_start|>" not in tok.decode(ids)


def test_encode_prompt(tok, hf_tok):
  conv = CONVERSATIONS[0][:1]
  ids = tok.encode_prompt(conv, system_prompt="Be brief.")
  ref = hf_tok.apply_chat_template(
      [{"role": "system", "content": "Be brief."}] + conv,
      tokenize=True,
      add_generation_prompt=True,
      return_dict=True,
  )["input_ids"]
  assert ids == list(ref)
  with pytest.raises(ValueError, match="already a system turn"):
    tok.encode_prompt(CONVERSATIONS[1], system_prompt="x")


def test_named_template_list(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "named")
  cfg_path = d / "tokenizer_config.json"
  cfg = json.loads(cfg_path.read_text())
  cfg["chat_template"] = [
      {"name": "default", "template": cfg["chat_template"]},
      {"name": "tool_use", "template": "TOOLS{{ tools | tojson }}"},
  ]
  cfg_path.write_text(json.dumps(cfg))
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d))
  assert tok.render(CONVERSATIONS[0]).startswith("<|im_start|>user")
  assert tok.render(CONVERSATIONS[0], tools=[{"name": "é"}]) == (
      'TOOLS[{"name": "é"}]'
  )


def test_chat_template_jinja_file(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "jinja")
  cfg = json.loads((d / "tokenizer_config.json").read_text())
  (d / "chat_template.jinja").write_text(cfg.pop("chat_template"))
  (d / "tokenizer_config.json").write_text(json.dumps(cfg))
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d))
  assert tok.render(CONVERSATIONS[0]).endswith("Paris.<|im_end|>\n")


@pytest.mark.parametrize(
    "remove, edit, message",
    [
        ("tokenizer.json", None, "missing tokenizer.json"),
        ("tokenizer_config.json", None, "missing tokenizer_config.json"),
        (None, {"chat_template": None}, "chat_tokenizer.chat_template"),
        (None, {"eos_token": "<nope>"}, "eos_token '<nope>'"),
        (None, {"chat_template": 3}, "must be a string or a list"),
    ],
)
def test_load_errors_name_the_problem(tok_dir, tmp_path, remove, edit, message):
  d = shutil.copytree(tok_dir, tmp_path / "bad")
  if remove:
    os.remove(d / remove)
  if edit:
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.update(edit)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
  with pytest.raises(tokenizer_lib.TokenizerFormatError) as e:
    tokenizer_lib.ChatTokenizer.from_dir(str(d)).render(CONVERSATIONS[0])
  assert message in str(e.value)
  assert str(d) in str(e.value)


def test_render_error_names_message_index(tok):
  conv = [
      {"role": "user", "content": "hi"},
      {"role": "assistant", "content": "hello"},
      {"role": "narrator", "content": "meanwhile"},
  ]
  with pytest.raises(tokenizer_lib.ChatTemplateError) as e:
    tok.render(conv)
  assert "messages[2]" in str(e.value)
  assert "Unknown role: narrator" in str(e.value)


def test_template_syntax_error(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "syntax")
  cfg = json.loads((d / "tokenizer_config.json").read_text())
  cfg["chat_template"] = "{% for m in messages %}{{ m.content }}"
  (d / "tokenizer_config.json").write_text(json.dumps(cfg))
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d))
  with pytest.raises(tokenizer_lib.ChatTemplateError, match="syntax error"):
    tok.render(CONVERSATIONS[0])


def test_chat_template_jinja_takes_precedence_as_in_transformers(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "both")
  (d / "chat_template.jinja").write_text(
      "{% for m in messages %}JINJA:{{ m.content }}{% endfor %}")
  ours = tokenizer_lib.ChatTokenizer.from_dir(str(d)).render(CONVERSATIONS[0])
  theirs = transformers.AutoTokenizer.from_pretrained(str(d)).apply_chat_template(
      CONVERSATIONS[0], tokenize=False)
  assert ours == theirs
  assert ours.startswith("JINJA:")


def test_base_tokenizer_gets_a_shipped_or_file_template(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "base")
  cfg = json.loads((d / "tokenizer_config.json").read_text())
  cfg.pop("chat_template")
  (d / "tokenizer_config.json").write_text(json.dumps(cfg))
  with pytest.raises(tokenizer_lib.TokenizerFormatError, match="qwen3"):
    tokenizer_lib.ChatTokenizer.from_dir(str(d))
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d), chat_template="chatml")
  assert tok.template_record()["origin"] == "shipped:chatml"
  assert tok.render(CONVERSATIONS[0]).startswith("<|im_start|>user\n")
  f = tmp_path / "mine.jinja"
  f.write_text("{% for m in messages %}[{{ m.content }}]{% endfor %}")
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d), chat_template=str(f))
  assert tok.render(CONVERSATIONS[0]).startswith("[")
  with pytest.raises(tokenizer_lib.TokenizerFormatError, match="neither a shipped"):
    tokenizer_lib.ChatTokenizer.from_dir(str(d), chat_template="nope")
  # Written into the tokenizer files (the exported checkpoint's), it loads back.
  tok.write_chat_template(str(d))
  again = tokenizer_lib.ChatTokenizer.from_dir(str(d))
  assert again.render(CONVERSATIONS[0]) == tok.render(CONVERSATIONS[0])


def test_strftime_now_renders_the_pinned_date_not_the_clock(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "date")
  (d / "chat_template.jinja").write_text("{{ strftime_now('%d %b %Y') }}|{{ flag }}")
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d), template_kwargs={"flag": 1})
  assert tok.render(CONVERSATIONS[0]) == "26 Jul 2024|1"
  tok = tokenizer_lib.ChatTokenizer.from_dir(str(d), date="2026-03-01")
  assert tok.render(CONVERSATIONS[0]).startswith("01 Mar 2026")
  assert tok.template_record()["date"] == "2026-03-01"
