"""Hugging Face tokenizer + chat template, loaded without transformers/torch.

`ChatTokenizer.from_dir(path)` reads `tokenizer.json` with the `tokenizers`
library and renders conversations with the jinja chat template, in a sandboxed
environment with the same globals and filters that transformers gives
templates. The template is, as in transformers, `chat_template.jinja` when
present, else `tokenizer_config.json`'s `chat_template`; a `chat_template=`
argument (gin: `chat_tokenizer.chat_template`) overrides both with a shipped
template name (`sftdiff/data/templates/<name>.jinja`) or a `.jinja` file, which
is how a base checkpoint without a template gets one.

Rendering is deterministic: `strftime_now` (Llama 3.x templates) renders the
pinned `date` (default DEFAULT_DATE), never the wall clock; template keyword
arguments (`enable_thinking`, `date_string`, ...) are fixed per tokenizer
(`template_kwargs`) and recorded in the manifest.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import gin

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


# The date templates see (`strftime_now`) unless `date` is given: fixed, so a
# record tokenizes the same on every day.
DEFAULT_DATE = "2024-07-26"
TEMPLATES_DIR = os.path.join(os.path.dirname(__file__), "templates")


def shipped_templates() -> list[str]:
  return sorted(f[:-len(".jinja")] for f in os.listdir(TEMPLATES_DIR)
                if f.endswith(".jinja"))


def resolve_chat_template(name_or_path: str) -> tuple[str, str]:
  """(template source, where it came from) for a shipped name or a file."""
  shipped = os.path.join(TEMPLATES_DIR, f"{name_or_path}.jinja")
  path = shipped if os.path.isfile(shipped) else name_or_path
  if not os.path.isfile(path):
    raise TokenizerFormatError(
        f"chat_template={name_or_path!r}: neither a shipped template "
        f"({', '.join(shipped_templates())}) nor a file")
  with open(path) as f:
    source = f.read()
  return source, (f"shipped:{name_or_path}" if path == shipped
                  else os.path.abspath(path))


def _pinned_strftime(date: str):
  when = datetime.datetime.strptime(date, "%Y-%m-%d")
  return lambda fmt: when.strftime(fmt)


@functools.lru_cache(maxsize=32)
def _compile_template(source: str) -> jinja2.Template:
  env = sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True,
      lstrip_blocks=True,
      extensions=[_GenerationTag, jinja_ext.loopcontrols],
  )
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = _pinned_strftime(DEFAULT_DATE)
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
  template_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  date: str = DEFAULT_DATE
  template_origin: str = "tokenizer_config.json"

  @classmethod
  def from_dir(cls, path: str, chat_template: str | None = None,
               template_kwargs: Mapping[str, Any] | None = None,
               date: str = DEFAULT_DATE) -> "ChatTokenizer":
    """`chat_template`: a shipped name or a `.jinja` path overriding the
    directory's own template; `template_kwargs` go to every render."""
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

    # transformers' precedence: chat_template.jinja over the config's field.
    origin = "tokenizer_config.json"
    chosen = chat_template
    chat_template = config.get("chat_template")
    jinja_file = os.path.join(path, "chat_template.jinja")
    if os.path.isfile(jinja_file):
      with open(jinja_file) as f:
        chat_template, origin = f.read(), "chat_template.jinja"
    if chosen is not None:
      chat_template, origin = resolve_chat_template(chosen)
    if not chat_template:
      raise TokenizerFormatError(
          f"{path}: the tokenizer has no chat template (a base checkpoint?): "
          "choose one with --gin.chat_tokenizer.chat_template='NAME' (shipped: "
          f"{', '.join(shipped_templates())}) or a path to a .jinja file")
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
        template_kwargs=dict(template_kwargs or {}),
        date=_checked_date(date),
        template_origin=origin,
    )

  def template_record(self) -> dict[str, Any]:
    """What the manifest records of the chat format."""
    source = self.chat_template if isinstance(self.chat_template, str) else (
        json.dumps(self.chat_template, sort_keys=True))
    return {"origin": self.template_origin,
            "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
            "template_kwargs": dict(self.template_kwargs), "date": self.date}

  def write_chat_template(self, directory: str) -> None:
    """Makes `directory`'s tokenizer files carry this tokenizer's template
    (the exported checkpoint then renders as it was trained)."""
    cfg_file = os.path.join(directory, "tokenizer_config.json")
    with open(cfg_file) as f:
      config = json.load(f)
    config["chat_template"] = self.chat_template
    from sftdiff import strict_json  # pylint: disable=g-import-not-at-top
    strict_json.dump(config, cfg_file)
    jinja_file = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(jinja_file):  # It would take precedence.
      os.remove(jinja_file)

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
          **self._render_context(template_kwargs),
      )
    except Exception as e:
      bad = self._first_failing_message(
          template, messages, tools, add_generation_prompt, template_kwargs
      )
      raise ChatTemplateError(
          f"{self.path}: chat_template failed at messages[{bad}] (role "
          f"{_role_of(messages[: bad + 1])!r}): {type(e).__name__}: {e}"
      ) from e

  def _render_context(self, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {**self.special_tokens, "strftime_now": _pinned_strftime(self.date),
            **self.template_kwargs, **extra}

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
            **self._render_context(kwargs),
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


def _checked_date(date: str) -> str:
  try:
    datetime.datetime.strptime(date, "%Y-%m-%d")
  except (TypeError, ValueError):
    raise TokenizerFormatError(
        f"chat_tokenizer.date={date!r}: expected YYYY-MM-DD") from None
  return date


def _load_tokenizer(path: str, chat_template: str | None = None,
                   template_kwargs: Mapping[str, Any] | None = None,
                   date: str = DEFAULT_DATE) -> ChatTokenizer:
  """The binaries' tokenizer loader; gin chooses the template and its kwargs:

      chat_tokenizer.chat_template = 'qwen3'        # or '/path/to/t.jinja'
      chat_tokenizer.template_kwargs = {'enable_thinking': True}
      chat_tokenizer.date = '2024-07-26'            # what strftime_now renders
  """
  return ChatTokenizer.from_dir(path, chat_template=chat_template,
                                template_kwargs=template_kwargs, date=date)


# Registered under unlock_config so a lazy import after parsing still works;
# binding `chat_tokenizer.*` needs it imported before parsing (train, eval,
# data and serve binaries do).
with gin.unlock_config():
  load_tokenizer = gin.configurable("chat_tokenizer", denylist=["path"])(
      _load_tokenizer)


def _role_of(messages) -> Any:
  if not messages:
    return None
  last = messages[-1]
  return last.get("role") if isinstance(last, dict) else type(last).__name__
