"""Algorithms: each module exposes ``NAME``, ``Config``, ``Hparams``, ``init`` and ``update``."""

from pgjax.algorithms import a2c, actor_critic, impala, ppo, reinforce, trpo

ALGORITHMS = {m.NAME: m for m in (ppo, reinforce, actor_critic, a2c, trpo, impala)}


def get(name: str):
    """The algorithm module called ``name``; a ``ValueError`` lists the known ones."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


def for_config(config):
    """The algorithm module whose ``Config`` class ``config`` is."""
    for module in ALGORITHMS.values():
        if type(config) is module.Config:
            return module
    raise TypeError(f"no algorithm takes a config of type {type(config).__name__}")
