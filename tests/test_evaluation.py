"""Evaluation: fixed keys give identical numbers; recorded episodes add up to the returns."""

import jax
import numpy as np

from pgjax.run import evaluation
from pgjax.algorithms import ppo


def _params(config, seed=0):
    state = ppo.init(config, ppo.Hparams(), jax.random.key(seed))
    return state.params, state.env_state


def test_fixed_keys_give_identical_results_and_episodes_add_up():
    config = ppo.Config(env_id="CartPole-v1", total_steps=512)
    params, env_state = _params(config)
    a = evaluation.evaluate(config, params, env_state, evaluation.eval_key(), 20, True, True)
    b = evaluation.evaluate(config, params, env_state, evaluation.eval_key(), 20, True, True)
    np.testing.assert_array_equal(a["returns"], b["returns"])
    valid = np.asarray(a["valid"])
    rewards = np.asarray(a["rewards"])
    np.testing.assert_allclose((rewards * valid).sum(0), a["returns"], rtol=1e-6)
    np.testing.assert_array_equal(valid.sum(0), a["lengths"])
    # CartPole pays 1 per step: return = length; each episode ends exactly once, at its last valid step
    np.testing.assert_allclose(a["returns"], a["lengths"])
    ends = np.asarray(a["terminated"] | a["truncated"]) & valid
    np.testing.assert_array_equal(ends.sum(0), np.ones(20))


def test_sampled_and_greedy_differ_and_other_key_differs():
    config = ppo.Config(env_id="CartPole-v1", total_steps=512)
    params, env_state = _params(config)
    greedy = evaluation.evaluate(config, params, env_state, evaluation.eval_key(), 50, True)
    sampled = evaluation.evaluate(config, params, env_state, evaluation.eval_key(), 50, False)
    other = evaluation.evaluate(config, params, env_state, evaluation.eval_key(1), 50, False)
    assert not np.array_equal(greedy["lengths"], sampled["lengths"])
    assert not np.array_equal(sampled["lengths"], other["lengths"])


def test_evaluation_uses_frozen_training_observation_statistics():
    config = ppo.Config(env_id="CartPole-v1", total_steps=512, normalize_obs=True)
    state = ppo.init(config, ppo.Hparams(), jax.random.key(0))
    from pgjax.envs import obs_stats_of
    stats = obs_stats_of(state.env_state)
    shifted = state.env_state.replace(obs_stats=stats.replace(mean=stats.mean + 0.1 * np.sqrt(np.asarray(stats.var) + 1e-8)))
    base = evaluation.evaluate(config, state.params, state.env_state, evaluation.eval_key(), 10, True, True)
    moved = evaluation.evaluate(config, state.params, shifted, evaluation.eval_key(), 10, True, True)
    first_obs = np.asarray(base["obs"][0]); first_obs_moved = np.asarray(moved["obs"][0])
    # same raw observations, normalised with means 0.1σ apart: z differs by exactly 0.1
    np.testing.assert_allclose(first_obs - first_obs_moved, np.full(first_obs.shape, 0.1), rtol=1e-3)
