"""The XLand-MiniGrid adapter (``envs.make("xminigrid:NAME")``, the ``[xminigrid]`` extra): a
hand-built episode that ends by reaching the goal (terminated, the suite's reward) and one that
ends at the time limit (truncated, no reward), the meta-RL ids and a missing extra refused in one
line, and the spaces (skipped where xminigrid is not installed; test_all_paths.py trains, resumes
and evaluates PPO through it where it is)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs import xminigrid_adapter

ENV_ID = "xminigrid:MiniGrid-Empty-5x5"
# Empty-5x5: the agent starts at (1, 1) facing right, the goal is at (3, 3); actions: 0 forward,
# 1 turn right, 2 turn left. Forward twice, turn right, forward twice reaches the goal at step 5.
TO_THE_GOAL = (0, 0, 1, 0, 0)


def test_an_xminigrid_id_without_xminigrid_is_refused_with_the_install_line(monkeypatch):
    monkeypatch.setattr(xminigrid_adapter, "available", lambda: False)
    with pytest.raises(ValueError, match=r"needs xminigrid, which is not installed: pip install"):
        envs.check_env_id(ENV_ID)


needs_xminigrid = pytest.mark.skipif(not xminigrid_adapter.available(), reason="xminigrid not installed")


def _play(actions, **overrides):
    env, params = envs.make(ENV_ID, **overrides)
    _, state = env.reset(jax.random.key(0), params)
    steps = []
    for t, action in enumerate(actions):
        obs, state, reward, terminated, truncated, _ = env.step(jax.random.key(t + 1), state, action, params)
        steps.append((float(reward), bool(terminated), bool(truncated)))
    return steps


@needs_xminigrid
def test_reaching_the_goal_is_a_termination_with_the_suites_reward():
    steps = _play(TO_THE_GOAL)
    assert [s[1:] for s in steps] == [(False, False)] * 4 + [(True, False)]
    # 1 − 0.9·(steps taken)/max_steps, max_steps = 4·5·5 = 100 for Empty-5x5
    assert [s[0] for s in steps] == pytest.approx([0, 0, 0, 0, 1 - 0.9 * 5 / 100])


@needs_xminigrid
def test_the_time_limit_is_a_truncation_and_no_reward():
    steps = _play((2, 2, 2), max_steps_in_episode=3)  # turning on the spot never reaches the goal
    assert steps == [(0.0, False, False), (0.0, False, False), (0.0, False, True)]
    assert envs.make(ENV_ID)[1].max_steps_in_episode == 100  # the suite's limit by default


@needs_xminigrid
def test_meta_rl_ids_and_unknown_names_are_refused_in_one_line():
    with pytest.raises(ValueError, match="need a ruleset"):
        envs.check_env_id("xminigrid:XLand-MiniGrid-R1-9x9")
    with pytest.raises(ValueError, match="unknown xminigrid environment 'MiniGrid-Empty-4x4'"):
        envs.check_env_id("xminigrid:MiniGrid-Empty-4x4")


@needs_xminigrid
def test_spaces_are_the_view_and_six_actions():
    env, params = envs.make(ENV_ID)
    obs, _ = env.reset(jax.random.key(0), params)
    assert env.action_space(params).n == 6
    assert env.observation_space(params).shape == obs.shape == (7, 7, 2)
    assert obs.dtype == np.float32
