"""pgjax: the policy-gradient family in pure JAX.

The math layer (``pgjax.estimators``, ``pgjax.losses``, ``pgjax.distributions``) imports only
jax, chex and flax and can be used on its own.
"""

import os as _os
import re as _re

__version__ = "0.1.0"

# XLA:CPU in jaxlib 0.10 defaults to the "concurrency-optimized" HLO scheduler, which lets
# independent thunks run at the same time on the intra-op thread pool (one thread per core).
# jaxlib 0.10's LAPACK kernels (e.g. the QR behind flax's orthogonal initialiser, batched by
# ``jax.vmap(init)`` over seeds) split a batch over that same pool and block a pool thread until
# the pieces finish (``jax::ParallelBatchMap`` -> ``BlockingCounter::Wait``). When as many batched
# LAPACK calls as there are pool threads start together, every thread waits for work queued
# behind it: a deadlock at 0% CPU (seen in ``jax.jit(jax.vmap(init))`` with 3 seeds, which the
# runner's first chunk then waits on). So the process-wide default stays the memory-optimised
# scheduler (set before the CPU backend starts; a user's own XLA_FLAGS choice wins), and
# programs shown free of blocking custom calls (the update chunks) ask for the faster scheduler
# one by one through :func:`compile_program`.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_USER_CHOSE_SCHEDULER = any(f in _os.environ.get("XLA_FLAGS", "")
                            for f in (_FLAG, "--xla_cpu_scheduler_type"))
if not _USER_CHOSE_SCHEDULER:
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=false").strip()

CONCURRENT_SCHEDULER_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"}
# custom calls that are annotations only (no kernel runs, nothing blocks)
_HARMLESS_CUSTOM_CALLS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
                                    "annotate_device_placement", "ShardingBarrier"})
_CUSTOM_CALL = _re.compile(r"custom_call @([\w.$-]+)\(")
_FIRST_OPERAND = _re.compile(r"\}\s*:\s*\(\s*tensor<([0-9x]*)[a-z]")


def concurrency_scheduler_safe(lowered_text: str) -> bool:
    """Whether a lowered program (StableHLO text of ``jax.jit(f).lower(...)``) may use XLA:CPU's
    concurrency-optimised scheduler: it has no custom call that can block an intra-op pool
    thread. Annotation-only custom calls are fine, and so are LAPACK calls on one matrix (batch
    1: nothing to split over the pool); a batched LAPACK call or any other custom call is not."""
    for line in lowered_text.splitlines():
        for target in _CUSTOM_CALL.findall(line):
            if target in _HARMLESS_CUSTOM_CALLS:
                continue
            if not target.startswith("lapack_"):
                return False
            operand = _FIRST_OPERAND.search(line)
            if operand is None:
                return False
            dims = [int(d) for d in operand.group(1).split("x") if d]
            batch = 1
            for d in dims[:-2]:
                batch *= d
            if batch > 1:
                return False
    return True


def compile_program(lowered):
    """``lowered.compile()``, with XLA:CPU's faster concurrency-optimised scheduler when the
    program is safe for it (:func:`concurrency_scheduler_safe`), on CPU, and the user has not
    chosen a scheduler in XLA_FLAGS. Numerical results are the same either way."""
    import jax
    if (_USER_CHOSE_SCHEDULER or jax.default_backend() != "cpu"
            or not concurrency_scheduler_safe(lowered.as_text())):
        return lowered.compile()
    return lowered.compile(compiler_options=CONCURRENT_SCHEDULER_OPTIONS)


def make_train(config):
    """See :func:`pgjax.train.make_train` (imported lazily so the math layer stays light)."""
    from pgjax.train import make_train as _make_train
    return _make_train(config)
