"""Evaluation: sampler, benchmarks, autoraters, metrics, the eval binary.

  sampler.py      Sampler: jit prefill + compiled KV-cache decode loop
  benchmarks/     Benchmark, raters, registry; blackmail, date_confusion,
                  negative_emotion (prompt data + versioned rubrics)
  autorater.py    judges (OpenAI-compatible HTTP, local checkpoint) + cache
  metrics.py      Wilson intervals, prompt-clustered bootstrap
  checkpoints.py  discovery of committed checkpoints, loading for eval
  runner.py       incremental per-benchmark evaluation (samples/verdicts/metrics)
  run.py          run_eval: every checkpoint under a dir + API teachers (gin)
  rollouts.py     teacher rollouts as a data source
"""
