"""Every gin/models/*.gin parses and builds a ModelConfig with the published sizes."""

import pathlib

import gin
import pytest

from sftdiff.models.config import ModelConfig
from sftdiff.testing.models import tiny_config

GIN_DIR = pathlib.Path(__file__).resolve().parents[2] / "gin" / "models"
GIN_FILES = sorted(p.name for p in GIN_DIR.glob("*.gin"))

# Published totals (embeddings included) of the real-size configs.
PUBLISHED_PARAMS = {
    "llama3_8b.gin": 8.03e9,
    "llama3_1b.gin": 1.24e9,
    "qwen3_8b.gin": 8.19e9,
    "gemma3_4b.gin": 3.88e9,  # text decoder only
    "olmo2_1b.gin": 1.48e9,
    "olmo3_7b.gin": 7.30e9,
    "llama_25m.gin": 25.5e6,
}
TINY = {"llama3_tiny.gin": "llama", "qwen3_tiny.gin": "qwen3", "gemma3_tiny.gin": "gemma3",
        "olmo2_tiny.gin": "olmo2", "olmo3_tiny.gin": "olmo3"}


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _build(name, bindings=()):
  gin.parse_config_files_and_bindings([str(GIN_DIR / name)], list(bindings),
                                      skip_unknown=False, finalize_config=False)
  return ModelConfig()


def test_every_file_is_covered():
  assert set(GIN_FILES) == set(PUBLISHED_PARAMS) | set(TINY)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_real_sizes_match_published_parameter_counts(name):
  cfg = _build(name)
  assert cfg.num_params() == pytest.approx(PUBLISHED_PARAMS[name], rel=0.02)
  assert cfg.dtype == "bfloat16" and cfg.param_dtype == "float32"
  assert cfg.flops_per_token(2048) > 6 * cfg.num_params(include_embeddings=False)


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_files_equal_tiny_config(name):
  assert _build(name) == tiny_config(TINY[name])


def test_vocab_size_macro_override():
  cfg = _build("qwen3_tiny.gin", ["VOCAB_SIZE = 99"])
  assert cfg.vocab_size == 99


def test_sliding_patterns():
  gemma = _build("gemma3_4b.gin")
  assert gemma.layer_types[:6] == ("sliding_attention",) * 5 + ("full_attention",)
  assert gemma.layer_types.count("full_attention") == 5
  gin.clear_config()
  olmo = _build("olmo3_7b.gin")
  assert olmo.layer_types[:4] == ("sliding_attention",) * 3 + ("full_attention",)
