"""The Brax adapter (``envs.make("brax:NAME")``, the ``[brax]`` extra): the same trajectory as
brax's own environment stepped directly, our time limit as a truncation, clear errors, and PPO
through it (skipped where brax is not installed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax.envs import brax_adapter

ENV_ID = "brax:inverted_pendulum"


def test_a_brax_id_without_brax_is_refused_with_the_install_line(monkeypatch):
    monkeypatch.setattr(brax_adapter, "available", lambda: False)
    with pytest.raises(ValueError, match=r"needs brax, which is not installed: pip install"):
        envs.check_env_id(ENV_ID)


pytestmark_brax = pytest.mark.skipif(not brax_adapter.available(), reason="brax not installed")


@pytestmark_brax
def test_unknown_brax_name_lists_brax_environments():
    with pytest.raises(ValueError, match="unknown brax environment 'antt'.*ant"):
        envs.check_env_id("brax:antt")


@pytestmark_brax
def test_steps_match_brax_and_the_time_limit_is_a_truncation():
    """Against brax's environment stepped directly with the same actions: observations, rewards
    and termination agree until the episode ends; with ``max_steps_in_episode=6`` a surviving
    pendulum is truncated (not terminated) at step 6, and the final observation is brax's."""
    env, params = envs.make(ENV_ID, max_steps_in_episode=6)
    brax_env = env.brax_env
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    brax_state = jax.jit(brax_env.reset)(key)
    np.testing.assert_allclose(obs, brax_state.obs, rtol=1e-6)
    actions = 0.05 * jnp.sin(jnp.arange(6.0))[:, None]  # small pushes: it stays up
    step, brax_step = jax.jit(env.step), jax.jit(brax_env.step)
    for t in range(6):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, actions[t], params)
        brax_state = brax_step(brax_state, actions[t])
        np.testing.assert_allclose(info["final_observation"], brax_state.obs, rtol=1e-5, atol=1e-6)
        assert float(reward) == pytest.approx(float(brax_state.reward))
        assert bool(terminated) == bool(brax_state.done) is False
        assert bool(truncated) == (t == 5)
    assert int(state.time) == 0  # reset after the truncation


@pytestmark_brax
def test_ppo_runs_on_a_brax_environment_through_the_runner(tmp_path):
    import io

    from pgjax.algorithms import ppo
    from pgjax.run import runner
    config = ppo.Config(env_id=ENV_ID, num_envs=2, rollout_length=8, total_steps=2 * 8 * 2,
                        minibatches=2, epochs=1, hidden_sizes=(8,))
    options = runner.RunOptions(eval_episodes=2, cache_episodes=0, num_evals=1,
                                checkpoint_every=None, tensorboard=False, plots=False,
                                log_every_seconds=0)
    result = runner.run("ppo", config, ppo.Hparams(), [0], tmp_path / "run", options=options,
                        out=io.StringIO())
    assert result.status == runner.COMPLETED, result.message
    # inverted_pendulum pays 1 per step alive, so an episode's return is its length
    returns = np.asarray(result.eval_returns)
    assert np.all(returns >= 1) and np.all(returns <= 1000)
