"""A base for environments whose states all look alike to the agent (the short corridor's aliased
states, a bandit's single state): the observation is always ``[1.0]``, so a policy on it is a
state-independent softmax over action preferences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces


class ConstantObservationEnv(environment.Environment):
    obs_shape = (1,)

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        """Every state looks like ``[1.0]``."""
        return jnp.ones(self.obs_shape, jnp.float32)

    def observation_space(self, params=None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, self.obs_shape, jnp.float32)
