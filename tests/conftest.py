"""Test-session settings.

The test programs are small and most are compiled once and run briefly, so XLA's backend
optimisation costs more compile time than it saves at run time: level 0 makes the suite about 20 %
faster on 2 cores. Numerics are compared against references with tolerances, and exact-equality
tests compare programs compiled under the same setting. Users and benchmarks keep XLA's default.
"""

import os

_FLAG = "--xla_backend_optimization_level"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=0").strip()
