"""Recurrent policies: the GRU network against NumPy, memory resets at episode ends,
sequence re-runs against step-by-step recomputation, the rollout's bootstrap under the memory that
saw the final observation, PPO's sequence minibatches, and evaluation carrying the memory."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax import recurrent, shuffle
from pgjax.algorithms import a2c, optimiser, ppo, reinforce, score_function, setup, train_state, trpo
from pgjax.config import ConfigError
from pgjax.networks import RecurrentActorCritic
from pgjax.run import evaluation

OBS_DIM, HIDDEN = 3, 5


def _network(shared=False, discrete=True):
    return RecurrentActorCritic(action_dim=2, discrete=discrete, hidden_sizes=(4, HIDDEN),
                                shared_torso=shared)


def _params(network, batch=2, seed=0):
    return network.init(jax.random.key(seed), network.initial_memory(batch),
                        jnp.zeros((batch, OBS_DIM)))


def _np_tree(params):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), params)["params"]


def _np_dense(p, x):
    return x @ p["kernel"] + p.get("bias", 0.0)


def _np_gru(p, h, x):
    """Cho et al. 2014's GRU as flax writes it: r, z gates, candidate n with r inside the
    recurrent term, h' = (1 − z)·n + z·h."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    r = sig(_np_dense(p["ir"], x) + _np_dense(p["hr"], h))
    z = sig(_np_dense(p["iz"], x) + _np_dense(p["hz"], h))
    n = np.tanh(_np_dense(p["in"], x) + r * _np_dense(p["hn"], h))
    return (1 - z) * n + z * h


def _np_step(p, memory, obs, shared):
    """One step of the recurrent actor-critic in NumPy: (memory', logits, value)."""
    branches = ("shared",) if shared else ("actor", "critic")
    new = []
    for branch, h in zip(branches, memory):
        x = obs
        for layer in ("Dense_0", "Dense_1"):
            x = np.tanh(_np_dense(p[f"{branch}_encoder"][layer], x))
        new.append(_np_gru(p[f"{branch}_gru"], h, x))
    actor, critic = new[0], new[-1]
    return new, _np_dense(p["policy_head"], actor), _np_dense(p["value_head"], critic)[..., 0]


@pytest.mark.parametrize("shared", [False, True])
def test_one_step_matches_numpy(shared):
    network = _network(shared)
    params = _params(network, seed=1)
    rng = np.random.default_rng(0)
    memory = tuple(rng.normal(size=(2, HIDDEN)).astype(np.float32) for _ in network.branches)
    obs = rng.normal(size=(2, OBS_DIM)).astype(np.float32)
    new, dist, value = network.apply(params, memory, obs)
    want_new, want_logits, want_value = _np_step(_np_tree(params), [np.float64(m) for m in memory],
                                                 np.float64(obs), shared)
    for got, want in zip(new, want_new, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.logits, want_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, want_value, rtol=1e-5, atol=1e-6)
    # the critic-only path (bootstrap values) is the same critic
    np.testing.assert_allclose(network.apply(params, memory, obs, method=RecurrentActorCritic.value),
                               want_value, rtol=1e-5, atol=1e-6)


def _sequence(T=6, N=2, seed=2):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(T, N, OBS_DIM)), jnp.float32)


def _step_by_step(network, params, memory, obs, dones):
    """The reference: a Python loop of single network steps, zeroing a row after its done."""
    logits, values = [], []
    memory = [np.asarray(m) for m in memory]
    for t in range(obs.shape[0]):
        memory, dist, value = network.apply(params, tuple(memory), obs[t])
        logits.append(np.asarray(dist.logits))
        values.append(np.asarray(value))
        memory = [np.where(np.asarray(dones[t])[:, None], 0.0, np.asarray(m)) for m in memory]
    return np.stack(logits), np.stack(values)


@pytest.mark.parametrize("shared", [False, True])
def test_unroll_equals_step_by_step_recomputation(shared):
    network = _network(shared)
    params = _params(network, seed=3)
    obs = _sequence()
    dones = jnp.zeros(obs.shape[:2], bool).at[1, 0].set(True).at[4, 1].set(True)
    memory = tuple(jax.random.normal(jax.random.key(9), (2, HIDDEN)) for _ in network.branches)
    dist, values, _ = recurrent.unroll(network, params, memory, obs, dones)
    want_logits, want_values = _step_by_step(network, params, memory, obs, dones)
    np.testing.assert_allclose(dist.logits, want_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, want_values, rtol=1e-5, atol=1e-6)


def test_memory_is_reset_where_an_episode_ends():
    """After a done at t = 2 in env 0 the outputs from t = 3 on are those of a fresh episode
    started there, and differ from carrying the memory across (so the check can fail)."""
    network = _network()
    params = _params(network, seed=4)
    obs = _sequence(T=7)
    dones = jnp.zeros(obs.shape[:2], bool).at[2, 0].set(True)
    zero = network.initial_memory(2)
    dist, values, _ = recurrent.unroll(network, params, zero, obs, dones)
    fresh_dist, fresh_values, _ = recurrent.unroll(network, params, zero, obs[3:],
                                                   jnp.zeros_like(dones[3:]))
    np.testing.assert_allclose(dist.logits[3:, 0], fresh_dist.logits[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(values[3:, 0], fresh_values[:, 0], rtol=1e-6, atol=1e-7)
    carried_dist, carried_values, _ = recurrent.unroll(network, params, zero, obs,
                                                       jnp.zeros_like(dones))
    assert np.max(np.abs(carried_values[3:, 0] - values[3:, 0])) > 1e-3
    # env 1 never ended: identical either way
    np.testing.assert_allclose(carried_values[:, 1], values[:, 1], rtol=1e-6, atol=1e-7)


def _gru_config(module=ppo, **changes):
    fields = dict(env_id="CartPoleNoVelocity-v1", torso="gru", hidden_sizes=(8, 8), num_envs=4,
                  rollout_length=16, total_steps=4 * 16 * 4,
                  env_overrides=(("max_steps_in_episode", 5),))
    if module is ppo:
        fields.update(minibatches=2, epochs=1)
    fields.update(changes)
    return module.Config(**fields)


@pytest.fixture(scope="module")
def collected():
    """A rollout of 16 steps with episodes cut at 5 steps (truncations) from a non-zero memory."""
    config = _gru_config()
    state = train_state.init_train_state(config, ppo.Hparams(), jax.random.key(0))
    state, _ = jax.jit(lambda s: train_state.collect(config, s))(state)  # memory now mid-episode
    before = state
    after, traj = jax.jit(lambda s: train_state.collect(config, s))(state)
    return config, before, after, traj


def test_rollout_records_its_start_memory_and_recomputes_exactly(collected):
    config, before, after, traj = collected
    assert all(np.abs(m).max() > 0 for m in before.memory)  # a real mid-episode memory
    for got, want in zip(traj.memory_start, before.memory, strict=True):
        np.testing.assert_array_equal(got, want)
    assert traj.truncated.any() and traj.episode_done.sum() >= 8
    network = setup.make_network(config)
    dist, values = setup.policy_and_values(network, before.params, traj.obs, traj.memory_start,
                                            traj.episode_done)
    np.testing.assert_allclose(dist.log_prob(traj.actions), traj.log_probs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values, traj.values, rtol=1e-5, atol=1e-5)
    # the memory handed to the next rollout is the last step's, reset if that step ended
    _, _, end_memory = recurrent.unroll(network, before.params, traj.memory_start, traj.obs,
                                        traj.episode_done)
    for got, want in zip(after.memory, end_memory, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bootstrap_value_uses_the_memory_that_saw_the_final_observation(collected):
    config, before, _, traj = collected
    network = setup.make_network(config)
    params = _np_tree(before.params)
    memory = [np.asarray(m, np.float64) for m in traj.memory_start]
    obs, final_obs = np.asarray(traj.obs, np.float64), np.asarray(traj.next_obs, np.float64)
    done = np.asarray(traj.episode_done)
    for t in range(obs.shape[0]):
        memory, _, _ = _np_step(params, memory, obs[t], False)  # h'_t: has seen s_t
        _, _, want = _np_step(params, memory, final_obs[t], False)  # V(GRU(h'_t, s'_t))
        np.testing.assert_allclose(traj.next_values[t], want, rtol=1e-4, atol=1e-5)
        memory = [np.where(done[t][:, None], 0.0, m) for m in memory]
    # where the episode goes on, V(s'_t) is the next step's V(s_{t+1})
    going_on = ~done[:-1]
    np.testing.assert_allclose(np.asarray(traj.next_values)[:-1][going_on],
                               np.asarray(traj.values)[1:][going_on], rtol=1e-5, atol=1e-5)
    del network


def test_ppo_sequence_minibatches_are_whole_sequences_that_recompute_behaviour(collected):
    config, before, _, traj = collected
    config = dataclasses.replace(config, minibatches=2)
    advantages, targets = score_function.gae_and_targets(traj, 0.99, 0.95)
    batch = ppo.learning_batch(traj, advantages, targets)
    minibatches = ppo.shuffled_minibatches(config, batch, jax.random.key(5))
    assert minibatches.obs.shape == (2, 16, 2, 2) and minibatches.memory_start[0].shape == (2, 2, 8)
    # every environment's sequence appears once, whole and in time order
    seen = []
    for m in range(2):
        for j in range(2):
            matches = [n for n in range(4) if np.array_equal(minibatches.obs[m, :, j], traj.obs[:, n])]
            assert len(matches) == 1
            n = matches[0]
            seen.append(n)
            np.testing.assert_array_equal(minibatches.actions[m, :, j], traj.actions[:, n])
            np.testing.assert_array_equal(minibatches.dones[m, :, j], traj.episode_done[:, n])
            np.testing.assert_array_equal(minibatches.memory_start[0][m, j], traj.memory_start[0][n])
    assert sorted(seen) == [0, 1, 2, 3]
    # at θ_old each minibatch recomputes the behaviour log-probs: ratio 1, nothing clipped
    network = setup.make_network(config)
    for m in range(2):
        mb = jax.tree.map(lambda x: x[m], minibatches)
        _, aux = ppo._loss(before.params, network, mb, ppo.Hparams(), None, True, True,
                           ppo.clipped_surrogate)
        assert float(aux["approx_kl"]) == pytest.approx(0.0, abs=1e-6)
        assert float(aux["clip_fraction"]) == 0.0


def test_shuffled_sequence_minibatches_keep_pairs_together():
    sequences = jnp.arange(3 * 8).reshape(3, 8) * 10  # [T, N]: value 10·(8t + n)
    per_sequence = jnp.arange(8)
    grouped, starts = shuffle.shuffled_sequence_minibatches(sequences, per_sequence,
                                                            jax.random.key(0), 4)
    assert grouped.shape == (4, 3, 2) and starts.shape == (4, 2)
    np.testing.assert_array_equal(grouped[:, 0, :] // 10, starts)  # column n starts with 10·n
    np.testing.assert_array_equal(grouped[:, 2, :], grouped[:, 0, :] + 160)  # time order kept
    assert sorted(np.asarray(starts).ravel().tolist()) == list(range(8))


def test_evaluation_carries_and_resets_the_memory():
    """Greedy evaluation's recorded actions are those of the policy run over each recorded
    episode from a zero memory (recomputed by :func:`pgjax.recurrent.unroll`), and differ from a
    memoryless recomputation (memory reset every step), so the check can fail."""
    # MemoryChain shows its context bit only in the first two observations: later observations
    # are the same in every episode, so acting differently there needs the memory
    config = _gru_config(env_id="MemoryChain-bsuite", env_overrides=())
    network = setup.make_network(config)
    episodes = 16
    params = train_state.init_train_state(config, ppo.Hparams(), jax.random.key(1)).params
    params = jax.tree_util.tree_map_with_path(  # a sharper policy
        lambda path, x: x * 300.0 if "policy_head" in jax.tree_util.keystr(path) else x, params)

    def run(params):
        result = evaluation.evaluate(config, params, None, evaluation.eval_key(),
                                     num_episodes=episodes, greedy=True, record=True)
        dones = jnp.asarray(result["terminated"] | result["truncated"])
        return result, dones

    # place the greedy boundary inside the spread of the memory-dependent logits at step 3
    result, dones = run(params)
    dist, _, _ = recurrent.unroll(network, params, network.initial_memory(episodes),
                                  result["obs"], dones)
    preference = np.asarray(dist.logits[3, :, 1] - dist.logits[3, :, 0])
    assert np.ptp(preference) > 1e-3  # the memory carries the context
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x.at[1].add(-(preference.min() + preference.max()) / 2)
        if jax.tree_util.keystr(path).endswith("['policy_head']['bias']") else x, params)

    result, dones = run(params)
    valid = np.asarray(result["valid"])
    start = network.initial_memory(episodes)
    dist, _, _ = recurrent.unroll(network, params, start, result["obs"], dones)
    actions = np.asarray(result["actions"])
    np.testing.assert_array_equal(np.asarray(dist.mode())[valid], actions[valid])
    assert 0 < actions[3].sum() < episodes  # both actions at a step whose observation is shared
    memoryless, _, _ = recurrent.unroll(network, params, start, result["obs"], jnp.ones_like(dones))
    assert np.any(np.asarray(memoryless.mode())[valid] != actions[valid])
    np.testing.assert_array_equal(result["lengths"], valid.sum(axis=0))


def test_masked_cartpole_observes_position_and_angle_of_the_same_dynamics():
    masked, params = envs.make("CartPoleNoVelocity-v1")
    full, _ = envs.make("CartPole-v1")
    assert masked.observation_space(params).shape == (2,)
    key = jax.random.key(3)
    obs_m, state_m = masked.reset(key, params)
    obs_f, state_f = full.reset(key, params)
    for t in range(30):
        np.testing.assert_array_equal(obs_m, np.asarray(obs_f)[[0, 2]])
        step_key = jax.random.fold_in(key, t)
        obs_m, state_m, r_m, term_m, trunc_m, _ = masked.step(step_key, state_m, t % 2, params)
        obs_f, state_f, r_f, term_f, trunc_f, _ = full.step(step_key, state_f, t % 2, params)
        assert (float(r_m), bool(term_m), bool(trunc_m)) == (float(r_f), bool(term_f), bool(trunc_f))
    from pgjax.envs import rendering  # its episodes render as CartPole's (`pgjax episodes --gif`)
    np.testing.assert_array_equal(rendering.render_frame("CartPoleNoVelocity-v1", state_m, params),
                                  rendering.render_frame("CartPole-v1", state_f, params))


@pytest.mark.parametrize("module, changes, field", [
    (trpo, {}, "torso"),
    (ppo, {"minibatches": 8, "num_envs": 4, "rollout_length": 16}, "minibatches"),
    (a2c, {"log_grad_variance": True}, "log_grad_variance"),
])
def test_recurrent_configs_refused_where_not_supported(module, changes, field):
    base = dict(env_id="CartPoleNoVelocity-v1", torso="gru")
    with pytest.raises(ConfigError, match=field):
        module.Config(**base, **changes)


def test_reinforce_learned_baseline_steps_the_recurrent_critic_at_its_own_rate():
    config = _gru_config(reinforce, rollout_length=16, env_overrides=(("max_steps_in_episode", 5),))
    labels = optimiser.critic_labels(train_state.init_train_state(
        config, reinforce.Hparams(), jax.random.key(0)).params)["params"]
    assert {k: set(jax.tree.leaves(v)) for k, v in labels.items()} == {
        "actor_encoder": {"actor"}, "actor_gru": {"actor"}, "policy_head": {"actor"},
        "critic_encoder": {"critic"}, "critic_gru": {"critic"}, "value_head": {"critic"}}
