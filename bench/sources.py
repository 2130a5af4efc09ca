"""Reading a file-backed source: `stream_records` (direct, validated rows) vs the
same spec's registered SeqIO task through `tf.data.from_generator`.

    PYTHONPATH=. python bench/sources.py     # ~10 s; prints rates and load average
"""
import json
import os
import tempfile
import time

import seqio

from sftdiff.data import sources

d = tempfile.mkdtemp()
path = os.path.join(d, "src.jsonl")
n = 20000
with open(path, "w") as f:
  for i in range(n):
    f.write(json.dumps({"prompt_id": f"p{i}", "completion": f"reply number {i} " * 8,
                        "subset": "chat"}) + "\n")
spec = sources.SourceSpec("alt", "jsonl", path)
task = seqio.get_mixture_or_task(sources.register_task(spec))
def via_task():
  ds = task.get_dataset(sequence_length=None, split=spec.split, shuffle=False)
  return sum(len(b["prompt_id"]) for b in ds.batch(4096).as_numpy_iterator())
def direct():
  return sum(1 for _ in sources.stream_records(spec, decode=False))
via_task()
for name, f in (("task via tf.data", via_task), ("stream_records direct", direct)) * 2:
  t = time.perf_counter(); k = f(); dt = time.perf_counter() - t
  print(f"{name:24s} {k} records {dt:6.2f} s  {k/dt:8.0f} rec/s  load {os.getloadavg()[0]:.2f}")
