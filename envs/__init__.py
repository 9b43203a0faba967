"""Environments for pgjax: every gymnax id plus our own, and composable batched wrappers.

This package never imports ``pgjax``.
"""

from envs import _gymnax

_gymnax.load()  # first, so that no module here imports gymnax with its plotting stack

from envs.registry import check_env_id, make, register, registered_ids
from envs.wrappers import (ClipAction, EpisodeStatistics, NormalizeObservation, NormalizeReward,
                           RunningMeanStd, VecEnv, base_env_state, make_vec_env,
                           obs_stats_of)
import envs.bandit  # noqa: F401  (registers Bandit-v0)
import envs.short_corridor  # noqa: F401  (registers ShortCorridor-v0)
import envs.aliased_gridworld  # noqa: F401  (registers AliasedGridworld-v0)
import envs.iterated_rps  # noqa: F401  (registers IteratedRPS-v0)
import envs.partially_observed  # noqa: F401  (registers CartPoleNoVelocity-v1)

__all__ = [
    "make", "register", "registered_ids", "check_env_id", "VecEnv", "ClipAction",
    "EpisodeStatistics", "NormalizeReward", "NormalizeObservation", "RunningMeanStd",
    "make_vec_env", "obs_stats_of", "base_env_state",
]
