"""AliasedGridworld-v0 against hand-worked
transitions and values, an exact linear solve, and Monte-Carlo returns of the vmapped JAX env."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs import aliased_gridworld as ag
from pgjax.envs.rendering import render_frame

N, E, S, W = range(4)
# (top-row column, action) -> (row, col) entered, reward, terminated; worked out from the picture
#   [0][1][2][3][4]
#   [X][#][G][#][X]
HAND = {
    (0, N): ((0, 0), -0.1, False), (0, E): ((0, 1), -0.1, False), (0, S): ((1, 0), -1.0, True),
    (0, W): ((0, 0), -0.1, False),
    (1, N): ((0, 1), -0.1, False), (1, E): ((0, 2), -0.1, False), (1, S): ((0, 1), -0.1, False),
    (1, W): ((0, 0), -0.1, False),
    (2, N): ((0, 2), -0.1, False), (2, E): ((0, 3), -0.1, False), (2, S): ((1, 2), 1.0, True),
    (2, W): ((0, 1), -0.1, False),
    (3, N): ((0, 3), -0.1, False), (3, E): ((0, 4), -0.1, False), (3, S): ((0, 3), -0.1, False),
    (3, W): ((0, 2), -0.1, False),
    (4, N): ((0, 4), -0.1, False), (4, E): ((0, 4), -0.1, False), (4, S): ((1, 4), -1.0, True),
    (4, W): ((0, 3), -0.1, False),
}
# wall bits (N, E, S, W) of each top-row cell, by hand: the grey cells 1 and 3 read alike
HAND_OBS = [[1, 0, 0, 1], [1, 0, 1, 0], [1, 0, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]]


def _state(col, time=0):
    return ag.EnvState(row=jnp.asarray(0, jnp.int32), col=jnp.asarray(col, jnp.int32), time=time)


@pytest.mark.parametrize("col_action, expected", sorted(HAND.items()))
def test_step_env_matches_hand_worked_transitions(col_action, expected):
    col, action = col_action
    (row, new_col), reward, terminated = expected
    env, params = envs.make("AliasedGridworld-v0")
    obs, nxt, r, term, _ = env.step_env(jax.random.key(0), _state(col, 3), action, params)
    assert (int(nxt.row), int(nxt.col), int(nxt.time)) == (row, new_col, 4)
    assert float(r) == pytest.approx(reward)
    assert bool(term) == terminated
    if row == 0:
        np.testing.assert_array_equal(obs, HAND_OBS[new_col])


def test_observation_aliases_exactly_the_grey_cells():
    env, params = envs.make("AliasedGridworld-v0")
    obs = np.stack([np.asarray(env.get_obs(_state(c))) for c in range(5)])
    np.testing.assert_array_equal(obs, HAND_OBS)
    same = [(i, j) for i in range(5) for j in range(i + 1, 5) if np.array_equal(obs[i], obs[j])]
    assert same == [(1, 3)]
    np.testing.assert_array_equal(ag.start_observations(), HAND_OBS)


def test_transition_model_agrees_with_step_env():
    """The NumPy model used for exact values is the JAX env's dynamics, cell by cell."""
    env, params = envs.make("AliasedGridworld-v0")
    p, r = ag.transition_model(params)
    for (col, action), ((row, new_col), reward, terminated) in HAND.items():
        assert r[col, action] == pytest.approx(reward)
        expected = np.zeros(5)
        if not terminated:
            expected[new_col] = 1.0
        np.testing.assert_array_equal(p[col, action], expected)


def test_exact_values_match_hand_solution():
    """Hand: grey v = ½·0.9 + ½(−0.2 + v) = 0.7, corners 0.6, middle 1 ⇒ J = 0.72; best
    deterministic (E, E, S, S): starts give 0.8, 0.9, 1, −1.1, −1 ⇒ J = 0.12."""
    params = ag.EnvParams()
    stochastic = ag.cell_policy_from_obs_policy(ag.optimal_stochastic_obs_policy())
    np.testing.assert_allclose(ag.exact_values(stochastic, params), [0.6, 0.7, 1.0, 0.7, 0.6], atol=1e-12)
    # under the 20-step limit the value is a little lower (the walk may not have finished)
    limited = ag.exact_values(stochastic, params, horizon=20)
    full = ag.exact_values(stochastic, params)
    assert np.all(limited[[0, 1, 3, 4]] < full[[0, 1, 3, 4]]) and limited[2] == 1.0 and np.allclose(limited, [0.6, 0.7, 1, 0.7, 0.6], atol=2e-3)
    ref = ag.reference_values(params)
    assert ref["best_deterministic"] == pytest.approx(0.12)
    assert ref["best_deterministic_actions"] in (["E", "E", "S", "S"], ["S", "W", "S", "W"])
    assert ref["optimal_stochastic"] == pytest.approx(limited.mean())
    # every deterministic policy on the features is at least 0.59 worse than the 50/50 one
    values = [ag.exact_values(ag.cell_policy_from_obs_policy(d), params, 20).mean()
              for d in ag.all_deterministic_obs_policies()]
    assert max(values) < ref["optimal_stochastic"] - 0.59
    # ½ is the best grey-cell probability. By hand: V1 = p·0.9 + (1−p)(−0.2 + V1) ⇒ V1 = 1.1 − 0.2/p,
    # V3 = 1.1 − 0.2/(1−p), V0 = V1 − 0.1, V4 = V3 − 0.1, V2 = 1 ⇒ J = (0.8 + 2(V1 + V3))/5
    for p_east in (0.3, 0.45, 0.55, 0.7):
        j = ag.exact_values(ag.cell_policy_from_obs_policy(ag.optimal_stochastic_obs_policy(p_east)), params).mean()
        hand = (0.8 + 2 * (2.2 - 0.2 / p_east - 0.2 / (1 - p_east))) / 5
        assert j == pytest.approx(hand) and j < 0.72


def test_linear_solve_refuses_a_policy_that_never_ends():
    looping = np.zeros((4, 4))
    looping[:, N] = 1.0  # bump into the top wall for ever
    with pytest.raises(np.linalg.LinAlgError):
        ag.exact_values(ag.cell_policy_from_obs_policy(looping), ag.EnvParams())
    v = ag.exact_values(ag.cell_policy_from_obs_policy(looping), ag.EnvParams(), horizon=20)
    np.testing.assert_allclose(v, -2.0)  # 20 steps of −0.1


@functools.partial(jax.jit, static_argnums=(2, 3))
def _monte_carlo(obs_probs, key, num_envs, num_steps):
    """Episode ends and returns ``[T, N]`` of a policy that sees only the wall bits, run under
    ``make_vec_env``."""
    venv, params = envs.make_vec_env("AliasedGridworld-v0", num_envs)
    classes = jnp.asarray(ag.distinct_observations())

    def step(carry, key):
        obs, state = carry
        act_key, env_key = jax.random.split(key)
        cls = jnp.argmax(jnp.all(obs[:, None, :] == classes[None], axis=-1), axis=-1)
        actions = jax.random.categorical(act_key, jnp.log(obs_probs[cls]))
        obs, state, _, terminated, truncated, info = venv.step(env_key, state, actions, params)
        return (obs, state), (info["episode_done"], info["episode_return"], truncated)

    reset_key, run_key = jax.random.split(key)
    obs, state = venv.reset(reset_key, params)
    _, (done, returns, truncated) = jax.lax.scan(step, (obs, state), jax.random.split(run_key, num_steps))
    return done, returns, truncated


@pytest.mark.parametrize("name", ["stochastic", "best_deterministic", "looping_deterministic"])
def test_monte_carlo_returns_match_exact_values(name):
    params = ag.EnvParams()
    if name == "stochastic":
        obs_probs = ag.optimal_stochastic_obs_policy()
    else:
        obs_probs = np.zeros((4, 4))
        obs_probs[0, E], obs_probs[1, E], obs_probs[2, S] = 1, 1, 1
        obs_probs[3, S if name == "best_deterministic" else W] = 1  # W: trapped between cells 3, 4
    exact = ag.exact_values(ag.cell_policy_from_obs_policy(obs_probs), params, horizon=20).mean()
    hand = {"stochastic": None, "best_deterministic": 0.12, "looping_deterministic": (0.8 + 0.9 + 1 - 4) / 5}[name]
    if hand is not None:
        assert exact == pytest.approx(hand)
    done, returns, truncated = _monte_carlo(jnp.asarray(obs_probs, jnp.float32), jax.random.key(7), 1000, 60)
    done, returns = np.asarray(done), np.asarray(returns)
    # only the first episode of each env: its start is the uniform reset (later ones too, but the
    # first is enough and keeps the sample independent)
    first = np.argmax(done, axis=0)
    assert np.all(done.any(axis=0))
    sample = returns[first, np.arange(done.shape[1])]
    stderr = sample.std() / np.sqrt(sample.size)
    assert abs(sample.mean() - exact) < 4 * stderr + 1e-6, (sample.mean(), exact, stderr)
    if name == "looping_deterministic":
        assert np.asarray(truncated).any()  # the trapped starts end by the time limit


def test_reset_is_uniform_over_the_top_row():
    venv, params = envs.make_vec_env("AliasedGridworld-v0", 4000)
    _, state = venv.reset(jax.random.key(3), params)
    counts = np.bincount(np.asarray(state.env_state.row) * 5 + np.asarray(state.env_state.col), minlength=10)
    assert counts[5:].sum() == 0
    np.testing.assert_allclose(counts[:5] / 4000, 0.2, atol=0.03)


def test_truncation_sets_final_observation_and_resets():
    """Always N from the middle cell: 3 steps of −0.1 then a truncation (limit 3), not a
    termination; the final observation is the middle cell's, the new one a fresh start."""
    venv, params = envs.make_vec_env("AliasedGridworld-v0", 1, env_overrides={"max_steps_in_episode": 3})
    env, _ = envs.make("AliasedGridworld-v0")
    obs, state = venv.reset(jax.random.key(0), params)
    state = state.replace(env_state=jax.tree.map(lambda x: jnp.asarray(x)[None], _state(2)))
    step = jax.jit(venv.step)
    for t in range(3):
        obs, state, reward, terminated, truncated, info = step(
            jax.random.key(10 + t), state, jnp.array([N]), params)
        assert float(reward[0]) == pytest.approx(-0.1) and not bool(terminated[0])
        assert bool(truncated[0]) == (t == 2)
    np.testing.assert_array_equal(info["final_observation"][0], HAND_OBS[2])
    assert float(info["episode_return"][0]) == pytest.approx(-0.3)
    assert int(state.env_state.time[0]) == 0


def test_render_draws_the_agent():
    env, params = envs.make("AliasedGridworld-v0")
    frames = [render_frame("AliasedGridworld-v0", jax.tree.map(np.asarray, _state(c)), params) for c in (0, 3)]
    assert frames[0].shape == (32, 80, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    assert tuple(frames[1][8, 3 * 16 + 8]) == (40, 80, 220)  # agent's blue square in cell 3
