"""Benchmark registry. `get(name)` builds one; built-ins register on import.

See `base.py` for how to define and register a benchmark.
"""

from sftdiff.eval.benchmarks.base import (Benchmark, ParsedVerdict, Rater,
                                          RubricParseError, RubricRater,
                                          RuleRater, SampleResult, get, names,
                                          register)

# Built-in benchmarks register lazy factories (their prompt sets are built on
# first `get`).
from sftdiff.eval.benchmarks import builtin as _builtin  # noqa: F401,E402

__all__ = ["Benchmark", "ParsedVerdict", "Rater", "RubricParseError",
           "RubricRater", "RuleRater", "SampleResult", "get", "names",
           "register"]
