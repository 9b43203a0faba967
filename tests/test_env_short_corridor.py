"""ShortCorridor-v0 (S&B 2018 Example 13.1) against hand-worked transitions, the closed-form
value, and Monte-Carlo returns of the vmapped JAX environment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs import short_corridor as sc
from pgjax.envs.rendering import render_frame

# (state, action) -> next state, worked out by hand from Example 13.1's picture (0 = left, 1 = right)
HAND_TRANSITIONS = {
    (0, 0): 0,  # wall: left in the start state stays put
    (0, 1): 1,
    (1, 0): 2,  # reversed: left moves right
    (1, 1): 0,  # reversed: right moves left
    (2, 0): 1,
    (2, 1): 3,  # goal
}


def test_make_and_spaces():
    env, params = envs.make("ShortCorridor-v0", max_steps_in_episode=50)
    assert "ShortCorridor-v0" in envs.registered_ids()
    assert params.max_steps_in_episode == 50
    assert env.action_space(params).n == 2


@pytest.mark.parametrize("state_action, expected", sorted(HAND_TRANSITIONS.items()))
def test_step_env_matches_hand_worked_transitions(state_action, expected):
    state, action = state_action
    env, params = envs.make("ShortCorridor-v0")
    start = sc.EnvState(position=jnp.asarray(state, jnp.int32), time=4)
    obs, nxt, reward, terminated, _ = env.step_env(jax.random.key(0), start, action, params)
    assert int(nxt.position) == expected and int(nxt.time) == 5
    assert float(reward) == -1.0
    assert bool(terminated) == (expected == 3)
    np.testing.assert_array_equal(obs, [1.0])  # all states look alike


def test_hand_worked_episode_through_the_wrapper_stack():
    """R, R, R, L, R from the start: 0 →1 →0 (reversed) →1 →2 (reversed) →goal. Return −5, length 5,
    terminated only at the last step, then an automatic reset to state 0."""
    venv, params = envs.make_vec_env("ShortCorridor-v0", 2)
    obs, state = venv.reset(jax.random.key(0), params)
    step = jax.jit(venv.step)
    script = [1, 1, 1, 0, 1]
    positions = [1, 0, 1, 2]
    for t, action in enumerate(script):
        actions = jnp.array([action, 0])  # env 1 keeps walking into the wall
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, actions, params)
        np.testing.assert_array_equal(reward, [-1.0, -1.0])
        assert not bool(jnp.any(truncated))
        assert bool(terminated[0]) == (t == 4) and not bool(terminated[1])
        inner = state.env_state  # EpisodeStatistics' state holds the batched gymnax states
        assert int(inner.position[1]) == 0
        if t < 4:
            assert int(inner.position[0]) == positions[t]
    assert int(info["episode_length"][0]) == 5 and float(info["episode_return"][0]) == -5.0
    assert int(inner.position[0]) == 0 and int(inner.time[0]) == 0  # auto-reset
    np.testing.assert_array_equal(info["final_observation"], np.ones((2, 1)))


def test_time_limit_truncates_not_terminates():
    """With a 3-step limit, three lefts at the wall end the episode truncated (not terminated);
    final_observation is the constant observation, the state is reset, the return is −3."""
    venv, params = envs.make_vec_env("ShortCorridor-v0", 1,
                                     env_overrides={"max_steps_in_episode": 3})
    _, state = venv.reset(jax.random.key(0), params)
    for t in range(3):
        obs, state, reward, terminated, truncated, info = venv.step(
            jax.random.key(t), state, jnp.array([0]), params)
        assert bool(truncated[0]) == (t == 2) and not bool(terminated[0])
    np.testing.assert_array_equal(info["final_observation"], [[1.0]])
    assert float(info["episode_return"][0]) == -3.0 and int(info["episode_length"][0]) == 3
    assert int(state.env_state.time[0]) == 0


def test_linear_solve_matches_closed_form_and_quoted_values():
    ps = np.linspace(0.02, 0.98, 25)
    solved = np.array([sc.start_value(p) for p in ps])
    np.testing.assert_allclose(solved, sc.closed_form_start_value(ps), rtol=1e-10)
    # the ε = 0.1-greedy policies of Example 13.1: S&B quote −44 (mostly right) and −82 (mostly left)
    assert sc.start_value(0.95) == pytest.approx(-44.2, abs=0.05)
    assert sc.start_value(0.05) == pytest.approx(-82.1, abs=0.05)
    # hand check at p = 1/2: v₁ = (½ − 3)/(¼) = −10, v₀ = v₁ − 2 = −12, v₂ = −1 + ½·v₁ = −6
    np.testing.assert_allclose(sc.state_values(0.5), [-12.0, -10.0, -6.0], rtol=1e-12)


def test_optimal_stochastic_policy():
    """p* = 2 − √2 (root of p² − 4p + 2 = 0) and v* = closed form there ≈ −11.657."""
    p_star, v_star = sc.optimal_right_probability()
    assert p_star == pytest.approx(2 - np.sqrt(2), abs=1e-6)
    assert v_star == pytest.approx(float(sc.closed_form_start_value(2 - np.sqrt(2))), abs=1e-9)
    assert round(p_star, 2) == 0.59 and round(v_star, 1) == -11.7
    for p in (p_star - 0.05, p_star + 0.05):  # it is a maximum
        assert sc.start_value(p) < v_star


def _monte_carlo_returns(ps, episodes_per_p, num_steps, key):
    """One episode per env under π(right) = p (per env), returns [len(ps)·n] and finished flags."""
    env, params = envs.make("ShortCorridor-v0")
    p_env = jnp.repeat(jnp.asarray(ps, jnp.float32), episodes_per_p)
    n = p_env.shape[0]
    venv = envs.VecEnv(env, n)
    reset_key, key = jax.random.split(key)
    _, state = venv.reset(reset_key, params)

    def body(carry, step_key):
        state, total, finished = carry
        act_key, env_key = jax.random.split(step_key)
        actions = jax.random.bernoulli(act_key, p_env).astype(jnp.int32)
        _, state, reward, terminated, truncated, _ = venv.step(env_key, state, actions, params)
        total = total + jnp.where(finished, 0.0, reward)
        return (state, total, finished | terminated | truncated), None

    init = (state, jnp.zeros(n), jnp.zeros(n, bool))
    (_, total, finished), _ = jax.lax.scan(body, init, jax.random.split(key, num_steps))
    return total.reshape(len(ps), -1), finished.reshape(len(ps), -1)


def test_monte_carlo_returns_match_the_linear_solve():
    """Mean return of 3000 episodes of the vmapped JAX env per policy lies within 5 standard
    errors of the Bellman solution v_π(s₀)."""
    ps = (0.3, 0.5, 0.8)
    returns, finished = jax.jit(_monte_carlo_returns, static_argnums=(1, 2))(
        ps, 3000, 400, jax.random.key(7))
    returns, finished = np.asarray(returns), np.asarray(finished)
    assert finished.all()
    for row, p in zip(returns, ps):
        se = row.std() / np.sqrt(row.size)
        assert abs(row.mean() - sc.start_value(p)) < 5 * se, (p, row.mean(), sc.start_value(p))


def test_renderer_draws_agent_cell():
    env, params = envs.make("ShortCorridor-v0")
    frame = render_frame("ShortCorridor-v0", sc.EnvState(position=np.int32(2), time=0), params)
    assert frame.shape == (24, 96, 3) and frame.dtype == np.uint8
    centres = [tuple(frame[12, 12 + 24 * i]) for i in range(4)]
    assert centres[2] == (220, 40, 40)
    assert centres[1] == (130, 90, 170) and centres[3] == (60, 170, 80) and centres[0] == (120, 120, 120)
