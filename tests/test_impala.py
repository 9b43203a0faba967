"""IMPALA: V-trace targets against the on-policy estimators, the policy lag against a manual loop
of updates with an explicit parameter history, the queue's reuse counts and order, a learning
smoke test, and the vmap contract."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pgjax
from pgjax import estimators
from pgjax.run import evaluation
from pgjax.algorithms import train_state, impala
from pgjax.config import ConfigError, hparams_as_arrays

from float_compare import FEW_ADAM_UPDATES, ROLLOUT, assert_trees_close, assert_trees_far

# Short episodes (time limit 15) so every segment has terminations *and* truncations.
SMALL = impala.Config(env_id="CartPole-v1", env_overrides=(("max_steps_in_episode", 15),),
                      num_envs=4, rollout_length=16, total_steps=4 * 16 * 12, anneal_lr=False,
                      optimizer="adam")
HP = hparams_as_arrays(impala.Hparams(learning_rate=3e-2, lambda_=0.9))


_update = jax.jit(impala.update, static_argnums=0)
_init = jax.jit(impala.init, static_argnums=0)
_collect = jax.jit(train_state.collect, static_argnums=0)
_learner_step = jax.jit(impala.learner_step, static_argnums=0)
_terms = jax.jit(impala.vtrace_terms, static_argnums=0)


# --- lag 0: V-trace is the on-policy λ-return / GAE path -------------------------------------

def test_on_policy_targets_equal_lambda_returns_and_gae():
    state = _init(SMALL, HP, jax.random.key(0))
    _, traj = _collect(SMALL, state)
    dones = np.asarray(traj.dones())
    assert dones.sum() > 0 and np.asarray(traj.truncated).sum() > 0  # both kinds of ending
    assert np.asarray(traj.terminated).sum() > 0
    terms = _terms(SMALL, state.params, traj, HP)
    # The learner's log π under the same parameters is the actor's log μ: log ρ = 0.
    np.testing.assert_allclose(terms["log_rhos"], 0.0, atol=1e-5)
    # The learner's critic reproduces the actor's V(x_t) and V(x'_t).
    np.testing.assert_allclose(terms["values"], traj.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["next_values"], traj.next_values, rtol=1e-5, atol=1e-5)
    # The on-policy path (what PPO computes from the rollout's own values): GAE + V, λ-returns.
    discounts = traj.discounts(HP.gamma)
    gae = estimators.gae(traj.rewards, traj.values, traj.next_values, discounts, traj.dones(),
                         HP.lambda_)
    lret = estimators.lambda_returns(traj.rewards, traj.next_values, discounts, traj.dones(),
                                     HP.lambda_)
    np.testing.assert_allclose(terms["vs"], gae + traj.values, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(terms["vs"], lret, rtol=1e-4, atol=1e-4)
    # ρ̄ = pg_ρ̄ = 1 on-policy: the policy-gradient advantage is the one-step-bootstrapped
    # λ-return advantage r + γ v_{s+1} − V(x_s), which for λ = 1 is GAE(1).
    hp1 = HP.replace(lambda_=jnp.float32(1.0))
    terms1 = _terms(SMALL, state.params, traj, hp1)
    gae1 = estimators.gae(traj.rewards, traj.values, traj.next_values, discounts, traj.dones(), 1.0)
    np.testing.assert_allclose(terms1["pg_advantages"], gae1, rtol=1e-4, atol=1e-4)


def test_update_with_lag_zero_computes_log_rho_zero():
    state = _init(SMALL, HP, jax.random.key(1))
    for _ in range(3):
        state, metrics = _update(SMALL, state)
        assert int(metrics["policy_lag"]) == 0
        np.testing.assert_allclose(metrics["rho_mean"], 1.0, atol=1e-5)
        np.testing.assert_allclose(metrics["approx_kl"], 0.0, atol=1e-6)
        assert float(metrics["rho_clipped_fraction"]) == 0.0
        assert float(metrics["c_clipped_fraction"]) == 0.0


def test_stale_data_gives_nonzero_log_rho_and_correction_none_ignores_it():
    state = _init(SMALL, HP, jax.random.key(2))
    old_params = state.params
    for _ in range(4):
        state, _ = _update(SMALL, state)
    _, traj = _collect(SMALL, state, old_params)  # behaviour = 4 updates old
    terms = _terms(SMALL, state.params, traj, HP)
    assert np.max(np.abs(np.asarray(terms["log_rhos"]))) > 1e-2
    discounts = traj.discounts(HP.gamma)
    lret = estimators.lambda_returns(traj.rewards, terms["next_values"], discounts, traj.dones(),
                                     HP.lambda_)
    none = _terms(dataclasses.replace(SMALL, correction="none"), state.params, traj, HP)
    np.testing.assert_allclose(none["vs"], lret, rtol=1e-4, atol=1e-4)     # log ρ = 0
    assert not np.allclose(terms["vs"], lret, atol=1e-3)                    # V-trace corrects
    # still reported (two programs, the correction being static: equal to rounding)
    np.testing.assert_allclose(none["log_rhos"], terms["log_rhos"], rtol=1e-5, atol=1e-6)


# --- policy lag: behaviour = learner params from k updates ago --------------------------------

LAG = 3
LAG_CONFIG = dataclasses.replace(SMALL, policy_lag=LAG)


def test_policy_lag_matches_manual_loop_with_parameter_history():
    """Each update against a reference step from the same state: collect with the learner's
    parameters from ``lag`` updates ago, taken from a plain list of every past parameter vector,
    then one learner step. Compared one update at a time: carried over 7 updates at learning
    rate 3e-2, the update program's and its pieces' different roundings would grow past any bound
    that also holds on another processor. The mean importance ratio π/μ (a function of the
    rollout and the learner's parameters, before the step) at ``ROLLOUT``, the parameters after
    the Adam step at ``FEW_ADAM_UPDATES`` (float_compare.py; measured 1.2e-4 here)."""
    config, lag = LAG_CONFIG, LAG
    num_updates = 7
    state = _init(config, HP, jax.random.key(3))
    history = [state.params]  # history[i] = learner params before update i
    lags = []
    for i in range(num_updates):
        before = state
        state, metrics = _update(config, before)
        lags.append(int(metrics["policy_lag"]))
        ref, traj = _collect(config, before, history[max(0, i - lag)])
        ref, ref_metrics = _learner_step(config, ref, traj, HP.learning_rate)
        np.testing.assert_allclose(metrics["rho_mean"], ref_metrics["rho_mean"], rtol=ROLLOUT)
        assert_trees_close(state.params, ref.params, FEW_ADAM_UPDATES, f"update {i}")
        if i >= lag:  # the reference is sensitive to the lag: one update newer goes elsewhere
            wrong, traj = _collect(config, before, history[i - lag + 1])
            wrong, _ = _learner_step(config, wrong, traj, HP.learning_rate)
            assert_trees_far(state.params, wrong.params, 10 * FEW_ADAM_UPDATES,
                             f"lag - 1 at update {i}")
        history.append(state.params)
    assert lags == [min(i, lag) for i in range(num_updates)]


def test_behaviour_params_are_the_snapshot_from_k_updates_ago():
    """The snapshot is a copy of the parameters of ``lag`` updates ago. A copy, but not always
    bit for bit: XLA may compute the new parameters once for the state and again inside the
    snapshot's write, rounding the two differently in the last bit (seen at optimisation level 0),
    hence 1e-6 of each leaf's largest entry (~8 float32 ulps; measured 3e-8); neighbouring
    snapshots differ by 0.4 or more, so the check still tells them apart."""
    config, lag = LAG_CONFIG, LAG
    state = _init(config, HP, jax.random.key(4))
    history = []
    for i in range(7):
        history.append(state.params)
        mu, version = impala.behaviour_params(config, state)
        assert int(version) == max(0, i - lag)
        assert_trees_close(mu, history[max(0, i - lag)], 1e-6, f"snapshot at update {i}")
        if i >= lag + 1:
            assert_trees_far(mu, history[i - lag + 1], 1e-3, f"snapshot at update {i}")
        state, _ = _update(config, state)


# --- the queue: each trajectory is used replay_times times, oldest first ------------------------

@pytest.mark.parametrize("queue_size, replay_times, ages", [
    (1, 1, (0,)), (4, 1, (0,)), (4, 2, (2, 0)), (3, 3, (2, 1, 0)), (6, 4, (4, 3, 1, 0)),
    (5, 2, (2, 0))])
def test_replay_ages(queue_size, replay_times, ages):
    config = dataclasses.replace(SMALL, queue_size=queue_size, replay_times=replay_times)
    assert config.replay_ages == ages


def test_queue_reuse_counts_and_order_match_manual_replay():
    """The queue's counts and versions after each update, and each update against a reference
    from the same state: collect a fresh trajectory, then one learner step per stored trajectory
    of each replay age, oldest first. Compared one update at a time, as in the policy-lag test:
    the trajectory at ``ROLLOUT``, the parameters at ``FEW_ADAM_UPDATES`` (float_compare.py)."""
    queue_size, replay_times = 4, 2  # ages (2, 0): the first two updates have an empty slot
    config = dataclasses.replace(SMALL, queue_size=queue_size, replay_times=replay_times)
    ages = (2, 0)  # oldest first, the fresh trajectory last
    assert config.replay_ages == ages
    num_updates = 8
    state = _init(config, HP, jax.random.key(5))
    fresh = []
    for i in range(num_updates):
        before = state
        head = int(state.extra.queue_head)
        evicted_uses = int(state.extra.queue_uses[head])
        evicted_version = int(state.extra.queue_versions[head])
        state, metrics = _update(config, state)
        # The slot just written holds this update's trajectory (lag 0: version = update index).
        assert int(state.extra.queue_versions[head]) == i
        fresh.append(jax.tree.map(lambda q: q[head], state.extra.queue))
        # A trajectory leaves the queue after exactly replay_times learner steps.
        if evicted_version >= 0:
            assert evicted_uses == replay_times, (i, evicted_uses)
        # Counts of what is still queued: one use for each replay age it has reached.
        for slot in range(queue_size):
            version = int(state.extra.queue_versions[slot])
            want = 0 if version < 0 else sum(a <= i - version for a in ages)
            assert int(state.extra.queue_uses[slot]) == want, (i, slot)
        assert int(metrics["learner_steps"]) == sum(a <= i for a in ages)
        assert int(metrics["policy_lag"]) == 0
        expected_lag = np.mean([a for a in ages if a <= i])
        np.testing.assert_allclose(metrics["data_lag_mean"], expected_lag, rtol=1e-6)
        # Reference: the fresh trajectory is the rollout of the current parameters ...
        ref, traj = _collect(config, before, before.params)
        assert_trees_close(traj, fresh[i], ROLLOUT, f"trajectory {i}")
        # ... and one learner step per stored trajectory of each replay age, oldest first.
        for age in ages:
            if age <= i:
                ref, _ = _learner_step(config, ref, fresh[i - age], HP.learning_rate)
        assert_trees_close(state.params, ref.params, FEW_ADAM_UPDATES, f"update {i}")
        if i >= max(ages):  # the order matters: newest first gives other parameters
            wrong, _ = _collect(config, before, before.params)
            for age in reversed(ages):
                wrong, _ = _learner_step(config, wrong, fresh[i - age], HP.learning_rate)
            assert_trees_far(state.params, wrong.params, 10 * FEW_ADAM_UPDATES,
                             f"order at update {i}")


# --- learning, vmap, configuration ------------------------------------------------------------

def test_impala_learns_cartpole_within_small_budget():
    config = impala.Config(env_id="CartPole-v1", total_steps=48_000, policy_lag=1)
    state, metrics = jax.jit(pgjax.make_train(config))(jax.random.key(0),
                                                       impala.Hparams(learning_rate=3e-3))
    returns = np.asarray(metrics["episode_return"])
    early, late = np.nanmean(returns[:10]), np.nanmean(returns[-20:])
    assert early < 40, early          # a random CartPole policy lasts ~22 steps
    assert late > 4 * early, (early, late)
    result = evaluation.evaluate(config, state.params, state.env_state, evaluation.eval_key(),
                                 num_episodes=50)
    assert float(jnp.mean(result["returns"])) > 150


VMAP_CONFIG = dataclasses.replace(SMALL, policy_lag=2, queue_size=2, replay_times=2,
                                  total_steps=4 * 16 * 6)
_train_single = jax.jit(pgjax.make_train(VMAP_CONFIG))


def test_vmap_over_seeds_and_hyperparameters_equals_separate_runs():
    """One vmapped program over three lanes: lanes 0/1 differ only in the seed, lanes 0/2 only in
    the traced hyperparameters (ρ̄ and the learning rate). The vmapped and the single runs are two
    programs, six Adam updates at learning rate 3e-2 apart: compared normwise at
    ``FEW_ADAM_UPDATES`` (float_compare.py; measured up to 4e-5, where one entry of 4096 differed
    by 2 % of itself, as on an AMD EPYC: no entrywise tolerance can allow for that)."""
    train = pgjax.make_train(VMAP_CONFIG)
    k0, k1 = jax.random.split(jax.random.key(7))
    keys = jnp.stack([k0, k1, k0])
    rho_bars = jnp.array([0.5, 0.5, 2.0])
    learning_rates = jnp.array([3e-2, 3e-2, 1e-2])
    batch = HP.replace(rho_bar=rho_bars, learning_rate=learning_rates)
    axes = jax.tree.map(lambda _: None, HP).replace(rho_bar=0, learning_rate=0)
    batched_state, batched_metrics = jax.jit(jax.vmap(train, in_axes=(0, axes)))(keys, batch)
    lane = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    for i in range(3):
        state, metrics = _train_single(keys[i], HP.replace(rho_bar=rho_bars[i],
                                                           learning_rate=learning_rates[i]))
        # parameters, the queue and the snapshots; their counters and versions exactly
        assert_trees_close(lane((batched_state.params, batched_state.extra), i),
                           (state.params, state.extra), FEW_ADAM_UPDATES, f"lane {i}")
        assert_trees_close(batched_metrics["value_loss"][i], metrics["value_loss"],
                           FEW_ADAM_UPDATES, f"value_loss of lane {i}")
        for name in ("policy_lag", "data_lag_mean"):  # counts: equal
            np.testing.assert_array_equal(batched_metrics[name][i], metrics[name], err_msg=name)
        # a fraction of the 64 samples: one may land on the other side of ρ̄ by rounding
        np.testing.assert_allclose(batched_metrics["rho_clipped_fraction"][i],
                                   metrics["rho_clipped_fraction"], rtol=0, atol=1.5 / 64)
    # the bound tells lanes apart: another seed, other hyperparameters
    for other in (1, 2):
        assert_trees_far(lane(batched_state.params, 0), lane(batched_state.params, other),
                         10 * FEW_ADAM_UPDATES, f"lanes 0 and {other}")
    assert not np.allclose(batched_metrics["policy_loss"][0], batched_metrics["policy_loss"][1])
    assert not np.allclose(batched_metrics["rho_clipped_fraction"][0],
                           batched_metrics["rho_clipped_fraction"][2], atol=1.5 / 64)


def test_metrics_cover_the_design_list():
    state = _init(SMALL, HP, jax.random.key(0))
    _, metrics = _update(SMALL, state)
    required = {"episode_return", "episode_length", "reward_per_step", "entropy", "policy_loss",
                "value_loss", "total_loss", "grad_norm", "value_max", "value_mean",
                "td_error_mean", "td_error_abs_mean", "approx_kl", "explained_variance",
                "learning_rate", "rho_mean", "rho_clipped_fraction",
                "c_clipped_fraction", "policy_lag"}
    assert required <= set(metrics), required - set(metrics)
    assert all(np.ndim(v) == 0 for v in metrics.values())


@pytest.mark.parametrize("field, value, message", [
    ("policy_lag", -1, "policy_lag=-1"),
    ("queue_size", 0, "queue_size=0"),
    ("replay_times", 3, "replay_times=3"),
    ("correction", "retrace", "correction='retrace'"),
    ("optimizer", "lbfgs", "optimizer='lbfgs'"),
])
def test_bad_config_fields_raise_clear_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(SMALL, **{field: value})
