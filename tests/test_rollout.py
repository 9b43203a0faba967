"""pgjax.rollout: the scanned rollout is a loop of :func:`policy_step` (the step evaluation uses),
with the same keys. The rollout splits every step's keys up front; a Python loop splitting them
one step at a time must see the same actions, episodes and resets."""

import jax
import jax.numpy as jnp
import gymnax
import numpy as np

from pgjax.envs import make_vec_env
from pgjax.envs.wrappers import VecEnv
from pgjax.rollout import policy_step, rollout

NUM_ENVS, NUM_STEPS = 3, 64  # random actions end CartPole episodes in ~20 steps: several resets


def _random_policy(params, obs, key, memory):
    """Uniform random actions (so they come from the key alone), a critic reading obs[0]."""
    actions = jax.random.categorical(key, jnp.zeros((obs.shape[0], 2)))
    return actions, jnp.full(obs.shape[0], -jnp.log(2.0)), obs[:, 0], memory


def test_rollout_is_a_loop_of_policy_step_with_the_same_keys():
    venv, env_params = make_vec_env("CartPole-v1", NUM_ENVS)
    obs, env_state = venv.reset(jax.random.key(0), env_params)
    key = jax.random.key(7)
    _, _, _, trajectory = jax.jit(lambda k: rollout(
        venv, env_params, _random_policy, lambda p, o, m: o[..., 0], None, env_state, obs, k,
        NUM_STEPS))(key)

    step = jax.jit(lambda s, o, k: policy_step(venv, env_params, _random_policy, None, s, o, k))
    looped = {"obs": [], "actions": [], "rewards": [], "episode_done": [], "next_obs": []}
    for step_key in jax.random.split(key, NUM_STEPS):
        s = step(env_state, obs, step_key)
        for name, value in (("obs", obs), ("actions", s.actions), ("rewards", s.rewards),
                            ("episode_done", s.terminated | s.truncated),
                            ("next_obs", s.info["final_observation"])):
            looped[name].append(np.asarray(value))
        env_state, obs = s.env_state, s.next_obs

    assert np.asarray(trajectory.episode_done).sum() >= 3  # resets happened, so env keys matter
    for name in ("actions", "rewards", "episode_done"):
        np.testing.assert_array_equal(getattr(trajectory, name), np.stack(looped[name]), name)
    for name in ("obs", "next_obs"):
        np.testing.assert_allclose(getattr(trajectory, name), np.stack(looped[name]),
                                   rtol=1e-6, atol=1e-6, err_msg=name)



def test_vec_env_steps_the_same_from_a_key_and_from_its_per_environment_keys():
    """Every episode ends in the step (the cart starts past the edge), so the observations are
    the resets the keys draw. Typed and raw (uint32) keys alike: a raw key is ``[2]``, its
    per-environment keys ``[N, 2]``."""
    env, env_params = gymnax.make("CartPole-v1")
    venv = VecEnv(env, NUM_ENVS)
    actions = jnp.array([0, 1, 1])
    for key in (jax.random.key(3), jax.random.PRNGKey(3)):
        _, env_state = venv.reset(key, env_params)
        env_state = env_state.replace(x=jnp.full((NUM_ENVS,), 3.0))  # past the 2.4 threshold
        one = venv.step(key, env_state, actions, env_params)
        per_env = venv.step(venv.split_keys(key), env_state, actions, env_params)
        other = venv.step(jax.random.fold_in(key, 1), env_state, actions, env_params)
        assert np.asarray(one[3]).all()  # terminated everywhere
        np.testing.assert_array_equal(one[0], per_env[0])
        assert not np.allclose(one[0], other[0])
