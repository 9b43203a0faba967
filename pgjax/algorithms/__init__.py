"""Algorithms: each module exposes ``NAME``, ``Config``, ``Hparams``, ``init`` and ``update``."""

from pgjax.algorithms import a2c, actor_critic, impala, ppo, ppo_kl, reinforce, trpo

ALGORITHMS = {m.NAME: m for m in (ppo, ppo_kl, reinforce, actor_critic, a2c, trpo, impala)}


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


def is_watched(metric: str) -> bool:
    """Metrics whose non-finite value means a member has diverged: losses and the gradient norm
    (the runner's divergence check, :mod:`pgjax.run.chunks`)."""
    return "loss" in metric or metric == "grad_norm"


# What ``lean_metrics`` keeps of an update's metrics besides the watched ones (every loss and the
# gradient norm) and the optional gradient-noise statistics (``grad_*``): the episode statistics
# and the entropy; the value statistics, KL, clip fraction, explained variance, learning rate and
# advantage mean are dropped (docs/running.md lists them).
LEAN_METRICS = frozenset({"episode_return", "episode_length", "episodes_completed",
                          "reward_per_step", "entropy"})


def is_lean_metric(name: str) -> bool:
    """Whether ``lean_metrics`` keeps the metric called ``name``."""
    return name in LEAN_METRICS or is_watched(name) or name.startswith("grad_")


def update(config, state):
    """One update of ``config``'s algorithm: (state, metrics). With ``config.lean_metrics`` only the
    metrics :func:`is_lean_metric` keeps are returned, so a jitted run computes no others (XLA
    drops what no output uses): less to compile and to run
    (``python -m benchmarks.throughput --lean``)."""
    state, metrics = for_config(config).update(config, state)
    if config.lean_metrics:
        metrics = {name: value for name, value in metrics.items() if is_lean_metric(name)}
    return state, metrics
