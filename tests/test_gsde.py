"""gSDE (Raffin et al. 2022): the per-step Gaussian against NumPy and against the spread of
actions drawn with random exploration matrices, and the noise held fixed within a rollout
(the action's deviation from the mean is linear in the features with one matrix per
environment and rollout) but redrawn between rollouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax.algorithms import a2c, actor_critic, ppo, setup, train_state
from pgjax.config import ConfigError
from pgjax.networks import ActorCritic, gsde_log_std

FEATURES = 4


def _config(**changes):
    fields = dict(env_id="Pendulum-v1", gsde=True, hidden_sizes=(8, FEATURES), num_envs=3,
                  rollout_length=12, total_steps=3 * 12 * 2, log_std_init=-0.5)
    fields.update(changes)
    return a2c.Config(**fields)


def test_log_std_is_half_log_of_feature_weighted_variance():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, FEATURES))
    log_std = rng.normal(size=(FEATURES, 2)) * 0.3
    want = 0.5 * np.log(np.einsum("bf,fa->ba", z**2, np.exp(2 * log_std)) + 1e-6)
    np.testing.assert_allclose(gsde_log_std(jnp.asarray(z, jnp.float32),
                                            jnp.asarray(log_std, jnp.float32)), want, rtol=1e-5)


def test_actions_drawn_with_random_matrices_have_the_policys_spread():
    """Over many draws of Θ = σ ⊙ E, a = μ(s) + z(s)ᵀΘ has mean μ(s) and per-dimension std
    σ_j(s) of :meth:`ActorCritic.policy` (Monte Carlo, 40,000 draws: ±1.5% at 3σ)."""
    config = _config()
    network = setup.make_network(config)
    state = train_state.init_train_state(config, a2c.Hparams(), jax.random.key(0))
    params = jax.tree_util.tree_map_with_path(  # an uneven σ matrix
        lambda path, x: x + jnp.arange(x.size).reshape(x.shape) * 0.1
        if jax.tree_util.keystr(path).endswith("['log_std']") else x, state.params)
    obs = jnp.asarray([[0.3, -0.8, 1.5]])
    draws = 40_000
    noise = jax.random.normal(jax.random.key(1), (draws, FEATURES, 1))
    actions = jax.vmap(lambda e: network.apply(params, obs, e[None], method=ActorCritic.gsde_act)[2])(noise)
    dist = network.apply(params, obs, method=ActorCritic.policy)
    std = float(jnp.exp(dist.log_std)[0, 0])
    np.testing.assert_allclose(np.mean(actions), float(dist.mean[0, 0]), atol=4 * std / np.sqrt(draws))
    np.testing.assert_allclose(np.std(actions), std, rtol=0.015)


def test_noise_is_one_matrix_per_environment_and_rollout():
    config = _config()
    network = setup.make_network(config)
    state = train_state.init_train_state(config, a2c.Hparams(), jax.random.key(2))
    collect = jax.jit(lambda s: train_state.collect(config, s))
    thetas = []
    for _ in range(2):
        before = state
        state, traj = collect(state)
        features = network.apply(before.params, traj.obs,
                                 method=lambda m, o: m.actor_torso(o))  # z(s_t) [T, N, F]
        dist = network.apply(before.params, traj.obs, method=ActorCritic.policy)
        deviation = np.asarray(traj.actions - dist.mean)  # [T, N, 1]
        per_env = []
        for n in range(config.num_envs):
            z = np.asarray(features[:, n], np.float64)
            theta, *_ = np.linalg.lstsq(z, deviation[:, n], rcond=None)
            np.testing.assert_allclose(z @ theta, deviation[:, n], atol=1e-4)  # one Θ fits all T
            per_env.append(theta)
        thetas.append(np.stack(per_env))
        # the rollout's log-probabilities are the per-step Gaussian's
        np.testing.assert_allclose(traj.log_probs, dist.log_prob(traj.actions), rtol=1e-5, atol=1e-5)
    assert np.abs(thetas[0][0] - thetas[0][1]).max() > 1e-2  # environments differ
    assert np.abs(thetas[0] - thetas[1]).max() > 1e-2  # redrawn for the next rollout


@pytest.mark.parametrize("module, changes", [
    (a2c, {"env_id": "CartPole-v1"}),
    (a2c, {"state_dependent_std": True}),
    (ppo, {"torso": "gru"}),
    (actor_critic, {"variant": "td_lambda"}),
])
def test_gsde_refused_where_it_does_not_apply(module, changes):
    with pytest.raises(ConfigError, match="gsde"):
        module.Config(**{"env_id": "Pendulum-v1", "gsde": True, **changes})
