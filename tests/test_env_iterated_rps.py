"""IteratedRPS-v0 against the payoff table,
hand-worked opponent replies and EMA updates, a brute-force exploitability, and Monte-Carlo play
of the vmapped JAX env."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs import iterated_rps as rps
from pgjax.envs.rendering import render_frame

R, P, S = range(3)


def test_payoff_table_by_hand():
    wins = {(P, R), (S, P), (R, S)}
    for a, b in itertools.product(range(3), repeat=2):
        expected = 1.0 if (a, b) in wins else (-1.0 if (b, a) in wins else 0.0)
        assert float(rps.payoff(a, b)) == expected


def _brute_force_exploitability(p):
    """Win rate minus loss rate of each pure reply, from the rules ("paper covers rock" ...)."""
    beats = {P: R, S: P, R: S}  # key beats value
    return max(sum(p[a] * ((beats[b] == a) - (beats[a] == b)) for a in range(3)) for b in range(3))


def test_exploitability_hand_cases_and_brute_force():
    hand = {(1, 0, 0): 1.0, (0.5, 0.5, 0): 0.5, (0.5, 0.25, 0.25): 0.25, (1 / 3, 1 / 3, 1 / 3): 0.0,
            (0.2, 0.3, 0.5): 0.2}  # rock beats 0.5, loses to 0.3; scissors 0.3 − 0.2; paper 0.2 − 0.5
    probs = np.array(list(hand), np.float32)
    np.testing.assert_allclose(rps.exploitability(probs), [_brute_force_exploitability(p) for p in probs], atol=1e-6)
    np.testing.assert_allclose(rps.exploitability(probs), list(hand.values()), atol=1e-6)
    random = np.random.default_rng(0).dirichlet(np.ones(3), size=200).astype(np.float32)
    got = np.asarray(rps.exploitability(random))
    np.testing.assert_allclose(got, [_brute_force_exploitability(p) for p in random], atol=1e-6)
    assert np.all(got > 0)  # only the uniform strategy is unexploitable


_best_responses = jax.jit(jax.vmap(rps.best_response, in_axes=(0, None)))


@pytest.mark.parametrize("freqs, replies", [
    ((0.6, 0.2, 0.2), {P}),            # mostly rock → paper
    ((0.2, 0.2, 0.6), {R}),            # mostly scissors → rock
    ((0.5, 0.5, 0.0), {P}),            # paper: +0.5 (beats rock, ties paper); scissors 0; rock −0.5
    ((0.5, 1 / 6, 1 / 3), {R, P}),     # rock: 1/3 − 1/6 = 1/6; paper: 1/2 − 1/3 = 1/6; scissors −1/3
    ((1 / 3, 1 / 3, 1 / 3), {R, P, S}),
])
def test_best_response_and_random_tie_breaking(freqs, replies):
    keys = jax.random.split(jax.random.key(0), 3000)
    picks = np.asarray(_best_responses(keys, jnp.asarray(freqs, jnp.float32)))
    assert set(np.unique(picks)) == replies
    np.testing.assert_allclose(np.bincount(picks, minlength=3)[sorted(replies)] / 3000,
                               1 / len(replies), atol=0.04)


def test_step_env_hand_worked_round():
    """k = 1, η = 0.5. Context "rock then paper" (joint play 3·0 + 1 = 1) holds f = (0.6, 0.2, 0.2),
    so the opponent plays paper; the agent's scissors wins (+1); f[1] ← ½f + ½e_S = (0.3, 0.1, 0.6);
    the history becomes scissors-vs-paper = 3·2 + 1 = 7; no other context changes."""
    env, params = envs.make("IteratedRPS-v0", ema_rate=0.5)
    freqs = np.full((10, 3), 1 / 3, np.float32)
    freqs[1] = [0.6, 0.2, 0.2]
    state = rps.EnvState(history=jnp.array([1], jnp.int32), freqs=jnp.asarray(freqs), time=7)
    obs, nxt, reward, terminated, info = jax.jit(env.step_env)(jax.random.key(1), state, S, params)
    assert int(info["opponent_action"]) == P and float(reward) == 1.0 and not bool(terminated)
    np.testing.assert_array_equal(nxt.history, [7])
    expected = freqs.copy()
    expected[1] = [0.3, 0.1, 0.6]
    np.testing.assert_allclose(nxt.freqs, expected, atol=1e-6)
    np.testing.assert_array_equal(obs, np.eye(9)[7])
    assert int(nxt.time) == 8


def test_history_of_two_rounds_shifts_and_indexes_contexts():
    """k = 2: the history is most-recent-first, the context is h0 + 10·h1, the observation two
    one-hots; the first round's slots are empty (all-zero) and the context is 99."""
    env = rps.IteratedRPS(history_length=2)
    params = env.default_params
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (18,) and not np.any(obs) and int(rps.context_index(state.history)) == 99
    freqs = np.full((100, 3), 1 / 3, np.float32)
    freqs[99] = [0.1, 0.1, 0.8]  # in the first round the opponent expects scissors → plays rock
    state = state.replace(freqs=jnp.asarray(freqs))
    step = jax.jit(env.step_env)
    obs, state, reward, _, info = step(jax.random.key(1), state, P, params)
    assert int(info["opponent_action"]) == R and float(reward) == 1.0
    np.testing.assert_array_equal(state.history, [3 * P + R, rps.EMPTY])
    assert int(rps.context_index(state.history)) == 3 * P + R + 90
    np.testing.assert_array_equal(obs, np.concatenate([np.eye(9)[3 * P + R], np.zeros(9)]))
    obs, state, *_ = step(jax.random.key(2), state, R, params)
    assert int(state.history[1]) == 3 * P + R
    np.testing.assert_array_equal(obs[9:], np.eye(9)[3 * P + R])


def test_truncation_after_the_last_round_with_final_observation():
    venv, params = envs.make_vec_env("IteratedRPS-v0", 2, env_overrides={"max_steps_in_episode": 4})
    obs, state = venv.reset(jax.random.key(0), params)
    step = jax.jit(venv.step)
    for t in range(4):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, jnp.array([R, S]), params)
        assert not bool(terminated.any()) and bool(truncated.all()) == (t == 3)
    opponent = np.asarray(info["final_observation"]).argmax(-1) % 3  # last joint play 3a + b
    np.testing.assert_array_equal(np.asarray(info["final_observation"]).argmax(-1) // 3, [R, S])
    np.testing.assert_allclose(reward, [rps.PAYOFF[R, opponent[0]], rps.PAYOFF[S, opponent[1]]])
    assert not np.any(obs)  # reset: no history yet, and the opponent's memory is back to uniform
    np.testing.assert_allclose(state.env_state.freqs, 1 / 3)


AGENTS = ("rock", "uniform", "beat_last")


@functools.partial(jax.jit, static_argnums=(2, 3))
def _play(key, agent, num_envs, rounds):
    """Rewards ``[rounds, N]`` of a scripted agent (index into ``AGENTS``, traced so the three
    share one compilation): rock always; uniformly random; or the reply that beats the
    opponent's previous move (rock in round 1)."""
    venv, params = envs.make_vec_env("IteratedRPS-v0", num_envs)

    def step(carry, key):
        obs, state = carry
        act_key, env_key = jax.random.split(key)
        last_opponent = jnp.argmax(obs, -1) % 3
        choices = jnp.stack([jnp.zeros((num_envs,), jnp.int32),
                             jax.random.randint(act_key, (num_envs,), 0, 3),
                             jnp.where(jnp.any(obs > 0, -1), (last_opponent + 1) % 3, R)])
        obs, state, reward, *_ = venv.step(env_key, state, choices[agent], params)
        return (obs, state), reward

    reset_key, run_key = jax.random.split(key)
    carry = venv.reset(reset_key, params)
    return jax.lax.scan(step, carry, jax.random.split(run_key, rounds))[1]


def test_opponent_exploits_predictable_play_but_not_uniform():
    """Always-rock visits at most 4 contexts (start, rock vs R/P/S); after the first visit to each,
    f = 0.7·⅓ + 0.3·e_R favours rock and the opponent plays paper, so ≥ 96 of 100 rounds are lost.
    "Beat the opponent's last move" (which beats an opponent that only tracks marginal
    frequencies) is deterministic given the context, so it is exploited too. Uniform play scores 0."""
    rock, uniform, beat_last = (np.asarray(_play(jax.random.key(i), i, 64, 100)) for i in range(3))
    assert np.all(rock.sum(0) <= -92) and np.all((rock == -1).sum(0) >= 96)
    assert beat_last.mean() < -0.8
    assert abs(uniform.mean()) < 4 * uniform.std() / np.sqrt(uniform.size)
    np.testing.assert_allclose([(uniform == v).mean() for v in (-1, 0, 1)], 1 / 3, atol=0.03)


def test_make_spaces_and_render():
    env, params = envs.make("IteratedRPS-v0", max_steps_in_episode=10)
    assert params.max_steps_in_episode == 10 and env.action_space(params).n == 3
    assert env.observation_space(params).shape == (9,)
    _, state = env.reset(jax.random.key(0), params)
    blank = render_frame("IteratedRPS-v0", jax.tree.map(np.asarray, state), params)
    _, state, *_ = env.step(jax.random.key(1), state, P, params)
    frame = render_frame("IteratedRPS-v0", jax.tree.map(np.asarray, state), params)
    assert frame.shape == blank.shape == (48, 88, 3) and frame.dtype == np.uint8
    assert tuple(frame[8, 8]) == tuple(rps._COLOURS[P]) and tuple(blank[8, 8]) == (40, 40, 40)
    with pytest.raises(ValueError, match="history_length"):
        rps.IteratedRPS(history_length=0)
