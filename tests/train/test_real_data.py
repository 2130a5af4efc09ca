"""The trainer on the real data path: arm selection, chat masks, Grain
packing (sftdiff.data.train_data.make_train_data) and its iterator state."""

import json

import pytest

from sftdiff.data import example_data


@pytest.mark.slow
def test_trains_an_arm_of_the_example_data(tmp_path, helpers, hf_init_dir):
  data_dir = tmp_path / "data"
  example_data.write_example_rollouts(str(data_dir))
  run = tmp_path / "run"
  args = [a for a in helpers.train_args(run, hf_init_dir, 3)
          if "synthetic" not in a and not a.startswith("--gin.ARM")]
  args += [f"--gin_file={helpers.REPO / 'gin' / 'data' / 'example.gin'}",
           f"--gin_file={helpers.REPO / 'gin' / 'arms' / 'reference_alt.gin'}",
           f"--gin.DATA_DIR='{data_dir}'", "--gin.SEQ_LEN=64", "--gin.BATCH_SIZE=2",
           "--gin.LoggingConfig.eval_every=3", "--gin.make_train_data.eval_fraction=0.2"]
  last = helpers.run_in_process(args)
  assert last["step"] == 3 and last["trainable_tokens"] > 0
  manifest = json.loads((run / "manifest.json").read_text())
  assert "alt" in json.dumps(manifest)
  state = json.loads((run / "checkpoints" / "2" / "data" / "process_0-of-1.json").read_text())
  assert state  # the Grain iterator state travels with the checkpoint
