"""pgjax: the policy-gradient family in pure JAX.

The math layer (``pgjax.estimators``, ``pgjax.losses``, ``pgjax.distributions``) imports only
jax, chex and numpy, changes no process setting, and can be used on its own: ``import pgjax`` makes
each reachable as an attribute, imported on first use.
"""

import re as _re

__version__ = "0.1.0"

# XLA:CPU in jaxlib 0.10 runs independent thunks at the same time on its intra-op thread pool (the
# "concurrency-optimised" scheduler, its default). jaxlib 0.10's batched LAPACK kernels (a QR
# under ``jax.vmap``, for instance) split their batch over that same pool and block a pool thread
# until the pieces finish; when as many of them start together as there are pool threads, the pool
# deadlocks at 0% CPU. pgjax's own programs hold no LAPACK call (its orthogonal initialiser is
# pure JAX: :func:`pgjax.networks.orthogonal`), so importing pgjax changes nothing in the process;
# :func:`compile_program` gives any program that does hold a blocking custom call the
# memory-optimised scheduler instead, one program at a time.
SAFE_SCHEDULER_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
# custom calls that are annotations only (no kernel runs, nothing blocks)
_HARMLESS_CUSTOM_CALLS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
                                    "annotate_device_placement", "ShardingBarrier"})
_CUSTOM_CALL = _re.compile(r"custom_call @([\w.$-]+)\(")
_FIRST_OPERAND = _re.compile(r"\}\s*:\s*\(\s*tensor<([0-9x]*)[a-z]")


def _user_chose_scheduler() -> bool:
    import os
    flags = os.environ.get("XLA_FLAGS", "")
    return "--xla_cpu_enable_concurrency_optimized_scheduler" in flags or \
        "--xla_cpu_scheduler_type" in flags


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
    """``lowered.compile()``; on CPU, a program that holds a custom call that can block XLA's
    intra-op pool (:func:`concurrency_scheduler_safe` is false) is compiled with the
    memory-optimised scheduler instead of jaxlib's concurrent default, unless the user chose a
    scheduler in XLA_FLAGS. Numerical results are the same either way."""
    import jax
    if (_user_chose_scheduler() or jax.default_backend() != "cpu"
            or concurrency_scheduler_safe(lowered.as_text())):
        return lowered.compile()
    return lowered.compile(compiler_options=SAFE_SCHEDULER_OPTIONS)


# The math layer, reachable as ``pgjax.losses`` etc. after a bare ``import pgjax``, imported on
# first access so that ``import pgjax`` stays light and never pulls in the host side.
_LAZY_SUBMODULES = frozenset({"distributions", "estimators", "losses"})

__all__ = ["Callback", "distributions", "estimators", "load_policy", "losses", "make_train", "train"]


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBMODULES | {"Callback"})


def load_policy(run_dir, **choice):
    """See :func:`pgjax.policy.load_policy`: one trained member's policy, ready to act."""
    from pgjax.policy import load_policy as _load_policy
    return _load_policy(run_dir, **choice)


def train(algorithm=None, **request):
    """See :func:`pgjax.api.train`: what ``pgjax train`` runs, from Python."""
    from pgjax.api import train as _train
    return _train(algorithm, **request)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    if name == "Callback":  # the run's sink interface, for user callbacks (pgjax.api)
        from pgjax.run.loggers import Sink
        return Sink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_train(config, **hooks):
    """See :func:`pgjax.pure_train.make_train` (imported lazily so the math layer stays light)."""
    from pgjax.pure_train import make_train as _make_train
    return _make_train(config, **hooks)
