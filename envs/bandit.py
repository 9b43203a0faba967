"""``Bandit-v0``: a k-armed bandit as a one-step episodic environment (Sutton & Barto 2018, §2.1).

Every episode is a single pull: the agent sees a constant observation (there is only one state),
picks an arm ``a ∈ {0, …, k−1}``, receives a reward drawn from that arm's distribution, and the
episode *terminates*. The arms are

- ``kind="gaussian"``: R ~ N(μ_a, σ_a²) (the §2.3 testbed uses σ_a = 1), or
- ``kind="bernoulli"``: R ~ Bernoulli(μ_a) ∈ {0, 1}, so μ_a must lie in [0, 1].

The arm means μ (and, for Gaussian arms, the standard deviations σ) are ``EnvParams`` arrays, so
a batch of bandit problems is a ``jax.vmap`` over ``EnvParams``; ``kind`` is static (it changes
the program). ``k = len(arm_means)``. :func:`expected_rewards` and :func:`reward_variances` give
q*(a) = E[R | A=a] and Var[R | A=a] for analytic checks of policy-gradient estimators: the
expected reward of a policy π is J(π) = Σ_a π(a) q*(a), so ∂J/∂θ is known in closed form.

Time limit: ``max_steps_in_episode`` defaults to 2, one more than any episode can last, so the
time limit never fires and every episode ends with ``terminated=True, truncated=False``. (Setting
it to 1 would make the pull both terminated and truncated; gymnax reports both flags.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from .constant_observation import ConstantObservationEnv
from .registry import register
from .rendering import register_renderer

KINDS = ("gaussian", "bernoulli")
DEFAULT_ARM_MEANS = (0.3, 0.7, 0.5, 0.1)  # in [0, 1] so that both kinds are valid
DEFAULT_ARM_STDS = (1.0, 1.0, 1.0, 1.0)


@struct.dataclass
class EnvState(environment.EnvState):
    last_action: jax.Array  # int32 arm pulled at the previous step, −1 after a reset
    last_reward: jax.Array  # float32 reward of that pull, 0 after a reset
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    arm_means: jax.Array = struct.field(
        default_factory=lambda: jnp.asarray(DEFAULT_ARM_MEANS, jnp.float32))
    arm_stds: jax.Array = struct.field(
        default_factory=lambda: jnp.asarray(DEFAULT_ARM_STDS, jnp.float32))
    kind: str = struct.field(pytree_node=False, default="gaussian",
                             metadata={"choices": KINDS})  # envs.make refuses any other
    max_steps_in_episode: int = 2


def expected_rewards(params: EnvParams) -> jax.Array:
    """q*(a) = E[R | A=a] for every arm, shape ``[k]`` (S&B 2018, eq. 2.1)."""
    return jnp.asarray(params.arm_means, jnp.float32)


def reward_variances(params: EnvParams) -> jax.Array:
    """Var[R | A=a] for every arm, shape ``[k]``: σ_a² (Gaussian) or μ_a(1−μ_a) (Bernoulli)."""
    means = jnp.asarray(params.arm_means, jnp.float32)
    if params.kind == "bernoulli":
        return means * (1.0 - means)
    return jnp.asarray(params.arm_stds, jnp.float32) ** 2


def sample_reward(key: jax.Array, action: jax.Array, params: EnvParams) -> jax.Array:
    """One draw of R given A = ``action`` (scalar int), float32."""
    mean = jnp.asarray(params.arm_means, jnp.float32)[action]
    if params.kind == "bernoulli":
        return jax.random.bernoulli(key, mean).astype(jnp.float32)
    std = jnp.asarray(params.arm_stds, jnp.float32)[action]
    return mean + std * jax.random.normal(key, (), jnp.float32)


class Bandit(ConstantObservationEnv):
    """k-armed bandit, one pull per episode; observation ``ones((1,))`` (S&B 2018, §2.1)."""

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams):
        """Pull arm ``action``; the episode terminates after this one step."""
        if params.kind not in KINDS:
            raise ValueError(f"Bandit kind={params.kind!r} is not allowed: one of {list(KINDS)}")
        action = jnp.asarray(action, jnp.int32)
        reward = sample_reward(key, action, params)
        new_state = EnvState(last_action=action, last_reward=reward, time=state.time + 1)
        terminated = jnp.asarray(True)
        return (self.get_obs(new_state, params), new_state, reward, terminated, {})

    def reset_env(self, key: jax.Array, params: EnvParams):
        state = EnvState(last_action=jnp.asarray(-1, jnp.int32),
                         last_reward=jnp.asarray(0.0, jnp.float32), time=0)
        return self.get_obs(state, params), state

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.time >= 1

    @property
    def name(self) -> str:
        return "Bandit-v0"

    @property
    def num_actions(self) -> int:
        return len(DEFAULT_ARM_MEANS)

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        params = self.default_params if params is None else params
        return spaces.Discrete(int(np.shape(params.arm_means)[0]))


    def state_space(self, params: EnvParams | None = None) -> spaces.Dict:
        params = self.default_params if params is None else params
        k = int(np.shape(params.arm_means)[0])
        return spaces.Dict({
            "last_action": spaces.Discrete(k + 1),
            "last_reward": spaces.Box(-jnp.inf, jnp.inf, (), jnp.float32),
            "time": spaces.Discrete(params.max_steps_in_episode + 1),
        })


def render_bandit(state: EnvState, env_params: EnvParams, bar_width: int = 16,
                  height: int = 64) -> np.ndarray:
    """Bars of the arm means (grey), the arm last pulled in orange; a white line at reward 0.

    Returns ``uint8 [height, k*bar_width, 3]``."""
    means = np.asarray(env_params.arm_means, np.float64)
    k = means.shape[0]
    low, high = min(0.0, means.min()), max(1.0, means.max())
    to_row = lambda v: int(round((height - 1) * (high - v) / (high - low)))  # noqa: E731
    frame = np.full((height, k * bar_width, 3), 30, np.uint8)
    zero_row = to_row(0.0)
    for arm, mean in enumerate(means):
        top, bottom = sorted((to_row(mean), zero_row))
        colour = (240, 150, 40) if int(state.last_action) == arm else (150, 150, 150)
        frame[top:bottom + 1, arm * bar_width + 2:(arm + 1) * bar_width - 2] = colour
    frame[zero_row, :] = 255
    return frame


register("Bandit-v0", Bandit)
register_renderer("Bandit-v0", render_bandit)
