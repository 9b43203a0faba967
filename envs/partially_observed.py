"""Partially observed versions of fully observed tasks: the observation keeps only some of its
components, so the state must be inferred from the history.

``CartPoleNoVelocity-v1`` is gymnax's CartPole-v1 observing only the cart position x and pole
angle θ (components 0 and 2; the velocities ẋ and θ̇ are hidden), the "velocity-masked CartPole"
used to test memory in RL (e.g. Meng et al. 2021, "Memory-based deep reinforcement learning for
POMDPs"; Ni et al. 2022, "Recurrent model-free RL can be a strong baseline for many POMDPs").
From one observation the direction the pole is falling cannot be told apart, so a memoryless
policy cannot balance it for long; two consecutive observations give the velocities by
differences, which a recurrent policy can learn.

:class:`MaskedObservation` wraps any gymnax environment with a flat observation vector; the
dynamics, rewards, time limit and ``EnvParams`` are the inner environment's.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from gymnax.environments import environment, spaces

from .registry import gymnax, register
from .rendering import register_renderer, render_cartpole

CARTPOLE_KEPT = (0, 2)  # x and θ of [x, ẋ, θ, θ̇]


class MaskedObservation(environment.Environment):
    """``env`` observing only the components ``keep`` of its observation vector."""

    def __init__(self, env: environment.Environment, keep: Sequence[int], name: str):
        super().__init__()
        self.inner = env
        self.keep = tuple(int(i) for i in keep)
        self._name = name

    @property
    def default_params(self):
        return self.inner.default_params

    def _mask(self, obs):
        return obs[jnp.asarray(self.keep)]

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self.inner.step_env(key, state, action, params)
        return self._mask(obs), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, state = self.inner.reset_env(key, params)
        return self._mask(obs), state

    def is_truncated(self, state, params):
        return self.inner.is_truncated(state, params)

    def is_terminal(self, state, params):
        return self.inner.is_terminal(state, params)

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_actions(self) -> int:
        return self.inner.num_actions

    def action_space(self, params=None):
        return self.inner.action_space(params)

    def observation_space(self, params):
        box = self.inner.observation_space(params)
        keep = jnp.asarray(self.keep)
        return spaces.Box(jnp.asarray(box.low)[keep], jnp.asarray(box.high)[keep],
                          (len(self.keep),), box.dtype)

    def state_space(self, params):
        return self.inner.state_space(params)


def cartpole_no_velocity() -> MaskedObservation:
    env, _ = gymnax.make("CartPole-v1")
    return MaskedObservation(env, CARTPOLE_KEPT, "CartPoleNoVelocity-v1")


register("CartPoleNoVelocity-v1", cartpole_no_velocity)
register_renderer("CartPoleNoVelocity-v1", render_cartpole)  # the state is CartPole's
