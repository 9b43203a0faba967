"""Which of XLA:CPU's schedulers compiles a program.

XLA:CPU in jaxlib 0.10 runs independent thunks at the same time on its intra-op thread pool (the
"concurrency-optimised" scheduler, its default). jaxlib 0.10's batched LAPACK kernels (a QR under
``jax.vmap``, for instance) split their batch over that same pool and block a pool thread until the
pieces finish; when as many of them start together as there are pool threads, the pool deadlocks
at 0 % CPU. :func:`compile_program` gives a program that holds such a call the memory-optimised
scheduler instead, one program at a time, and leaves every other program (and every process
setting) alone. This is a correctness rule, not a speed-up: it holds under ``PGJAX_PLAIN`` too,
where the plain orthogonal initialiser puts a batched QR into every vmapped initialisation.
"""

from __future__ import annotations

import os
import re

SAFE_SCHEDULER_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
# custom calls that are annotations only (no kernel runs, nothing blocks)
_HARMLESS_CUSTOM_CALLS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
                                    "annotate_device_placement", "ShardingBarrier"})
_CUSTOM_CALL = re.compile(r"custom_call @([\w.$-]+)\(")
_FIRST_OPERAND = re.compile(r"\}\s*:\s*\(\s*tensor<([0-9x]*)[a-z]")


def _user_chose_scheduler() -> bool:
    flags = os.environ.get("XLA_FLAGS", "")
    return "--xla_cpu_enable_concurrency_optimized_scheduler" in flags or \
        "--xla_cpu_scheduler_type" in flags


def _lapack_batch(line: str) -> int | None:
    """The batch size (product of the leading axes) of a LAPACK call's first operand, None where
    the line does not say it."""
    operand = _FIRST_OPERAND.search(line)
    if operand is None:
        return None
    batch = 1
    for d in [int(d) for d in operand.group(1).split("x") if d][:-2]:
        batch *= d
    return batch


def concurrency_scheduler_safe(lowered_text: str) -> bool:
    """Whether a lowered program (StableHLO text of ``jax.jit(f).lower(...)``) may use XLA:CPU's
    concurrency-optimised scheduler: it has no custom call that can block an intra-op pool
    thread. Annotation-only custom calls are fine, and so are LAPACK calls on one matrix (batch
    1: nothing to split over the pool); a batched LAPACK call or any other custom call is not."""
    for line in lowered_text.splitlines():
        for target in _CUSTOM_CALL.findall(line):
            if target in _HARMLESS_CUSTOM_CALLS:
                continue
            batch = _lapack_batch(line) if target.startswith("lapack_") else None
            if batch is None or batch > 1:
                return False
    return True


def compile_program(lowered, options: dict | None = None):
    """``lowered.compile(compiler_options=options)``; on CPU, a program that holds a custom call
    that can block XLA's intra-op pool (:func:`concurrency_scheduler_safe` is false) is compiled
    with the memory-optimised scheduler instead of jaxlib's concurrent default, unless the user
    chose a scheduler in XLA_FLAGS. Numerical results are the same either way."""
    import jax
    options = dict(options or {})
    if not (_user_chose_scheduler() or jax.default_backend() != "cpu"
            or concurrency_scheduler_safe(lowered.as_text())):
        options.update(SAFE_SCHEDULER_OPTIONS)
    return lowered.compile(compiler_options=options or None)
