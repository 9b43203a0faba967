"""The Craftax, Navix and Jumanji adapters (``envs.make("craftax:…" | "navix:…" | "jumanji:…")``,
one optional extra each): per suite, a hand-built episode that ends by a termination and one that
ends at the time limit (terminated and truncated as pgjax reads them, the final observation kept),
the spaces, and refusals in one line; the structured-observation rule and the action mask against
a NumPy reference. Skipped where a suite is not installed (CI installs none of them);
test_all_paths.py trains, resumes bit-identically and evaluates PPO through each where it is."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.config import ConfigError
from pgjax.envs import suites

needs = {name: pytest.mark.skipif(not suites.installed(name), reason=f"{name} not installed")
         for name in ("craftax", "navix", "jumanji")}


def _play(env_id, actions, state_edit=None, **overrides):
    """(reward, terminated, truncated, time after the step) of each step from a reset, and the
    observation of the last step (the reset one when the episode ended) and its final one."""
    env, params = envs.make(env_id, **overrides)
    _, state = env.reset(jax.random.key(0), params)
    if state_edit is not None:
        state = state_edit(state)
    step, steps = jax.jit(env.step), []
    for t, action in enumerate(actions):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t + 1), state, action, params)
        steps.append((round(float(reward), 6), bool(terminated), bool(truncated), int(state.time)))
    return steps, obs, info["final_observation"]


@pytest.mark.parametrize("suite,env_id", [("craftax", "craftax:Craftax-Classic-Symbolic-v1"),
                                          ("navix", "navix:Navix-Empty-5x5-v0"),
                                          ("jumanji", "jumanji:Snake-v1")])
def test_a_missing_extra_is_refused_with_the_install_line(monkeypatch, suite, env_id):
    monkeypatch.setattr(suites, "installed", lambda module: False)
    with pytest.raises(ValueError, match=rf"needs {suite}, which is not installed: pip install -e '\.\[{suite}\]'"):
        envs.check_env_id(env_id)


# ----------------------------------------------------------------------------------------- navix
NAVIX = "navix:Navix-Empty-5x5-v0"
# Empty-5x5: the agent starts at (1, 1) facing east, the goal is at (3, 3); navix's MiniGrid
# actions: 0 turn left, 1 turn right, 2 forward. Forward twice, turn right, forward twice: goal.
TO_THE_GOAL = (2, 2, 1, 2, 2)


@needs["navix"]
def test_navix_reaching_the_goal_is_a_termination_reset_in_the_same_step():
    steps, obs, final = _play(NAVIX, TO_THE_GOAL)
    assert steps == [(0.0, False, False, t) for t in (1, 2, 3, 4)] + [(1.0, True, False, 0)]
    # the returned observation is the next episode's first (navix alone would return it one call
    # late); the final observation is the goal cell's view, which differs from it
    env, params = envs.make(NAVIX)
    first, _ = env.reset(jax.random.key(6), params)
    assert obs.shape == first.shape == (5, 5, 3) and not np.array_equal(final, obs)


@needs["navix"]
def test_navix_time_limit_is_gymnaxs_and_a_truncation():
    steps, _, _ = _play(NAVIX, (0, 0, 0), max_steps_in_episode=3)  # turning never reaches the goal
    assert steps == [(0.0, False, False, 1), (0.0, False, False, 2), (0.0, False, True, 0)]
    assert envs.make(NAVIX)[1].max_steps_in_episode == 100  # navix.make's limit by default
    # navix's own limit is out of reach: 150 turns under a 200-step limit never end an episode,
    # nor does navix reset it unseen (its step counter runs on with ours)
    env, params = envs.make(NAVIX, max_steps_in_episode=200)
    _, state = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    for t in range(150):
        _, state, _, terminated, truncated, _ = step(jax.random.key(t), state, 0, params)
        assert not (terminated or truncated)
    assert int(state.suite.t) == int(state.time) == 150


@needs["navix"]
def test_navix_spaces_and_refusals():
    env, params = envs.make(NAVIX)
    obs, _ = env.reset(jax.random.key(0), params)
    assert env.observation_space(params).shape == obs.shape and obs.dtype == jnp.float32
    assert env.action_space(params).n == 7
    with pytest.raises(ValueError, match="unknown navix environment 'Navix-Empty-4x4-v0'.*Navix-Empty-5x5-v0"):
        envs.check_env_id("navix:Navix-Empty-4x4-v0")


# --------------------------------------------------------------------------------------- craftax
CRAFTAX = "craftax:Craftax-Classic-Symbolic-v1"


def _lava_under_the_player(state):
    from craftax.craftax_classic.constants import BlockType
    row, col = (int(x) for x in state.suite.player_position)
    return state.replace(suite=state.suite.replace(
        map=state.suite.map.at[row, col].set(BlockType.LAVA.value)))


@needs["craftax"]
def test_craftax_walking_into_lava_is_a_termination():
    steps, _, _ = _play(CRAFTAX, (0,), state_edit=_lava_under_the_player)
    (reward, terminated, truncated, time), = steps
    assert (terminated, truncated, time) == (True, False, 0)


@needs["craftax"]
def test_craftax_time_limit_is_a_truncation_though_the_suite_calls_it_done_with_discount_0():
    steps, _, _ = _play(CRAFTAX, (0, 0), max_steps_in_episode=2)
    assert [s[1:] for s in steps] == [(False, False, 1), (False, True, 0)]
    # the suite itself, with the same limit, ends that step as done with discount 0
    env, params = envs.make(CRAFTAX)
    suite = env.suite_env
    suite_params = suite.default_params.replace(max_timesteps=2)
    _, state = suite.reset_env(jax.random.key(0), suite_params)
    for t in (1, 2):
        _, state, _, done, info = suite.step_env(jax.random.key(t), state, 0, suite_params)
    assert bool(done) and float(info["discount"]) == 0.0
    assert params.max_steps_in_episode == 10_000  # the suite's limit by default


@needs["craftax"]
def test_craftax_parameters_reach_the_suite_and_the_spaces_are_its_own():
    env, params = envs.make(CRAFTAX, day_length=200, always_diamond=False)
    suite = env._suite_params(params)
    assert (suite.day_length, suite.always_diamond, suite.max_timesteps) == (200, False, 2 ** 30)
    assert env.observation_space(params).shape == (1345,) and env.action_space(params).n == 17
    with pytest.raises(ValueError, match="unknown EnvParams field"):
        envs.make(CRAFTAX, max_timesteps=5)  # the time limit is max_steps_in_episode
    with pytest.raises(ValueError, match="craftax has: Craftax-Classic-Pixels-v1"):
        envs.check_env_id("craftax:Craftax-Classic-v1")


# --------------------------------------------------------------------------------------- jumanji
SNAKE = "jumanji:Snake-v1"


@needs["jumanji"]
def test_jumanji_snake_into_the_wall_is_a_termination_at_the_step_geometry_says():
    env, params = envs.make(SNAKE)
    _, state = env.reset(jax.random.key(0), params)
    head_row = int(state.suite[0].head_position.row)
    steps, _, _ = _play(SNAKE, (0,) * (head_row + 1))  # 0 = up: the wall is head_row + 1 moves away
    assert [s[1:3] for s in steps] == [(False, False)] * head_row + [(True, False)]


@needs["jumanji"]
def test_jumanji_time_limits_ours_truncates_the_suites_own_terminates():
    steps, _, _ = _play(SNAKE, (1, 2, 3), max_steps_in_episode=3)  # right, down, left: no wall
    assert [s[1:] for s in steps] == [(False, False, 1), (False, False, 2), (False, True, 0)]
    assert envs.make(SNAKE)[1].max_steps_in_episode == 4000  # Snake's own time_limit by default
    assert envs.make("jumanji:Game2048-v1")[1].max_steps_in_episode == 10_000  # none of its own


@needs["jumanji"]
def test_jumanji_observation_is_flattened_with_the_action_mask_last():
    env, params = envs.make(SNAKE)
    obs, state = env.reset(jax.random.key(3), params)
    suite_obs = state.suite[1].observation
    expected = np.concatenate([np.ravel(suite_obs.grid), [suite_obs.step_count],
                               np.asarray(suite_obs.action_mask, np.float32)]).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(obs), expected)
    assert env.observation_space(params).shape == (12 * 12 * 5 + 1 + 4,)
    assert env.action_mask_in_observation and env.action_space(params).n == 4


@needs["jumanji"]
def test_jumanji_refuses_several_discrete_actions_and_several_agents():
    with pytest.raises(ValueError, match=r"'jumanji:Tetris-v0' is not allowed: its action is MultiDiscreteArray \[4, 10\]"):
        envs.check_env_id("jumanji:Tetris-v0")
    with pytest.raises(ValueError, match="not allowed: its action is MultiDiscreteArray"):
        envs.check_env_id("jumanji:LevelBasedForaging-v0")


@needs["jumanji"]
def test_observation_normalisation_is_refused_for_a_masked_observation():
    from pgjax.algorithms import ppo
    with pytest.raises(ConfigError, match="normalize_obs.*action mask"):
        ppo.Config(env_id="jumanji:Game2048-v1", normalize_obs=True)


# ----------------------------------------------------------------------- the rule, suite-free
def test_flat_observation_rule_against_numpy():
    from typing import NamedTuple

    class Position(NamedTuple):
        row: jax.Array
        col: jax.Array

    class Observation(NamedTuple):
        walls: jax.Array
        action_mask: jax.Array
        agent: Position

    walls = np.arange(6, dtype=np.int32).reshape(2, 3) % 2 == 0
    obs = Observation(walls=jnp.asarray(walls), action_mask=jnp.asarray([True, False, True]),
                      agent=Position(jnp.asarray(4), jnp.asarray(7)))
    expected = np.concatenate([walls.ravel().astype(np.float32), [4.0, 7.0], [1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(np.asarray(suites.flat_observation(obs)), expected)
    image = jnp.ones((3, 4, 2), jnp.uint8)  # one array: as it is, as float32
    assert suites.flat_observation(image).shape == (3, 4, 2)
    assert suites.flat_observation({"a": jnp.ones(2), "action_mask": jnp.zeros(2, bool)}).tolist() == [1, 1, 0, 0]


def test_masked_policy_gives_forbidden_actions_zero_and_renormalises_the_rest():
    from pgjax.networks import ActorCritic
    mask = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]], np.float32)  # last: a final obs
    features = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    obs = jnp.asarray(np.concatenate([features, mask], axis=1))
    masked = ActorCritic(action_dim=4, discrete=True, hidden_sizes=(8,), masked_actions=True)
    plain = ActorCritic(action_dim=4, discrete=True, hidden_sizes=(8,))
    params = plain.init(jax.random.key(0), obs)
    logits = np.asarray(plain.apply(params, obs)[0].logits, np.float64)
    dist, _ = masked.apply(params, obs)
    allowed = np.where(mask.any(axis=1, keepdims=True), mask > 0.5, True)
    expected = np.where(allowed, np.exp(logits - logits.max(axis=1, keepdims=True)), 0.0)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(dist.probs), expected, rtol=1e-5, atol=1e-7)
    assert np.asarray(dist.mode()).tolist()[1] == 2  # the only allowed action
    assert np.isfinite(np.asarray(dist.entropy())).all()
