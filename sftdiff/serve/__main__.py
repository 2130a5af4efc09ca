"""`python -m sftdiff.serve`: an OpenAI-compatible server for one checkpoint.

    python -m sftdiff.serve --gin_file=runs/serve.gin \
        --gin.CHECKPOINT="'runs/demo/arm_x/checkpoints/200'" --gin.PORT=8000

Serves `/v1/chat/completions` (streaming and not), `/v1/models` and
`/v1/stats` (batch counters). With PORT=0 a free port is chosen; the
address is printed on stdout once the model is loaded.
"""

from __future__ import annotations

from absl import logging as absl_logging

from sftdiff import gin_utils
from sftdiff.serve import server


def main(argv):
  if len(argv) > 1:
    raise gin_utils.GinConfigError(f"unexpected positional arguments: {argv[1:]}")
  gin_utils.parse_from_flags()
  gin_utils.require_macros(gin_utils.REQUIRED_MACROS["sftdiff.serve"])
  absl_logging.set_verbosity(absl_logging.WARNING)
  server.serve()


if __name__ == "__main__":
  gin_utils.run(main)
