"""Masks with the real chat templates and real vocabularies, token by token
against transformers' `return_assistant_tokens_mask` on generation-annotated
copies of the same templates (plus the end-of-turn token after each span).

The annotated copies below are the shipped templates with `{% generation %}`
around what the model emits in an assistant turn (reasoning, content, tool
calls); each edit must match exactly once and the copy must render the same
text as the original.
"""

import pytest
import transformers

from sftdiff.data import chat
from sftdiff.data import tokenizer as tokenizer_lib

import real_tokenizers

G, EG = "{% generation %}", "{% endgeneration %}"

ANNOTATIONS = {
    "qwen3": [
        ("{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}",
         "{{- '<|im_start|>' + message.role + '\\n' }}" + G + "{{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}" + EG, 1),
        ("{{- '<|im_start|>' + message.role + '\\n' + content }}",
         "{{- '<|im_start|>' + message.role + '\\n' }}" + G + "{{- content }}" + EG, 2),
        ("{%- if message.tool_calls %}\n            {%- for tool_call in message.tool_calls %}",
         "{%- if message.tool_calls %}" + G + "\n            {%- for tool_call in message.tool_calls %}", 1),
        ("{{- '}\\n</tool_call>' }}\n            {%- endfor %}",
         "{{- '}\\n</tool_call>' }}\n            {%- endfor %}" + EG, 1),
    ],
    "llama3": [
        ("{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}",
         "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}{%- if message['role'] == 'assistant' %}" + G
         + "{{- message['content'] | trim }}" + EG + "{%- else %}{{- message['content'] | trim }}{%- endif %}{{- '<|eot_id|>' }}", 1),
        ("{{- '{\"name\": \"' + tool_call.name + '\", ' }}", G + "{{- '{\"name\": \"' + tool_call.name + '\", ' }}", 1),
        ("{{- \"}\" }}\n        {%- endif %}", "{{- \"}\" }}" + EG + "\n        {%- endif %}", 1),
    ],
    "gemma3": [
        ("{%- if message['content'] is string -%}\n        {{ message['content'] | trim }}",
         "{%- if message['content'] is string -%}\n        {% if role == 'model' %}" + G
         + "{{ message['content'] | trim }}" + EG + "{% else %}{{ message['content'] | trim }}{% endif %}", 1),
    ],
    "tulu3": [
        ("{{ '<|assistant|>\n'  + message['content'] + eos_token + '\n' }}",
         "{{ '<|assistant|>\n' }}" + G + "{{ message['content'] }}" + EG + "{{ eos_token + '\n' }}", 1),
        ("{{ '<|assistant|>\n'  + message['content'] + eos_token }}",
         "{{ '<|assistant|>\n' }}" + G + "{{ message['content'] }}" + EG + "{{ eos_token }}", 1),
    ],
    "olmo3_instruct": [
        ("{% elif message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}",
         "{% elif message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}" + G, 1),
        ("{% if not loop.last %}{{ '<|im_end|>' + '\n' }}", EG + "{% if not loop.last %}{{ '<|im_end|>' + '\n' }}", 1),
    ],
    "chatml": [
        ("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}",
         "{{'<|im_start|>' + message['role'] + '\\n'}}{% if message['role'] == 'assistant' %}" + G
         + "{{ message['content'] }}" + EG + "{% else %}{{ message['content'] }}{% endif %}{{'<|im_end|>' + '\\n'}}", 1),
    ],
}
ANNOTATIONS["olmo3_think"] = ANNOTATIONS["olmo3_instruct"]

# (template, vocabulary): OLMo 2 Instruct is Tulu 3's template on dolma2.
PAIRS = [("qwen3", "qwen3"), ("llama3", "llama3"), ("tulu3", "dolma2"),
         ("olmo3_instruct", "dolma2"), ("olmo3_think", "dolma2"), ("chatml", "qwen3"),
         pytest.param("gemma3", "gemma3", marks=pytest.mark.slow)]

THINK = "<think>\nFirst, 2 + 2.\nThat is 4.\n</think>\n\n"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}

CASES = {
    "single": [{"role": "user", "content": "What is 2 + 2?"},
               {"role": "assistant", "content": "4."}],
    "multi": [{"role": "system", "content": "You are terse."},
              {"role": "user", "content": "Hi!"},
              {"role": "assistant", "content": "Hello. How can I help?"},
              {"role": "user", "content": "Capital of France?"},
              {"role": "assistant", "content": "Paris.\nIt is on the Seine."}],
    "reasoning_last": [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "Hello."},
                       {"role": "user", "content": "What is 2 + 2?"},
                       {"role": "assistant", "content": THINK + "4."}],
    "reasoning_every": [{"role": "user", "content": "What is 2 + 2?"},
                        {"role": "assistant", "content": THINK + "4."},
                        {"role": "user", "content": "And 3 + 3?"},
                        {"role": "assistant", "content": "<think>\n3 + 3 = 6.\n</think>\n\n6."}],
    "whitespace": [{"role": "user", "content": "  Say hi.\n"},
                   {"role": "assistant", "content": "\n\nHi!  \n"},
                   {"role": "user", "content": "Again"},
                   {"role": "assistant", "content": "\nHi again.\n\n"}],
    "ends_with_user": [{"role": "user", "content": "One?"},
                       {"role": "assistant", "content": "1"},
                       {"role": "user", "content": "Two?"}],
}
# reasoning_content (not inline) for templates that read it.
REASONING_FIELD = [{"role": "user", "content": "What is 2 + 2?"},
                   {"role": "assistant", "reasoning_content": "2 + 2 = 4.", "content": "4."},
                   {"role": "user", "content": "And 3 + 3?"},
                   {"role": "assistant", "reasoning_content": "3 + 3 = 6.", "content": "6."}]
TOOL_CONVERSATIONS = {
    "qwen3": [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [CALL]},
              {"role": "tool", "content": "{\"temp\": 18}"},
              {"role": "assistant", "content": "It is 18 degrees in Paris."}],
    "llama3": [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "tool_calls": [CALL], "content": ""},
               {"role": "tool", "content": "{\"temp\": 18}"},
               {"role": "assistant", "content": "It is 18 degrees in Paris."}],
}


def annotated(template_name: str) -> str:
  source, _ = tokenizer_lib.resolve_chat_template(template_name)
  for old, new, count in ANNOTATIONS[template_name]:
    assert source.count(old) == count, (template_name, old)
    source = source.replace(old, new)
  return source


@pytest.fixture(scope="session")
def vocab_dirs():
  return {}


def _tokenizers(vocab_dirs, template, vocab, **kwargs):
  key = (template, vocab, tuple(sorted(kwargs.items())))
  if key not in vocab_dirs:
    d = real_tokenizers.tokenizer_dir(vocab)
    ours = tokenizer_lib.ChatTokenizer.from_dir(d, chat_template=template,
                                                template_kwargs=kwargs)
    hf = transformers.AutoTokenizer.from_pretrained(d)
    hf.chat_template = tokenizer_lib.resolve_chat_template(template)[0]
    vocab_dirs[key] = (ours, hf)
  return vocab_dirs[key]


def reference(hf, ours, template, messages, tools=None, **kwargs):
  """(ids, mask) from transformers on the annotated copy, + end-of-turn."""
  out = hf.apply_chat_template(
      messages, tools=tools, chat_template=annotated(template), tokenize=True,
      return_dict=True, return_assistant_tokens_mask=True, **kwargs)
  ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
  expected = list(mask)
  for i in range(len(ids)):
    if mask[i] and (i + 1 == len(ids) or not mask[i + 1]):
      assert i + 1 < len(ids) and ids[i + 1] in ours.stop_ids, (
          "a generation span not followed by an end-of-turn token")
      expected[i + 1] = 1
  return ids, expected


def check(ours, hf, template, messages, tools=None, **kwargs):
  text = hf.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)
  assert ours.render(messages, tools=tools) == text
  assert hf.apply_chat_template(messages, tools=tools, tokenize=False,
                                chat_template=annotated(template), **kwargs) == text
  ref_ids, ref_mask = reference(hf, ours, template, messages, tools, **kwargs)
  ex = chat.tokenize_with_assistant_mask(ours, messages, tools=tools)
  assert ex.ids.tolist() == ref_ids
  got = ex.mask.astype(int).tolist()
  if got != ref_mask:
    diff = [(i, hf.convert_ids_to_tokens(ref_ids[i]), got[i], ref_mask[i])
            for i in range(len(got)) if got[i] != ref_mask[i]]
    pytest.fail(f"{template}: mask differs at (index, token, ours, reference) {diff[:8]}")
  return ex


@pytest.mark.parametrize("template, vocab", PAIRS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_mask_equals_annotated_transformers_mask(vocab_dirs, template, vocab, case):
  ours, hf = _tokenizers(vocab_dirs, template, vocab)
  messages = CASES[case]
  ex = check(ours, hf, template, messages)
  assert (ex.num_trainable > 0) == any(m["role"] == "assistant" for m in messages)


@pytest.mark.parametrize("template, vocab", [("qwen3", "qwen3"), ("llama3", "llama3")])
def test_tool_call_conversation(vocab_dirs, template, vocab):
  ours, hf = _tokenizers(vocab_dirs, template, vocab)
  ex = check(ours, hf, template, TOOL_CONVERSATIONS[template], tools=TOOLS)
  trained = ours.decode(ex.ids[ex.mask], skip_special_tokens=False)
  assert "get_weather" in trained and "Paris" in trained


def test_qwen3_reasoning_content_and_enable_thinking(vocab_dirs):
  ours, hf = _tokenizers(vocab_dirs, "qwen3", "qwen3")
  ex = check(ours, hf, "qwen3", REASONING_FIELD)
  trained = ours.decode(ex.ids[ex.mask], skip_special_tokens=False)
  # Qwen 3 drops the reasoning of turns before the last user turn.
  assert "3 + 3 = 6." in trained and "2 + 2 = 4." not in trained
  ours_nt, hf_nt = _tokenizers(vocab_dirs, "qwen3", "qwen3", enable_thinking=False)
  check(ours_nt, hf_nt, "qwen3", CASES["multi"], enable_thinking=False)


def test_olmo3_think_trains_the_think_opener(vocab_dirs):
  ours, _ = _tokenizers(vocab_dirs, "olmo3_think", "dolma2")
  ex = chat.tokenize_with_assistant_mask(ours, CASES["reasoning_every"])
  trained = ours.decode(ex.ids[ex.mask], skip_special_tokens=False)
  assert trained.startswith("<think>") and trained.count("<think>") == 2


@pytest.mark.parametrize("template, vocab", [("qwen3", "qwen3"), ("olmo3_instruct", "dolma2"),
                                             ("tulu3", "dolma2")])
def test_only_the_completion_is_trained_by_default(vocab_dirs, template, vocab):
  ours, hf = _tokenizers(vocab_dirs, template, vocab)
  messages = CASES["multi"]
  _, ref = reference(hf, ours, template, messages)
  last_run_start = max(i for i in range(len(ref)) if ref[i] and (i == 0 or not ref[i - 1]))
  only_last = [v if i >= last_run_start else 0 for i, v in enumerate(ref)]
  ex = chat.tokenize_with_assistant_mask(ours, messages, trained_turns=[4])
  assert ex.mask.astype(int).tolist() == only_last
