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

# JAX's persistent compilation cache for the test session (and the subprocesses tests start):
# most of the suite's time is XLA compiling the same small programs run after run, so a second run
# on a machine loads them instead. PGJAX_TEST_CACHE_DIR moves it; PGJAX_TEST_CACHE_DIR=off measures
# a cold run. It is kept apart from the users' cache (pgjax.run.compilation_cache) and cannot change a
# result: a cached program is the compiled program.
_TEST_CACHE = os.environ.get("PGJAX_TEST_CACHE_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pgjax", "jax-tests")
if _TEST_CACHE.lower() != "off" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _TEST_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# the runner's own cache setting (pgjax.run.compilation_cache) must not redirect the tests' programs
os.environ.setdefault("PGJAX_COMPILATION_CACHE", "0")
