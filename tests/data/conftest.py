"""Fixtures shared by the tokenizer and chat-mask tests: the test tokenizer,
loaded by us and by transformers (the reference)."""

import pathlib
import sys

import pytest
import transformers

from sftdiff.data import tokenizer as tokenizer_lib
from sftdiff.testing import tokenizer as test_tokenizer

# `real_tokenizers` (the real-vocabulary builders) sits beside this file;
# --import-mode=importlib does not put test directories on sys.path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
  return test_tokenizer.write_test_tokenizer(str(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def tok(tok_dir):
  return tokenizer_lib.ChatTokenizer.from_dir(tok_dir)


@pytest.fixture(scope="module")
def hf_tok(tok_dir):
  return transformers.AutoTokenizer.from_pretrained(tok_dir)


@pytest.fixture
def function_task():
  """`register(name, features)`: a SeqIO task over in-memory feature columns
  (registered once per process), as a `seqio:` source URI."""
  import numpy as np
  import seqio
  import tensorflow as tf

  def register(name, features):
    def dataset_fn(split, shuffle_files, seed=None):
      del split, shuffle_files, seed
      return tf.data.Dataset.from_tensor_slices(
          {k: np.array(v) for k, v in features.items()})

    if name not in seqio.TaskRegistry.names():
      seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(
          dataset_fn, splits=["train"]), output_features={})
    return f"seqio:{name}/train"
  return register


@pytest.fixture()
def example(tmp_path):
  """The example rollouts as (paths, prompts spec, source specs, store dir)."""
  from sftdiff.data import example_data, sources
  paths = example_data.write_example_rollouts(str(tmp_path / "data"))
  prompts = sources.SourceSpec("prompts", "jsonl", paths["prompts"], role="prompts")
  srcs = [sources.SourceSpec(n, "jsonl", paths[n]) for n in ("alt", "teacher")]
  return paths, prompts, srcs, str(tmp_path / "store")
