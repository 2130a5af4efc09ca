"""`sftdiff <command> [flags]` dispatches to `python -m sftdiff.<command>`."""

import runpy
import sys

# command -> what it does (one line each in `sftdiff --help`)
COMMANDS = {
    "train": "SFT of one arm (gin: runs/sft.gin + data + ARM); writes MODEL_DIR",
    "eval": "sample + autorate one checkpoint or every checkpoint under a directory",
    "data": "build/inspect the joined store, arm manifests, filter overlaps; rollouts",
    "study": "run a whole study: arms x seeds -> train -> eval -> report (--dry_run: plan)",
    "launch": "the XManager launcher: one work unit per arm x seed (local, vertex, gke)",
    "toyworld": "build (or reuse) the embedded synthetic world and print its paths",
    "serve": "serve a checkpoint as an OpenAI-compatible /v1/chat/completions endpoint",
}
_MODULES = {"launch": "sftdiff.launch"}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = ["usage: sftdiff <command> [--gin_file=...] [--gin.NAME=VALUE ...] [flags]",
           "", "commands:"]
  lines += [f"  {name:{width}}  {what}" for name, what in COMMANDS.items()]
  lines += ["", "`sftdiff <command> --help` lists a command's flags. gin files are "
            "found along --gin_search_paths,", "the working directory, then the "
            "shipped configs (runs/, data/, models/, arms/, studies/)."]
  return "\n".join(lines)


def main() -> None:
  if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0)
  if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    given = f"unknown command {sys.argv[1]!r}\n" if len(sys.argv) >= 2 else ""
    print(f"error: {given}{usage()}", file=sys.stderr)
    sys.exit(2)
  command = sys.argv.pop(1)
  sys.argv[0] = f"sftdiff {command}"
  runpy.run_module(_MODULES.get(command, f"sftdiff.{command}"), run_name="__main__",
                   alter_sys=True)


if __name__ == "__main__":
  main()
