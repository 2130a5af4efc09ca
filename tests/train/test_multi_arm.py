"""Multi-arm training equals training each arm alone: params, losses,
manifests and the model-dir layout, on one device and on 8 simulated ones."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from sftdiff import gin_utils
from sftdiff import layout
from sftdiff.train import checkpoints
from sftdiff.train import multi_arm
from sftdiff.train import multi_arm_config

STEPS = 4
# vmap mode: a vmapped dot is a batched matmul whose reduction XLA:CPU
# blocks differently from the unbatched one, so gradients differ by float32
# rounding. Adam turns that into ~rounding-sized param differences, except for
# elements whose gradient is near Adam's eps (rarely seen tokens' embedding
# rows): there g / (|g| + eps) is ill-conditioned and the update may differ by
# up to 2 x learning rate per step. So: almost every element to RTOL/ATOL,
# every element within 2 x LR x step, losses to LOSS_RTOL (ATOL = 1% of LR).
RTOL, ATOL, LR, LOSS_RTOL = 1e-4, 1e-5, 1e-3, 1e-5
CLOSE_FRACTION = 0.99

ARMS = (("synthetic", 0), ("synthetic_b", 1), ("synthetic", 2))


def _arm_args(helpers, root, init_dir, arms, *extra):
  return [helpers.train_args(root / f"{name}_s{seed}", init_dir, STEPS, f"--gin.ARM='{name}'",
                             *extra, seed=seed)
          for name, seed in arms]


def _train_alone(helpers, root, init_dir, arms, *extra):
  for args in _arm_args(helpers, root, init_dir, arms, *extra):
    helpers.run_in_process(args)


def _train_together(helpers, root, init_dir, arms, *extra, mode="vmap", arm_axis=None):
  configs = [multi_arm_config.load_arm(i, a)
             for i, a in enumerate(_arm_args(helpers, root, init_dir, arms, *extra))]
  return multi_arm.train_arms(configs, mode=mode, arm_axis=arm_axis)


def test_auto_mode_is_loop_on_cpu_unless_arms_map_onto_an_axis():
  assert multi_arm.resolve_mode("auto", None) == "loop"
  assert multi_arm.resolve_mode("auto", "data") == "vmap"
  assert multi_arm.resolve_mode("vmap", None) == "vmap"
  with pytest.raises(gin_utils.GinConfigError, match="one of"):
    multi_arm.resolve_mode("fast", None)


def _params(model_dir, step):
  _, params = checkpoints.load_params(model_dir, step=step)
  return [np.asarray(x) for x in jax.tree.leaves(params)]


def _losses(model_dir):
  rows = [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().splitlines()]
  return [r["loss"] for r in rows if "loss" in r]


def _compare(alone, together, arms, exact, same_gin=True):
  for name, seed in arms:
    a, t = alone / f"{name}_s{seed}", together / f"{name}_s{seed}"
    for f in ("manifest.json", "model_config.json", "tokenizer/tokenizer.json"):
      assert (t / f).read_bytes() == (a / f).read_bytes(), f
    # The same operative config but for its own MODEL_DIR (and mesh).
    assert ((t / "config.gin").read_text().replace(str(together), "") ==
            (a / "config.gin").read_text().replace(str(alone), "")) == same_gin
    assert sorted(p.name for p in (t / "checkpoints").iterdir()) == \
        sorted(p.name for p in (a / "checkpoints").iterdir())
    for step in (2, STEPS):
      for x, y in zip(_params(a, step), _params(t, step), strict=True):
        if exact:
          np.testing.assert_array_equal(x, y)
        else:
          assert np.mean(np.isclose(y, x, rtol=RTOL, atol=ATOL)) >= CLOSE_FRACTION
          np.testing.assert_allclose(x, y, rtol=0, atol=2 * LR * step)
    if exact:
      assert _losses(t) == _losses(a)
    else:
      np.testing.assert_allclose(_losses(t), _losses(a), rtol=LOSS_RTOL)
  # Arms really differ (own seed / data stream).
  first, second = (together / f"{n}_s{s}" for n, s in arms[:2])
  assert not np.array_equal(_params(first, STEPS)[0], _params(second, STEPS)[0])
  assert json.loads((first / "manifest.json").read_text())["arm"] == arms[0][0]


@pytest.mark.slow
def test_one_device_vmap_close_and_loop_bit_identical(tmp_path, helpers, hf_init_dir):
  _train_alone(helpers, tmp_path / "alone", hf_init_dir, ARMS)
  last = _train_together(helpers, tmp_path / "loop", hf_init_dir, ARMS, mode="loop")
  assert [r["step"] for r in last] == [STEPS] * len(ARMS)
  _compare(tmp_path / "alone", tmp_path / "loop", ARMS, exact=True)
  _train_together(helpers, tmp_path / "vmap", hf_init_dir, ARMS)
  _compare(tmp_path / "alone", tmp_path / "vmap", ARMS, exact=False)


def _mesh(devices, shape):
  return (f"--gin.partitioning.PartitionConfig.num_devices={devices}",
          f"--gin.partitioning.PartitionConfig.ici_mesh_shape={shape}")


# Arms within data: each arm laid out as alone on all 8 devices. Arms over the
# mesh's data axis (2 slices of 4): each arm's layout is that of training it
# alone on one slice, (1, 4, 1) on 4 devices.
@pytest.mark.slow
@pytest.mark.parametrize("alone_mesh,together_mesh,arm_axis", [
    (_mesh(8, (-1, 1, 1)), _mesh(8, (-1, 1, 1)), None),
    (_mesh(4, (1, 4, 1)), _mesh(8, (2, 4, 1)), "data")])
def test_eight_devices(tmp_path, helpers, hf_init_dir, alone_mesh, together_mesh, arm_axis):
  arms = ARMS[:2]
  _train_alone(helpers, tmp_path / "alone", hf_init_dir, arms, *alone_mesh)
  _train_together(helpers, tmp_path / "together", hf_init_dir, arms, *together_mesh,
                  arm_axis=arm_axis)
  _compare(tmp_path / "alone", tmp_path / "together", arms, exact=False,
           same_gin=alone_mesh == together_mesh)


def test_arms_must_share_the_step(tmp_path, helpers, hf_init_dir):
  args = _arm_args(helpers, tmp_path, hf_init_dir, ARMS[:2])
  args[1] = [*args[1], "--gin.LEARNING_RATE=5e-4"]
  configs = [multi_arm_config.load_arm(i, a) for i, a in enumerate(args)]
  with pytest.raises(gin_utils.GinConfigError, match="arm 1 .*optim.learning_rate_schedule"):
    multi_arm_config.check_shared(configs)
  args[1] = [*args[1][:-1], "--gin.SEQ_LEN=16"]
  configs = [multi_arm_config.load_arm(i, a) for i, a in enumerate(args)]
  with pytest.raises(gin_utils.GinConfigError, match="trainer.train.seq_len"):
    multi_arm_config.check_shared(configs)
  same_dir = [args[0], args[0]]
  configs = [multi_arm_config.load_arm(i, a) for i, a in enumerate(same_dir)]
  with pytest.raises(gin_utils.GinConfigError, match="more than one arm"):
    multi_arm_config.check_shared(configs)
  with pytest.raises(gin_utils.GinConfigError, match="arm 0: argument '--bogus'"):
    multi_arm_config.load_arm(0, ["--bogus"])


def test_binary_bad_arms_file_exits_2(tmp_path, helpers):
  bad = tmp_path / "arms.json"
  bad.write_text('{"arms": "not a list"}')
  out = subprocess.run([sys.executable, "-m", "sftdiff.train.multi_arm",
                        f"--arms_file={bad}"], cwd=helpers.REPO, capture_output=True,
                       text=True, env=helpers.subprocess_env(1), check=False)
  assert out.returncode == 2, out.stderr
  assert "arms.json" in out.stderr and "argv lists" in out.stderr


@pytest.mark.slow
def test_binary_trains_each_arm_into_its_model_dir(tmp_path, helpers, hf_init_dir):
  import shlex
  shared = helpers.train_args(tmp_path / "unused", hf_init_dir, 2)
  own = [[f"--gin.MODEL_DIR='{tmp_path / name}'", f"--gin.ARM='{name}'", f"--gin.SEED={seed}"]
         for name, seed in ARMS[:2]]
  out = subprocess.run([sys.executable, "-m", "sftdiff.train.multi_arm", *shared,
                        *[f"--arm={shlex.join(a)}" for a in own]], cwd=helpers.REPO,
                       capture_output=True, text=True, env=helpers.subprocess_env(1),
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  for name, seed in ARMS[:2]:
    run = tmp_path / name
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["2"]
    assert json.loads((run / "manifest.json").read_text())["seed"] == seed
    assert f"SEED = {seed}" in (run / "config.gin").read_text()
  assert not (tmp_path / "unused").exists()


@pytest.mark.slow
def test_arms_left_at_different_steps_catch_up_and_equal_training_alone(
    tmp_path, helpers, hf_init_dir):
  # A hard kill between two arms' saves: the second arm's last step is gone.
  arms = ARMS[:2]
  _train_alone(helpers, tmp_path / "alone", hf_init_dir, arms)
  _train_together(helpers, tmp_path / "loop", hf_init_dir, arms, mode="loop")
  behind = tmp_path / "loop" / f"{arms[1][0]}_s{arms[1][1]}"
  shutil.rmtree(behind / "checkpoints" / str(STEPS))
  lines = (behind / "metrics.jsonl").read_text().splitlines()
  (behind / "metrics.jsonl").write_text(
      "".join(l + "\n" for l in lines if json.loads(l).get("step", 0) <= 2))
  assert layout.committed_steps(str(behind)) == [2]
  last = _train_together(helpers, tmp_path / "loop", hf_init_dir, arms, mode="loop")
  assert last[1]["step"] == STEPS  # the arm that caught up (the other had finished)
  _compare(tmp_path / "alone", tmp_path / "loop", arms, exact=True)
