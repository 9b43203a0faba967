"""``make_train``: a whole training run as one pure function (the PureJaxRL shape).

    train = pgjax.make_train(config)
    state, metrics = jax.jit(train)(key, hparams)                      # one seed
    states, metrics = jax.jit(jax.vmap(train))(keys, batched_hparams)  # seeds × hyperparameters

``metrics`` holds one ``[num_updates]`` array per metric (``[n, num_updates]`` under vmap).
"""

from __future__ import annotations

import jax

from pgjax import algorithms
from pgjax.config import hparams_as_arrays


def make_train(config, *, start=None, record=None):
    """Return ``train(key, hparams) -> (final_state, recorded)`` scanning ``update`` over the whole
    budget of ``config.total_steps`` environment steps.

    Two optional hooks let a study change or watch a run without copying this loop:
      start: ``state -> state``, applied once after initialisation (e.g. a chosen starting policy).
      record: ``(state, metrics) -> pytree``, what is kept of each update (default: the metrics),
        stacked ``[num_updates, ...]``; e.g. the policy's probabilities in a few states.
    """
    algo = algorithms.for_config(config)

    def train(key, hparams):
        state = algo.init(config, hparams_as_arrays(hparams), key)
        if start is not None:
            state = start(state)
        if record is None:
            return scan_updates(config, state, config.num_updates)

        def one(state, _):
            state, metrics = algorithms.update(config, state)
            return state, record(state, metrics)

        return jax.lax.scan(one, state, None, length=config.num_updates)

    return train


def scan_updates(config, state, num_updates: int):
    """``num_updates`` consecutive updates in one ``lax.scan`` (used by ``train``; the runner's
    chunks guard every update instead, :mod:`pgjax.run.chunks`). Returns (state, stacked metrics)."""
    return jax.lax.scan(lambda s, _: algorithms.update(config, s), state, None, length=num_updates)
