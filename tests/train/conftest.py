"""Fixtures for trainer tests: a tiny HF checkpoint + tokenizer, run helpers."""

import os
import pathlib
import subprocess
import sys

import gin
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# Tiny, fast and numerically exact enough: f32 compute, 8-row batches of 32 tokens.
SEQ_LEN, BATCH = 32, 8


@pytest.fixture(scope="session")
def hf_init_dir(tmp_path_factory):
  """A random tiny llama in HF format with the test tokenizer next to it."""
  from sftdiff.data.tokenizer import ChatTokenizer
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  d = tmp_path_factory.mktemp("init")
  write_test_tokenizer(str(d))
  vocab = ChatTokenizer.from_dir(str(d)).vocab_size
  write_random_hf_checkpoint(d, "llama", vocab_size=vocab)
  return d


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def train_args(model_dir, init_dir, steps, *extra, seed=0, every=2, devices=1):
  """argv for `python -m sftdiff.train` with the synthetic in-memory data.

  One device by default (fast to compile); sharding has its own tests."""
  # Absolute: gin's package-path reader trips over a `runs/` directory in cwd.
  return [f"--gin_file={REPO / 'gin' / 'runs' / 'sft.gin'}",
          f"--gin.partitioning.PartitionConfig.num_devices={devices}",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.INITIAL_CHECKPOINT='{init_dir}'",
          "--gin.ARM='synthetic'", f"--gin.TRAIN_STEPS={steps}", f"--gin.SEED={seed}",
          f"--gin.BATCH_SIZE={BATCH}", f"--gin.SEQ_LEN={SEQ_LEN}",
          "--gin.LEARNING_RATE=1e-3",
          "--gin.trainer.train.data_fn=@synthetic_train_data",
          "--gin.synthetic_train_data.vocab_size=256",
          f"--gin.CheckpointConfig.save_every={every}",
          "--gin.LoggingConfig.log_every=1", "--gin.LoggingConfig.eval_every=0",
          "--gin.LoggingConfig.report_mfu=False",
          *extra]


def gin_bindings(args):
  """The same configuration as in-process gin (files, bindings)."""
  files = [a.split("=", 1)[1] for a in args if a.startswith("--gin_file=")]
  bindings = [a[len("--gin."):].replace("=", " = ", 1) for a in args if a.startswith("--gin.")]
  return files, bindings


def subprocess_env(num_devices=8, **extra):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env.update({k: str(v) for k, v in extra.items()})
  return env


def start_train(args, log_path, **env_extra):
  log = open(log_path, "w")
  return subprocess.Popen([sys.executable, "-m", "sftdiff.train", *args], cwd=REPO,
                          env=subprocess_env(**env_extra), stdout=log, stderr=subprocess.STDOUT)


def run_in_process(args):
  """Parses the same gin config as the binary and trains in this process."""
  import importlib
  from sftdiff import gin_utils
  from sftdiff.train import trainer
  main = importlib.import_module("sftdiff.train.__main__")
  files, bindings = gin_bindings(args)
  gin.clear_config()
  gin_utils.parse(files, bindings)
  return trainer.train(main.check_config())


@pytest.fixture
def helpers():
  import types
  return types.SimpleNamespace(train_args=train_args, gin_bindings=gin_bindings,
                               subprocess_env=subprocess_env, start_train=start_train,
                               run_in_process=run_in_process, REPO=REPO,
                               SEQ_LEN=SEQ_LEN, BATCH=BATCH)
