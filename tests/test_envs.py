"""envs: registry and wrappers against hand-computed references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs.wrappers import (ClipAction, EpisodeStatistics, NormalizeObservation, NormalizeReward,
                           VecEnv, obs_stats_of)


def test_make_serves_gymnax_ids_and_overrides():
    env, params = envs.make("CartPole-v1", max_steps_in_episode=7)
    assert params.max_steps_in_episode == 7
    assert set(envs.registered_ids()) >= {"CartPole-v1", "Pendulum-v1", "Breakout-MinAtar"}


def test_unknown_id_names_close_matches():
    with pytest.raises(ValueError, match="CartPole-v1"):
        envs.make("CartPol-v1")


def test_unknown_param_override_lists_fields():
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        envs.make("CartPole-v1", max_steps=3)


def test_register_own_env_and_refuse_duplicate():
    from gymnax.environments.classic_control.cartpole import CartPole
    envs.register("TestCartPole-v0", CartPole)
    env, params = envs.make("TestCartPole-v0", max_steps_in_episode=3)
    assert params.max_steps_in_episode == 3
    with pytest.raises(ValueError, match="already registered"):
        envs.register("TestCartPole-v0", CartPole)


def _cartpole_stack(num_envs, max_steps):
    env, params = envs.make("CartPole-v1", max_steps_in_episode=max_steps)
    return env, params, EpisodeStatistics(ClipAction(VecEnv(env, num_envs)))


def test_truncation_keeps_terminated_false_and_final_observation():
    """With a 5-step time limit and a balanced start, step 5 is truncated, not terminated; the
    final observation is the physics successor (checked with the env's own step_env), and the
    returned observation is a fresh reset."""
    env, params, venv = _cartpole_stack(3, 5)
    obs, state = venv.reset(jax.random.key(0), params)
    actions = jnp.array([0, 1, 0])
    for t in range(5):
        inner = state.env_state  # the gymnax states [N]
        expected_next = jax.vmap(lambda s, a: env.step_env(jax.random.key(0), s, a, params)[0])(inner, actions)
        obs, state, reward, terminated, truncated, info = venv.step(jax.random.key(t + 1), state, actions, params)
        np.testing.assert_allclose(info["final_observation"], expected_next, rtol=1e-5, atol=1e-6)
        actions = 1 - actions
    assert bool(jnp.all(truncated)) and not bool(jnp.any(terminated))
    assert bool(jnp.all(info["episode_done"]))
    np.testing.assert_array_equal(info["episode_length"], [5, 5, 5])
    np.testing.assert_allclose(info["episode_return"], [5.0, 5.0, 5.0])
    assert not np.allclose(obs, info["final_observation"])  # auto-reset happened
    assert np.all(np.abs(np.asarray(obs)) <= 0.05)          # CartPole resets in [-0.05, 0.05]


def test_episode_statistics_match_numpy_accumulation():
    env, params, venv = _cartpole_stack(4, 500)
    obs, state = venv.reset(jax.random.key(1), params)
    running = np.zeros(4)
    lengths = np.zeros(4, int)
    finished = []
    key = jax.random.key(2)
    for t in range(120):
        key, akey, skey = jax.random.split(key, 3)
        actions = jax.random.randint(akey, (4,), 0, 2)
        obs, state, reward, terminated, truncated, info = venv.step(skey, state, actions, params)
        running += np.asarray(reward)
        lengths += 1
        done = np.asarray(terminated | truncated)
        for i in np.flatnonzero(done):
            finished.append((running[i], lengths[i]))
            assert info["episode_return"][i] == pytest.approx(running[i])
            assert info["episode_length"][i] == lengths[i]
            running[i], lengths[i] = 0.0, 0
        assert np.all(np.asarray(info["episode_return"])[~done] == 0)
    assert len(finished) > 5  # random CartPole episodes are short


def test_clip_action_clips_before_env_and_matches_direct_step():
    env, params = envs.make("Pendulum-v1")
    venv = ClipAction(VecEnv(env, 2))
    obs, state = venv.reset(jax.random.key(0), params)
    wild = jnp.array([[5.0], [-7.0]])
    _, _, reward, _, _, info = venv.step(jax.random.key(1), state, wild, params)
    clipped = jnp.array([[2.0], [-2.0]])
    ref = jax.vmap(lambda s, a: env.step_env(jax.random.key(0), s, a, params))(state, clipped)
    np.testing.assert_allclose(info["final_observation"], ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reward, ref[2], rtol=1e-5, atol=1e-6)


def test_observation_normalisation_statistics_match_numpy():
    env, params = envs.make("CartPole-v1")
    venv = NormalizeObservation(EpisodeStatistics(VecEnv(env, 8)))
    obs, state = venv.reset(jax.random.key(0), params)
    seen = [np.asarray(state.raw_obs)]
    key = jax.random.key(3)
    for t in range(30):
        key, akey, skey = jax.random.split(key, 3)
        actions = jax.random.randint(akey, (8,), 0, 2)
        obs, state, _, _, _, info = venv.step(skey, state, actions, params)
        seen.append(np.asarray(state.raw_obs))
    all_obs = np.concatenate(seen, axis=0)
    stats = obs_stats_of(state)
    # the 1e-4 prior count (mean 0, var 1) is negligible against 248 samples
    np.testing.assert_allclose(stats.mean, all_obs.mean(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(stats.var, all_obs.var(0), rtol=1e-3, atol=1e-6)
    expected = np.clip((seen[-1] - np.asarray(stats.mean)) / np.sqrt(np.asarray(stats.var) + 1e-8), -10, 10)
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-5)


def test_normalised_final_observation_uses_same_statistics():
    env, params = envs.make("CartPole-v1", max_steps_in_episode=3)
    venv = NormalizeObservation(EpisodeStatistics(VecEnv(env, 4)))
    obs, state = venv.reset(jax.random.key(0), params)
    actions = jnp.zeros((4,), jnp.int32)
    for t in range(3):
        inner = state.env_state.env_state
        raw_next = jax.vmap(lambda s, a: env.step_env(jax.random.key(0), s, a, params)[0])(inner, actions)
        obs, state, _, terminated, truncated, info = venv.step(jax.random.key(t), state, actions, params)
    stats = obs_stats_of(state)
    expected = np.clip((np.asarray(raw_next) - stats.mean) / np.sqrt(stats.var + 1e-8), -10, 10)
    np.testing.assert_allclose(info["final_observation"], expected, rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(truncated))


def test_frozen_statistics_do_not_move_and_can_be_loaded():
    env, params = envs.make("CartPole-v1")
    train_env = NormalizeObservation(VecEnv(env, 4))
    _, train_state = train_env.reset(jax.random.key(0), params)
    for t in range(5):
        _, train_state, *_ = train_env.step(jax.random.key(t), train_state, jnp.ones(4, jnp.int32), params)
    eval_env = NormalizeObservation(VecEnv(env, 2), frozen=True)
    _, eval_state = eval_env.reset(jax.random.key(9), params)
    obs, eval_state = eval_env.with_obs_stats(eval_state, obs_stats_of(train_state))
    stats = obs_stats_of(train_state)
    np.testing.assert_allclose(obs, (np.asarray(eval_state.raw_obs) - stats.mean) / np.sqrt(stats.var + 1e-8),
                               rtol=1e-5, atol=1e-5)
    _, eval_state2, *_ = eval_env.step(jax.random.key(1), eval_state, jnp.zeros(2, jnp.int32), params)
    np.testing.assert_array_equal(obs_stats_of(eval_state2).mean, stats.mean)


def test_reward_normalisation_divides_by_running_return_std():
    env, params = envs.make("CartPole-v1")
    gamma = 0.9
    venv = NormalizeReward(VecEnv(env, 3), gamma=gamma)
    _, state = venv.reset(jax.random.key(0), params)
    ret = np.zeros(3)
    history = []
    for t in range(20):
        _, state, reward, terminated, truncated, _ = venv.step(jax.random.key(t), state, jnp.zeros(3, jnp.int32), params)
        ret = ret * gamma + 1.0  # CartPole pays 1 per step (until the pole falls)
        history.append(ret.copy())
        all_returns = np.concatenate(history)
        # running variance with a prior of (mean 0, var 1, count 1e-4)
        n = all_returns.size
        var = (all_returns.var() * n + 1e-4 * 1.0 + (all_returns.mean() ** 2) * 1e-4 * n / (n + 1e-4)) / (n + 1e-4)
        done = np.asarray(terminated | truncated)
        np.testing.assert_allclose(reward, 1.0 / np.sqrt(var + 1e-8), rtol=2e-4)
        ret[done] = 0.0
        if done.any():
            break


def test_make_inside_a_jit_trace_returns_concrete_params():
    """A cached env first built while tracing must not leak tracers (Acrobot's params hold arrays)."""
    captured = {}

    @jax.jit
    def traced(x):
        captured["params"] = envs.make("Acrobot-v1")[1]
        return x

    traced(1.0)
    assert not isinstance(captured["params"].available_torque, jax.core.Tracer)
    np.testing.assert_array_equal(captured["params"].available_torque, [-1.0, 0.0, 1.0])


def test_keep_final_state_steps_exactly_like_gymnax_and_reports_the_pre_reset_state():
    """VecEnv(keep_final_state=True) spells out gymnax's step: the same results, plus the state an
    episode ended in (CartPole: outside its bounds or at the time limit, never a fresh reset)."""
    import jax
    import numpy as np

    from pgjax.envs import VecEnv, make
    env, params = make("CartPole-v1", max_steps_in_episode=30)
    plain, keeping = VecEnv(env, 8), VecEnv(env, 8, keep_final_state=True)
    _, state = plain.reset(jax.random.key(0), params)
    step_plain, step_keep = jax.jit(lambda k, s, a: plain.step(k, s, a, params)), \
        jax.jit(lambda k, s, a: keeping.step(k, s, a, params))
    ends = 0
    for t in range(60):
        key = jax.random.fold_in(jax.random.key(1), t)
        action = jax.random.bernoulli(jax.random.fold_in(key, 7), 0.5, (8,)).astype(np.int32)
        a = step_plain(key, state, action)
        b = step_keep(key, state, action)
        for x, y in zip(jax.tree.leaves(a[:5]), jax.tree.leaves(b[:5])):
            # same operations, another program: equal up to float rounding
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
        final = b[5]["final_state"]
        np.testing.assert_array_equal(np.asarray(final.time), np.asarray(state.time) + 1)
        done = np.asarray(a[3] | a[4])
        out = (np.abs(np.asarray(final.theta)) > params.theta_threshold_radians) | \
            (np.abs(np.asarray(final.x)) > params.x_threshold) | (np.asarray(final.time) >= 30)
        np.testing.assert_array_equal(done, out)
        ends += done.sum()
        state = a[1]
    assert ends > 8
    assert "final_state" not in step_plain(key, state, action)[5]
