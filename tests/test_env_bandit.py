"""Bandit-v0 against hand-worked pulls and against its parameters by sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs import bandit
from pgjax.envs.rendering import render_frame


def _pull(env, params, action, key=0):
    _, state = env.reset(jax.random.key(key), params)
    return env.step(jax.random.key(key + 1), state, action, params)


def test_make_and_defaults():
    env, params = envs.make("Bandit-v0")
    assert "Bandit-v0" in envs.registered_ids()
    assert env.action_space(params).n == len(bandit.DEFAULT_ARM_MEANS)
    np.testing.assert_allclose(bandit.expected_rewards(params), bandit.DEFAULT_ARM_MEANS)
    env, params = envs.make("Bandit-v0", arm_means=jnp.zeros(7), arm_stds=jnp.ones(7))
    assert env.action_space(params).n == 7


def test_deterministic_arms_pay_their_mean_and_terminate_after_one_pull():
    """σ = 0: every pull of arm a pays exactly μ_a; the episode terminates (not truncates) and the
    returned state is a fresh reset, final_observation the constant [1]."""
    means = jnp.array([-1.0, 2.5, 0.25])
    env, params = envs.make("Bandit-v0", arm_means=means, arm_stds=jnp.zeros(3))
    for arm, expected in enumerate([-1.0, 2.5, 0.25]):
        obs, state, reward, terminated, truncated, info = _pull(env, params, arm, key=arm)
        assert float(reward) == expected
        assert bool(terminated) and not bool(truncated)
        np.testing.assert_array_equal(info["final_observation"], [1.0])
        np.testing.assert_array_equal(obs, [1.0])
        assert int(state.time) == 0 and int(state.last_action) == -1  # auto-reset
    # step_env (before the reset) records the pull
    _, state = env.reset(jax.random.key(0), params)
    _, inner, reward, done, _ = env.step_env(jax.random.key(1), state, 1, params)
    assert int(inner.last_action) == 1 and float(inner.last_reward) == 2.5 and bool(done)


def test_bernoulli_extreme_arms_are_deterministic():
    env, params = envs.make("Bandit-v0", arm_means=jnp.array([0.0, 1.0]), kind="bernoulli")
    assert float(_pull(env, params, 0)[2]) == 0.0
    assert float(_pull(env, params, 1)[2]) == 1.0
    np.testing.assert_allclose(bandit.reward_variances(params), [0.0, 0.0])


def test_analytic_moments_hand_values():
    params = bandit.EnvParams(arm_means=jnp.array([0.2, 0.5]), arm_stds=jnp.array([3.0, 0.5]))
    np.testing.assert_allclose(bandit.reward_variances(params), [9.0, 0.25])
    params = params.replace(kind="bernoulli")
    np.testing.assert_allclose(bandit.reward_variances(params), [0.16, 0.25], rtol=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "bernoulli"])
def test_sampled_moments_match_parameters(kind):
    """20 000 pulls per arm through the vmapped env: sample mean within 5 standard errors of q*(a)
    and sample variance within 5 % of Var[R|a]."""
    means = jnp.array([0.1, 0.6, 0.9]) if kind == "bernoulli" else jnp.array([-0.5, 1.0, 3.0])
    env, params = envs.make("Bandit-v0", arm_means=means, arm_stds=jnp.array([0.5, 1.0, 2.0]),
                            kind=kind)
    n = 20_000
    venv = envs.VecEnv(env, 3 * n)
    _, state = venv.reset(jax.random.key(0), params)
    actions = jnp.repeat(jnp.arange(3), n)
    rewards = np.asarray(jax.jit(venv.step)(jax.random.key(1), state, actions, params)[2])
    rewards = rewards.reshape(3, n)
    q, var = np.asarray(bandit.expected_rewards(params)), np.asarray(bandit.reward_variances(params))
    assert np.all(np.abs(rewards.mean(1) - q) < 5 * np.sqrt(var / n))
    np.testing.assert_allclose(rewards.var(1), var, rtol=0.05)
    if kind == "bernoulli":
        assert set(np.unique(rewards)) <= {0.0, 1.0}


def test_runs_under_the_standard_wrapper_stack():
    """make_vec_env: every step ends an episode of length 1 whose return is that step's reward.
    (A tuple override, as a hashable algorithm config carries it, works like an array.)"""
    venv, params = envs.make_vec_env("Bandit-v0", 4, env_overrides={"arm_stds": (0.0,) * 4})
    obs, state = venv.reset(jax.random.key(0), params)
    step = jax.jit(venv.step)
    for t in range(3):
        actions = jnp.array([0, 1, 2, 3]) if t % 2 == 0 else jnp.array([3, 2, 1, 0])
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, actions, params)
        np.testing.assert_allclose(reward, np.asarray(bandit.DEFAULT_ARM_MEANS)[np.asarray(actions)])
        assert bool(jnp.all(terminated)) and not bool(jnp.any(truncated))
        np.testing.assert_array_equal(info["episode_length"], [1, 1, 1, 1])
        np.testing.assert_allclose(info["episode_return"], reward)
        np.testing.assert_array_equal(obs, np.ones((4, 1)))


def test_renderer_highlights_the_pulled_arm():
    env, params = envs.make("Bandit-v0")
    state = bandit.EnvState(last_action=np.int32(2), last_reward=np.float32(0.0), time=1)
    frame = render_frame("Bandit-v0", state, params)
    assert frame.dtype == np.uint8 and frame.shape == (64, 16 * 4, 3)
    bar_colours = [tuple(frame[60, arm * 16 + 8]) for arm in range(4)]  # every bar spans row 60
    assert bar_colours[2] == (240, 150, 40)
    assert all(c != (240, 150, 40) for i, c in enumerate(bar_colours) if i != 2)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"env.kind='poisson' is not allowed for 'Bandit-v0': "
                                         r"one of \['gaussian', 'bernoulli'\]"):
        envs.make("Bandit-v0", kind="poisson")  # at make time, from the field's declared choices
    env, params = envs.make("Bandit-v0")
    with pytest.raises(ValueError, match="kind"):  # set around make: the environment refuses it
        _pull(env, params.replace(kind="poisson"), 0)
