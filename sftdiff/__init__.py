"""sftdiff: post-training diffing for SFT pipelines, in JAX."""

__version__ = "0.1.0"
