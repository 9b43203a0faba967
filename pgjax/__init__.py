"""pgjax: the policy-gradient family in pure JAX.

The math layer (``pgjax.estimators``, ``pgjax.losses``, ``pgjax.distributions``) imports only
jax, chex and numpy, changes no process setting, and can be used on its own: ``import pgjax`` makes
each reachable as an attribute, imported on first use.
"""

__version__ = "0.1.0"

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
