"""Tests for pgjax.losses against NumPy formulas, analytic gradients and finite differences."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import losses
from pgjax.distributions import Categorical, DiagGaussian

# Jit-compiled versions: one XLA program per call shape instead of one compilation per eager op
# (much faster on a small CPU). Eager calls are used in test_ppo_clip_loss_value.
L = types.SimpleNamespace(**{name: jax.jit(getattr(losses, name)) for name in (
    "policy_gradient_loss", "ppo_clip_loss", "importance_sampled_surrogate", "value_loss",
    "entropy", "mean_kl", "approx_kl", "clip_fraction")})


def jgrad(fun, argnums=0):
    return jax.jit(jax.grad(fun, argnums=argnums))


RTOL = 1e-5
ATOL = 1e-6
SEEDS = [0, 1, 2]


def j(x):
    return jnp.asarray(x, jnp.float32)


def f32(x):
    """The float32 values the JAX code actually sees, as float64 for the NumPy references."""
    return np.asarray(np.asarray(x, np.float32), np.float64)


def ppo_inputs(seed, shape=(64,), spread=0.4):
    rng = np.random.default_rng(seed)
    old = f32(rng.normal(-1.0, 0.5, size=shape))
    new = f32(old + spread * rng.normal(size=shape))
    adv = f32(rng.normal(size=shape))
    return new, old, adv


def np_ppo_loss(new, old, adv, eps):
    ratio = np.exp(new - old)
    terms = []
    for r, a in zip(ratio.ravel(), adv.ravel()):
        r_clip = min(max(r, 1.0 - eps), 1.0 + eps)
        terms.append(min(r * a, r_clip * a))
    return -np.mean(terms)


# ----------------------------------------------------------------------------------------------
# PPO clipped surrogate
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("seed", SEEDS)
def test_ppo_clip_loss_value(seed, eps):
    new, old, adv = ppo_inputs(seed)
    got = losses.ppo_clip_loss(j(new), j(old), j(adv), eps)
    assert got.shape == ()
    np.testing.assert_allclose(float(got), np_ppo_loss(new, old, adv, eps), rtol=1e-5, atol=1e-6)


def test_ppo_clip_loss_multi_dim_and_clipping_active():
    new, old, adv = ppo_inputs(3, shape=(8, 16), spread=0.6)
    eps = 0.2
    ratio = np.exp(new - old)
    assert np.mean(np.abs(ratio - 1) > eps) > 0.2  # the clip really is exercised
    got = L.ppo_clip_loss(j(new), j(old), j(adv), eps)
    np.testing.assert_allclose(float(got), np_ppo_loss(new, old, adv, eps), rtol=1e-5, atol=1e-6)
    # ... and it differs from the unclipped importance-sampled surrogate.
    assert abs(float(got) + np.mean(ratio * adv)) > 1e-3


def test_ppo_clip_loss_equals_negative_surrogate_when_nothing_clipped():
    new, old, adv = ppo_inputs(4, spread=0.01)
    eps = 0.2
    assert np.all(np.abs(np.exp(new - old) - 1) < eps)
    got = L.ppo_clip_loss(j(new), j(old), j(adv), eps)
    np.testing.assert_allclose(float(got), -np.mean(np.exp(new - old) * adv), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(got), -float(L.importance_sampled_surrogate(j(new), j(old), j(adv))),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_ppo_clip_loss_gradient_analytic(seed):
    eps = 0.2
    new, old, adv = ppo_inputs(seed, spread=0.5)
    ratio = np.exp(new - old)
    n = new.size
    # Stay away from the kinks at ratio = 1 ± ε where the derivative is not defined.
    assert np.min(np.abs(np.abs(ratio - 1.0) - eps)) > 1e-4
    grads = jgrad(L.ppo_clip_loss, argnums=(0, 1, 2))(j(new), j(old), j(adv), eps)
    g_new, g_old, g_adv = (np.asarray(g, np.float64) for g in grads)
    # min(rA, clip(r)A) takes the (flat) clipped branch iff r > 1+ε with A > 0 or r < 1−ε with A < 0.
    clipped_active = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    want = np.where(clipped_active, 0.0, -ratio * adv / n)
    assert clipped_active.any() and (~clipped_active).any()
    np.testing.assert_allclose(g_new, want, rtol=1e-5, atol=1e-7)
    # old_log_probs and advantages are constants.
    assert np.all(g_old == 0.0) and np.all(g_adv == 0.0)


def test_ppo_clip_loss_gradient_finite_differences():
    eps = 0.2
    new, old, adv = ppo_inputs(7, shape=(12,), spread=0.5)
    ratio = np.exp(new - old)
    h = 1e-4
    assert np.min(np.abs(np.abs(ratio - 1.0) - eps)) > 10 * h
    g = np.asarray(jgrad(L.ppo_clip_loss)(j(new), j(old), j(adv), eps), np.float64)
    fd = np.zeros_like(new)
    for i in range(new.size):
        e = np.zeros_like(new)
        e[i] = h
        fd[i] = (np_ppo_loss(new + e, old, adv, eps) - np_ppo_loss(new - e, old, adv, eps)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6)


def test_ppo_clip_loss_traced_eps_under_jit_and_vmap():
    new, old, adv = ppo_inputs(5, spread=0.5)
    epss = jnp.asarray([0.1, 0.2, 0.3], jnp.float32)
    got = jax.jit(jax.vmap(losses.ppo_clip_loss, in_axes=(None, None, None, 0)))(j(new), j(old), j(adv), epss)
    for i, eps in enumerate([0.1, 0.2, 0.3]):
        np.testing.assert_allclose(float(got[i]), np_ppo_loss(new, old, adv, eps), rtol=1e-5, atol=1e-6)


def test_ppo_clip_loss_shape_mismatch_raises():
    with pytest.raises(AssertionError):
        L.ppo_clip_loss(jnp.zeros(5), jnp.zeros(4), jnp.zeros(5), 0.2)


# ----------------------------------------------------------------------------------------------
# Vanilla policy gradient / importance-sampled surrogate
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(10,), (4, 6)])
def test_policy_gradient_loss_value_and_gradient(shape):
    rng = np.random.default_rng(0)
    lp = f32(rng.normal(-1.0, 0.5, size=shape))
    adv = f32(rng.normal(size=shape))
    n = lp.size
    got = L.policy_gradient_loss(j(lp), j(adv))
    np.testing.assert_allclose(float(got), -np.sum(lp * adv) / n, rtol=1e-5, atol=1e-6)
    g_lp, g_adv = jgrad(L.policy_gradient_loss, argnums=(0, 1))(j(lp), j(adv))
    np.testing.assert_allclose(np.asarray(g_lp), -adv / n, rtol=1e-6, atol=1e-8)
    assert np.all(np.asarray(g_adv) == 0.0)  # advantages are constants


def test_policy_gradient_loss_through_a_categorical_policy():
    # ∇_h of −mean(log π(a) A) for softmax logits h is −A (onehot(a) − π)/N per row.
    rng = np.random.default_rng(1)
    logits = f32(rng.normal(size=(6, 4)))
    actions = rng.integers(0, 4, size=6)
    adv = f32(rng.normal(size=6))

    def loss(h):
        return L.policy_gradient_loss(Categorical(h).log_prob(jnp.asarray(actions)), j(adv))

    g = np.asarray(jgrad(loss)(j(logits)), np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = -adv[:, None] * (np.eye(4)[actions] - p) / 6
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_importance_sampled_surrogate():
    new, old, adv = ppo_inputs(2)
    got = L.importance_sampled_surrogate(j(new), j(old), j(adv))
    ratio = np.exp(new - old)
    np.testing.assert_allclose(float(got), np.mean(ratio * adv), rtol=1e-5, atol=1e-6)
    g_new, g_old = jgrad(L.importance_sampled_surrogate, argnums=(0, 1))(j(new), j(old), j(adv))
    np.testing.assert_allclose(np.asarray(g_new), ratio * adv / new.size, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(g_old) == 0.0)


# ----------------------------------------------------------------------------------------------
# Value loss
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_unclipped(seed):
    rng = np.random.default_rng(seed)
    v = f32(rng.normal(size=(5, 7)))
    tgt = f32(rng.normal(size=(5, 7)))
    got = L.value_loss(j(v), j(tgt))
    np.testing.assert_allclose(float(got), 0.5 * np.mean((v - tgt) ** 2), rtol=1e-5, atol=1e-7)
    g_v, g_t = jgrad(L.value_loss, argnums=(0, 1))(j(v), j(tgt))
    np.testing.assert_allclose(np.asarray(g_v), (v - tgt) / v.size, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(g_t) == 0.0)
    # Passing only one of old_values / clip_eps gives the unclipped loss.
    np.testing.assert_allclose(float(L.value_loss(j(v), j(tgt), old_values=j(tgt))), float(got))
    np.testing.assert_allclose(float(L.value_loss(j(v), j(tgt), clip_eps=0.1)), float(got))


def np_clipped_value_loss(v, tgt, old, eps):
    out = []
    for vi, ti, oi in zip(v.ravel(), tgt.ravel(), old.ravel()):
        vc = oi + min(max(vi - oi, -eps), eps)
        out.append(max((vi - ti) ** 2, (vc - ti) ** 2))
    return 0.5 * np.mean(out)


@pytest.mark.parametrize("eps", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_clipped(seed, eps):
    rng = np.random.default_rng(seed + 10)
    old = f32(rng.normal(size=40))
    v = f32(old + 0.3 * rng.normal(size=40))
    tgt = f32(rng.normal(size=40))
    got = L.value_loss(j(v), j(tgt), j(old), eps)
    np.testing.assert_allclose(float(got), np_clipped_value_loss(v, tgt, old, eps), rtol=1e-5, atol=1e-7)
    if eps < 0.5:
        # The clipped branch really changes the loss.
        assert float(got) > 0.5 * np.mean((v - tgt) ** 2) + 1e-4


def test_value_loss_clipped_gradient():
    rng = np.random.default_rng(3)
    eps = 0.1
    old = f32(rng.normal(size=30))
    v = f32(old + 0.3 * rng.normal(size=30))
    tgt = f32(rng.normal(size=30))
    g_v, g_old = jgrad(L.value_loss, argnums=(0, 2))(j(v), j(tgt), j(old), eps)
    vc = old + np.clip(v - old, -eps, eps)
    unclipped_wins = (v - tgt) ** 2 >= (vc - tgt) ** 2
    inside = np.abs(v - old) < eps
    # d/dv ½ max(...)/N: (v − t)/N if the unclipped term is the max; (vc − t)/N·1[|v−old|<ε] otherwise.
    want = np.where(unclipped_wins, v - tgt, np.where(inside, vc - tgt, 0.0)) / v.size
    # Avoid ties (both terms equal) where the max's derivative is split.
    strict = np.abs((v - tgt) ** 2 - (vc - tgt) ** 2) > 1e-6
    np.testing.assert_allclose(np.asarray(g_v)[strict], want[strict], rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(g_old) == 0.0)


# ----------------------------------------------------------------------------------------------
# KL estimates and clip fraction
# ----------------------------------------------------------------------------------------------

def test_approx_kl_formula():
    new, old, _ = ppo_inputs(0, spread=0.5)
    got = L.approx_kl(j(new), j(old))
    lr = new - old
    np.testing.assert_allclose(float(got), np.mean(np.exp(lr) - 1.0 - lr), rtol=1e-5, atol=1e-7)
    assert float(got) >= 0.0
    np.testing.assert_allclose(float(L.approx_kl(j(old), j(old))), 0.0, atol=1e-8)


def test_approx_kl_is_unbiased_for_categorical_kl():
    # Actions drawn from π_old; approx_kl(log π_new(a), log π_old(a)) estimates KL[π_old ‖ π_new].
    rng = np.random.default_rng(0)
    p_old = rng.dirichlet(np.ones(5) * 2.0)
    p_new = rng.dirichlet(np.ones(5) * 2.0)
    exact = float(np.sum(p_old * (np.log(p_old) - np.log(p_new))))
    n = 200_000
    a = rng.choice(5, size=n, p=p_old)
    lp_new, lp_old = np.log(p_new)[a], np.log(p_old)[a]
    got = float(L.approx_kl(j(lp_new), j(lp_old)))
    k3 = np.exp(lp_new - lp_old) - 1 - (lp_new - lp_old)
    se = k3.std() / np.sqrt(n)
    assert abs(got - exact) < 5 * se + 1e-5, (got, exact, se)
    # ... and the JAX Categorical.kl agrees with the exact value.
    kl = L.mean_kl(Categorical(j(np.log(p_old))[None]), Categorical(j(np.log(p_new))[None]))
    np.testing.assert_allclose(float(kl), exact, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_clip_fraction(eps):
    new, old, _ = ppo_inputs(1, shape=(200,), spread=0.3)
    ratio = np.exp(new - old)
    want = np.sum([abs(r - 1.0) > eps for r in ratio]) / ratio.size
    assert 0.0 < want < 1.0
    np.testing.assert_allclose(float(L.clip_fraction(j(new), j(old), eps)), want, atol=1e-7)


def test_clip_fraction_hand_example():
    ratios = np.array([0.5, 0.85, 1.0, 1.1, 1.25, 3.0])
    lp = np.log(ratios)
    got = float(L.clip_fraction(j(lp), j(np.zeros(6)), 0.2))
    np.testing.assert_allclose(got, 3 / 6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Distribution helpers: mean_kl and entropy
# ----------------------------------------------------------------------------------------------

def np_log_softmax(h):
    h = h - h.max(-1, keepdims=True)
    return h - np.log(np.exp(h).sum(-1, keepdims=True))


def test_mean_kl_and_entropy_categorical():
    rng = np.random.default_rng(2)
    h_old = f32(rng.normal(size=(8, 6)))
    h_new = f32(rng.normal(size=(8, 6)))
    lp, lq = np_log_softmax(h_old), np_log_softmax(h_new)
    want_kl = np.mean(np.sum(np.exp(lp) * (lp - lq), -1))
    want_h = np.mean(-np.sum(np.exp(lp) * lp, -1))
    np.testing.assert_allclose(float(L.mean_kl(Categorical(j(h_old)), Categorical(j(h_new)))),
                               want_kl, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(L.entropy(Categorical(j(h_old)))), want_h, rtol=1e-5, atol=1e-7)


def test_mean_kl_and_entropy_gaussian():
    rng = np.random.default_rng(3)
    mu1, mu2 = f32(rng.normal(size=(8, 3))), f32(rng.normal(size=(8, 3)))
    ls1, ls2 = f32(0.3 * rng.normal(size=(8, 3))), f32(0.3 * rng.normal(size=3))  # ls2 broadcast
    s1, s2 = np.exp(ls1), np.exp(np.broadcast_to(ls2, (8, 3)))
    want_kl = np.mean(np.sum(np.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5, -1))
    want_h = np.mean(np.sum(0.5 * np.log(2 * np.pi * np.e * s1**2), -1))
    got_kl = L.mean_kl(DiagGaussian(j(mu1), j(ls1)), DiagGaussian(j(mu2), j(ls2)))
    np.testing.assert_allclose(float(got_kl), want_kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(L.entropy(DiagGaussian(j(mu1), j(ls1)))), want_h,
                               rtol=1e-5, atol=1e-6)
