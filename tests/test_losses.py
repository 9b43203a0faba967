"""Tests for pgjax.losses against NumPy formulas, analytic gradients and finite differences."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import losses
from pgjax.distributions import Categorical, DiagGaussian
from pgjax.errors import ArgumentTypeError, ArgumentValueError, DtypeError, ShapeError

# Jit-compiled versions: one XLA program per call shape instead of one compilation per eager op
# (much faster on a small CPU). Eager calls are used in test_ppo_clip_loss_value.
L = types.SimpleNamespace(**{name: jax.jit(getattr(losses, name)) for name in (
    "policy_gradient_loss", "ppo_clip_loss", "ppo_kl_penalty_loss", "importance_sampled_surrogate",
    "value_loss",
    "entropy", "mean_kl", "approx_kl", "clip_fraction", "masked_mean")})


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


def np_kl_penalty_loss(new, old, adv, beta, mask=None):
    """−mean[r A − β((r − 1) − log r)] over the unmasked steps, one step at a time, and its
    gradient with respect to log π_θ: −(r A − β(r − 1))/n per unmasked step."""
    mask = np.ones_like(new) if mask is None else np.asarray(mask, np.float64)
    n = max(mask.sum(), 1.0)
    value, grad = 0.0, np.zeros_like(new)
    for i in np.ndindex(new.shape):
        r = np.exp(new[i] - old[i])
        value += mask[i] * (r * adv[i] - beta * ((r - 1.0) - np.log(r)))
        grad[i] = -mask[i] * (r * adv[i] - beta * (r - 1.0)) / n
    return -value / n, grad


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_ppo_kl_penalty_loss_value_and_gradient(seed, beta):
    new, old, adv = ppo_inputs(seed, shape=(16, 4))
    want, want_grad = np_kl_penalty_loss(new, old, adv, beta)
    np.testing.assert_allclose(float(L.ppo_kl_penalty_loss(j(new), j(old), j(adv), beta)), want,
                               rtol=RTOL, atol=ATOL)
    grad = jgrad(lambda lp: losses.ppo_kl_penalty_loss(lp, j(old), j(adv), beta))(j(new))
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=ATOL)
    # the old log-probabilities and the advantages are constants
    for argnums in (1, 2):
        zero = jgrad(lambda *a: losses.ppo_kl_penalty_loss(*a, beta), argnums)(j(new), j(old), j(adv))
        np.testing.assert_array_equal(np.asarray(zero), 0.0)


def test_ppo_kl_penalty_loss_mask_and_its_penalty_is_never_a_reward():
    new, old, adv = ppo_inputs(7, shape=(8, 3))
    mask = np.random.default_rng(7).random((8, 3)) > 0.4
    want, _ = np_kl_penalty_loss(new, old, adv, 2.0, mask)
    got = L.ppo_kl_penalty_loss(j(new), j(old), j(adv), 2.0, mask=jnp.asarray(mask))
    np.testing.assert_allclose(float(got), want, rtol=RTOL, atol=ATOL)
    # with no advantage the loss is β·KL estimate ≥ 0, zero only at the old policy
    assert float(L.ppo_kl_penalty_loss(j(new), j(old), j(0 * adv), 2.0)) > 0
    assert float(L.ppo_kl_penalty_loss(j(old), j(old), j(0 * adv), 2.0)) == 0


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
    with pytest.raises(ShapeError, match="ppo_clip_loss: log_probs, old_log_probs, advantages"):
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
    # (Passing only one of old_values / clip_eps is refused:
    # test_value_loss_refuses_half_a_clipping_specification.)


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


# ----------------------------------------------------------------------------------------------
# Shape contracts: no silent broadcasting
# ----------------------------------------------------------------------------------------------

def test_losses_and_metrics_refuse_broadcasting_shapes():
    # [B] against [B, 1] would broadcast to [B, B] and average B² meaningless pairs.
    b, b1 = jnp.zeros(8), jnp.zeros((8, 1))
    calls = {
        "approx_kl": lambda: losses.approx_kl(b, b1),
        "clip_fraction": lambda: losses.clip_fraction(b, b1, 0.2),
        "policy_gradient_loss": lambda: losses.policy_gradient_loss(b, b1),
        "ppo_clip_loss": lambda: losses.ppo_clip_loss(b, b, b1, 0.2),
        "importance_sampled_surrogate": lambda: losses.importance_sampled_surrogate(b, b1, b),
        "value_loss": lambda: losses.value_loss(b, b1),
        "masked_mean": lambda: losses.masked_mean(b, mask=b1),
    }
    for name, call in calls.items():
        with pytest.raises(ShapeError, match=name):
            call()
    with pytest.raises(ShapeError, match="value_loss: values, old_values"):
        losses.value_loss(b, b, old_values=b1, clip_eps=0.2)
    with pytest.raises(ShapeError, match="ppo_clip_loss: clip_eps must be a scalar"):
        losses.ppo_clip_loss(b, b, b, jnp.full(8, 0.2))
    with pytest.raises(ShapeError,
                       match="policy_gradient_loss: log_probs, advantages, mask must have the same shape"):
        losses.policy_gradient_loss(b, b, mask=jnp.ones(7))
    with pytest.raises(DtypeError, match="policy_gradient_loss: advantages must be a floating"):
        losses.policy_gradient_loss(b, jnp.zeros(8, jnp.int32))


def test_value_loss_refuses_half_a_clipping_specification():
    # old_values without clip_eps used to skip clipping silently (and never check old_values).
    v = jnp.zeros(5)
    with pytest.raises(ArgumentValueError, match="value_loss: pass both old_values and clip_eps"):
        losses.value_loss(v, v, old_values=v)
    with pytest.raises(ArgumentValueError, match="value_loss: pass both old_values and clip_eps"):
        losses.value_loss(v, v, clip_eps=0.2)


def test_distribution_metrics_refuse_mismatched_distributions():
    with pytest.raises(ShapeError, match="kl"):
        losses.mean_kl(Categorical(jnp.zeros((4, 3))), Categorical(jnp.zeros((4, 5))))
    with pytest.raises(ShapeError, match="kl"):
        losses.mean_kl(Categorical(jnp.zeros((4, 3))), Categorical(jnp.zeros((1, 3))))
    with pytest.raises(ArgumentTypeError, match="mean_kl"):
        losses.mean_kl(Categorical(jnp.zeros((4, 3))), DiagGaussian(jnp.zeros((4, 3)), jnp.zeros(3)))
    with pytest.raises(ShapeError, match="entropy: mask"):
        losses.entropy(Categorical(jnp.zeros((4, 3))), mask=jnp.ones(3))


# ----------------------------------------------------------------------------------------------
# Masks: every loss and metric averages over the steps where mask > 0 only
# ----------------------------------------------------------------------------------------------

GARBAGE = np.array([np.nan, np.inf, -np.inf, 1e30, -7.0])


def masked_batch(seed, shape=(6, 5)):
    """Inputs where the masked-out steps hold garbage (NaN, ±inf, huge values): the masked losses
    must equal the plain losses on the unmasked steps alone, value and gradient."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.6
    mask.flat[:2] = [True, False]
    new, old, adv = ppo_inputs(seed, shape=shape, spread=0.5)
    values, targets = f32(rng.normal(size=shape)), f32(rng.normal(size=shape))
    old_values = f32(values + 0.3 * rng.normal(size=shape))
    clean = dict(new=new, old=old, adv=adv, values=values, targets=targets, old_values=old_values)
    dirty = {}
    for i, (k, x) in enumerate(clean.items()):
        x = x.copy()
        x[~mask] = np.resize(np.roll(GARBAGE, i), (~mask).sum())
        dirty[k] = x
    return mask, clean, dirty


EPS = 0.2
# name -> (loss(inputs dict, mask), the argument differentiated)
MASKED_LOSSES = {
    "policy_gradient_loss": (lambda x, m: losses.policy_gradient_loss(x["new"], x["adv"], mask=m), "new"),
    "ppo_clip_loss": (lambda x, m: losses.ppo_clip_loss(x["new"], x["old"], x["adv"], EPS, mask=m), "new"),
    "importance_sampled_surrogate": (
        lambda x, m: losses.importance_sampled_surrogate(x["new"], x["old"], x["adv"], mask=m), "new"),
    "value_loss": (lambda x, m: losses.value_loss(x["values"], x["targets"], mask=m), "values"),
    "value_loss clipped": (lambda x, m: losses.value_loss(x["values"], x["targets"], x["old_values"],
                                                          EPS, mask=m), "values"),
    "approx_kl": (lambda x, m: losses.approx_kl(x["new"], x["old"], mask=m), "new"),
    "clip_fraction": (lambda x, m: losses.clip_fraction(x["new"], x["old"], EPS, mask=m), None),
    "masked_mean": (lambda x, m: losses.masked_mean(x["targets"], mask=m), "targets"),
}

# NumPy references on the unmasked steps (1-D arrays)
NP_LOSSES = {
    "policy_gradient_loss": lambda x: -np.mean(x["new"] * x["adv"]),
    "ppo_clip_loss": lambda x: np_ppo_loss(x["new"], x["old"], x["adv"], EPS),
    "importance_sampled_surrogate": lambda x: np.mean(np.exp(x["new"] - x["old"]) * x["adv"]),
    "value_loss": lambda x: 0.5 * np.mean((x["values"] - x["targets"]) ** 2),
    "value_loss clipped": lambda x: np_clipped_value_loss(x["values"], x["targets"], x["old_values"], EPS),
    "approx_kl": lambda x: np.mean(np.expm1(x["new"] - x["old"]) - (x["new"] - x["old"])),
    "clip_fraction": lambda x: np.mean(np.abs(np.exp(x["new"] - x["old"]) - 1.0) > EPS),
    "masked_mean": lambda x: np.mean(x["targets"]),
}


@pytest.mark.parametrize("mask_dtype", [bool, np.float32], ids=["bool", "float"])
@pytest.mark.parametrize("name", list(MASKED_LOSSES))
def test_masked_loss_equals_the_loss_on_the_unmasked_steps(name, mask_dtype):
    loss, arg = MASKED_LOSSES[name]
    mask, clean, dirty = masked_batch(0)
    m = jnp.asarray(mask.astype(mask_dtype))
    inputs = {k: j(v) for k, v in dirty.items()}
    got = jax.jit(loss)(inputs, m)
    assert got.shape == () and np.isfinite(float(got))
    np.testing.assert_allclose(float(got), NP_LOSSES[name]({k: v[mask] for k, v in clean.items()}),
                               rtol=1e-5, atol=1e-6)
    if arg is None:
        return
    # the gradient: zero (not NaN) at masked steps, the subset's own gradient elsewhere
    grad = lambda x, inp, mk: jax.grad(lambda y: loss({**inp, arg: y}, mk))(x)  # noqa: E731
    g = np.asarray(jax.jit(grad)(inputs[arg], inputs, m))
    assert np.all(np.isfinite(g)) and np.all(g[~mask] == 0.0)
    subset = {k: j(v[mask]) for k, v in clean.items()}
    g_subset = np.asarray(jax.jit(grad)(subset[arg], subset, None))
    np.testing.assert_allclose(g[mask], g_subset, rtol=1e-5, atol=1e-7)


def test_mask_weights_and_an_empty_mask():
    # weights: Σ w·x / max(Σ w, 1); an all-zero mask gives 0 (not NaN) and a zero gradient.
    rng = np.random.default_rng(5)
    x = f32(rng.normal(size=(4, 3)))
    w = np.array([0.0, 0.5, 2.0])[rng.integers(0, 3, size=(4, 3))]
    np.testing.assert_allclose(float(L.masked_mean(j(x), mask=j(w))),
                               np.sum(w * x) / max(np.sum(w), 1.0), rtol=1e-6)
    lp, adv = j(x), j(rng.normal(size=(4, 3)))
    np.testing.assert_allclose(float(L.policy_gradient_loss(lp, adv, mask=j(w))),
                               -np.sum(w * x * np.asarray(adv)) / np.sum(w), rtol=1e-5)
    empty = jnp.zeros((4, 3), bool)
    assert float(L.policy_gradient_loss(lp, adv, mask=empty)) == 0.0
    g = jgrad(lambda y: losses.policy_gradient_loss(y, adv, mask=empty))(lp)
    assert np.all(np.asarray(g) == 0.0)
    # tiny weights are divided by 1, not by their sum (the brief's max(Σ mask, 1))
    tiny = jnp.full((4, 3), 0.01)
    np.testing.assert_allclose(float(L.masked_mean(j(x), mask=tiny)), 0.01 * np.sum(x), rtol=1e-5)


def _np_categorical(h):
    lp = np_log_softmax(h)
    return lp, np.exp(lp)


@pytest.mark.parametrize("mask_dtype", [bool, np.float32], ids=["bool", "float"])
def test_masked_entropy_and_mean_kl_ignore_garbage_steps(mask_dtype):
    rng = np.random.default_rng(7)
    mask = rng.random((6, 5)) < 0.5
    mask.flat[:2] = [True, False]
    h_old, h_new = f32(rng.normal(size=(6, 5, 4))), f32(rng.normal(size=(6, 5, 4)))
    dirty_old, dirty_new = h_old.copy(), h_new.copy()
    dirty_old[~mask] = np.nan
    dirty_new[~mask] = np.inf
    m = jnp.asarray(mask.astype(mask_dtype))
    lp, p = _np_categorical(h_old[mask])
    lq, _ = _np_categorical(h_new[mask])
    want_h = np.mean(-np.sum(p * lp, -1))
    want_kl = np.mean(np.sum(p * (lp - lq), -1))
    ent = lambda h, mk: losses.entropy(Categorical(h), mask=mk)  # noqa: E731
    kl = lambda a, b, mk: losses.mean_kl(Categorical(a), Categorical(b), mask=mk)  # noqa: E731
    np.testing.assert_allclose(float(jax.jit(ent)(j(dirty_old), m)), want_h, rtol=1e-5)
    np.testing.assert_allclose(float(jax.jit(kl)(j(dirty_old), j(dirty_new), m)), want_kl, rtol=1e-5)
    # gradients: zero at masked steps, the unmasked subset's own gradient elsewhere
    g = np.asarray(jax.jit(jax.grad(ent))(j(dirty_old), m))
    g_sub = np.asarray(jax.jit(jax.grad(ent))(j(h_old[mask]), None))
    assert np.all(g[~mask] == 0.0)
    np.testing.assert_allclose(g[mask], g_sub, rtol=1e-5, atol=1e-7)
    g_new = np.asarray(jax.jit(jax.grad(kl, argnums=1))(j(dirty_old), j(dirty_new), m))
    g_new_sub = np.asarray(jax.jit(jax.grad(kl, argnums=1))(j(h_old[mask]), j(h_new[mask]), None))
    assert np.all(g_new[~mask] == 0.0)
    np.testing.assert_allclose(g_new[mask], g_new_sub, rtol=1e-5, atol=1e-7)
    # a Gaussian with a state-independent log σ (not per step: it is never masked)
    mu = f32(rng.normal(size=(6, 5, 2)))
    mu[~mask] = np.nan
    ls = j([0.1, -0.3])
    g_ls = jax.grad(lambda s: losses.entropy(DiagGaussian(j(mu), s), mask=m))(ls)
    np.testing.assert_allclose(np.asarray(g_ls), [1.0, 1.0], rtol=1e-6)


def test_every_loss_and_metric_takes_a_mask():
    import inspect
    for name in losses.__all__:
        fn = getattr(losses, name)
        param = inspect.signature(fn).parameters.get("mask")
        assert param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert param.default is None, name


# ----------------------------------------------------------------------------------------------
# Half precision: computed in float32, rounded once to the inputs' dtype
# ----------------------------------------------------------------------------------------------

LOW_PRECISION = [pytest.param(jnp.float16, id="float16"), pytest.param(jnp.bfloat16, id="bfloat16")]


def test_float16_value_loss_does_not_overflow_on_the_way():
    # Squaring |V − y| = 256 in float16 gives 65536 > 65504, i.e. inf; in float32 the loss is
    # ½·256² = 32768, which float16 holds exactly.
    v, y = jnp.full(8, 256.0, jnp.float16), jnp.zeros(8, jnp.float16)
    got = losses.value_loss(v, y)
    assert got.dtype == jnp.float16 and float(got) == 32768.0
    assert float(losses.value_loss(v, y, old_values=y, clip_eps=1000.0)) == 32768.0
    # one step 1000 away among 64: ½·1000²/64 = 7812.5, rounded once to float16
    v = jnp.zeros(64, jnp.float16).at[5].set(1000.0)
    assert float(losses.value_loss(v, jnp.zeros(64, jnp.float16))) == float(np.float16(7812.5))
    # the documented limit: a loss beyond float16's range (½·1000² = 500000 > 65504) is inf
    assert np.isposinf(float(losses.value_loss(jnp.full(8, 1000.0, jnp.float16),
                                               jnp.zeros(8, jnp.float16))))


@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "mask"])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("name", list(MASKED_LOSSES))
def test_half_precision_losses_are_float32_rounded_once(name, dtype, masked):
    # The loss of half-precision inputs is the float32 loss of the same inputs (widened exactly)
    # rounded once to their dtype, so its error against a float64 reference is at most that of
    # the final rounding.
    loss, _ = MASKED_LOSSES[name]
    mask, clean, _ = masked_batch(1, shape=(32, 16))
    m = jnp.asarray(mask) if masked else None
    low = {k: jnp.asarray(x, dtype) for k, x in clean.items()}
    got = jax.jit(loss)(low, m)
    assert got.dtype == dtype
    f32 = jax.jit(loss)({k: x.astype(jnp.float32) for k, x in low.items()}, m)
    assert float(got) == float(f32.astype(dtype))
    exact = {k: np.asarray(x.astype(jnp.float32), np.float64) for k, x in low.items()}
    want = NP_LOSSES[name]({k: x[mask] if masked else x.ravel() for k, x in exact.items()})
    assert abs(float(got) - want) <= 1.5 * abs(float(f32.astype(dtype)) - want)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_half_precision_entropy_and_kl_are_float32_rounded_once(dtype):
    rng = np.random.default_rng(3)
    p, q = (jnp.asarray(rng.normal(size=(6, 5, 4)), dtype) for _ in range(2))
    mu, ls = jnp.asarray(rng.normal(size=(6, 5, 2)), dtype), jnp.asarray([0.1, -0.3], dtype)
    mask = jnp.asarray(rng.random((6, 5)) < 0.7)
    cases = {
        "entropy categorical": lambda w: losses.entropy(Categorical(p.astype(w)), mask=mask),
        "mean_kl categorical": lambda w: losses.mean_kl(Categorical(p.astype(w)),
                                                        Categorical(q.astype(w))),
        "entropy gaussian": lambda w: losses.entropy(DiagGaussian(mu.astype(w), ls.astype(w))),
        "mean_kl gaussian": lambda w: losses.mean_kl(DiagGaussian(mu.astype(w), ls.astype(w)),
                                                     DiagGaussian(mu.astype(w) + 1, ls.astype(w)),
                                                     mask=mask),
    }
    for name, case in cases.items():
        got, f32 = case(dtype), case(jnp.float32)
        assert got.dtype == dtype, name
        assert float(got) == float(f32.astype(dtype)), name
