"""pgjax: the policy-gradient family in pure JAX.

The math layer (``pgjax.estimators``, ``pgjax.losses``, ``pgjax.distributions``) imports only
jax, chex and flax and can be used on its own.
"""

import os as _os

__version__ = "0.1.0"

# jaxlib 0.10's XLA:CPU "concurrency-optimized scheduler" deadlocks (0% CPU, waiting forever) on
# some of our update programs, e.g. PPO with observation normalisation when the train state comes
# from a separate jit. Turning it off fixed every case we could reproduce. It must be set before
# the CPU backend starts, so it lives here; a user's own XLA_FLAGS setting of it wins.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=false").strip()


def make_train(config):
    """See :func:`pgjax.train.make_train` (imported lazily so the math layer stays light)."""
    from pgjax.train import make_train as _make_train
    return _make_train(config)
