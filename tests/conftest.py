"""Test-session settings.

The test programs are small and most are compiled once and run briefly, so XLA's compile time
costs more than the run time it buys: backend optimisation level 0 (about 20 % off the suite on 2
cores), and XLA:CPU's older loop-fusion code generator instead of its new fusion emitters, which
halves the compile time of a PPO update chunk at level 0 (2.3 s -> 1.0 s, run time within 10 %).
Numerics are compared against references with tolerances, and exact-equality tests compare
programs compiled under the same setting. Users and benchmarks keep XLA's defaults. No test may
depend on these flags, or on the processor, for its floats: tests/float_compare.py says how two
programs' results are compared (the tests that compare programs were checked at level 2 and with
--xla_cpu_max_isa=AVX2 and SSE4_2 too).
"""

import os

for _flag, _value in (("--xla_backend_optimization_level", "0"),
                      ("--xla_cpu_use_fusion_emitters", "false")):
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_flag}={_value}").strip()

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
    # and the program store beside it (pgjax.run.executables: traced programs, so a second session
    # neither traces nor compiles them; a test that patches code inside a program must turn it off
    # for that run, as it would poison the store under the unpatched program's key)
    os.environ.setdefault("PGJAX_PROGRAM_STORE", "1")
# the runner's own cache setting (pgjax.run.compilation_cache) must not redirect the tests' programs
os.environ.setdefault("PGJAX_COMPILATION_CACHE", "0")
