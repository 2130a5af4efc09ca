"""Every bench script imports: a moved or renamed library module breaks the
bench at once here, not the next time someone measures (bench/multi_arm.py
once imported `sftdiff.train.partitioning` for weeks after it moved)."""

import os
import pathlib
import subprocess
import sys

_BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"

# Imports each script as a module (its `main` is not run) in one fresh
# process, so a bench's environment settings cannot leak into the tests.
_IMPORT_ALL = """
import importlib.util, pathlib, sys
bench = pathlib.Path(sys.argv[1])
sys.path.insert(0, str(bench))
for path in sorted(bench.glob("*.py")):
  spec = importlib.util.spec_from_file_location("bench_" + path.stem, path)
  spec.loader.exec_module(importlib.util.module_from_spec(spec))
  print("imported", path.name, flush=True)
"""


def test_every_bench_script_imports_without_running():
  scripts = sorted(p.name for p in _BENCH.glob("*.py"))
  proc = subprocess.run([sys.executable, "-c", _IMPORT_ALL, str(_BENCH)],
                        capture_output=True, text=True, timeout=600,
                        env={"JAX_PLATFORMS": "cpu", **os.environ})
  assert proc.returncode == 0, proc.stderr[-3000:]
  imported = [line.split()[1] for line in proc.stdout.splitlines()
              if line.startswith("imported ")]
  assert imported == scripts
