"""Assistant-only loss masks vs transformers' return_assistant_tokens_mask."""

import json
import shutil

import numpy as np
import pytest
import transformers

from sftdiff.data import chat
from sftdiff.data import tokenizer as tokenizer_lib

MULTI_TURN = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What year is it?"},
        {"role": "assistant", "content": "It is 2026."},
        {"role": "user", "content": "And the month?"},
        {"role": "assistant", "content": "November.\nA Friday."},
    ],
    [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Call the search tool."},
        {"role": "tool", "content": '{"weather": "sunny"}'},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You are welcome 😀"},
    ],
]


@pytest.mark.parametrize("conv", MULTI_TURN)
def test_mask_matches_transformers_plus_end_of_turn(tok, hf_tok, conv):
  ref = hf_tok.apply_chat_template(
      conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
  )
  hf_ids = np.asarray(ref["input_ids"])
  hf_mask = np.asarray(ref["assistant_masks"], dtype=bool)
  # transformers marks exactly the {% generation %} block (the content);
  # open-instruct also trains the end-of-turn token that closes the turn, so
  # the expected mask is HF's plus the token right after each marked run,
  # which must be <|im_end|>. The "\n" after it stays masked.
  im_end = tok.token_to_id("<|im_end|>")
  expected = hf_mask.copy()
  run_ends = np.nonzero(hf_mask & ~np.append(hf_mask[1:], False))[0] + 1
  assert len(run_ends) == sum(m["role"] == "assistant" for m in conv)
  for e in run_ends:
    assert hf_ids[e] == im_end
    expected[e] = True

  ex = chat.tokenize_with_assistant_mask(tok, conv)
  assert ex.ids.dtype == np.int32 and ex.mask.dtype == bool
  np.testing.assert_array_equal(ex.ids, hf_ids)
  np.testing.assert_array_equal(ex.mask, expected)
  assert not ex.truncated
  # Trained text decodes to the assistant contents, each closed by <|im_end|>.
  trained = tok.decode(ex.ids[ex.mask], skip_special_tokens=False)
  assert trained == "".join(
      m["content"] + "<|im_end|>" for m in conv if m["role"] == "assistant"
  )


def test_empty_assistant_content_trains_end_of_turn(tok):
  conv = [{"role": "user", "content": "Say nothing."},
          {"role": "assistant", "content": ""}]
  ex = chat.tokenize_with_assistant_mask(tok, conv)
  assert ex.ids[ex.mask].tolist() == [tok.token_to_id("<|im_end|>")]


def test_no_assistant_turn_masks_everything(tok):
  ex = chat.tokenize_with_assistant_mask(tok, [{"role": "user", "content": "x"}])
  assert len(ex) > 0 and ex.num_trainable == 0


def test_truncate_and_drop(tok):
  conv = MULTI_TURN[1]
  full = chat.tokenize_with_assistant_mask(tok, conv)
  cut = chat.tokenize_with_assistant_mask(tok, conv, max_len=len(full) - 5)
  assert cut.truncated and len(cut) == len(full) - 5
  np.testing.assert_array_equal(cut.ids, full.ids[: len(full) - 5])
  np.testing.assert_array_equal(cut.mask, full.mask[: len(full) - 5])
  exact = chat.tokenize_with_assistant_mask(tok, conv, max_len=len(full))
  assert not exact.truncated and len(exact) == len(full)
  assert (
      chat.tokenize_with_assistant_mask(
          tok, conv, max_len=len(full) - 1, overlong="drop"
      )
      is None
  )
  with pytest.raises(ValueError, match="overlong='cut'"):
    chat.tokenize_with_assistant_mask(tok, conv, overlong="cut")


@pytest.mark.parametrize(
    "messages, message",
    [
        ("hello", "expected a list of messages, got str"),
        ([], "empty conversation"),
        ([{"role": "user", "content": "a"}, "b"], "messages[1]: expected a dict"),
        ([{"content": "a"}], "messages[0]: missing 'role'"),
        ([{"role": "bot", "content": "a"}], "messages[0]: unknown role 'bot'"),
        ([{"role": "user"}], "messages[0] (user): missing 'content'"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}],
            "messages[1] (assistant): 'content' must be a string",
        ),
    ],
)
def test_schema_errors(tok, messages, message):
  with pytest.raises(chat.MessageFormatError) as e:
    chat.tokenize_with_assistant_mask(tok, messages)
  assert message in str(e.value)


def test_template_that_rewrites_earlier_turns(tok_dir, tmp_path):
  d = shutil.copytree(tok_dir, tmp_path / "hiding")
  cfg = json.loads((d / "tokenizer_config.json").read_text())
  # Earlier assistant turns are rewritten once a later turn exists (like
  # templates that strip reasoning from history): they are masked as rendered;
  # a trained turn whose content the template drops is an error, not a guess.
  cfg["chat_template"] = (
      "{% for m in messages %}<|im_start|>{{ m.role }}\n"
      "{% if m.role == 'assistant' and not loop.last %}[old]"
      "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
  )
  (d / "tokenizer_config.json").write_text(json.dumps(cfg))
  hiding = tokenizer_lib.ChatTokenizer.from_dir(str(d))
  with pytest.raises(chat.MaskError, match="turn 2 .*not in the rendered turn"):
    chat.tokenize_with_assistant_mask(hiding, MULTI_TURN[1])
  last = len(MULTI_TURN[1]) - 1
  ex = chat.tokenize_with_assistant_mask(hiding, MULTI_TURN[1], trained_turns=[last])
  assert tok_decode(hiding, ex) == [MULTI_TURN[1][last]["content"] + "<|im_end|>"]


def tok_decode(tok, ex):
  """The trained spans, decoded (special tokens kept)."""
  spans, cur = [], []
  for i, m in zip(ex.ids, ex.mask):
    if m:
      cur.append(int(i))
    elif cur:
      spans.append(tok.decode(cur, skip_special_tokens=False))
      cur = []
  if cur:
    spans.append(tok.decode(cur, skip_special_tokens=False))
  return spans


PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'assistant' %}### Assistant:\n"
    "{% generation %}{{ m.content }}{% endgeneration %}{{ eos_token }}\n"
    "{% else %}### {{ m.role }}:\n{{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def test_plain_text_template_trains_content_and_eos(tok_dir, tmp_path):
  # No <|im_start|> markers: the first turn has no added token before it (the
  # prefix is re-encoded), later turns follow an eos (the fast path).
  d = shutil.copytree(tok_dir, tmp_path / "plain")
  cfg = json.loads((d / "tokenizer_config.json").read_text())
  cfg["chat_template"] = PLAIN_TEMPLATE
  (d / "tokenizer_config.json").write_text(json.dumps(cfg))
  plain = tokenizer_lib.ChatTokenizer.from_dir(str(d))
  hf = transformers.AutoTokenizer.from_pretrained(str(d))
  conv = MULTI_TURN[2]
  ref = hf.apply_chat_template(
      conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
  )
  hf_mask = np.asarray(ref["assistant_masks"], dtype=bool)
  expected = hf_mask.copy()
  run_ends = np.nonzero(hf_mask & ~np.append(hf_mask[1:], False))[0] + 1
  assert len(run_ends) == 3
  for e in run_ends:
    assert ref["input_ids"][e] == plain.eos_id
    expected[e] = True
  ex = chat.tokenize_with_assistant_mask(plain, conv)
  np.testing.assert_array_equal(ex.ids, ref["input_ids"])
  np.testing.assert_array_equal(ex.mask, expected)
