"""Small, composable, jittable wrappers over a *batch* of gymnax environments.

All wrappers keep the gymnax ≥ 1.0 step signature, batched over ``num_envs``:

    obs, state = venv.reset(key, params)
    obs, state, reward, terminated, truncated, info = venv.step(key, state, action, params)

``terminated`` and ``truncated`` stay separate everywhere, and ``info["final_observation"]`` is the
pre-reset observation of the step (equal to the next observation where the episode goes on), so a
learner can bootstrap from V(final_observation) at a truncation. Every wrapper's state has an
``env_state`` field holding the inner state; wrapper states are flax struct dataclasses, so they
are pytrees that jit, vmap and checkpoint.

The standard stack (see :func:`make_vec_env`), inside to outside:
``VecEnv → ClipAction → EpisodeStatistics → NormalizeReward → NormalizeObservation``.
Episode statistics see the raw rewards; observation normalisation is outermost, so the final
observation used for bootstrapping is normalised with the same statistics as the policy input.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from .registry import make


class Wrapper:
    """Forwards everything it does not override to the inner (batched) environment."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)


class VecEnv:
    """``num_envs`` copies of a gymnax environment, vmapped; gymnax resets finished episodes itself.

    With ``keep_final_state`` (used by evaluation) the step is gymnax's own ``Environment.step``
    spelled out, so that ``info["final_state"]`` can carry the pre-reset state an episode ends in
    (gymnax returns only its observation). Environments that override ``step`` keep theirs and get
    no ``final_state``."""

    def __init__(self, env, num_envs: int, keep_final_state: bool = False):
        self.single_env = env
        self.num_envs = int(num_envs)
        self.keep_final_state = keep_final_state and type(env).step is environment.Environment.step

    def _step_keeping_final_state(self, key, state, action, params):
        """gymnax 1.0's ``Environment.step`` with the same keys, plus the pre-reset state."""
        env = self.single_env
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = env.step_env(key_step, state, action, params)
        truncated = env.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = env.reset_env(key_reset, params)
        select = lambda reset, stepped: jax.lax.select(done, reset, stepped)  # noqa: E731
        info = {**info, "final_observation": obs_st, "final_state": state_st}
        return (jax.tree.map(select, obs_re, obs_st), jax.tree.map(select, state_re, state_st),
                reward, terminated, truncated, info)

    def split_keys(self, key):
        """The per-environment keys (``[N]``) that :meth:`step` and :meth:`reset` draw from one
        ``key``; a rollout splits a whole rollout's keys at once and passes them to :meth:`step`."""
        return jax.random.split(key, self.num_envs)

    def reset(self, key, params):
        return jax.vmap(self.single_env.reset, in_axes=(0, None))(self.split_keys(key), params)

    def step(self, key, state, action, params):
        """Step every environment, from one ``key`` or from its :meth:`split_keys` (one key per
        environment: typed keys ``[N]``, raw uint32 keys ``[N, 2]``)."""
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        keys = key if key.ndim == (1 if typed else 2) else self.split_keys(key)
        step = self._step_keeping_final_state if self.keep_final_state else self.single_env.step
        obs, state, reward, terminated, truncated, info = jax.vmap(
            step, in_axes=(0, 0, 0, None))(keys, state, action, params)
        info = {k: info[k] for k in ("final_observation", "final_state") if k in info}
        return (obs, state, reward.astype(jnp.float32), terminated.astype(bool),
                truncated.astype(bool), info)

    def action_space(self, params):
        return self.single_env.action_space(params)

    def observation_space(self, params):
        return self.single_env.observation_space(params)


class ClipAction(Wrapper):
    """Clips continuous actions to the action space's ``[low, high]`` before the environment sees
    them. The learner keeps the *unclipped* sample and its log-probability (so the score function
    stays that of the Gaussian that produced it)."""

    def step(self, key, state, action, params):
        space = self.env.action_space(params)
        if isinstance(space, spaces.Box):
            action = jnp.clip(action, space.low, space.high)
        return self.env.step(key, state, action, params)


@struct.dataclass
class EpisodeStatsState:
    env_state: Any
    episode_return: jax.Array  # [N] running undiscounted return of the current episode
    episode_length: jax.Array  # [N] steps so far in the current episode


class EpisodeStatistics(Wrapper):
    """Tracks each env's undiscounted return and length; reports them when an episode ends.

    ``info["episode_done"]`` (bool ``[N]``), ``info["episode_return"]`` and
    ``info["episode_length"]`` (the finished episode's totals where done, 0 elsewhere)."""

    def reset(self, key, params):
        obs, env_state = self.env.reset(key, params)
        zeros = jnp.zeros((self.num_envs,), jnp.float32)
        return obs, EpisodeStatsState(env_state, zeros, zeros.astype(jnp.int32))

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self.env.step(
            key, state.env_state, action, params)
        done = terminated | truncated
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        info = {**info,
                "episode_done": done,
                "episode_return": jnp.where(done, episode_return, 0.0),
                "episode_length": jnp.where(done, episode_length, 0)}
        new_state = EpisodeStatsState(env_state,
                                      jnp.where(done, 0.0, episode_return),
                                      jnp.where(done, 0, episode_length))
        return obs, new_state, reward, terminated, truncated, info


@struct.dataclass
class RunningMeanStd:
    """Running mean/variance merged batch by batch (Chan et al. 1979 parallel update)."""
    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape=()):
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32),
                   jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: jax.Array) -> "RunningMeanStd":
        """Merge a batch ``[N, *shape]`` into the statistics."""
        batch = batch.astype(jnp.float32)
        batch_mean = jnp.mean(batch, axis=0)
        batch_var = jnp.var(batch, axis=0)
        batch_count = jnp.asarray(batch.shape[0], jnp.float32)
        delta = batch_mean - self.mean
        total = self.count + batch_count
        mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        return RunningMeanStd(mean, m2 / total, total)


@struct.dataclass
class NormalizeRewardState:
    env_state: Any
    discounted_return: jax.Array  # [N] running γ-discounted return, reset at episode ends
    return_stats: RunningMeanStd


class NormalizeReward(Wrapper):
    """Divides rewards by the running standard deviation of the discounted return (the reward
    scaling of Engstrom et al. 2020, §3), optionally after a constant ``scale``. ``gamma`` is the
    discount of that running return."""

    def __init__(self, env, gamma: float = 0.99, scale: float = 1.0, normalize: bool = True,
                 epsilon: float = 1e-8):
        super().__init__(env)
        self.gamma, self.scale, self.normalize, self.epsilon = gamma, scale, normalize, epsilon

    def reset(self, key, params):
        obs, env_state = self.env.reset(key, params)
        return obs, NormalizeRewardState(env_state, jnp.zeros((self.num_envs,), jnp.float32),
                                         RunningMeanStd.create())

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self.env.step(
            key, state.env_state, action, params)
        reward = reward * self.scale
        discounted_return = state.discounted_return * self.gamma + reward
        stats = state.return_stats.update(discounted_return) if self.normalize else state.return_stats
        if self.normalize:
            reward = reward / jnp.sqrt(stats.var + self.epsilon)
        done = terminated | truncated
        new_state = NormalizeRewardState(env_state, jnp.where(done, 0.0, discounted_return), stats)
        return obs, new_state, reward, terminated, truncated, info


@struct.dataclass
class NormalizeObsState:
    env_state: Any
    obs_stats: RunningMeanStd
    raw_obs: jax.Array  # [N, *obs_shape] the last unnormalised observation


class NormalizeObservation(Wrapper):
    """Normalises observations by a running mean/variance over the env batch, clipped to
    ±``clip``. Statistics live in the env state (so they are checkpointed with it). With
    ``frozen=True`` (evaluation) they are used but never updated. ``final_observation`` is
    normalised too, so a critic bootstraps from the same input scale it was trained on."""

    def __init__(self, env, clip: float = 10.0, epsilon: float = 1e-8, frozen: bool = False):
        super().__init__(env)
        self.clip, self.epsilon, self.frozen = clip, epsilon, frozen

    def normalize(self, stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
        z = (obs - stats.mean) / jnp.sqrt(stats.var + self.epsilon)
        return jnp.clip(z, -self.clip, self.clip)

    def reset(self, key, params):
        obs, env_state = self.env.reset(key, params)
        stats = RunningMeanStd.create(obs.shape[1:])
        if not self.frozen:
            stats = stats.update(obs)
        return self.normalize(stats, obs), NormalizeObsState(env_state, stats, obs)

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self.env.step(
            key, state.env_state, action, params)
        stats = state.obs_stats if self.frozen else state.obs_stats.update(obs)
        info = {**info, "final_observation": self.normalize(stats, info["final_observation"])}
        new_state = NormalizeObsState(env_state, stats, obs)
        return self.normalize(stats, obs), new_state, reward, terminated, truncated, info

    def with_obs_stats(self, state: NormalizeObsState, stats: RunningMeanStd):
        """Replace the statistics (e.g. an evaluation env takes the trained agent's); returns the
        re-normalised current observation and the new state."""
        state = state.replace(obs_stats=stats)
        return self.normalize(stats, state.raw_obs), state


def obs_stats_of(env_state) -> RunningMeanStd | None:
    """The observation statistics inside a wrapped state (None when not normalising)."""
    while env_state is not None:
        if isinstance(env_state, NormalizeObsState):
            return env_state.obs_stats
        env_state = getattr(env_state, "env_state", None)
    return None


def with_obs_stats(env_state, obs_stats: RunningMeanStd):
    """``env_state`` with the observation statistics of its normalisation wrapper replaced by
    ``obs_stats`` (the state unchanged when it does not normalise observations)."""
    if isinstance(env_state, NormalizeObsState):
        return env_state.replace(obs_stats=obs_stats)
    inner = getattr(env_state, "env_state", None)
    if inner is None:
        return env_state
    return env_state.replace(env_state=with_obs_stats(inner, obs_stats))


def base_env_state(env_state):
    """The batched state of the environment itself, below every wrapper (what renderers draw)."""
    while hasattr(env_state, "env_state"):
        env_state = env_state.env_state
    return env_state


def make_vec_env(env_id: str, num_envs: int, *, normalize_obs: bool = False,
                 normalize_reward: bool = False, reward_scale: float = 1.0, gamma: float = 0.99,
                 frozen_obs_stats: bool = False, env_overrides: dict | None = None,
                 keep_final_state: bool = False):
    """The standard wrapper stack over ``num_envs`` copies of ``env_id``; returns (venv, params)."""
    env, params = make(env_id, **(env_overrides or {}))
    venv = EpisodeStatistics(ClipAction(VecEnv(env, num_envs, keep_final_state)))
    if normalize_reward or reward_scale != 1.0:
        venv = NormalizeReward(venv, gamma=gamma, scale=reward_scale, normalize=normalize_reward)
    if normalize_obs:
        venv = NormalizeObservation(venv, frozen=frozen_obs_stats)
    return venv, params
