"""GGUF -> Hugging Face checkpoint directory, without torch.

    python -m sftdiff.models.convert --gguf=model.gguf --out=DIR [--dtype=float32]
        [--chat_template=gemma3|FILE.jinja]

Writes config.json + safetensors (through `hf_io.save_hf_checkpoint`),
tokenizer.json + tokenizer_config.json, and generation_config.json. Tensors are
dequantized with the `gguf` library (numpy). Supported architecture: gemma3.
An unsupported architecture, quantization type or tensor exits with status 2
naming it.

GGUF details undone here: llama.cpp stores Gemma's RMSNorm weights as (1 + w)
(its RMSNorm multiplies by the weight as is), so 1 is subtracted from every
norm weight; Gemma tensors are not Q/K-permuted (only llama.cpp's 'llama'
architecture is, which is not supported here).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

import gguf
import numpy as np

from sftdiff import strict_json
from sftdiff.models import gguf_tokenizer, hf_io
from sftdiff.models.config import ModelConfig, layer_pattern

SUPPORTED_ARCHITECTURES = ("gemma3",)
# The chat templates shipped with sftdiff.data (sftdiff/data/templates/, with
# their sources in its README), read as data files: models may not import data.
SHIPPED_TEMPLATES_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "templates"

# GGUF tensor name (after "blk.N.") -> HF name (after "model.layers.N.").
_GEMMA3_LAYER_NAMES = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GEMMA3_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
                     "output_norm.weight": "model.norm.weight"}
# Gemma 3's sliding-window layer pattern and local RoPE base are fixed by the
# architecture (GGUF does not store them).
_GEMMA3_FULL_EVERY = 6
_GEMMA3_LOCAL_ROPE_THETA = 10000.0


class ConversionError(ValueError):
  """The GGUF file holds something this converter cannot convert."""


def _meta(reader, key, default=None, *, required=False):
  field = reader.fields.get(key)
  if field is None:
    if required:
      raise ConversionError(f"GGUF metadata has no {key}")
    return default
  return field.contents()


def _hf_name(gguf_name: str) -> str:
  if gguf_name in _GEMMA3_TOP_NAMES:
    return _GEMMA3_TOP_NAMES[gguf_name]
  parts = gguf_name.split(".", 2)
  if len(parts) == 3 and parts[0] == "blk" and parts[2] in _GEMMA3_LAYER_NAMES:
    return f"model.layers.{parts[1]}.{_GEMMA3_LAYER_NAMES[parts[2]]}"
  raise ConversionError(f"tensor {gguf_name!r} has no Hugging Face gemma3 counterpart")


def dequantize(tensor) -> np.ndarray:
  """float32 array in numpy (row-major) order: GGUF's reversed shape."""
  try:
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
  except NotImplementedError as e:
    raise ConversionError(f"tensor {tensor.name}: quantization type "
                          f"{tensor.tensor_type.name} is not supported ({e})") from e
  return np.asarray(values, np.float32).reshape(tuple(reversed(tensor.shape.tolist())))


def model_config(reader) -> ModelConfig:
  arch = _meta(reader, "general.architecture", required=True)
  if arch not in SUPPORTED_ARCHITECTURES:
    raise ConversionError(f"architecture {arch!r} is not supported (supported: "
                          f"{', '.join(SUPPORTED_ARCHITECTURES)})")
  m = lambda key, default=None: _meta(reader, f"{arch}.{key}", default,
                                      required=default is None)
  num_layers = int(m("block_count"))
  head_dim = int(m("attention.key_length"))
  if int(m("attention.value_length", head_dim)) != head_dim:
    raise ConversionError("attention.value_length != attention.key_length is not supported")
  rope_scaling = None
  scaling_type = m("rope.scaling.type", "none")
  if scaling_type == "linear":
    rope_scaling = {"rope_type": "linear", "factor": float(m("rope.scaling.factor"))}
  elif scaling_type != "none":
    raise ConversionError(f"{arch}.rope.scaling.type={scaling_type!r} is not supported")
  token_id = lambda key: (None if _meta(reader, f"tokenizer.ggml.{key}_token_id") is None
                          else int(_meta(reader, f"tokenizer.ggml.{key}_token_id")))
  window = int(m("attention.sliding_window", 0)) or None
  return ModelConfig(
      family="gemma3",
      vocab_size=len(_meta(reader, "tokenizer.ggml.tokens", required=True)),
      hidden_size=int(m("embedding_length")),
      intermediate_size=int(m("feed_forward_length")),
      num_layers=num_layers,
      num_heads=int(m("attention.head_count")),
      num_kv_heads=int(m("attention.head_count_kv")),
      head_dim=head_dim,
      max_position_embeddings=int(m("context_length")),
      rope_theta=float(m("rope.freq_base", 1_000_000.0)),
      rope_local_theta=_GEMMA3_LOCAL_ROPE_THETA,
      rope_scaling=rope_scaling,
      norm_eps=float(m("attention.layer_norm_rms_epsilon")),
      tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
      sliding_window=window,
      layer_types=layer_pattern(num_layers, _GEMMA3_FULL_EVERY) if window else None,
      query_pre_attn_scalar=head_dim,
      attn_logit_softcapping=m("attn_logit_softcapping", 0.0) or None,
      final_logit_softcapping=m("final_logit_softcapping", 0.0) or None,
      bos_token_id=token_id("bos"), eos_token_id=token_id("eos"),
      pad_token_id=token_id("padding"),
      dtype="float32", param_dtype="float32")


def _params(reader, cfg: ModelConfig):
  """Our param tree from the GGUF tensors (one tensor in float32 at a time
  beside the tree)."""
  layout = {t.hf_name: t for t in hf_io.tensor_layout(cfg)}
  params: dict = {}
  seen = set()
  for tensor in reader.tensors:
    name = _hf_name(tensor.name)
    if name not in layout:
      raise ConversionError(f"tensor {tensor.name} ({name}) is not part of this config")
    spec = layout[name]
    values = dequantize(tensor)
    if values.shape != spec.hf_shape:
      raise ConversionError(f"tensor {tensor.name} has shape {values.shape}, expected "
                            f"{spec.hf_shape} for {name}")
    if name.endswith("norm.weight"):
      values = values - 1.0
    node = params
    for key in spec.path[:-1]:
      node = node.setdefault(key, {})
    node[spec.path[-1]] = spec.to_ours(values)
    seen.add(name)
  missing = sorted(set(layout) - seen)
  if missing:
    raise ConversionError(f"GGUF has no tensor for {missing[0]}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
  return params


def chat_template_path(name_or_path: str) -> pathlib.Path:
  """A shipped template's file (`gemma3`, ...) or the given `.jinja` path."""
  shipped = SHIPPED_TEMPLATES_DIR / f"{name_or_path}.jinja"
  if shipped.is_file():
    return shipped
  path = pathlib.Path(name_or_path)
  if not path.is_file():
    names = sorted(f.stem for f in SHIPPED_TEMPLATES_DIR.glob("*.jinja"))
    raise ConversionError(f"--chat_template={name_or_path}: neither a shipped template "
                          f"({', '.join(names)}) nor a file")
  return path


def convert(gguf_path, out_dir, *, dtype: str = "float32",
            chat_template=None) -> ModelConfig:
  """Converts `gguf_path` into the Hugging Face directory `out_dir`
  (written beside it and moved into place, so a reader never sees half).
  `chat_template`: a shipped template name or a `.jinja` path."""
  reader = gguf.GGUFReader(str(gguf_path))
  cfg = model_config(reader)
  template = None
  if chat_template is not None:
    template = chat_template_path(chat_template).read_text()
  out = pathlib.Path(out_dir)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
  try:
    hf_io.save_hf_checkpoint(tmp, cfg, _params(reader, cfg), dtype=dtype)
    gguf_tokenizer.write_tokenizer(reader, tmp, chat_template=template)
    strict_json.dump({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
                      "pad_token_id": cfg.pad_token_id}, tmp / "generation_config.json")
    tmp.chmod(0o755)  # mkdtemp makes it private
    if out.exists():
      shutil.rmtree(out)
    tmp.rename(out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return cfg


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m sftdiff.models.convert",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--gguf", required=True, help="input .gguf file")
  parser.add_argument("--out", required=True, help="output Hugging Face directory")
  parser.add_argument("--dtype", default="float32", choices=sorted(hf_io._DTYPES))
  parser.add_argument("--chat_template", default=None,
                      help="a shipped template name (gemma3: the Gemma 3 IT template) or a "
                      "jinja file, stored in tokenizer_config.json")
  args = parser.parse_args(argv)
  if not pathlib.Path(args.gguf).is_file():
    print(f"error: --gguf={args.gguf}: no such file", file=sys.stderr)
    return 2
  if args.chat_template is not None:
    try:
      chat_template_path(args.chat_template)
    except ConversionError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  try:
    cfg = convert(args.gguf, args.out, dtype=args.dtype, chat_template=args.chat_template)
  except (ConversionError, gguf_tokenizer.UnsupportedTokenizerError) as e:
    print(f"error: {args.gguf}: {e}", file=sys.stderr)
    return 2
  except ValueError as e:  # gguf's reader on a file that is not GGUF
    print(f"error: {args.gguf}: not a readable GGUF file ({e})", file=sys.stderr)
    return 2
  print(f"wrote {args.out}: {cfg.family}, {cfg.num_layers} layers, vocab {cfg.vocab_size}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
