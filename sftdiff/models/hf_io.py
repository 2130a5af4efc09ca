"""Hugging Face checkpoint import/export (config.json + safetensors, no torch),
including the `config.json` <-> ModelConfig conversion.

Layout read and written: `config.json` and either `model.safetensors` or
`model-0000i-of-0000n.safetensors` shards with `model.safetensors.index.json`,
tensor names exactly as transformers' *ForCausalLM classes use them.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable, Iterator, Mapping

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from sftdiff.models.config import FULL, ROPE_SCALING_TYPES, SLIDING, ModelConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


# HF `model_type` -> our family.
HF_MODEL_TYPES = {
    "llama": "llama",
    "qwen3": "qwen3",
    "gemma3_text": "gemma3",
    "olmo2": "olmo2",
    "olmo3": "olmo3",
}
FAMILY_TO_HF = {v: k for k, v in HF_MODEL_TYPES.items()}
HF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "olmo2": "Olmo2ForCausalLM",
    "olmo3": "Olmo3ForCausalLM",
}

class UnsupportedModelError(ValueError):
  """A Hugging Face config describes something this decoder does not implement."""


# --- Hugging Face config.json ----------------------------------------------

def _rope_from_hf(d: Mapping[str, Any], family: str) -> dict[str, Any]:
  """Reads both the legacy (rope_theta / rope_scaling / rope_local_base_freq)
  and the transformers>=5 (`rope_parameters`, maybe nested by layer type) forms."""
  params = d.get("rope_parameters")
  default_theta = {"gemma3": 1_000_000.0, "olmo3": 500_000.0}.get(family, 10000.0)
  full, local = {}, {}
  if isinstance(params, Mapping) and (FULL in params or SLIDING in params):
    full = dict(params.get(FULL) or {})
    local = dict(params.get(SLIDING) or {})
  elif isinstance(params, Mapping):
    full = dict(params)
  if d.get("rope_scaling"):
    full = {**full, **d["rope_scaling"]}
  theta = full.pop("rope_theta", d.get("rope_theta", default_theta))
  local_default = 10000.0 if family == "gemma3" else theta
  local_theta = local.pop("rope_theta", d.get("rope_local_base_freq", local_default))
  for kind, p in (("full_attention", full), ("sliding_attention", local)):
    p.setdefault("rope_type", p.pop("type", "default"))
    if kind == "sliding_attention" and p["rope_type"] != "default":
      raise UnsupportedModelError(
          f"rope scaling {p['rope_type']!r} on sliding-attention layers is not supported")
  scaling = None
  if full["rope_type"] != "default":
    if full["rope_type"] not in ROPE_SCALING_TYPES:
      raise UnsupportedModelError(
          f"rope_type {full['rope_type']!r} is not supported (supported: default, "
          f"{', '.join(ROPE_SCALING_TYPES)})")
    full.pop("partial_rotary_factor", None)
    full.setdefault("original_max_position_embeddings", d.get("max_position_embeddings"))
    scaling = full
  out = {"rope_theta": float(theta), "rope_scaling": scaling}
  if float(local_theta) != float(theta):
    out["rope_local_theta"] = float(local_theta)
  return out


def _layer_types_from_hf(d: Mapping[str, Any], family: str, num_layers: int):
  window = d.get("sliding_window")
  if family == "qwen3" and not d.get("use_sliding_window", False):
    window = None
  if family in ("llama", "olmo2"):
    window = None
  types = d.get("layer_types")
  if types is None and window:
    if family == "gemma3":
      pattern = d.get("sliding_window_pattern", 6)
      types = [SLIDING if (i + 1) % pattern else FULL for i in range(num_layers)]
    elif family == "olmo3":
      types = [SLIDING if (i + 1) % 4 else FULL for i in range(num_layers)]
    elif family == "qwen3":
      start = d.get("max_window_layers", num_layers)
      types = [SLIDING if i >= start else FULL for i in range(num_layers)]
  if types is not None and SLIDING not in types:
    types = None
  if types is None:
    window = None
  return (tuple(types) if types else None), window


def from_hf_config(d: Mapping[str, Any], **overrides) -> ModelConfig:
  """Builds a ModelConfig from a Hugging Face `config.json` dict."""
  model_type = d.get("model_type")
  if model_type not in HF_MODEL_TYPES:
    hint = (" (the multimodal Gemma 3 checkpoint; export its text model as "
            "'gemma3_text')" if model_type == "gemma3" else "")
    raise UnsupportedModelError(
        f"unsupported model_type {model_type!r}{hint}; supported: "
        f"{', '.join(sorted(HF_MODEL_TYPES))}")
  family = HF_MODEL_TYPES[model_type]
  for key in ("mlp_bias",):
    if d.get(key):
      raise UnsupportedModelError(f"{model_type}: {key}=true is not supported")
  if d.get("use_bidirectional_attention"):
    raise UnsupportedModelError(f"{model_type}: use_bidirectional_attention is not supported")
  num_layers = d["num_hidden_layers"]
  num_heads = d["num_attention_heads"]
  layer_types, window = _layer_types_from_hf(d, family, num_layers)
  act = d.get("hidden_activation") or d.get("hidden_act") or "silu"
  act = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh"}.get(act)
  if act is None:
    raise UnsupportedModelError(f"{model_type}: activation {d.get('hidden_act')!r} is not supported")
  tie_default = family == "gemma3"
  kwargs = dict(
      family=family,
      vocab_size=d["vocab_size"],
      hidden_size=d["hidden_size"],
      intermediate_size=d["intermediate_size"],
      num_layers=num_layers,
      num_heads=num_heads,
      num_kv_heads=d.get("num_key_value_heads") or num_heads,
      head_dim=d.get("head_dim") or d["hidden_size"] // num_heads,
      max_position_embeddings=d.get("max_position_embeddings", 4096),
      norm_eps=d.get("rms_norm_eps", 1e-6),
      tie_embeddings=bool(d.get("tie_word_embeddings", tie_default)),
      attention_bias=bool(d.get("attention_bias", False)),
      activation=act,
      sliding_window=window,
      layer_types=layer_types,
      bos_token_id=d.get("bos_token_id"),
      eos_token_id=d.get("eos_token_id"),
      pad_token_id=d.get("pad_token_id"),
      **_rope_from_hf(d, family),
  )
  if family == "gemma3":
    kwargs["query_pre_attn_scalar"] = d.get("query_pre_attn_scalar", 256)
    kwargs["attn_logit_softcapping"] = d.get("attn_logit_softcapping")
    kwargs["final_logit_softcapping"] = d.get("final_logit_softcapping")
  kwargs.update(overrides)
  return ModelConfig(**kwargs)


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """HF `config.json` dict; rope settings in the legacy keys (rope_theta,
  rope_scaling, rope_local_base_freq), which transformers 4.x/5.x and vLLM read."""
  family = cfg.family
  d: dict[str, Any] = {
      "architectures": [HF_ARCHITECTURES[family]],
      "model_type": FAMILY_TO_HF[family],
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size,
      "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim,
      "max_position_embeddings": cfg.max_position_embeddings,
      "rms_norm_eps": cfg.norm_eps,
      "tie_word_embeddings": cfg.tie_embeddings,
      "attention_bias": cfg.attention_bias,
      "attention_dropout": 0.0,
      "rope_theta": cfg.rope_theta,
      "bos_token_id": cfg.bos_token_id,
      "eos_token_id": list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id,
      "pad_token_id": cfg.pad_token_id,
      "torch_dtype": "float32",
      "use_cache": True,
  }
  act = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}[cfg.activation]
  if family == "gemma3":
    d["hidden_activation"] = act
    d["query_pre_attn_scalar"] = cfg.query_pre_attn_scalar or cfg.head_dim
    d["rope_local_base_freq"] = cfg.rope_local_theta or cfg.rope_theta
    d["attn_logit_softcapping"] = cfg.attn_logit_softcapping
    d["final_logit_softcapping"] = cfg.final_logit_softcapping
  else:
    d["hidden_act"] = act
  if family == "llama":
    d["mlp_bias"] = False
  if cfg.rope_scaling is not None:
    d["rope_scaling"] = cfg.rope_scaling_dict
  # transformers>=5 form too (it takes precedence there; older readers ignore it).
  full = {"rope_type": "default", **cfg.rope_scaling_dict, "rope_theta": cfg.rope_theta}
  if family in ("gemma3", "olmo3"):
    local = {"rope_type": "default", "rope_theta": cfg.rope_local_theta or cfg.rope_theta}
    d["rope_parameters"] = {FULL: full, SLIDING: local}
  else:
    d["rope_parameters"] = full
  if cfg.layer_types is not None or family in ("gemma3", "olmo3"):
    d["layer_types"] = list(cfg.resolved_layer_types)
    d["sliding_window"] = cfg.sliding_window
  if family == "qwen3":
    d["use_sliding_window"] = cfg.layer_types is not None
    d["sliding_window"] = cfg.sliding_window
    d["max_window_layers"] = cfg.num_layers
  if family == "olmo3" and cfg.rope_local_theta not in (None, cfg.rope_theta):
    raise UnsupportedModelError("olmo3 has one rope_theta for all layers; rope_local_theta "
                                "cannot be exported")
  return d


class CheckpointFormatError(ValueError):
  """A Hugging Face checkpoint directory cannot be read; the message names the
  file, field or tensor."""


# --- name / layout mapping ---------------------------------------------------

_NORM_NAMES = {  # norm_placement -> our norm module -> HF name
    "pre": {"pre_attn_norm": "input_layernorm", "pre_mlp_norm": "post_attention_layernorm"},
    "post": {"post_attn_norm": "post_attention_layernorm",
             "post_mlp_norm": "post_feedforward_layernorm"},
    "sandwich": {"pre_attn_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
                 "pre_mlp_norm": "pre_feedforward_layernorm",
                 "post_mlp_norm": "post_feedforward_layernorm"},
}


class _Tensor:
  """One HF tensor: its name, our param path, HF shape and the two layouts."""

  def __init__(self, hf_name, path, hf_shape, to_ours: Callable, to_hf: Callable):
    self.hf_name, self.path, self.hf_shape = hf_name, path, tuple(hf_shape)
    self.to_ours, self.to_hf = to_ours, to_hf


def _same(name, path, shape):
  return _Tensor(name, path, shape, lambda w: w, lambda x: x)


def _linear(name, path, out_dim, in_dim, ours_shape):
  """torch Linear weight [out, in] <-> our kernel [*in_dims, *out_dims]."""
  return _Tensor(name, path, (out_dim, in_dim),
                 lambda w: np.ascontiguousarray(w.T).reshape(ours_shape),
                 lambda x: np.ascontiguousarray(x.reshape(in_dim, out_dim).T))


def tensor_layout(cfg: ModelConfig) -> list[_Tensor]:
  h, d, i = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
  n, kvh = cfg.num_heads, cfg.num_kv_heads
  out = [_same("model.embed_tokens.weight", ("embed_tokens", "embedding"), (cfg.vocab_size, h)),
         _same("model.norm.weight", ("final_norm", "scale"), (h,))]
  if not cfg.tie_embeddings:
    out.append(_linear("lm_head.weight", ("lm_head", "kernel"), cfg.vocab_size, h,
                       (h, cfg.vocab_size)))
  for layer in range(cfg.num_layers):
    pre, ours = f"model.layers.{layer}.", f"layers_{layer}"
    attn = (ours, "attn")
    out += [
        _linear(pre + "self_attn.q_proj.weight", (*attn, "q_proj", "kernel"), n * d, h, (h, n, d)),
        _linear(pre + "self_attn.k_proj.weight", (*attn, "k_proj", "kernel"), kvh * d, h,
                (h, kvh, d)),
        _linear(pre + "self_attn.v_proj.weight", (*attn, "v_proj", "kernel"), kvh * d, h,
                (h, kvh, d)),
        _Tensor(pre + "self_attn.o_proj.weight", (*attn, "o_proj", "kernel"), (h, n * d),
                lambda w, n=n, d=d, h=h: np.ascontiguousarray(w.T).reshape(n, d, h),
                lambda x, n=n, d=d, h=h: np.ascontiguousarray(x.reshape(n * d, h).T)),
    ]
    if cfg.attention_bias:
      for proj, heads in (("q_proj", n), ("k_proj", kvh), ("v_proj", kvh)):
        out.append(_Tensor(pre + f"self_attn.{proj}.bias", (*attn, proj, "bias"), (heads * d,),
                           lambda w, heads=heads: w.reshape(heads, d),
                           lambda x: x.reshape(-1)))
      out.append(_same(pre + "self_attn.o_proj.bias", (*attn, "o_proj", "bias"), (h,)))
    if cfg.qk_norm != "none":
      q_dim, k_dim = (d, d) if cfg.qk_norm == "head" else (n * d, kvh * d)
      out += [_same(pre + "self_attn.q_norm.weight", (*attn, "q_norm", "scale"), (q_dim,)),
              _same(pre + "self_attn.k_norm.weight", (*attn, "k_norm", "scale"), (k_dim,))]
    out += [
        _linear(pre + "mlp.gate_proj.weight", (ours, "mlp", "gate_proj", "kernel"), i, h, (h, i)),
        _linear(pre + "mlp.up_proj.weight", (ours, "mlp", "up_proj", "kernel"), i, h, (h, i)),
        _linear(pre + "mlp.down_proj.weight", (ours, "mlp", "down_proj", "kernel"), h, i, (i, h)),
    ]
    for our_norm, hf_norm in _NORM_NAMES[cfg.norm_placement].items():
      out.append(_same(pre + hf_norm + ".weight", (ours, our_norm, "scale"), (h,)))
  return out


# --- reading -------------------------------------------------------------------

def _read_config(directory: pathlib.Path) -> dict[str, Any]:
  path = directory / "config.json"
  if not directory.is_dir():
    raise CheckpointFormatError(f"checkpoint directory {directory} does not exist")
  if not path.is_file():
    raise CheckpointFormatError(f"no config.json in checkpoint directory {directory}")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointFormatError(f"{path}: invalid JSON: {e}") from e


def _weight_files(directory: pathlib.Path) -> dict[str, pathlib.Path]:
  """HF tensor name -> file holding it."""
  index = directory / INDEX_FILE
  if index.is_file():
    try:
      weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise CheckpointFormatError(f"{index}: not a safetensors index ({e})") from e
    files = {name: directory / f for name, f in weight_map.items()}
    for f in sorted(set(files.values())):
      if not f.is_file():
        raise CheckpointFormatError(f"{index} names shard {f.name}, which does not exist")
    return files
  single = directory / SINGLE_FILE
  if not single.is_file():
    raise CheckpointFormatError(
        f"no {SINGLE_FILE} or {INDEX_FILE} in checkpoint directory {directory}")
  with safe_open(str(single), framework="np") as f:
    return {name: single for name in f.keys()}


def _iter_tensors(files: dict[str, pathlib.Path], names) -> Iterator[tuple[str, np.ndarray]]:
  by_file: dict[pathlib.Path, list[str]] = {}
  for name in names:
    by_file.setdefault(files[name], []).append(name)
  for path, file_names in by_file.items():
    with safe_open(str(path), framework="np") as f:
      present = set(f.keys())
      for name in file_names:
        if name not in present:
          raise CheckpointFormatError(
              f"{path}: tensor {name} is listed in {INDEX_FILE} but not stored in this shard")
        yield name, f.get_tensor(name)


def load_hf_checkpoint(path, *, param_dtype: str | None = None,
                       **config_overrides) -> tuple[ModelConfig, Any]:
  """Reads a Hugging Face checkpoint directory into (ModelConfig, params).

  Params are numpy arrays in `param_dtype` (default: the config's
  param_dtype, float32); `config_overrides` (e.g. dtype='float32') are applied
  to the ModelConfig.
  """
  directory = pathlib.Path(path)
  hf_config = _read_config(directory)
  if param_dtype is not None:
    config_overrides["param_dtype"] = param_dtype
  try:
    cfg = from_hf_config(hf_config, **config_overrides)
  except UnsupportedModelError as e:
    raise CheckpointFormatError(f"{directory / 'config.json'}: {e}") from e
  except KeyError as e:
    raise CheckpointFormatError(
        f"{directory / 'config.json'}: missing field {e.args[0]!r}") from e
  layout = tensor_layout(cfg)
  files = _weight_files(directory)
  expected = {t.hf_name for t in layout}
  ignorable = {"lm_head.weight"} if cfg.tie_embeddings else set()
  extra = sorted(set(files) - expected - ignorable)
  if extra:
    raise CheckpointFormatError(
        f"{directory}: unexpected tensors not used by a {cfg.family} model: {', '.join(extra)}")
  missing = [t.hf_name for t in layout if t.hf_name not in files]
  if missing:
    raise CheckpointFormatError(f"{directory}: missing tensor {missing[0]}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
  target = _DTYPES[cfg.param_dtype]
  by_name = {t.hf_name: t for t in layout}
  params: dict[str, Any] = {}
  tied_head = None
  for name, array in _iter_tensors(files, sorted(expected | (ignorable & set(files)))):
    if name not in by_name:  # lm_head.weight of a tied model: must equal the embedding
      tied_head = array
      continue
    spec = by_name[name]
    if tuple(array.shape) != spec.hf_shape:
      raise CheckpointFormatError(
          f"{files[name]}: tensor {name} has shape {tuple(array.shape)}, expected "
          f"{spec.hf_shape} for this config.json")
    node = params
    for key in spec.path[:-1]:
      node = node.setdefault(key, {})
    node[spec.path[-1]] = spec.to_ours(array).astype(target)
  if tied_head is not None and not np.array_equal(
      tied_head.astype(target), params["embed_tokens"]["embedding"]):
    raise CheckpointFormatError(
        f"{directory}: config.json has tie_word_embeddings=true but lm_head.weight differs "
        "from model.embed_tokens.weight")
  return cfg, params


# --- writing -------------------------------------------------------------------

def _get(params, path):
  for key in path:
    params = params[key]
  return params


def save_hf_checkpoint(path, config: ModelConfig, params, *, dtype: str = "float32",
                       max_shard_bytes: int = 5 * 1024**3) -> list[str]:
  """Writes config.json + safetensors (sharded with an index above
  max_shard_bytes) that transformers' AutoModelForCausalLM loads.
  Returns the names of the weight files written."""
  if dtype not in _DTYPES:
    raise ValueError(f"save_hf_checkpoint dtype={dtype!r} must be one of {sorted(_DTYPES)}")
  directory = pathlib.Path(path)
  directory.mkdir(parents=True, exist_ok=True)
  out_dtype = _DTYPES[dtype]
  params = jax.device_get(params)
  tensors = {}
  for spec in tensor_layout(config):
    try:
      value = np.asarray(_get(params, spec.path))
    except KeyError as e:
      raise CheckpointFormatError(
          f"params have no {'/'.join(spec.path)} (needed for {spec.hf_name})") from e
    tensors[spec.hf_name] = spec.to_hf(value.astype(np.float32)).astype(out_dtype)

  hf_config = to_hf_config(config)
  hf_config["torch_dtype"] = dtype
  hf_config["dtype"] = dtype
  for stale in (SINGLE_FILE, INDEX_FILE):
    (directory / stale).unlink(missing_ok=True)
  for old in directory.glob("model-*-of-*.safetensors"):
    old.unlink()

  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name, array in tensors.items():
    if shards[-1] and size + array.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = array
    size += array.nbytes
  metadata = {"format": "pt"}
  if len(shards) == 1:
    save_file(shards[0], str(directory / SINGLE_FILE), metadata=metadata)
    names = [SINGLE_FILE]
  else:
    names = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
      save_file(shard, str(directory / name), metadata=metadata)
      weight_map.update({t: name for t in shard})
    index = {"metadata": {"total_size": int(sum(a.nbytes for a in tensors.values()))},
             "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
  tmp = directory / "config.json.tmp"
  tmp.write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, directory / "config.json")
  return names
