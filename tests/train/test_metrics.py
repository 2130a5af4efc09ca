"""MFU arithmetic, peak FLOP/s lookup, TensorBoard + JSONL writing."""

import json
import struct

import jax
import numpy as np
import pytest

from sftdiff.testing.models import tiny_config
from sftdiff.train import metrics


def test_measured_cpu_peak_is_positive_and_cached():
  peak = metrics.measured_cpu_peak_flops(size=256, repeats=2)
  assert peak > 1e6
  assert metrics.measured_cpu_peak_flops(size=256, repeats=2) == peak  # cached


def test_peak_table_matches_device_kinds():
  table = dict(metrics.PEAK_FLOPS_BY_KIND)
  assert table["H100"] == 989e12 and table["TPU v4"] == 275e12
  peak, source = metrics.peak_flops_per_second()  # CPU here: measured
  assert peak > 0 and "measured" in source


def test_throughput_reports_tokens_and_mfu(monkeypatch):
  cfg = tiny_config("llama")
  clock = iter([100.0, 102.0, 102.0])
  monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
  t = metrics.Throughput(cfg.flops_per_token(32), peak_flops=1e9)
  t.add(tokens=1000, trainable_tokens=400, steps=4)
  out = t.report()
  assert out["step_time_s"] == pytest.approx(0.5)
  assert out["tokens_per_s"] == pytest.approx(500.0)
  assert out["trainable_tokens_per_s"] == pytest.approx(200.0)
  assert out["mfu"] == pytest.approx(500.0 * cfg.flops_per_token(32) / 1e9)


def test_writer_writes_jsonl_and_tensorboard(tmp_path):
  w = metrics.MetricsWriter(str(tmp_path))
  w.write(1, {"loss": np.float32(2.5), "learning_rate": jax.numpy.asarray(1e-3)})
  w.write(2, {"loss": 2.0})
  w.close()
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 1, "loss": 2.5, "learning_rate": pytest.approx(1e-3)},
                  {"step": 2, "loss": 2.0}]
  (event_file,) = (tmp_path / "tb").glob("events.out.tfevents.*")
  losses = [(e.step, v.simple_value) for e in _read_events(event_file)
            for v in e.summary.value if v.tag == "loss"]
  assert losses == [(1, 2.5), (2, 2.0)]


def _read_events(path):
  """TFRecord framing: u64 length, u32 crc, payload, u32 crc."""
  from tensorboardX.proto import event_pb2
  data, pos, events = path.read_bytes(), 0, []
  while pos < len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    event = event_pb2.Event()
    event.ParseFromString(data[pos + 12:pos + 12 + length])
    events.append(event)
    pos += 12 + length + 4
  return events


def test_logged_values_keep_small_learning_rates():
  from sftdiff.train import metrics as metrics_lib
  line = metrics_lib.format_values({"learning_rate": 6e-08, "loss": 2.3456789, "step_time_s": 0.5})
  assert line == "learning_rate=6e-08, loss=2.34568, step_time_s=0.5"
