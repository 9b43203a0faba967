"""Environments for pgjax: every gymnax id plus our own, and composable batched wrappers.

This package never imports ``pgjax``.
"""

from envs.registry import check_env_id, make, register, registered_ids
from envs.wrappers import (ClipAction, EpisodeStatistics, NormalizeObservation, NormalizeReward,
                           RunningMeanStd, VecEnv, make_vec_env, obs_stats_of)

__all__ = [
    "make", "register", "registered_ids", "check_env_id", "VecEnv", "ClipAction",
    "EpisodeStatistics", "NormalizeReward", "NormalizeObservation", "RunningMeanStd",
    "make_vec_env", "obs_stats_of",
]
