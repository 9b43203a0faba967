"""Gradient-noise diagnostics (pgjax.diagnostics, ``log_grad_variance``): the statistics against
NumPy, per-group gradients against a loop, the in-update variance of REINFORCE on a bandit against
the closed-form covariance of the score-function estimator and a NumPy Monte-Carlo estimate, and
the flag on every algorithm."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import envs
from pgjax import diagnostics
from pgjax.algorithms import a2c, actor_critic, impala, ppo, reinforce, score_function, setup, trpo
from pgjax.config import ConfigError, apply_overrides, hparams_as_arrays

NOISE_KEYS = ("grad_variance", "grad_mean_sq_norm", "grad_snr")


def _one_update(algo, config, state):
    """``algo.update`` once, compiled without XLA's backend optimisations (a third less compile
    time; these programs run in milliseconds either way)."""
    update = jax.jit(lambda s: algo.update(config, s)).lower(state)
    return update.compile({"xla_backend_optimization_level": 0})(state)


# ---------------------------------------------------------------------------------------------
# the statistics and the per-group gradients


def test_gradient_statistics_match_numpy():
    rng = np.random.default_rng(0)
    G = 7
    tree = {"a": rng.normal(size=(G, 3, 2)), "b": [rng.normal(size=(G, 5)) + 2.0, rng.normal(size=(G,))]}
    stats = jax.jit(diagnostics.gradient_statistics)(jax.tree.map(jnp.asarray, tree))
    flat = np.concatenate([x.reshape(G, -1) for x in jax.tree.leaves(tree)], axis=1)  # [G, D]
    total_variance = np.trace(np.cov(flat, rowvar=False, ddof=1))
    mean_sq_norm = np.sum(flat.mean(0) ** 2)
    np.testing.assert_allclose(stats.total_variance, total_variance, rtol=1e-5)
    np.testing.assert_allclose(stats.mean_sq_norm, mean_sq_norm, rtol=1e-5)
    np.testing.assert_allclose(stats.snr, mean_sq_norm / total_variance, rtol=1e-5)
    # identical estimates: no variance, SNR undefined; one estimate is refused
    same = diagnostics.gradient_statistics(jnp.ones((4, 3)))
    assert float(same.total_variance) == 0.0 and np.isnan(same.snr)
    with pytest.raises(ValueError, match="G >= 2"):
        diagnostics.gradient_statistics({"a": jnp.ones((1, 3))})


def _masked_loss(params, batch):
    """A masked-mean loss on time-major [T, N, d] data, as the score-function loss reduces."""
    x, y, mask = batch
    pred = jnp.tanh(x @ params["w"]) + params["b"]
    return score_function.masked_mean((pred - y) ** 2, mask)


def test_group_gradients_are_per_env_gradients_whose_weighted_mean_is_the_batch_gradient():
    rng = np.random.default_rng(1)
    T, N, d = 6, 4, 3
    params = {"w": jnp.asarray(rng.normal(size=d), jnp.float32), "b": jnp.asarray(0.3)}
    x, y = rng.normal(size=(T, N, d)), rng.normal(size=(T, N))
    mask = (rng.uniform(size=(T, N)) < 0.6).astype(np.float64)
    mask[:, 2] = 0.0                                       # an env without unmasked steps
    batch = tuple(jnp.asarray(a, jnp.float32) for a in (x, y, mask))
    groups = diagnostics.split_groups(batch, N, axis=1)
    np.testing.assert_array_equal(groups[0][1], batch[0][:, 1:2])  # group i = env i: [T, 1, d]

    unweighted = jax.jit(diagnostics.group_gradients, static_argnums=0)(_masked_loss, params, groups)
    grad = jax.jit(jax.grad(_masked_loss))
    for i in range(N):                                     # a loop of plain jax.grad
        expected = grad(params, tuple(a[:, i:i + 1] for a in batch))
        for got, want in zip(jax.tree.leaves(unweighted), jax.tree.leaves(expected)):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)

    weights = diagnostics.share_weights(batch[2], axis=1)
    counts = mask.sum(0)
    np.testing.assert_allclose(weights, N * counts / counts.sum(), rtol=1e-6)
    weighted = jax.jit(diagnostics.group_gradients, static_argnums=0)(_masked_loss, params, groups, weights)
    batch_grad = grad(params, batch)
    for got, want in zip(jax.tree.leaves(weighted), jax.tree.leaves(batch_grad)):
        np.testing.assert_allclose(got.mean(0), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[2], 0.0)
    # minibatch groups on a leading axis: [B, ...] -> [G, B/G, ...], contiguous
    np.testing.assert_array_equal(diagnostics.split_groups(jnp.arange(6), 3, axis=0), [[0, 1], [2, 3], [4, 5]])


# ---------------------------------------------------------------------------------------------
# the bandit: in-update variance vs the exact covariance of the single-episode estimator


def test_reinforce_grad_variance_on_bandit_matches_closed_form_and_monte_carlo():
    """One REINFORCE update (b = 0, one pull per env) at fixed parameters θ. Env i's estimate is
    g_i = J(θ)ᵀ r_i (e_{a_i} − π) with J = ∂h/∂θ the Jacobian of the softmax logits h (constant
    observation), so Cov g = Jᵀ C J with C = Σ_a π_a (σ_a² + μ_a²)(e_a − π)(e_a − π)ᵀ − m mᵀ,
    m = π ⊙ (μ − πᵀμ) = E[r (e_a − π)]."""
    G = 4096
    config = reinforce.Config(env_id="Bandit-v0", baseline="none", num_envs=G, rollout_length=1,
                              total_steps=G, hidden_sizes=(8,), log_grad_variance=True)
    hparams = hparams_as_arrays(reinforce.Hparams(vf_coef=0.0))
    state = reinforce.init(config, hparams, jax.random.key(0))
    params = jax.tree.map(lambda x: x, state.params)       # a non-uniform policy
    params["params"]["policy_head"]["bias"] = jnp.asarray([0.6, -0.4, 1.0, -0.9])
    _, metrics = _one_update(reinforce, config, state.replace(params=params))

    _, env_params = envs.make("Bandit-v0")
    mu = np.asarray(env_params.arm_means, np.float64)
    var = np.asarray(env_params.arm_stds, np.float64) ** 2
    network = setup.make_network(config)
    obs = jnp.ones((1,))
    logits_of = lambda p: network.apply(p, obs, method=type(network).policy).logits
    jac = jax.jit(jax.jacobian(logits_of))(params)["params"]  # ∂h/∂θ, policy leaves only
    J = np.concatenate([np.asarray(leaf, np.float64).reshape(len(mu), -1)
                        for leaf in jax.tree.leaves((jac["actor_torso"], jac["policy_head"]))], axis=1)
    logits = np.asarray(logits_of(params), np.float64)
    pi = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    k = len(mu)
    E = np.eye(k) - pi                                     # row a: e_a − π
    m = pi * (mu - pi @ mu)
    C = np.einsum("a,ai,aj->ij", pi * (var + mu**2), E, E) - np.outer(m, m)
    M = J @ J.T
    closed_variance = np.trace(M @ C)                      # tr(Jᵀ C J)
    closed_signal = m @ M @ m                              # ‖Jᵀ m‖²

    # direct Monte-Carlo in NumPy: sample pulls, form g_h = r (e_a − π), project with J
    rng = np.random.default_rng(0)
    n = 400_000
    a = rng.choice(k, size=n, p=pi)
    r = mu[a] + np.sqrt(var[a]) * rng.normal(size=n)
    g_h = r[:, None] * E[a]                                # [n, k]
    centred = g_h - g_h.mean(0)
    sq_dev = np.einsum("ni,ij,nj->n", centred, M, centred)  # ‖Jᵀ(g − ḡ)‖² per sample
    mc_variance = sq_dev.sum() / (n - 1)
    np.testing.assert_allclose(mc_variance, closed_variance, rtol=0.01)

    # the in-update estimate from G envs, within 4 standard errors of the exact value
    se = sq_dev.std() / np.sqrt(G)
    got = float(metrics["grad_variance"])
    print(f"in-update {got:.6g}  closed form {closed_variance:.6g}  MC {mc_variance:.6g}  se {se:.3g}")
    assert abs(got - closed_variance) < 4 * se, (got, closed_variance, se)
    assert 4 * se < 0.2 * closed_variance                  # the check is tight enough to mean something
    # E‖ḡ‖² = ‖Jᵀm‖² + tr Σ/G; Var‖ḡ‖² ≈ 4 mᵀ M C M m/G + 2 tr((MC)²)/G²
    expected_sq = closed_signal + closed_variance / G
    sd_sq = np.sqrt(4 * m @ M @ C @ M @ m / G + 2 * np.trace(M @ C @ M @ C) / G**2)
    print(f"‖ḡ‖² in-update {float(metrics['grad_mean_sq_norm']):.4g}  expected {expected_sq:.4g} ± {sd_sq:.2g}")
    assert abs(float(metrics["grad_mean_sq_norm"]) - expected_sq) < 4 * sd_sq
    np.testing.assert_allclose(metrics["grad_mean_sq_norm"], float(metrics["grad_norm"]) ** 2, rtol=1e-4)
    np.testing.assert_allclose(metrics["grad_snr"], metrics["grad_mean_sq_norm"] / metrics["grad_variance"],
                               rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# the flag on every algorithm


SMALL = dict(num_envs=4, hidden_sizes=(8,), log_grad_variance=True)
CASES = {  # REINFORCE: the bandit test above; uneven masks: the group-gradient test; the batch
           # actor-critic variants go through the same score_function_update as a2c
    "a2c": (a2c, dict(env_id="Bandit-v0", rollout_length=4), dict(vf_coef=0.0)),
    "trpo": (trpo, dict(env_id="Bandit-v0", rollout_length=4, critic_minibatches=1, critic_epochs=1,
                        cg_iterations=1, line_search_steps=1), {}),
    "impala": (impala, dict(env_id="Bandit-v0", rollout_length=4), dict(vf_coef=0.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_flag_adds_finite_metrics_whose_mean_is_the_update_gradient(name):
    """ḡ of the per-env estimates is the update's own (policy) gradient, so with no critic loss
    ‖ḡ‖² equals the reported grad_norm²; with the flag off no metric is traced."""
    algo, config_args, hparam_args = CASES[name]
    config = algo.Config(total_steps=4 * config_args["rollout_length"], **SMALL, **config_args)
    hparams = hparams_as_arrays(algo.Hparams(**hparam_args))
    state = algo.init(config, hparams, jax.random.key(1))
    _, metrics = _one_update(algo, config, state)
    values = {key: float(metrics[key]) for key in NOISE_KEYS}
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["grad_variance"] > 0 and values["grad_mean_sq_norm"] > 0, values
    np.testing.assert_allclose(values["grad_mean_sq_norm"], float(metrics["grad_norm"]) ** 2, rtol=1e-4)
    off = dataclasses.replace(config, log_grad_variance=False)
    shapes = jax.eval_shape(lambda s: algo.update(off, s)[1], state)
    assert not set(NOISE_KEYS) & set(shapes)


def test_ppo_minibatch_variance_is_positive_and_shrinks_with_larger_minibatches():
    """The same 1024-step rollout (same key) cut into 64 minibatches of 16 or 8 of 128: the
    variance of one minibatch's gradient falls as 1/size (expected ratio 8; seeds 2–4 give 5.5–8)."""
    variances = {}
    for minibatches in (64, 8):
        config = ppo.Config(env_id="Bandit-v0", rollout_length=128, total_steps=1024, epochs=1,
                            minibatches=minibatches, **{**SMALL, "num_envs": 8})
        state = ppo.init(config, hparams_as_arrays(ppo.Hparams()), jax.random.key(2))
        _, metrics = _one_update(ppo, config, state)
        assert all(np.isfinite(float(metrics[key])) for key in NOISE_KEYS)
        variances[minibatches] = float(metrics["grad_variance"])
    print("ppo grad_variance by minibatch count", variances)
    assert variances[8] > 0
    assert variances[8] < variances[64] / 3, variances


def test_config_validation():
    base = dict(env_id="Bandit-v0", rollout_length=4, total_steps=64)
    online = actor_critic.Config(variant="td_lambda", log_grad_variance=True, **base)
    state = actor_critic.init(online, hparams_as_arrays(actor_critic.Hparams()), jax.random.key(0))
    shapes = jax.eval_shape(lambda s: actor_critic.update(online, s)[1], state)
    assert set(NOISE_KEYS) <= set(shapes)  # per-env trace directions (tests/test_actor_critic.py)
    with pytest.raises(ConfigError, match="at least 2"):
        a2c.Config(num_envs=1, log_grad_variance=True, **base)
    with pytest.raises(ConfigError, match="minibatch"):
        ppo.Config(minibatches=1, log_grad_variance=True, **base)
    with pytest.raises(ConfigError, match="true or false"):
        a2c.Config(log_grad_variance="yes", **base)
    config, _ = apply_overrides(a2c.Config(**base), a2c.Hparams(), ["log_grad_variance=true"])
    assert config.log_grad_variance is True
