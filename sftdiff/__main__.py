"""`sftdiff <command> [flags]` dispatches to `python -m sftdiff.<command>`."""

import runpy
import sys

COMMANDS = ("data", "train", "eval", "study", "toyworld", "serve")


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    print(f"usage: sftdiff {{{','.join(COMMANDS)}}} [--gin_file=...] "
          "[--gin.NAME=VALUE ...]", file=sys.stderr)
    sys.exit(2)
  command = sys.argv.pop(1)
  sys.argv[0] = f"sftdiff {command}"
  runpy.run_module(f"sftdiff.{command}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
