"""A distinct evaluation routine: a couple hundred fresh episodes per member under fixed keys,
apart from the training rollouts.

``evaluate`` runs ``num_episodes`` fresh environments in parallel, each for exactly one episode,
under fixed evaluation keys (the same parameters always give the same numbers, so runs compare
fairly), with greedy (mode) or sampled actions. Observation statistics, if the agent normalises,
are the trained agent's and stay frozen. Rewards are the raw environment rewards.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pgjax import _xla_cpu, recurrent
from pgjax.algorithms import setup
from pgjax.rollout import policy_step
from pgjax.run import executables
from pgjax.run.background import Background

EVAL_SEED = 1_000_003  # fixed: every evaluation of every run uses the same episode keys


def eval_key(index: int = 0) -> jax.Array:
    """The fixed key of evaluation number ``index`` (same for every run)."""
    return jax.random.fold_in(jax.random.key(EVAL_SEED), index)


def max_episode_steps(config) -> int:
    _, env_params = setup.make_env(config)
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
    num_recorded = num_episodes if record is True else min(int(record), num_episodes)
    # one env program whether recording or not, so every evaluation of the same parameters agrees
    venv, env_params = setup.make_env(config, num_episodes, frozen_obs_stats=True, training=False,
                                       keep_final_state=True)
    network = setup.make_network(config)
    policy_fn, _ = setup.policy_and_value_fns(network, greedy=greedy)
    reset_key, run_key = jax.random.split(key)
    obs, env_state = _reset(config, venv, env_params, reset_key, env_state_for_stats)
    memory = recurrent.initial_memory(network, num_episodes)
    step = functools.partial(_step, venv, env_params, policy_fn, params, num_recorded)
    episodes, records = jax.lax.scan(step, _Episodes.start(env_state, obs, num_recorded, memory),
                                     jax.random.split(run_key, max_episode_steps(config)))
    result = {"returns": episodes.returns, "lengths": episodes.lengths}
    if num_recorded:
        names = ("obs", "actions", "rewards", "terminated", "truncated", "valid", "states")
        result.update(dict(zip(names, records)))
        if venv.keep_final_state:  # the VecEnv's (wrappers forward attributes); DeepSea: False
            result["final_states"] = episodes.final_states
    return result


class _Episodes(NamedTuple):
    """The scan carry of :func:`evaluate`: one episode per environment, counted while active."""
    env_state: Any
    obs: jax.Array
    active: jax.Array        # [E] bool: the environment's first episode has not ended
    returns: jax.Array       # [E] undiscounted return so far
    lengths: jax.Array       # [E] steps so far
    final_states: Any        # [K, ...] the state each recorded episode ended in
    memory: Any              # a recurrent policy's memory (None: feed-forward)

    @classmethod
    def start(cls, env_state, obs, num_recorded: int, memory=None) -> "_Episodes":
        from pgjax.envs import base_env_state
        num_episodes = obs.shape[0]
        return cls(env_state, obs, jnp.ones((num_episodes,), bool), jnp.zeros((num_episodes,)),
                   jnp.zeros((num_episodes,), jnp.int32),
                   jax.tree.map(lambda x: x[:num_recorded], base_env_state(env_state)), memory)


def _step(venv, env_params, policy_fn, params, num_recorded: int, episodes: _Episodes, step_key):
    """One step of every evaluation environment through the rollout engine's
    :func:`pgjax.rollout.policy_step`; rewards and steps count only until each first episode
    ends. Returns (episodes, what is recorded of the first ``num_recorded``)."""
    from pgjax.envs import base_env_state
    state_before = base_env_state(episodes.env_state)
    s = policy_step(venv, env_params, policy_fn, params, episodes.env_state, episodes.obs, step_key,
                    episodes.memory)
    active, ended = episodes.active, s.terminated | s.truncated
    final_states = episodes.final_states
    if "final_state" in s.info:  # the state each recorded episode ends in, kept once
        final_states = _keep_where((active & ended)[:num_recorded], s.info["final_state"],
                                   final_states, num_recorded)
    record = ()
    if num_recorded:
        record = jax.tree.map(lambda x: x[:num_recorded], (
            episodes.obs, s.actions, s.rewards, s.terminated, s.truncated, active, state_before))
    return _Episodes(s.env_state, s.next_obs, active & ~ended,
                     episodes.returns + jnp.where(active, s.rewards, 0.0),
                     episodes.lengths + active.astype(jnp.int32), final_states,
                     s.next_memory), record


def _reset(config, venv, env_params, key, env_state_for_stats):
    """(obs, env_state) of fresh evaluation environments, normalised with the trained agent's
    frozen observation statistics when the config normalises observations."""
    from pgjax.envs import obs_stats_of
    obs, env_state = venv.reset(key, env_params)
    stats = obs_stats_of(env_state_for_stats) if env_state_for_stats is not None else None
    if config.normalize_obs and stats is not None:
        obs, env_state = venv.with_obs_stats(env_state, stats)
    return obs, env_state


def _keep_where(ends, new_states, kept_states, count: int):
    """``new_states[:count]`` where ``ends`` [count] is true, else ``kept_states``, leaf by leaf."""
    return jax.tree.map(lambda kept, new: jnp.where(ends.reshape(ends.shape + (1,) * (new.ndim - 1)),
                                                    new[:count], kept), kept_states, new_states)


# --------------------------------------------------------------------------- host side

@functools.lru_cache(maxsize=16)
def make_eval_fn(config, num_episodes: int, greedy: bool, cache_episodes: int):
    """Evaluation of every member with the fixed evaluation key, recording ``cache_episodes``."""
    return jax.jit(jax.vmap(lambda params, env_state: evaluate(
        config, params, env_state, eval_key(), num_episodes=num_episodes, greedy=greedy,
        record=cache_episodes)))


class EvalProgram:
    """The evaluation program of a run, compiled in a background thread while the first chunks
    train (so evaluation adds nothing to the time before training starts); the first call waits
    for it, saying so on ``out`` (:class:`pgjax.run.chunks.CompileNotice`) while it does. Once
    compiled, a program that cannot fit beside the train state is refused (ConfigError, raised by
    that first call) before it runs. ``seconds`` is its compile time."""

    def __init__(self, config, options, state, out=None):
        from pgjax.run import memory
        from pgjax.run.chunks import CompileNotice
        episodes = options.eval_episodes
        fn = make_eval_fn(config, episodes, options.greedy_eval, options.cache_episodes)
        self.seconds: float | None = None
        members = jax.tree.leaves(state.params)[0].shape[0]
        self.notice = CompileNotice("the evaluation program",
                                    f"{members:,d} member(s) × {episodes:,d} episodes of up to "
                                    f"{max_episode_steps(config):,d} steps", out)
        self._started = self.notice.clock()
        beside = memory.nbytes(state) - memory.nbytes((state.params, state.env_state))
        placement = memory.Placement.of_run(_device_count(state))

        def build():
            start = time.perf_counter()
            try:
                args = (state.params, state.env_state)
                compiled = executables.load_or_compile(
                    ("eval", config, episodes, options.greedy_eval, options.cache_episodes,
                     executables.describe(args)), fn, args, _xla_cpu.compile,
                    store=placement.count == 1 and executables.storable(config))
            finally:
                self.seconds = time.perf_counter() - start
            memory.check_compiled(compiled, "the evaluation program", "eval_episodes", episodes,
                                  memory.EVAL_ADVICE, placement, also=beside)
            return compiled

        self._compiling = Background("pgjax-eval-compile", build)

    def check(self) -> None:
        """Raise the refusal of a program that has finished compiling and cannot fit now, between
        chunks, rather than at its first evaluation (which may be the end of the run)."""
        if self._compiling.wait(0):
            self._compiling.result()

    def wait(self) -> None:
        """Let the compilation finish (a thread left inside XLA when the interpreter exits can
        abort the process)."""
        self._compiling.wait()

    def __call__(self, params, env_state):
        if not self._compiling.wait(0):  # still compiling: say so while waiting
            self.notice.start(started=self._started)
            try:
                self._compiling.result()
            except BaseException:
                self.notice.close()
                raise
            self.notice.finish()
        return self._compiling.result()(params, env_state)


def _device_count(tree) -> int:
    """Devices the first leaf of ``tree`` lives on (1 for host arrays)."""
    sharding = getattr(jax.tree.leaves(tree)[0], "sharding", None)
    return len(sharding.device_set) if sharding is not None else 1


def eval_rows(result: dict, labels: list[dict], update: int, env_steps: int, greedy: bool,
              diverged=()) -> list[dict]:
    returns, lengths = np.asarray(result["returns"]), np.asarray(result["lengths"])
    rows = [{**label, "update": update, "env_steps": env_steps, "greedy": greedy,
             "eval_episodes": returns.shape[1], "eval_return_mean": float(returns[m].mean()),
             "eval_return_std": float(returns[m].std()),
             "eval_return_median": float(np.median(returns[m])),
             "eval_length_mean": float(lengths[m].mean())}
            for m, label in enumerate(labels)]
    for m in diverged:  # evaluated at the last finite state it was frozen at
        rows[m]["diverged"] = True
    return rows
