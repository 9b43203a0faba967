"""PPO: learning smoke tests and the vmap-over-seeds / vmap-over-hyperparameters contract."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pgjax
from pgjax.run import evaluation
from pgjax.algorithms import ppo
from pgjax.config import ConfigError

from float_compare import FEW_ADAM_UPDATES, assert_trees_close, assert_trees_far


def _final_eval(config, state, episodes=50):
    result = evaluation.evaluate(config, state.params, state.env_state, evaluation.eval_key(),
                                 num_episodes=episodes)
    return float(jnp.mean(result["returns"]))


def test_ppo_improves_on_cartpole_within_small_budget():
    config = ppo.Config(env_id="CartPole-v1", total_steps=40_960)
    state, metrics = jax.jit(pgjax.make_train(config))(jax.random.key(0), ppo.Hparams())
    returns = np.asarray(metrics["episode_return"])
    early = np.nanmean(returns[:5])
    late = np.nanmean(returns[-10:])
    assert early < 40, early          # a random CartPole policy lasts ~22 steps
    assert late > 3 * early, (early, late)
    assert _final_eval(config, state) > 150


def test_ppo_continuous_improves_on_pendulum():
    config = ppo.Config(env_id="Pendulum-v1", num_envs=16, rollout_length=64, total_steps=102_400,
                        epochs=10, minibatches=8, normalize_obs=True, normalize_reward=True,
                        anneal_lr=False)
    hparams = ppo.Hparams(learning_rate=1e-3, gae_lambda=0.95, ent_coef=0.0, gamma=0.95)
    state, metrics = jax.jit(pgjax.make_train(config))(jax.random.key(0), hparams)
    returns = np.asarray(metrics["episode_return"])
    early, late = np.nanmean(returns[:5]), np.nanmean(returns[-5:])
    assert early < -1000, early       # a random Pendulum policy scores about -1200
    assert late > early + 300, (early, late)


SMALL = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=32, total_steps=512,
                   epochs=2, minibatches=2)


# The vmapped run and a single run are two programs, four updates of two epochs of two
# minibatches (16 Adam steps) apart from the start: compared normwise at FEW_ADAM_UPDATES
# (float_compare.py; measured at most ~5e-6 here), another seed or learning rate lies ~1 away.
TRAIN_SMALL = pgjax.make_train(SMALL)  # one function object, so its jitted program is shared


def test_vmap_over_seeds_equals_separate_runs():
    train = TRAIN_SMALL
    keys = jax.random.split(jax.random.key(7), 3)
    batched_state, batched_metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, ppo.Hparams())
    single = jax.jit(train)
    lane = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    for i in range(3):
        state, metrics = single(keys[i], ppo.Hparams())
        assert_trees_close(lane(batched_state.params, i), state.params, FEW_ADAM_UPDATES,
                           f"seed {i}")
        assert_trees_close(batched_metrics["value_loss"][i], metrics["value_loss"],
                           FEW_ADAM_UPDATES, f"value_loss of seed {i}")
    # different seeds really differ, by far more than the bound
    assert_trees_far(lane(batched_state.params, 0), lane(batched_state.params, 1),
                     10 * FEW_ADAM_UPDATES, "seeds 0 and 1")
    assert not np.allclose(batched_metrics["policy_loss"][0], batched_metrics["policy_loss"][1])


def test_vmap_over_hyperparameters_equals_separate_runs():
    train = TRAIN_SMALL
    learning_rates = jnp.array([1e-4, 3e-3])
    clip_eps = jnp.array([0.1, 0.3])
    batch = ppo.Hparams(learning_rate=learning_rates, clip_eps=clip_eps)
    hp_axes = ppo.Hparams(learning_rate=0, clip_eps=0, gae_lambda=None, value_clip_eps=None,
                          gamma=None, max_grad_norm=None, ent_coef=None, vf_coef=None)
    key = jax.random.key(3)
    batched_state, batched_metrics = jax.jit(jax.vmap(train, in_axes=(None, hp_axes)))(key, batch)
    lane = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    for i in range(2):
        state, metrics = jax.jit(train)(key, ppo.Hparams(learning_rate=float(learning_rates[i]),
                                                         clip_eps=float(clip_eps[i])))
        assert_trees_close(lane(batched_state.params, i), state.params, FEW_ADAM_UPDATES,
                           f"setting {i}")
        np.testing.assert_allclose(batched_metrics["learning_rate"][i], metrics["learning_rate"], rtol=1e-6)
    assert_trees_far(lane(batched_state.params, 0), lane(batched_state.params, 1),
                     10 * FEW_ADAM_UPDATES, "settings 0 and 1")
    assert not np.allclose(batched_metrics["learning_rate"][0], batched_metrics["learning_rate"][1])


def test_learning_rate_is_annealed_linearly():
    state, metrics = jax.jit(TRAIN_SMALL)(jax.random.key(0), ppo.Hparams(learning_rate=1e-3))
    num_updates = SMALL.num_updates
    expected = 1e-3 * (1 - np.arange(num_updates) / num_updates)
    np.testing.assert_allclose(metrics["learning_rate"], expected, rtol=1e-6)


@pytest.mark.parametrize("field, value, message", [
    ("num_envs", 0, "num_envs=0"),
    ("rollout_length", -3, "rollout_length=-3"),
    ("minibatches", 3, "must divide"),
    ("epochs", 0, "epochs=0"),
    ("hidden_sizes", (64, 0), "hidden_sizes"),
    ("activation", "sigmoid", "activation"),
    ("env_id", "CartPol-v1", "CartPole-v1"),
    ("total_steps", 100, "total_steps=100"),
])
def test_bad_config_fields_raise_clear_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(SMALL, **{field: value})


def test_minibatch_of_size_one_normalises_without_nan():
    config = dataclasses.replace(SMALL, num_envs=1, rollout_length=4, total_steps=8, minibatches=4)
    state, metrics = jax.jit(pgjax.make_train(config))(jax.random.key(0), ppo.Hparams())
    for leaf in jax.tree.leaves(state.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert np.all(np.isfinite(np.asarray(metrics["policy_loss"])))


# ---------------------------------------------------------------- PPO with an adaptive KL penalty

def test_ppo_kl_adapts_beta_by_the_papers_rule():
    """β halves below d_targ/1.5, doubles above 1.5·d_targ, stays between (Schulman et al. 2017,
    §4), member by member."""
    from pgjax.algorithms import ppo_kl
    beta = jnp.array([1.0, 1.0, 1.0, 4.0])
    divergence = jnp.array([0.001, 0.01, 0.1, 0.0149])
    np.testing.assert_array_equal(ppo_kl.adapted_beta(beta, divergence, 0.01), [0.5, 1.0, 2.0, 4.0])


def test_ppo_kl_update_penalises_with_beta_and_then_adapts_it():
    """One update on CartPole: the loss used the state's β (logged as ``kl_beta``), the policy
    loss is the KL-penalised surrogate (no clip fraction), and the next state's β is the rule
    applied to the update's measured KL, starting from ``kl_beta_init``."""
    from pgjax.algorithms import ppo_kl
    config = ppo_kl.Config(env_id="CartPole-v1", num_envs=4, rollout_length=32, total_steps=128 * 4,
                           epochs=2, minibatches=2, hidden_sizes=(16,))
    hparams = ppo_kl.Hparams(kl_beta_init=3.0, kl_target=0.0005, learning_rate=3e-3)
    state = ppo_kl.init(config, hparams, jax.random.key(0))
    assert float(state.extra) == 3.0
    after, metrics = jax.jit(lambda s: ppo_kl.update(config, s))(state)
    assert float(metrics["kl_beta"]) == 3.0 and "clip_fraction" not in metrics
    kl = float(metrics["approx_kl"])
    want = 1.5 if kl < 0.0005 / 1.5 else 6.0 if kl > 0.0005 * 1.5 else 3.0
    assert float(after.extra) == want
    assert kl > 0  # the policy moved
