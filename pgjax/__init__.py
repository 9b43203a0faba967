"""pgjax: the policy-gradient family in pure JAX.

The math layer (``pgjax.estimators``, ``pgjax.losses``, ``pgjax.distributions``) imports only
jax, chex and flax and can be used on its own.
"""

__version__ = "0.1.0"


def make_train(config):
    """See :func:`pgjax.train.make_train` (imported lazily so the math layer stays light)."""
    from pgjax.train import make_train as _make_train
    return _make_train(config)
