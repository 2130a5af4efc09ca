"""Reading a file-backed source: `stream_records` (direct, validated rows) vs the
same spec's registered SeqIO task through `tf.data.from_generator` (the peer).

    .venv/bin/python bench/sources.py     # ~10 s; rates, the ratio and the load
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _load import LoadGuard


def _write_jsonl(path: str, n: int) -> None:
  with open(path, "w") as f:
    for i in range(n):
      f.write(json.dumps({"prompt_id": f"p{i}", "completion": f"reply number {i} " * 8,
                          "subset": "chat"}) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--records", type=int, default=20000)
  args = parser.parse_args()
  guard = LoadGuard("bench/sources.py")
  import seqio

  from sftdiff.data import sources
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "src.jsonl")
    _write_jsonl(path, args.records)
    spec = sources.SourceSpec("alt", "jsonl", path)
    task = seqio.get_mixture_or_task(sources.register_task(spec))

    def via_task():
      ds = task.get_dataset(sequence_length=None, split=spec.split, shuffle=False)
      return sum(len(b["prompt_id"]) for b in ds.batch(4096).as_numpy_iterator())

    def direct():
      return sum(1 for _ in sources.stream_records(spec, decode=False))

    via_task()  # warm up tf.data
    best = {}
    for name, read in (("task via tf.data", via_task), ("stream_records direct", direct)) * 2:
      t = time.perf_counter()
      k = read()
      dt = time.perf_counter() - t
      best[name] = max(best.get(name, 0.0), k / dt)
      print(f"{name:24s} {k} records {dt:6.2f} s  {k / dt:8.0f} rec/s")
  ratio = best["stream_records direct"] / best["task via tf.data"]
  print(f"direct / tf.data (best of 2 each): {guard.ratio(ratio)}")
  guard.finish()


if __name__ == "__main__":
  main()
