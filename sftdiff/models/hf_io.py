"""Hugging Face checkpoint import/export (config.json + safetensors, no torch).

Layout read and written: `config.json` and either `model.safetensors` or
`model-0000i-of-0000n.safetensors` shards with `model.safetensors.index.json`,
tensor names exactly as transformers' *ForCausalLM classes use them.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable, Iterator

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from sftdiff.models.config import ModelConfig, UnsupportedModelError, from_hf_config, to_hf_config

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


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
