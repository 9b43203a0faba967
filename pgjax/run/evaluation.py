"""A distinct evaluation routine (seed: "always have a distinct evaluation routine that runs a
couple hundred eval episodes").

``evaluate`` runs ``num_episodes`` fresh environments in parallel, each for exactly one episode,
under fixed evaluation keys (the same parameters always give the same numbers, so runs compare
fairly), with greedy (mode) or sampled actions. Observation statistics, if the agent normalises,
are the trained agent's and stay frozen. Rewards are the raw environment rewards.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pgjax.algorithms import common

EVAL_SEED = 1_000_003  # fixed: every evaluation of every run uses the same episode keys


def eval_key(index: int = 0) -> jax.Array:
    """The fixed key of evaluation number ``index`` (same for every run)."""
    return jax.random.fold_in(jax.random.key(EVAL_SEED), index)


def max_episode_steps(config) -> int:
    _, env_params = common.make_env(config)
    return int(env_params.max_steps_in_episode)


@functools.partial(jax.jit, static_argnames=("config", "num_episodes", "greedy", "record"))
def evaluate(config, params, env_state_for_stats, key, num_episodes: int = 200, greedy: bool = True,
             record: bool | int = False):
    """Play one episode in each of ``num_episodes`` environments.

    Args:
      config: the run's static config (env, wrappers, network).
      params: the agent's parameters.
      env_state_for_stats: the training env state whose observation statistics are used (or
        None when the config does not normalise observations).
      key: evaluation key; use :func:`eval_key` for comparable numbers.
      num_episodes, greedy: static.
      record: static; ``True`` also returns every episode step by step, an integer K only the
        first K episodes (the returns and lengths always cover all ``num_episodes``).

    Returns: dict of ``returns [E]``, ``lengths [E]`` and, when recording, the episodes
    (``obs [L, K, ...]``, ``actions``, ``rewards``, ``terminated``, ``truncated``, ``valid [L, K]``
    where L is the env's time limit and ``valid`` marks the steps inside each env's one episode,
    and ``states``: the unwrapped environment state before each step, for rendering, plus
    ``final_states [K, ...]``: the state each episode ends in, where the env reports it).
    """
    from envs import base_env_state
    num_recorded = num_episodes if record is True else min(int(record), num_episodes)
    # one env program whether recording or not, so every evaluation of the same parameters agrees
    venv, env_params = common.make_env(config, num_episodes, frozen_obs_stats=True, training=False,
                                       keep_final_state=True)
    policy_fn, _ = common.policy_and_value_fns(common.make_network(config), greedy=greedy)
    reset_key, run_key = jax.random.split(key)
    obs, env_state = _reset(config, venv, env_params, reset_key, env_state_for_stats)

    def step(carry, step_key):
        env_state, obs, active, ep_return, ep_length, final_states = carry
        state_before = base_env_state(env_state)
        act_key, env_key = jax.random.split(step_key)
        action, _, _ = policy_fn(params, obs, act_key)
        next_obs, env_state, reward, terminated, truncated, info = venv.step(
            env_key, env_state, action, env_params)
        if "final_state" in info:  # the state each recorded episode ends in, kept once
            ends = (active & (terminated | truncated))[:num_recorded]
            final_states = _keep_where(ends, info["final_state"], final_states, num_recorded)
        ep_return = ep_return + jnp.where(active, reward, 0.0)
        ep_length = ep_length + active.astype(jnp.int32)
        step_record = ()
        if num_recorded:
            first = lambda x: x[:num_recorded]  # noqa: E731
            step_record = jax.tree.map(first, (obs, action, reward, terminated, truncated, active,
                                               state_before))
        active = active & ~(terminated | truncated)
        return (env_state, next_obs, active, ep_return, ep_length, final_states), step_record

    active = jnp.ones((num_episodes,), bool)
    final_states = jax.tree.map(lambda x: x[:num_recorded], base_env_state(env_state))
    init = (env_state, obs, active, jnp.zeros((num_episodes,)), jnp.zeros((num_episodes,), jnp.int32),
            final_states)
    (_, _, _, returns, lengths, final_states), records = jax.lax.scan(
        step, init, jax.random.split(run_key, max_episode_steps(config)))
    result = {"returns": returns, "lengths": lengths}
    if num_recorded:
        names = ("obs", "actions", "rewards", "terminated", "truncated", "valid", "states")
        result.update(dict(zip(names, records)))
        if venv.keep_final_state:  # the VecEnv's (wrappers forward attributes); DeepSea: False
            result["final_states"] = final_states
    return result



def _reset(config, venv, env_params, key, env_state_for_stats):
    """(obs, env_state) of fresh evaluation environments, normalised with the trained agent's
    frozen observation statistics when the config normalises observations."""
    from envs import obs_stats_of
    obs, env_state = venv.reset(key, env_params)
    stats = obs_stats_of(env_state_for_stats) if env_state_for_stats is not None else None
    if config.normalize_obs and stats is not None:
        obs, env_state = venv.with_obs_stats(env_state, stats)
    return obs, env_state


def _keep_where(ends, new_states, kept_states, count: int):
    """``new_states[:count]`` where ``ends`` [count] is true, else ``kept_states``, leaf by leaf."""
    return jax.tree.map(lambda kept, new: jnp.where(ends.reshape(ends.shape + (1,) * (new.ndim - 1)),
                                                    new[:count], kept), kept_states, new_states)
