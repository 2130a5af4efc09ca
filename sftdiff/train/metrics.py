"""Training metrics: throughput, MFU, TensorBoard + JSONL (+ optional W&B), tqdm.

MFU = achieved model FLOP/s / peak FLOP/s. Model FLOPs per token come from
`ModelConfig.flops_per_token(seq_len)`. Peak per accelerator comes from a
table of dense bf16 peaks; for CPU it is measured once per process with a
large f32 matmul over the whole host (all simulated CPU devices share the
same cores, so the host is the unit).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from sftdiff import layout
from sftdiff import strict_json

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per chip, matched by substring of device_kind.
PEAK_FLOPS_BY_KIND = (
    ("TPU v6", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
    ("TPU v2", 45e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


def best_matmul_seconds(a: jax.Array, b: jax.Array, repeats: int = 5) -> float:
  """Best observed time of a jitted `a @ b` after one warm-up call."""
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return best


@functools.cache
def measured_cpu_peak_flops(size: int = 2048, repeats: int = 5) -> float:
  """Best observed f32 matmul FLOP/s on this host (cached per process)."""
  device = jax.local_devices(backend="cpu")[0]
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(key_a, (size, size), jnp.float32), device)
  b = jax.device_put(jax.random.normal(key_b, (size, size), jnp.float32), device)
  return 2.0 * size ** 3 / best_matmul_seconds(a, b, repeats)


def peak_flops_per_second() -> tuple[float, str]:
  """Peak FLOP/s of everything this run computes on, and where it came from."""
  devices = jax.devices()
  kind = devices[0].device_kind
  if devices[0].platform == "cpu":
    return measured_cpu_peak_flops() * jax.process_count(), "measured f32 matmul (host)"
  for pattern, peak in PEAK_FLOPS_BY_KIND:
    if pattern.lower() in kind.lower():
      return peak * len(devices), f"table: {pattern} x {len(devices)}"
  log.warning("no peak FLOP/s known for device kind %r; MFU not reported", kind)
  return float("nan"), f"unknown device kind {kind!r}"


def format_values(values: Mapping[str, float]) -> str:
  """`name=value, ...` with 6 significant digits, so a warm-up learning rate
  of 6e-08 shows as 6e-08, not 0.0."""
  return ", ".join(f"{k}={float(v):.6g}" for k, v in values.items())


def _scalar(value) -> float:
  return float(np.asarray(value))


class MetricsWriter:
  """Writes scalars to TensorBoard (tensorboardX) and `metrics.jsonl`.

  Only process 0 writes. W&B is used when `use_wandb` and `wandb` imports.
  """

  def __init__(self, model_dir: str, *, use_wandb: bool = False,
               wandb_project: str | None = None, run_name: str | None = None,
               config: Mapping[str, Any] | None = None):
    self.active = jax.process_index() == 0
    self._tb = self._jsonl = self._wandb = None
    if not self.active:
      return
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(layout.tensorboard_dir(model_dir))
    self._jsonl = open(os.path.join(model_dir, "metrics.jsonl"), "a")
    if use_wandb:
      try:
        import wandb  # optional
      except ImportError:
        log.warning("use_wandb=True but wandb is not installed; skipping W&B")
      else:
        self._wandb = wandb.init(project=wandb_project, name=run_name,
                                 config=dict(config or {}), resume="allow")

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.active:
      return
    values = {k: _scalar(v) for k, v in scalars.items()}
    for name, value in values.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(strict_json.dumps({"step": step, **values}) + "\n")
    self._jsonl.flush()
    if self._wandb is not None:
      self._wandb.log(values, step=step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()
    if self._wandb is not None:
      self._wandb.finish()


class Throughput:
  """Tokens/s and MFU over the steps since the last report."""

  def __init__(self, flops_per_token: float, peak_flops: float):
    self.flops_per_token = flops_per_token
    self.peak_flops = peak_flops
    self._start = time.perf_counter()
    self._steps = self._tokens = self._trainable = 0

  def add(self, tokens: int, trainable_tokens: float, steps: int = 1) -> None:
    self._steps += steps
    self._tokens += tokens
    self._trainable += trainable_tokens

  def report(self) -> dict[str, float]:
    elapsed = max(time.perf_counter() - self._start, 1e-9)
    out = {
        "step_time_s": elapsed / max(self._steps, 1),
        "tokens_per_s": self._tokens / elapsed,
        "trainable_tokens_per_s": self._trainable / elapsed,
    }
    if np.isfinite(self.peak_flops):
      out["mfu"] = out["tokens_per_s"] * self.flops_per_token / self.peak_flops
    self._start = time.perf_counter()
    self._steps = self._tokens = self._trainable = 0
    return out


def progress_bar(total: int, initial: int):
  """tqdm with ETA when stderr is a terminal; None otherwise."""
  if not (sys.stderr.isatty() and jax.process_index() == 0):
    return None
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


class RunLog:
  """One run's metrics rows: throughput over the steps since the last row,
  the held-out eval loss when due (`LoggingConfig`); single- and multi-arm
  training log through it."""

  def __init__(self, model_dir: str, config, *, flops_per_token: float,
               tokens_per_step: int, run_config: Mapping[str, Any]):
    self.config = config
    self._name = os.path.basename(model_dir)
    self.writer = MetricsWriter(model_dir, use_wandb=config.use_wandb,
                                wandb_project=config.wandb_project,
                                run_name=self._name, config=run_config)
    peak = peak_flops_per_second()[0] if config.report_mfu else float("nan")
    self.throughput = Throughput(flops_per_token, peak)
    self._tokens_per_step = tokens_per_step
    self._pending_trainable = []
    self.last: dict[str, float] = {}

  def after_step(self, step: int, metrics: Mapping[str, Any], is_last: bool,
                 evaluate) -> dict[str, float] | None:
    """Records step `step`'s metrics (device arrays, fetched only for a row);
    `evaluate()` -> the eval loss. Returns the row written, if any."""
    every = self.config.eval_every
    self._pending_trainable.append(metrics["trainable_tokens"])
    if step % self.config.log_every == 0 or is_last:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      steps = len(self._pending_trainable)
      trainable = sum(float(t) for t in jax.device_get(self._pending_trainable))
      self.throughput.add(self._tokens_per_step * steps, trainable, steps=steps)
      self._pending_trainable.clear()
      values.update(self.throughput.report())
      if every and (step % every == 0 or is_last):
        values["eval_loss"] = evaluate()
      self.writer.write(step, values)
      self.last = {"step": step, **values}
      log.info("%s step %d: %s", self._name, step, format_values(values))
      return values
    if every and step % every == 0:
      self.writer.write(step, {"eval_loss": evaluate()})
    return None

  def close(self) -> None:
    self.writer.close()
