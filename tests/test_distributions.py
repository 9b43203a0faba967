"""Tests for pgjax.distributions against NumPy / SciPy closed forms and sample statistics."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pgjax.distributions import Categorical, DiagGaussian
from pgjax.errors import DtypeError, ShapeError

RTOL = 1e-5
ATOL = 1e-5


@functools.lru_cache(maxsize=None)
def _jitted(name):
    def call(dist, *args):
        attr = getattr(dist, name)
        return attr(*args) if callable(attr) else attr
    return jax.jit(call)


class J:
    """Wraps a distribution so that its methods and properties run jit-compiled: one XLA program
    per call instead of one compilation per eager op for every new shape, which keeps this file
    fast on a small CPU. ``test_categorical_is_a_jittable_pytree`` compares jit with eager."""

    def __init__(self, dist):
        self.dist = dist

    def __getattr__(self, name):
        if name in ("log_probs_all", "probs"):
            return _jitted(name)(self.dist)
        unwrap = lambda x: x.dist if isinstance(x, J) else x  # noqa: E731
        return lambda *args: _jitted(name)(self.dist, *map(unwrap, args))


def Cat(logits):
    return J(Categorical(logits))


def Gauss(mean, log_std):
    return J(DiagGaussian(mean, log_std))


def j(x):
    return jnp.asarray(x, jnp.float32)


def f32(x):
    return np.asarray(np.asarray(x, np.float32), np.float64)


def np_log_softmax(h):
    out = np.empty_like(h)
    for idx in np.ndindex(h.shape[:-1]):
        row = h[idx]
        m = row.max()
        out[idx] = row - (m + np.log(np.sum(np.exp(row - m))))
    return out


# ----------------------------------------------------------------------------------------------
# Categorical
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 5)])
def test_categorical_log_prob(shape):
    rng = np.random.default_rng(0)
    h = f32(3.0 * rng.normal(size=shape))
    a = rng.integers(0, shape[-1], size=shape[:-1])
    dist = Cat(j(h))
    got = dist.log_prob(jnp.asarray(a))
    assert got.shape == shape[:-1]
    lsm = np_log_softmax(h)
    want = np.take_along_axis(lsm, a[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(dist.log_probs_all), lsm, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(dist.probs).sum(-1), 1.0, rtol=1e-6)


def test_categorical_log_prob_large_logits_stable():
    h = np.array([[1000.0, 0.0, -1000.0], [50.0, 50.0, 50.0]])
    got = np.asarray(Cat(j(h)).log_prob(jnp.asarray([1, 2])))
    np.testing.assert_allclose(got, [-1000.0, -np.log(3.0)], rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(Cat(j(h)).entropy())))


def test_categorical_entropy():
    rng = np.random.default_rng(1)
    h = f32(rng.normal(size=(7, 5)))
    p = np.exp(np_log_softmax(h))
    want = np.array([-sum(pi * np.log(pi) for pi in row) for row in p])
    np.testing.assert_allclose(np.asarray(Cat(j(h)).entropy()), want, rtol=RTOL, atol=ATOL)
    # Closed forms: uniform -> log A; one-hot-ish -> 0.
    np.testing.assert_allclose(float(Cat(jnp.zeros(5)).entropy()), np.log(5.0), rtol=1e-6)
    assert abs(float(Cat(j([100.0, 0.0, 0.0])).entropy())) < 1e-6
    np.testing.assert_allclose(np.asarray(Cat(j(h)).entropy()), stats.entropy(p, axis=-1),
                               rtol=RTOL, atol=ATOL)


def test_categorical_kl():
    rng = np.random.default_rng(2)
    h1 = f32(rng.normal(size=(6, 4)))
    h2 = f32(rng.normal(size=(6, 4)))
    p, q = np.exp(np_log_softmax(h1)), np.exp(np_log_softmax(h2))
    want = np.array([sum(pi * np.log(pi / qi) for pi, qi in zip(pr, qr)) for pr, qr in zip(p, q)])
    got = np.asarray(Cat(j(h1)).kl(Cat(j(h2))))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, stats.entropy(p, q, axis=-1), rtol=RTOL, atol=ATOL)
    # KL[p‖q] ≠ KL[q‖p] in general, and KL[p‖p] = 0.
    back = np.asarray(Cat(j(h2)).kl(Cat(j(h1))))
    assert not np.allclose(got, back, atol=1e-3)
    np.testing.assert_allclose(np.asarray(Cat(j(h1)).kl(Cat(j(h1)))), 0.0, atol=1e-6)
    # Logits shifted by a constant are the same distribution.
    np.testing.assert_allclose(np.asarray(Cat(j(h1)).kl(Cat(j(h1 + 3.0)))), 0.0, atol=1e-5)


def test_categorical_mode():
    rng = np.random.default_rng(3)
    h = f32(rng.normal(size=(10, 7)))
    got = np.asarray(Cat(j(h)).mode())
    want = [max(range(7), key=lambda k: row[k]) for row in h]
    np.testing.assert_array_equal(got, want)


def test_categorical_sample_frequencies():
    probs = np.array([0.05, 0.15, 0.3, 0.4, 0.1])
    n = 20_000
    logits = jnp.broadcast_to(j(np.log(probs)), (n, 5))
    a = np.asarray(Cat(logits).sample(jax.random.PRNGKey(0)))
    assert a.shape == (n,)
    assert a.min() >= 0 and a.max() <= 4
    counts = np.bincount(a, minlength=5)
    expected = n * probs
    chi2 = np.sum((counts - expected) ** 2 / expected)
    # df = 4: P(chi2 > 25) ≈ 5e-5.
    assert chi2 < 25.0, (counts, expected, chi2)
    # Per-category: within 5 standard errors.
    se = np.sqrt(n * probs * (1 - probs))
    assert np.all(np.abs(counts - expected) < 5 * se)


def test_categorical_sample_batched_rows_differ():
    # Each row of a batch samples from its own distribution.
    logits = j([[0.0, 30.0, 0.0], [30.0, 0.0, 0.0], [0.0, 0.0, 30.0]])
    a = np.asarray(Cat(logits).sample(jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(a, [1, 0, 2])


def test_categorical_is_a_jittable_pytree():
    h = j(np.random.default_rng(4).normal(size=(3, 4)))

    @jax.jit
    def f(dist, a):
        return dist.log_prob(a), dist.entropy()

    lp, ent = f(Categorical(h), jnp.asarray([0, 1, 3]))
    np.testing.assert_allclose(np.asarray(lp), np.asarray(Categorical(h).log_prob(jnp.asarray([0, 1, 3]))),
                               rtol=1e-6)
    assert len(jax.tree_util.tree_leaves(Categorical(h))) == 1


# ----------------------------------------------------------------------------------------------
# DiagGaussian
# ----------------------------------------------------------------------------------------------

def gaussian_inputs(seed, batch=(4,), d=3, broadcast_std=False):
    rng = np.random.default_rng(seed)
    mu = f32(rng.normal(size=batch + (d,)))
    ls = f32(0.5 * rng.normal(size=(d,) if broadcast_std else batch + (d,)))
    a = f32(rng.normal(size=batch + (d,)) * 1.5)
    return mu, ls, a


@pytest.mark.parametrize("broadcast_std", [False, True])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_gaussian_log_prob(batch, broadcast_std):
    mu, ls, a = gaussian_inputs(0, batch, broadcast_std=broadcast_std)
    got = Gauss(j(mu), j(ls)).log_prob(j(a))
    assert got.shape == batch
    want = stats.norm.logpdf(a, loc=mu, scale=np.exp(np.broadcast_to(ls, mu.shape))).sum(-1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=ATOL)
    # Same against the multivariate normal with a diagonal covariance.
    if batch == (4,):
        sd = np.exp(np.broadcast_to(ls, mu.shape))
        mvn = [stats.multivariate_normal(mu[b], np.diag(sd[b] ** 2)).logpdf(a[b]) for b in range(4)]
        np.testing.assert_allclose(np.asarray(got), mvn, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("broadcast_std", [False, True])
def test_gaussian_entropy(broadcast_std):
    mu, ls, _ = gaussian_inputs(1, (5,), d=4, broadcast_std=broadcast_std)
    got = Gauss(j(mu), j(ls)).entropy()
    assert got.shape == (5,)
    sd = np.exp(np.broadcast_to(ls, mu.shape))
    want = np.sum(0.5 * np.log(2 * np.pi * np.e * sd**2), -1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(got), stats.norm(mu, sd).entropy().sum(-1), rtol=RTOL, atol=ATOL)


def np_gauss_kl(mu1, s1, mu2, s2):
    return np.sum(np.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5, -1)


def test_gaussian_kl_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = f32(rng.normal(size=(5, 3))), f32(rng.normal(size=(5, 3)))
    ls1, ls2 = f32(0.4 * rng.normal(size=(5, 3))), f32(0.4 * rng.normal(size=(5, 3)))
    got = np.asarray(Gauss(j(mu1), j(ls1)).kl(Gauss(j(mu2), j(ls2))))
    np.testing.assert_allclose(got, np_gauss_kl(mu1, np.exp(ls1), mu2, np.exp(ls2)), rtol=RTOL, atol=ATOL)
    # Asymmetric; zero against itself.
    back = np.asarray(Gauss(j(mu2), j(ls2)).kl(Gauss(j(mu1), j(ls1))))
    assert not np.allclose(got, back, atol=1e-3)
    np.testing.assert_allclose(np.asarray(Gauss(j(mu1), j(ls1)).kl(Gauss(j(mu1), j(ls1)))),
                               0.0, atol=1e-6)


def test_gaussian_kl_broadcast_log_std():
    rng = np.random.default_rng(5)
    mu1, mu2 = f32(rng.normal(size=(6, 2))), f32(rng.normal(size=(6, 2)))
    ls1, ls2 = f32(0.3 * rng.normal(size=2)), f32(0.3 * rng.normal(size=2))
    got = Gauss(j(mu1), j(ls1)).kl(Gauss(j(mu2), j(ls2)))
    assert got.shape == (6,)
    s1, s2 = np.exp(np.broadcast_to(ls1, (6, 2))), np.exp(np.broadcast_to(ls2, (6, 2)))
    np.testing.assert_allclose(np.asarray(got), np_gauss_kl(mu1, s1, mu2, s2), rtol=RTOL, atol=ATOL)


def test_gaussian_kl_monte_carlo():
    # KL[p‖q] = E_p[log p(x) − log q(x)], estimated from samples of p drawn by DiagGaussian.sample.
    mu1, ls1 = j([0.3, -1.0]), j([0.2, -0.4])
    mu2, ls2 = j([-0.2, -0.5]), j([0.5, 0.1])
    n = 100_000
    # log_prob takes actions of exactly the mean's shape (no broadcasting), so the single
    # distributions are broadcast to the n samples explicitly
    p, q = Gauss(jnp.broadcast_to(mu1, (n, 2)), ls1), Gauss(jnp.broadcast_to(mu2, (n, 2)), ls2)
    x = p.sample(jax.random.PRNGKey(0))
    diff = np.asarray(p.log_prob(x) - q.log_prob(x), np.float64)
    est, se = diff.mean(), diff.std() / np.sqrt(n)
    exact = float(Gauss(mu1, ls1).kl(Gauss(mu2, ls2)))
    assert abs(est - exact) < 5 * se, (est, exact, se)
    # And the MC estimate with SciPy densities on the same samples.
    xs = np.asarray(x, np.float64)
    sp = (stats.norm.logpdf(xs, np.asarray(mu1), np.exp(np.asarray(ls1)))
          - stats.norm.logpdf(xs, np.asarray(mu2), np.exp(np.asarray(ls2)))).sum(-1)
    np.testing.assert_allclose(diff, sp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("broadcast_std", [False, True])
def test_gaussian_log_prob_gradient_wrt_mean(broadcast_std):
    # Seed's "Concrete example": ∇_μ log N(a; μ, σ²) = (a − μ)/σ².
    mu, ls, a = gaussian_inputs(3, (4,), broadcast_std=broadcast_std)

    def f(m):
        return jnp.sum(DiagGaussian(m, j(ls)).log_prob(j(a)))

    g = np.asarray(jax.jit(jax.grad(f))(j(mu)), np.float64)
    var = np.exp(2 * np.broadcast_to(ls, mu.shape))
    np.testing.assert_allclose(g, (a - mu) / var, rtol=RTOL, atol=ATOL)


def test_gaussian_log_prob_gradient_wrt_log_std():
    # ∂/∂log σ_d log N = ((a − μ)²/σ² − 1), summed over the batch for a shared log_std [D].
    mu, ls, a = gaussian_inputs(4, (5,), broadcast_std=True)
    g = np.asarray(jax.jit(jax.grad(lambda s: jnp.sum(DiagGaussian(j(mu), s).log_prob(j(a)))))(j(ls)))
    want = np.sum((a - mu) ** 2 / np.exp(2 * ls) - 1.0, axis=0)
    np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL)


def test_gaussian_broadcast_log_std_matches_tiled():
    mu, ls, a = gaussian_inputs(6, (4,), d=3, broadcast_std=True)
    shared = Gauss(j(mu), j(ls))
    tiled = Gauss(j(mu), j(np.broadcast_to(ls, mu.shape)))
    got, want = shared.entropy(), tiled.entropy()
    assert got.shape == want.shape == (4,)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(shared.log_prob(j(a))), np.asarray(tiled.log_prob(j(a))), rtol=1e-6)
    key = jax.random.PRNGKey(3)
    assert shared.sample(key).shape == (4, 3)
    # μ + σ·ε in float32: broadcasting σ may round differently by an ulp
    np.testing.assert_allclose(np.asarray(shared.sample(key)), np.asarray(tiled.sample(key)),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(shared.mode()), mu.astype(np.float32))


def test_gaussian_sample_statistics():
    mu = j([1.0, -2.0, 0.5])
    ls = j([0.0, -1.0, 0.7])
    n = 100_000
    x = np.asarray(Gauss(jnp.broadcast_to(mu, (n, 3)), ls).sample(jax.random.PRNGKey(7)), np.float64)
    assert x.shape == (n, 3)
    sd = np.exp(np.asarray(ls, np.float64))
    # Mean: standard error sd/√n; std: standard error ≈ sd/√(2n).
    assert np.all(np.abs(x.mean(0) - np.asarray(mu)) < 5 * sd / np.sqrt(n))
    assert np.all(np.abs(x.std(0) - sd) < 5 * sd / np.sqrt(2 * n))
    # Independent dimensions.
    corr = np.corrcoef(x.T)
    assert np.all(np.abs(corr[~np.eye(3, dtype=bool)]) < 5 / np.sqrt(n))
    # Different keys give different samples; same key the same ones.
    d = Gauss(mu, ls)
    assert not np.allclose(np.asarray(d.sample(jax.random.PRNGKey(0))), np.asarray(d.sample(jax.random.PRNGKey(1))))
    np.testing.assert_array_equal(np.asarray(d.sample(jax.random.PRNGKey(0))),
                                  np.asarray(d.sample(jax.random.PRNGKey(0))))


def test_categorical_with_masked_logit_has_finite_entropy_and_kl():
    import jax.numpy as jnp
    import numpy as np
    from pgjax.distributions import Categorical
    masked = Categorical(jnp.array([0.0, 0.0, -jnp.inf]))
    np.testing.assert_allclose(masked.entropy(), np.log(2.0), rtol=1e-6)
    other = Categorical(jnp.array([0.0, 1.0, 0.0]))
    p = np.array([0.5, 0.5]); q = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0, 0.0]).sum()
    np.testing.assert_allclose(masked.kl(other), np.sum(p * np.log(p / q)), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Masked (−inf) logits: right values AND finite gradients
# ----------------------------------------------------------------------------------------------

MASKED = np.array([[0.3, -np.inf, 1.2, -0.5], [-1.0, -np.inf, 0.4, 2.0]], np.float32)
REDUCED = MASKED[:, [0, 2, 3]]                     # the same distributions over the allowed actions


def test_masked_logits_entropy_value_and_gradient_match_the_reduced_distribution():
    ent = jax.jit(jax.value_and_grad(lambda h: jnp.sum(Categorical(h).entropy())))
    value, grad = ent(j(MASKED))
    want_value, want_grad = ent(j(REDUCED))
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad)) and np.all(grad[:, 1] == 0.0)
    np.testing.assert_allclose(grad[:, [0, 2, 3]], np.asarray(want_grad), rtol=1e-5, atol=1e-7)


def test_masked_logits_kl_value_and_gradients_match_the_reduced_distributions():
    rng = np.random.default_rng(11)
    other = f32(rng.normal(size=MASKED.shape)).astype(np.float32)
    other[:, 1] = -np.inf                          # both policies forbid action 1
    kl = jax.jit(jax.value_and_grad(lambda p, q: jnp.sum(Categorical(p).kl(Categorical(q))), argnums=(0, 1)))
    value, (gp, gq) = kl(j(MASKED), j(other))
    want_value, (wp, wq) = kl(j(REDUCED), j(other[:, [0, 2, 3]]))
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-5)
    for g, want in ((gp, wp), (gq, wq)):
        g = np.asarray(g)
        assert np.all(np.isfinite(g)) and np.all(g[:, 1] == 0.0)
        np.testing.assert_allclose(g[:, [0, 2, 3]], np.asarray(want), rtol=1e-5, atol=1e-7)


def test_kl_from_a_masked_policy_to_an_unmasked_one_has_the_analytic_gradient():
    # KL[p ‖ q] with p masked, q not: ∂KL/∂(logits of q) = softmax(q) − p, finite everywhere.
    q = f32(np.random.default_rng(12).normal(size=MASKED.shape))
    g = np.asarray(jax.jit(jax.grad(lambda b: jnp.sum(Categorical(j(MASKED)).kl(Categorical(b)))))(j(q)))
    p = np.exp(np_log_softmax(np.where(np.isinf(MASKED), -1e30, MASKED).astype(np.float64)))
    q_probs = np.exp(np_log_softmax(q))
    np.testing.assert_allclose(g, q_probs - p, rtol=1e-5, atol=1e-6)
    lp, lq = np_log_softmax(REDUCED.astype(np.float64)), np.log(q_probs[:, [0, 2, 3]])
    np.testing.assert_allclose(np.asarray(Cat(j(MASKED)).kl(Cat(j(q)))),
                               np.sum(np.exp(lp) * (lp - lq), -1), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Action and shape contracts
# ----------------------------------------------------------------------------------------------

def test_categorical_log_prob_refuses_non_integer_actions():
    with pytest.raises(TypeError, match="Categorical.log_prob: actions must be integers"):
        Categorical(jnp.zeros((2, 3))).log_prob(jnp.asarray([1.7, 0.0]))
    with pytest.raises(TypeError, match="Categorical.log_prob: actions must be integers"):
        Categorical(jnp.zeros((2, 3))).log_prob(jnp.asarray([True, False]))


def test_categorical_log_prob_refuses_out_of_range_actions_outside_jit():
    dist = Categorical(jnp.log(jnp.asarray([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])))
    for bad in ([0, -1], [3, 0]):
        with pytest.raises(ValueError, match=r"Categorical.log_prob: actions must lie in \[0, 3\)"):
            dist.log_prob(jnp.asarray(bad))
    with pytest.raises(ValueError, match="Categorical.log_prob"):
        dist.log_prob(np.asarray([5, 0], np.int64))     # NumPy ints are checked too


def test_categorical_log_prob_out_of_range_inside_jit_is_nan():
    # Inside jit the values are not known when tracing: an out-of-range action gives NaN
    # (documented), never a wrapped-around or clamped probability.
    dist = Categorical(jnp.log(jnp.asarray([[0.2, 0.3, 0.5]] * 4)))
    got = np.asarray(jax.jit(lambda d, a: d.log_prob(a))(dist, jnp.asarray([-1, 3, 2, 0])))
    assert np.isnan(got[0]) and np.isnan(got[1])
    np.testing.assert_allclose(got[2:], np.log([0.5, 0.2]), rtol=1e-6)
    # ... and the NaN does not leak into the gradient of the in-range rows
    in_range_rows = lambda h, a: jnp.sum(Categorical(h).log_prob(a)[2:])  # noqa: E731
    g = jax.jit(jax.grad(in_range_rows))(dist.logits, jnp.asarray([-1, 3, 2, 0]))
    assert np.all(np.isfinite(np.asarray(g)))


def test_categorical_log_prob_refuses_mismatched_action_shape():
    dist = Categorical(jnp.zeros((4, 3)))
    for bad in (jnp.zeros((3,), jnp.int32), jnp.zeros((4, 1), jnp.int32), jnp.zeros((), jnp.int32)):
        with pytest.raises(ShapeError, match="Categorical.log_prob: actions"):
            dist.log_prob(bad)


def test_gaussian_log_prob_refuses_broadcasting():
    # a [B, 1] mean against [B] actions used to broadcast to [B, B] and sum the wrong axis
    dist = DiagGaussian(jnp.zeros((4, 1)), jnp.zeros(1))
    with pytest.raises(ShapeError, match="DiagGaussian.log_prob: actions"):
        dist.log_prob(jnp.zeros(4))
    with pytest.raises(DtypeError, match="DiagGaussian.log_prob: actions must be a floating"):
        dist.log_prob(jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(ShapeError, match="DiagGaussian.log_prob: log_std"):
        DiagGaussian(jnp.zeros((4, 2)), jnp.zeros(3)).log_prob(jnp.zeros((4, 2)))
    with pytest.raises(ShapeError, match="DiagGaussian.kl"):
        DiagGaussian(jnp.zeros((4, 2)), jnp.zeros(2)).kl(DiagGaussian(jnp.zeros((1, 2)), jnp.zeros(2)))


# ----------------------------------------------------------------------------------------------
# Pytree behaviour without flax
# ----------------------------------------------------------------------------------------------

def test_distributions_are_frozen_pytrees_usable_in_jit_and_vmap():
    import dataclasses
    h = j(np.random.default_rng(13).normal(size=(5, 3, 4)))
    actions = jnp.zeros((5, 3), jnp.int32)
    per_row = jax.vmap(lambda d, a: d.log_prob(a))(Categorical(h), actions)
    np.testing.assert_allclose(np.asarray(per_row), np.asarray(Categorical(h).log_prob(actions)), rtol=1e-6)
    g = DiagGaussian(jnp.zeros((2, 3)), jnp.zeros(3))
    assert [f.name for f in dataclasses.fields(g)] == ["mean", "log_std"]
    assert len(jax.tree_util.tree_leaves(g)) == 2
    moved = g.replace(mean=jnp.ones((2, 3)))
    assert isinstance(moved, DiagGaussian) and float(moved.mean[0, 0]) == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.mean = jnp.ones((2, 3))
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, Categorical(h))
    assert isinstance(doubled, Categorical)
    assert Categorical(h).batch_shape == (5, 3) and g.batch_shape == (2,)
