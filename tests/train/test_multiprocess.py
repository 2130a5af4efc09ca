"""Two local processes (gloo CPU collectives), each feeding its own data
shard, train and checkpoint to the same result as one process."""

import json
import socket

import jax
import numpy as np
import pytest

from sftdiff.train import checkpoints

STEPS = 4


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, helpers, hf_init_dir):
  multi, single = tmp_path / "multi", tmp_path / "single"
  # 2 processes x 4 CPU devices == 1 process x 8 devices; mesh data=2, fsdp=4.
  extra = ("--gin.partitioning.PartitionConfig.ici_mesh_shape=(2, 4, 1)",)
  port = _free_port()
  procs = [helpers.start_train(
      helpers.train_args(multi, hf_init_dir, STEPS, *extra, devices=8),
      tmp_path / f"log{i}.txt", num_devices=4,
      SFTDIFF_COORDINATOR_ADDRESS=f"localhost:{port}", SFTDIFF_NUM_PROCESSES=2,
      SFTDIFF_PROCESS_ID=i) for i in range(2)]
  for i, proc in enumerate(procs):
    try:
      rc = proc.wait(timeout=500)
    except Exception:
      for p in procs:
        p.kill()
      raise
    assert rc == 0, (tmp_path / f"log{i}.txt").read_text()[-3000:]
  # Each process saved its own data-iterator state.
  data_dir = multi / "checkpoints" / str(STEPS) / "data"
  assert sorted(p.name for p in data_dir.glob("process_*.json")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
  states = [json.loads((data_dir / f"process_{i}-of-2.json").read_text()) for i in range(2)]
  assert states[0] == states[1] == {"json": {"next_index": STEPS}}

  helpers.run_in_process(helpers.train_args(single, hf_init_dir, STEPS, *extra, devices=8))
  rows = {name: [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
          for name, d in (("multi", multi), ("single", single))}
  np.testing.assert_allclose([r["loss"] for r in rows["multi"]],
                             [r["loss"] for r in rows["single"]], rtol=1e-5)
  _, p_multi = checkpoints.load_params(multi)
  _, p_single = checkpoints.load_params(single)
  for a, b in zip(jax.tree.leaves(p_multi), jax.tree.leaves(p_single)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
