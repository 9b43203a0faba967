"""Trust-region machinery (conjugate gradient, Fisher-vector product, backtracking line search)
against dense NumPy references, and the TRPO update's guarantees on CartPole."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pgjax import estimators, trust_region
from pgjax.algorithms import optimiser, score_function, setup, train_state, trpo
from pgjax.config import hparams_as_arrays
from pgjax.distributions import Categorical
from pgjax.networks import ActorCritic


def _random_spd(rng, n, min_eig=0.5):
    m = rng.normal(size=(n, n))
    return m @ m.T / n + min_eig * np.eye(n)


# ---------------------------------------------------------------------------------------------
# conjugate gradient


def test_conjugate_gradient_solves_random_spd_system_over_a_pytree():
    rng = np.random.default_rng(0)
    tree = {"a": jnp.zeros((3,)), "b": {"c": jnp.zeros((2, 2))}}
    _, unravel = ravel_pytree(tree)
    n = 7
    a = _random_spd(rng, n)
    g_flat = rng.normal(size=n)
    matvec = lambda x: unravel(jnp.asarray(a, jnp.float32) @ ravel_pytree(x)[0])
    x, residual = jax.jit(lambda g: trust_region.conjugate_gradient(matvec, g, iterations=3 * n))(
        unravel(jnp.asarray(g_flat, jnp.float32)))
    assert jax.tree.structure(x) == jax.tree.structure(tree)
    expected = np.linalg.solve(a, g_flat)
    np.testing.assert_allclose(np.asarray(ravel_pytree(x)[0]), expected, rtol=1e-4, atol=1e-5)
    assert float(residual) < 1e-8


def test_conjugate_gradient_one_iteration_is_the_steepest_descent_step():
    # From x0 = 0, one CG step is x1 = (gᵀg / gᵀAg) g.
    rng = np.random.default_rng(1)
    a = _random_spd(rng, 5)
    g = rng.normal(size=5)
    x, residual = trust_region.conjugate_gradient(
        lambda v: jnp.asarray(a, jnp.float32) @ v, jnp.asarray(g, jnp.float32), iterations=1)
    expected = (g @ g) / (g @ a @ g) * g
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-5)
    np.testing.assert_allclose(float(residual), np.sum((g - a @ expected) ** 2), rtol=1e-4)


def test_conjugate_gradient_stops_at_residual_tolerance():
    # A = I: CG solves it in one step; a huge tolerance stops it before any step.
    g = jnp.arange(1.0, 5.0)
    x, _ = trust_region.conjugate_gradient(lambda v: v, g, iterations=10, residual_tol=1e6)
    np.testing.assert_array_equal(np.asarray(x), 0.0)
    x, residual = trust_region.conjugate_gradient(lambda v: v, g, iterations=10)
    np.testing.assert_allclose(np.asarray(x), np.asarray(g), rtol=1e-6)
    assert float(residual) < 1e-10


# ---------------------------------------------------------------------------------------------
# Fisher-vector product


def _tiny_policy():
    """A 1-hidden-layer ActorCritic with random N(0, 1) weights (a policy far from uniform)."""
    network = ActorCritic(action_dim=3, discrete=True, hidden_sizes=(5,))
    obs = jax.random.normal(jax.random.key(0), (6, 4))
    shapes = jax.eval_shape(network.init, jax.random.key(1), obs)
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(treedef, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
    return network, obs, params


def _mean_kl_fn(network, obs, old_params):
    old = jax.lax.stop_gradient(network.apply(old_params, obs, method=ActorCritic.policy))
    return lambda p: jnp.mean(old.kl(network.apply(p, obs, method=ActorCritic.policy)))


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_equals_dense_hessian_of_mean_kl(damping):
    network, obs, params = _tiny_policy()
    flat, unravel = ravel_pytree(params)
    mean_kl = _mean_kl_fn(network, obs, params)
    hessian = np.asarray(jax.jit(jax.hessian(lambda f: mean_kl(unravel(f))))(flat), np.float64)
    assert np.abs(hessian).max() > 1e-2  # the actor block is not trivial
    v_flat = np.asarray(jax.random.normal(jax.random.key(5), flat.shape), np.float64)
    fvp = jax.jit(lambda v: trust_region.fisher_vector_product(mean_kl, params, v, damping))(
        unravel(jnp.asarray(v_flat, jnp.float32)))
    expected = hessian @ v_flat + damping * v_flat
    np.testing.assert_allclose(np.asarray(ravel_pytree(fvp)[0]), expected, rtol=1e-4, atol=1e-5)


def test_fisher_vector_product_of_linear_softmax_matches_closed_form_fisher():
    # logits = xᵀW: the Hessian of KL[π_old ‖ π_W] at W_old is E_s[(diag p − p pᵀ) ⊗ x xᵀ]
    # (the Fisher information of the softmax), flattened row-major over W[i, a].
    rng = np.random.default_rng(2)
    d, k, batch = 3, 4, 10
    x = rng.normal(size=(batch, d))
    w_old = rng.normal(size=(d, k))
    xj = jnp.asarray(x, jnp.float32)
    old = Categorical(xj @ jnp.asarray(w_old, jnp.float32))
    mean_kl = lambda w: jnp.mean(old.kl(Categorical(xj @ w)))
    logits = x @ w_old
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    fisher = np.mean([np.kron(np.outer(xs, xs), np.diag(ps) - np.outer(ps, ps)) for xs, ps in zip(x, p)],
                     axis=0)
    v = rng.normal(size=(d, k))
    damping = 0.05
    got = trust_region.fisher_vector_product(mean_kl, jnp.asarray(w_old, jnp.float32),
                                             jnp.asarray(v, jnp.float32), damping)
    expected = (fisher @ v.reshape(-1) + damping * v.reshape(-1)).reshape(d, k)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-6)


def test_conjugate_gradient_on_damped_fisher_matches_dense_solve():
    network, obs, params = _tiny_policy()
    flat, unravel = ravel_pytree(params)
    mean_kl = _mean_kl_fn(network, obs, params)
    damping = 0.1
    hessian = np.asarray(jax.jit(jax.hessian(lambda f: mean_kl(unravel(f))))(flat), np.float64)
    g_flat = np.asarray(jax.random.normal(jax.random.key(9), flat.shape), np.float64)
    fvp = lambda v: trust_region.fisher_vector_product(mean_kl, params, v, damping)
    solve = jax.jit(lambda g: trust_region.conjugate_gradient(fvp, g, iterations=100, residual_tol=1e-12))
    x, _ = solve(unravel(jnp.asarray(g_flat, jnp.float32)))
    expected = np.linalg.solve(hessian + damping * np.eye(len(g_flat)), g_flat)
    np.testing.assert_allclose(np.asarray(ravel_pytree(x)[0]), expected, rtol=2e-3, atol=2e-3)


# ---------------------------------------------------------------------------------------------
# backtracking line search


def _reference_line_search(improvement, kl, x0, step, max_kl, max_backtracks, shrink):
    for j in range(max_backtracks):
        x = x0 + shrink**j * step
        imp, k = improvement(x), kl(x)
        if imp > 0 and k <= max_kl and np.isfinite(imp) and np.isfinite(k):
            return x, True, j, imp, k
    return x0, False, max_backtracks, 0.0, 0.0


# improvement(x) = x·(2 − x) (positive for 0 < x < 2), KL(x) = x²/2, from x0 = 0 along step
LINE_SEARCH_CASES = [
    # (step, max_kl, max_backtracks, shrink, expected j or None)
    (1.0, 1.0, 10, 0.5, 0),     # first step qualifies
    (3.0, 1.0, 10, 0.5, 2),     # x=3: improvement < 0; x=1.5: KL 1.125; x=0.75 qualifies
    (6.0, 0.1, 10, 0.5, 4),     # KL too large down to x=0.75 (0.28); x=0.375 → 0.07
    (8.0, 0.02, 10, 0.5, 6),    # only x = 0.125
    (5.0, 1e-9, 10, 0.5, None),  # KL bound never met within 10 backtracks
    (-1.0, 1.0, 10, 0.5, None),  # a descent direction: every improvement is negative
    (3.0, 0.5, 10, 0.8, 5),     # shrink 0.8: 3·0.8^4 = 1.23 → KL 0.755; 3·0.8^5 = 0.98 → 0.48
    (1.0, 1.0, 3, 0.5, 0),
    (2.0, 1.0, 10, 0.5, 1),     # x=2: improvement exactly 0 is not an improvement
    (1.0, 0.5, 10, 0.5, 0),     # KL exactly at the bound is allowed
    (40.0, 1.0, 3, 0.5, None),  # the qualifying x = 1.25 would need j = 5 > 3 backtracks
]


@pytest.mark.parametrize("step, max_kl, max_backtracks, shrink, expected_j", LINE_SEARCH_CASES)
def test_line_search_accepts_first_qualifying_step(step, max_kl, max_backtracks, shrink, expected_j):
    improvement = lambda p: p["x"] * (2.0 - p["x"])
    kl = lambda p: 0.5 * p["x"] ** 2
    params = {"x": jnp.asarray(0.0), "y": jnp.asarray([1.0, -2.0])}
    full_step = {"x": jnp.asarray(step), "y": jnp.asarray([0.0, 0.0])}
    search = jax.jit(lambda p, s: trust_region.backtracking_line_search(
        improvement, kl, p, s, max_kl, max_backtracks, shrink))
    new_params, accepted, backtracks, imp, k = search(params, full_step)
    ref_x, ref_ok, ref_j, ref_imp, ref_kl = _reference_line_search(
        lambda x: x * (2 - x), lambda x: 0.5 * x**2, 0.0, step, max_kl, max_backtracks, shrink)
    assert ref_j == (max_backtracks if expected_j is None else expected_j)  # hand-worked case
    assert bool(accepted) == ref_ok == (expected_j is not None)
    assert int(backtracks) == ref_j
    np.testing.assert_allclose(float(new_params["x"]), ref_x, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new_params["y"]), [1.0, -2.0])
    np.testing.assert_allclose(float(imp), ref_imp, rtol=1e-5)
    np.testing.assert_allclose(float(k), ref_kl, rtol=1e-5)
    if ref_ok:
        assert float(imp) > 0 and float(k) <= max_kl


def test_line_search_leaves_params_unchanged_when_nothing_qualifies():
    params = {"w": jnp.asarray([[0.3, -0.2], [1.0, 2.0]]), "b": jnp.asarray([0.5])}
    full_step = jax.tree.map(jnp.ones_like, params)
    new_params, accepted, backtracks, imp, k = trust_region.backtracking_line_search(
        lambda p: -jnp.sum(p["w"]) - 10.0, lambda p: jnp.asarray(0.0), params, full_step, 0.01,
        max_backtracks=4)
    assert not bool(accepted) and int(backtracks) == 4
    assert float(imp) == 0.0 and float(k) == 0.0
    for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_line_search_rejects_non_finite_candidates():
    # the full step gives NaN improvement, the half step is fine
    improvement = lambda p: jnp.where(p > 0.75, jnp.nan, p)
    new, accepted, backtracks, imp, _ = trust_region.backtracking_line_search(
        improvement, lambda p: 0.0 * p, jnp.asarray(0.0), jnp.asarray(1.0), 1.0)
    assert bool(accepted) and int(backtracks) == 1
    np.testing.assert_allclose(float(new), 0.5)
    np.testing.assert_allclose(float(imp), 0.5)


# ---------------------------------------------------------------------------------------------
# the TRPO update


TRPO_CONFIG = trpo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=64, total_steps=256 * 4,
                          hidden_sizes=(32, 32), critic_epochs=1, critic_minibatches=2)


def _policy_stats(config, params, traj):
    network = setup.make_network(config)
    dist = network.apply(params, traj.obs, method=ActorCritic.policy)
    return dist, dist.log_prob(traj.actions)


MAX_KLS = (0.01, 0.05, 0.02, 0.01)  # one per seed


def _update_and_recompute(state):
    """One TRPO update, and the achieved mean KL / surrogate improvement / actor change recomputed
    on the same rollout (``train_state.collect`` on the same state reproduces it)."""
    config = TRPO_CONFIG
    new_state, metrics = trpo.update(config, state)
    _, traj = train_state.collect(config, state)
    hp = state.hparams
    advantages = estimators.gae(traj.rewards, traj.values, traj.next_values, traj.discounts(hp.gamma),
                                traj.dones(), hp.gae_lambda)
    advantages = score_function.normalize(advantages)
    old_dist, old_logp = _policy_stats(config, state.params, traj)
    new_dist, new_logp = _policy_stats(config, new_state.params, traj)
    kl = jnp.mean(old_dist.kl(new_dist))
    surrogate = lambda logp: jnp.mean(jnp.exp(logp - traj.log_probs) * advantages)
    labels = optimiser.critic_labels(state.params)
    actor_change = jax.tree.map(lambda a, b, label: jnp.max(jnp.abs(a - b)) if label == "actor" else 0.0,
                                new_state.params, state.params, labels)
    critic_change = jax.tree.map(lambda a, b, label: jnp.max(jnp.abs(a - b)) if label == "critic" else 0.0,
                                 new_state.params, state.params, labels)
    recomputed = {"kl": kl, "improvement": surrogate(new_logp) - surrogate(old_logp),
                  "actor_change": jnp.max(jnp.stack(jax.tree.leaves(actor_change))),
                  "critic_change": jnp.max(jnp.stack(jax.tree.leaves(critic_change)))}
    return new_state, metrics, recomputed


def test_trpo_update_respects_kl_bound_and_never_accepts_a_worse_surrogate():
    config = TRPO_CONFIG
    init = jax.jit(lambda k, h: trpo.init(config, h, k))
    step = jax.jit(_update_and_recompute)  # seeds looped on the host: one small compile
    accepted_count = 0
    for seed, max_kl in enumerate(MAX_KLS):
        hparams = hparams_as_arrays(trpo.Hparams(max_kl=float(max_kl)))
        state = init(jax.random.key(seed), hparams)
        for _ in range(3):
            state, metrics, got = step(state)
            metrics, got = jax.tree.map(np.asarray, (metrics, got))
            assert got["kl"] <= 1.5 * max_kl, (seed, got["kl"], max_kl)
            assert got["critic_change"] > 0  # the critic is regressed either way
            if metrics["step_accepted"] > 0:
                accepted_count += 1
                assert got["improvement"] > 0, (seed, got["improvement"])
                assert got["actor_change"] > 0
                np.testing.assert_allclose(metrics["kl"], got["kl"], rtol=0.05, atol=1e-6)
                np.testing.assert_allclose(metrics["surrogate_improvement"], got["improvement"],
                                           rtol=0.05, atol=1e-6)
                assert got["kl"] > 0.05 * max_kl  # the step is not vanishingly small
            else:
                assert got["actor_change"] == 0.0 and got["kl"] == 0.0
    assert accepted_count >= len(MAX_KLS) * 3 - 2  # the search mostly succeeds


def test_trpo_learns_cartpole_smoke():
    import pgjax
    from pgjax.algorithms import trpo as trpo_algo
    config = trpo_algo.Config(env_id="CartPole-v1", num_envs=8, rollout_length=128, total_steps=40_960,
                              critic_epochs=2, critic_minibatches=2)
    _, metrics = jax.jit(pgjax.make_train(config))(jax.random.key(0), trpo_algo.Hparams(max_kl=0.02))
    returns = np.asarray(metrics["episode_return"])
    early, late = np.nanmean(returns[:3]), np.nanmean(returns[-5:])
    assert early < 40, early
    assert late > 2.5 * early, (early, late)
    assert np.all(np.asarray(metrics["kl"]) <= 1.5 * 0.02)
