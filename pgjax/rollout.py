"""The one rollout engine: ``lax.scan`` over steps of a batched environment and a policy.

Every algorithm collects data here; none writes its own loop. The result is a time-major
:class:`Trajectory` ``[T, N, ...]`` that keeps ``terminated`` and ``truncated`` apart and carries
``next_values[t] = V(s'_t)``, the critic at the true successor (the pre-reset final observation at
an episode end), computed in one batched call after the scan.

A recurrent policy also carries a memory through the scan (:mod:`pgjax.recurrent`): it is reset
where an episode ends, the trajectory records the memory the rollout started from
(``memory_start``), and ``V(s'_t)`` is taken under the memory that saw s_t, the one the episode
would have continued with. Feed-forward policies pass ``memory = None`` through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pgjax import recurrent


class Trajectory(NamedTuple):
    obs: jax.Array             # [T, N, *obs] s_t, the input of the policy at step t
    actions: jax.Array         # [T, N, *act] a_t as sampled (unclipped)
    rewards: jax.Array         # [T, N] r_t
    terminated: jax.Array      # [T, N] bool: s'_t is a true terminal state
    truncated: jax.Array       # [T, N] bool: the episode was cut by a time limit at step t
    log_probs: jax.Array       # [T, N] log μ(a_t|s_t) of the behaviour policy
    values: jax.Array          # [T, N] V(s_t) (zeros for a policy without a critic)
    next_obs: jax.Array        # [T, N, *obs] s'_t, the true successor (final observation at ends)
    next_values: jax.Array     # [T, N] V(s'_t)
    episode_done: jax.Array    # [T, N] bool: terminated or truncated
    episode_return: jax.Array  # [T, N] the finished episode's undiscounted return where done, else 0
    episode_length: jax.Array  # [T, N] its length where done, else 0
    memory_start: Any = None   # [N, ...] a recurrent policy's memory before step 0 (None: feed-forward)

    def discounts(self, gamma) -> jax.Array:
        """γ·(1 − terminated_t): a truncation keeps its bootstrap from V(final observation)."""
        return gamma * (1.0 - self.terminated.astype(jnp.float32))

    def dones(self) -> jax.Array:
        """terminated_t or truncated_t, as float: where traces and n-step sums are cut."""
        return self.episode_done.astype(jnp.float32)


PolicyFn = Callable[[Any, jax.Array, jax.Array, Any], tuple[jax.Array, jax.Array, jax.Array, Any]]
ValueFn = Callable[[Any, jax.Array, Any], jax.Array]


class Step(NamedTuple):
    """One step of every environment under the policy (all ``[N, ...]``)."""
    actions: jax.Array
    log_probs: jax.Array
    values: jax.Array
    next_obs: jax.Array        # what the policy sees next (the reset observation after an end)
    env_state: Any
    rewards: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict                 # final_observation, episode_done/return/length, ...
    memory: Any                # the policy's memory after seeing obs (not yet reset; None: feed-forward)

    @property
    def next_memory(self):
        """The memory the next step starts from: reset where the episode ended."""
        return recurrent.reset(self.memory, self.terminated | self.truncated)


def _act_and_step(venv, env_params, policy_fn: PolicyFn, params, env_state, obs, act_key,
                  env_key, memory) -> Step:
    """Act with ``policy_fn`` (from ``act_key``) in every environment and step them once (from
    ``env_key``)."""
    actions, log_probs, values, memory = policy_fn(params, obs, act_key, memory)
    next_obs, env_state, rewards, terminated, truncated, info = venv.step(
        env_key, env_state, actions, env_params)
    return Step(actions, log_probs, values, next_obs, env_state, rewards, terminated, truncated,
                info, memory)


def policy_step(venv, env_params, policy_fn: PolicyFn, params, env_state, obs,
                step_key: jax.Array, memory=None) -> Step:
    """Act with ``policy_fn`` in every environment and step them once: ``step_key`` is split into
    an action key and an environment key (:func:`pgjax.run.evaluation.evaluate` steps through it).
    :func:`rollout` runs the same act-and-step (``_act_and_step``) with the keys of all its steps
    split at once (:func:`_step_keys`), the same split as here, so both see the environments the
    same way."""
    act_key, env_key = jax.random.split(step_key)
    return _act_and_step(venv, env_params, policy_fn, params, env_state, obs, act_key, env_key,
                         memory)


def _step_keys(venv, key: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """The action keys (``[T]``) and environment keys that ``num_steps`` calls of
    :func:`policy_step` draw from the keys ``split(key, num_steps)``, split all at once: the
    environment keys further split per environment (``[T, N]``, the vectorised environment's
    ``split_keys``) where it has one. A few vectorised calls instead of small random-number calls
    inside every step of the rollout's loop, which pays most at a few environments on CPU
    (``python -m benchmarks.throughput``)."""
    act_and_env_keys = jax.vmap(jax.random.split)(jax.random.split(key, num_steps))
    act_keys, env_keys = act_and_env_keys[:, 0], act_and_env_keys[:, 1]
    split_keys = getattr(venv, "split_keys", None)
    return act_keys, env_keys if split_keys is None else jax.vmap(split_keys)(env_keys)


def rollout(venv, env_params, policy_fn: PolicyFn, value_fn: ValueFn, params, env_state, obs,
            key: jax.Array, num_steps: int, on_step=None, learner_state=None, memory=None):
    """Run ``num_steps`` steps of ``venv`` under ``policy_fn``.

    Args:
      venv, env_params: a batched environment from :func:`envs.make_vec_env` and its params.
      policy_fn: ``(params, obs [N, ...], key, memory) -> (actions, log_probs [N], values [N],
        memory after seeing obs)``.
      value_fn: ``(params, obs [..., *obs_shape], memory [..., ...]) -> values [...]``, used for
        ``next_values``.
      params: the behaviour parameters.
      env_state, obs: where the environments stand now.
      memory: a recurrent policy's memory (``[N, ...]`` leaves), None for a feed-forward one.
      key: consumed; split once per step into an action key and an environment key (all
        steps' at once: :func:`_step_keys`).
      num_steps: static rollout length T.
      on_step: optional online learner ``(params, learner_state, transition) -> (params,
        learner_state)`` applied after every environment step (TD(λ) actor-critic); it sees a
        :class:`Trajectory` of single-step ``[N, ...]`` arrays. The policy of step t+1 uses the
        parameters it returns.
      learner_state: the online learner's carry (eligibility traces, ...).

    Returns: ``(env_state, obs, memory, trajectory)`` with the environments' state and the
    policy's memory after the last step; with ``on_step``, ``(env_state, obs, memory, trajectory,
    params, learner_state)``.
    """
    memory_start = memory

    def step(carry, keys):
        env_state, obs, memory, params, learner_state = carry
        s = _act_and_step(venv, env_params, policy_fn, params, env_state, obs, *keys, memory)
        info = s.info
        transition = (obs, s.actions, s.rewards, s.terminated, s.truncated, s.log_probs, s.values,
                      info["final_observation"], info["episode_done"], info["episode_return"],
                      info["episode_length"])
        if on_step is not None:
            single = Trajectory(*transition[:8], jnp.zeros_like(s.rewards), *transition[8:])
            params, learner_state = on_step(params, learner_state, single)
        carry = (s.env_state, s.next_obs, s.next_memory, params, learner_state)
        return carry, (transition, s.memory)

    (env_state, obs, memory, final_params, learner_state), (transitions, seen_memory) = jax.lax.scan(
        step, (env_state, obs, memory, params, learner_state),
        _step_keys(venv, key, num_steps))
    (t_obs, actions, rewards, terminated, truncated, log_probs, values, final_obs, done,
     ep_return, ep_length) = transitions
    next_values = value_fn(params, final_obs, seen_memory)
    trajectory = Trajectory(t_obs, actions, rewards, terminated, truncated, log_probs, values,
                            final_obs, next_values, done, ep_return, ep_length, memory_start)
    if on_step is not None:
        return env_state, obs, memory, trajectory, final_params, learner_state
    return env_state, obs, memory, trajectory


def episode_metrics(trajectory: Trajectory) -> dict[str, jax.Array]:
    """Episode statistics of one rollout: mean return/length of the episodes that finished in it
    (NaN if none did), how many finished, mean reward per step."""
    done = trajectory.episode_done.astype(jnp.float32)
    count = jnp.sum(done)
    safe = jnp.maximum(count, 1.0)
    nan_if_none = lambda x: jnp.where(count > 0, x, jnp.nan)
    return {
        "episode_return": nan_if_none(jnp.sum(trajectory.episode_return) / safe),
        "episode_length": nan_if_none(jnp.sum(trajectory.episode_length.astype(jnp.float32)) / safe),
        "episodes_completed": count,
        "reward_per_step": jnp.mean(trajectory.rewards),
    }
