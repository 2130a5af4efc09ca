"""Hugging Face tokenizer + chat template, loaded without transformers/torch.

`ChatTokenizer.from_dir(path)` reads `tokenizer.json` with the `tokenizers`
library and renders conversations with the jinja `chat_template` from
`tokenizer_config.json` (or `chat_template.jinja`), in a sandboxed environment
with the same globals and filters that transformers gives templates.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
from typing import Any, Sequence

import jinja2
from jinja2 import ext as jinja_ext
from jinja2 import nodes
from jinja2 import sandbox
import tokenizers

# End-of-turn markers of the chat formats our model families use. The stop ids
# are eos plus whichever of these the vocabulary has (plus generation_config's).
END_OF_TURN_TOKENS = (
    "<|im_end|>",  # ChatML: Qwen, OLMo, toyworld
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3 tool calls
    "<end_of_turn>",  # Gemma
    "<|end|>",
)


class TokenizerFormatError(ValueError):
  """A tokenizer directory is missing a file or has a malformed field."""


class ChatTemplateError(ValueError):
  """The chat template failed to render a conversation."""


class _GenerationTag(jinja_ext.Extension):
  """`{% generation %}...{% endgeneration %}` renders its body unchanged.

  transformers uses the tag to locate assistant tokens; for rendering it is a
  no-op (the mask is computed by `sftdiff.data.chat`).
  """

  tags = {"generation"}

  def parse(self, parser):
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
    call = self.call_method("_render_body")
    return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

  def _render_body(self, caller):
    return caller()


def _raise_exception(message):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  # Same defaults as transformers' template filter (non-ASCII kept as is).
  return json.dumps(
      x,
      ensure_ascii=ensure_ascii,
      indent=indent,
      separators=separators,
      sort_keys=sort_keys,
  )


def _strftime_now(fmt):
  return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=32)
def _compile_template(source: str) -> jinja2.Template:
  env = sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True,
      lstrip_blocks=True,
      extensions=[_GenerationTag, jinja_ext.loopcontrols],
  )
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = _strftime_now
  return env.from_string(source)


def _token_content(value) -> str | None:
  """Special tokens are strings or serialized AddedTokens ({'content': ...})."""
  if value is None or isinstance(value, str):
    return value
  if isinstance(value, dict) and isinstance(value.get("content"), str):
    return value["content"]
  raise TokenizerFormatError(f"unexpected special token value {value!r}")


def _select_template(chat_template, tools, path: str) -> str:
  """`chat_template` is a string or a list of {'name', 'template'} entries."""
  if isinstance(chat_template, str):
    return chat_template
  if isinstance(chat_template, list):
    by_name = {}
    for entry in chat_template:
      if not (isinstance(entry, dict) and "name" in entry and "template" in entry):
        raise TokenizerFormatError(
            f"{path}: chat_template list entries need 'name' and 'template'; "
            f"got {entry!r}"
        )
      by_name[entry["name"]] = entry["template"]
    if tools and "tool_use" in by_name:
      return by_name["tool_use"]
    if "default" in by_name:
      return by_name["default"]
    raise TokenizerFormatError(
        f"{path}: chat_template list has no 'default' template "
        f"(names: {sorted(by_name)})"
    )
  raise TokenizerFormatError(
      f"{path}: chat_template must be a string or a list, got "
      f"{type(chat_template).__name__}"
  )


@dataclasses.dataclass(frozen=True)
class ChatTokenizer:
  """A `tokenizers.Tokenizer` plus the chat template and special tokens."""

  path: str
  tokenizer: tokenizers.Tokenizer
  chat_template: Any  # str or list of named templates
  special_tokens: dict  # bos_token/eos_token/pad_token/unk_token -> str|None
  eos_id: int
  pad_id: int
  stop_ids: tuple[int, ...]

  @classmethod
  def from_dir(cls, path: str) -> "ChatTokenizer":
    path = os.fspath(path)
    tok_file = os.path.join(path, "tokenizer.json")
    cfg_file = os.path.join(path, "tokenizer_config.json")
    if not os.path.isfile(tok_file):
      raise TokenizerFormatError(f"{path}: missing tokenizer.json")
    if not os.path.isfile(cfg_file):
      raise TokenizerFormatError(f"{path}: missing tokenizer_config.json")
    try:
      tokenizer = tokenizers.Tokenizer.from_file(tok_file)
    except Exception as e:  # the Rust error does not name the file
      raise TokenizerFormatError(f"{tok_file}: cannot load: {e}") from e
    try:
      with open(cfg_file) as f:
        config = json.load(f)
    except json.JSONDecodeError as e:
      raise TokenizerFormatError(f"{cfg_file}: invalid JSON: {e}") from e

    chat_template = config.get("chat_template")
    jinja_file = os.path.join(path, "chat_template.jinja")
    if chat_template is None and os.path.isfile(jinja_file):
      with open(jinja_file) as f:
        chat_template = f.read()
    if not chat_template:
      raise TokenizerFormatError(
          f"{path}: no chat_template in tokenizer_config.json and no "
          "chat_template.jinja"
      )

    special = {
        k: _token_content(config.get(k))
        for k in ("bos_token", "eos_token", "pad_token", "unk_token")
    }
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    eos = special["eos_token"]
    if eos is None or eos not in vocab:
      raise TokenizerFormatError(
          f"{cfg_file}: eos_token {eos!r} is missing or not in the vocabulary"
      )
    eos_id = vocab[eos]
    pad = special["pad_token"]
    if pad is not None and pad not in vocab:
      raise TokenizerFormatError(
          f"{cfg_file}: pad_token {pad!r} is not in the vocabulary"
      )
    pad_id = vocab[pad] if pad is not None else eos_id

    stop = [eos_id] + [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
    gen_file = os.path.join(path, "generation_config.json")
    if os.path.isfile(gen_file):
      with open(gen_file) as f:
        gen_eos = json.load(f).get("eos_token_id")
      if isinstance(gen_eos, int):
        gen_eos = [gen_eos]
      stop.extend(gen_eos or [])
    stop_ids = tuple(dict.fromkeys(int(i) for i in stop))
    return cls(
        path=path,
        tokenizer=tokenizer,
        chat_template=chat_template,
        special_tokens=special,
        eos_id=eos_id,
        pad_id=pad_id,
        stop_ids=stop_ids,
    )

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  @functools.cached_property
  def added_token_ids(self) -> frozenset[int]:
    """Ids of added tokens (specials like <|im_start|>): they split text."""
    return frozenset(self.tokenizer.get_added_tokens_decoder())

  def token_to_id(self, token: str) -> int | None:
    return self.tokenizer.token_to_id(token)

  def render(
      self,
      messages: Sequence[dict],
      add_generation_prompt: bool = False,
      tools: Sequence[dict] | None = None,
      **template_kwargs,
  ) -> str:
    """Renders `messages` with the tokenizer's own chat template."""
    source = _select_template(self.chat_template, tools, self.path)
    try:
      template = _compile_template(source)
    except jinja2.TemplateSyntaxError as e:
      raise ChatTemplateError(
          f"{self.path}: chat_template has a syntax error at line {e.lineno}: "
          f"{e.message}"
      ) from e
    try:
      return template.render(
          messages=list(messages),
          tools=tools,
          add_generation_prompt=add_generation_prompt,
          **self.special_tokens,
          **template_kwargs,
      )
    except Exception as e:
      bad = self._first_failing_message(
          template, messages, tools, add_generation_prompt, template_kwargs
      )
      raise ChatTemplateError(
          f"{self.path}: chat_template failed at messages[{bad}] (role "
          f"{_role_of(messages[: bad + 1])!r}): {type(e).__name__}: {e}"
      ) from e

  def _first_failing_message(
      self, template, messages, tools, add_generation_prompt, kwargs
  ) -> int:
    """Index of the message whose addition first makes rendering fail."""
    for k in range(1, len(messages)):
      try:
        template.render(
            messages=list(messages[:k]),
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens,
            **kwargs,
        )
      except Exception:  # pylint: disable=broad-except
        return k - 1
    return len(messages) - 1

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    """Token ids of `text`; special tokens in the text are recognised."""
    return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [e.ids for e in encs]

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    return self.tokenizer.decode(
        [int(i) for i in ids], skip_special_tokens=skip_special_tokens
    )

  def encode_prompt(
      self, messages: Sequence[dict], system_prompt: str | None = None
  ) -> list[int]:
    """Prompt ids for sampling: `messages` (+ optional system turn) rendered
    with the generation prompt."""
    messages = list(messages)
    if system_prompt is not None:
      if messages and messages[0].get("role") == "system":
        raise ValueError(
            "encode_prompt: system_prompt given but messages[0] is already a "
            "system turn"
        )
      messages = [{"role": "system", "content": system_prompt}] + messages
    return self.encode(self.render(messages, add_generation_prompt=True))


def _role_of(messages) -> Any:
  if not messages:
    return None
  last = messages[-1]
  return last.get("role") if isinstance(last, dict) else type(last).__name__
