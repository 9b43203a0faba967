"""Environments for pgjax: every gymnax id plus our own, and composable batched wrappers.

This package never imports ``pgjax``.
"""

from . import _gymnax

_gymnax.load()  # first, so that no module here imports gymnax with its plotting stack

from .registry import check_env_id, make, register, registered_ids
from .wrappers import (ClipAction, EpisodeStatistics, NormalizeObservation, NormalizeReward,
                           RunningMeanStd, VecEnv, base_env_state, make_vec_env,
                           obs_stats_of, with_obs_stats)
from . import bandit  # noqa: F401  (registers Bandit-v0)
from . import short_corridor  # noqa: F401  (registers ShortCorridor-v0)
from . import aliased_gridworld  # noqa: F401  (registers AliasedGridworld-v0)
from . import iterated_rps  # noqa: F401  (registers IteratedRPS-v0)
from . import partially_observed  # noqa: F401  (registers CartPoleNoVelocity-v1)

__all__ = [
    "make", "register", "registered_ids", "check_env_id", "VecEnv", "ClipAction",
    "EpisodeStatistics", "NormalizeReward", "NormalizeObservation", "RunningMeanStd",
    "make_vec_env", "obs_stats_of", "with_obs_stats", "base_env_state",
]
