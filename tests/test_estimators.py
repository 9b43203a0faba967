"""Tests for pgjax.estimators against independent plain-NumPy references.

The references below are written as *forward* sums over the explicit definitions (double loops
over a start time t and a horizon l that stop at the first episode end or at the last row), not
as the backward recursions the implementation uses, so an error in either shows up as a mismatch.

Conventions (module docstring of pgjax.estimators):
  rewards[t], values[t] = V(s_t), next_values[t] = V(s'_t) of the true successor,
  discounts[t] = γ(1 − terminated_t), dones[t] = terminated_t or truncated_t,
  the last row is always an episode boundary bootstrapping from next_values[-1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import estimators as _est_module
from pgjax import losses
from pgjax.errors import ArgumentTypeError, ArgumentValueError, DtypeError, ShapeError


class _Jitted:
    """The estimators, jit-compiled once per input shape with the hyperparameters traced, so that
    the many parametrised cases below share compilations (eager calls re-trace a ``lax.scan`` for
    every new Python-float λ). Eager (un-jitted) calls are compared with these in
    ``test_eager_matches_jit``."""
    discounted_returns = staticmethod(jax.jit(_est_module.discounted_returns))
    lambda_returns = staticmethod(jax.jit(_est_module.lambda_returns))
    n_step_returns = staticmethod(jax.jit(_est_module.n_step_returns, static_argnums=4))
    td_errors = staticmethod(jax.jit(_est_module.td_errors))
    gae = staticmethod(jax.jit(_est_module.gae))
    vtrace = staticmethod(jax.jit(_est_module.vtrace))
    explained_variance = staticmethod(jax.jit(_est_module.explained_variance))


est = _Jitted

T = 17
GAMMA = 0.97
RTOL = 2e-5
ATOL = 2e-5

SHAPES = [(T, 5), (T,), (T, 2, 3)]
SEEDS = [0, 1, 2]


# ----------------------------------------------------------------------------------------------
# Input construction
# ----------------------------------------------------------------------------------------------

def make_traj(seed, shape, gamma=GAMMA, consistent=False, with_rhos=False):
    """Random trajectory segment with terminations AND truncations in mid-trajectory.

    Returns a dict of float64 NumPy arrays (the references use these) plus ``gamma``.
    With ``consistent=True``, next_values[t] == values[t+1] wherever dones[t] == 0 (t < T-1),
    as for a real rollout; otherwise next_values is independent noise everywhere.
    """
    rng = np.random.default_rng(seed)
    flat = (shape[0], int(np.prod(shape[1:], dtype=int)))
    rewards = rng.normal(size=flat)
    values = rng.normal(size=flat)
    next_values = rng.normal(size=flat)
    u = rng.random(size=flat)
    terminated = u < 0.1
    truncated = (u >= 0.1) & (u < 0.2)
    # Force at least one termination and one truncation strictly inside the segment (column 0,
    # and the last column) so that every shape, including 1-D, exercises both kinds of ends.
    for col in {0, flat[1] - 1}:
        terminated[4, col], truncated[4, col] = True, False
        terminated[9, col], truncated[9, col] = False, True
        terminated[10, col], truncated[10, col] = False, False
    dones = (terminated | truncated).astype(np.float64)
    discounts = gamma * (1.0 - terminated.astype(np.float64))
    if consistent:
        for t in range(flat[0] - 1):
            keep = dones[t] == 0
            next_values[t, keep] = values[t + 1, keep]
    out = dict(rewards=rewards, values=values, next_values=next_values,
               discounts=discounts, dones=dones, terminated=terminated.astype(np.float64),
               truncated=truncated.astype(np.float64))
    if with_rhos:
        out["log_rhos"] = 0.6 * rng.normal(size=flat)
    out = {k: v.reshape(shape) for k, v in out.items()}
    out["gamma"] = gamma
    return out


def j(x):
    """float32 JAX array."""
    return jnp.asarray(x, jnp.float32)


def cols(*arrays):
    """Reshape [T, *batch] arrays to [T, N] so the references loop over one column at a time."""
    return [np.asarray(a, np.float64).reshape(a.shape[0], -1) for a in arrays]


def episode_end(dones_col, t):
    """Index of the last row of the episode that contains row t (a done row or the last row)."""
    k = t
    while not (dones_col[k] or k == len(dones_col) - 1):
        k += 1
    return k


# ----------------------------------------------------------------------------------------------
# Independent NumPy references (forward sums)
# ----------------------------------------------------------------------------------------------

def ref_discounted_returns(rewards, next_values, discounts, dones):
    shape = np.shape(rewards)
    r, nv, d, dn = cols(rewards, next_values, discounts, dones)
    out = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            g, prod = 0.0, 1.0
            for k in range(t, episode_end(dn[:, b], t) + 1):
                g += prod * r[k, b]
                prod *= d[k, b]
            g += prod * nv[k, b]  # bootstrap from V(s') of the episode's (or segment's) last row
            out[t, b] = g
    return out.reshape(shape)


def _n_step_column(r, nv, d, dn, t, n):
    """Forward n-step return from row t: at most n rewards, stopping at the episode end."""
    g, prod = 0.0, 1.0
    end = episode_end(dn, t)
    k = t
    for i in range(n):
        k = t + i
        g += prod * r[k]
        prod *= d[k]
        if k == end:
            break
    return g + prod * nv[k]


def ref_n_step_returns(rewards, next_values, discounts, dones, n):
    shape = np.shape(rewards)
    r, nv, d, dn = cols(rewards, next_values, discounts, dones)
    out = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            out[t, b] = _n_step_column(r[:, b], nv[:, b], d[:, b], dn[:, b], t, n)
    return out.reshape(shape)


def ref_lambda_returns(rewards, next_values, discounts, dones, lam):
    """λ-return as the λ-weighted average of n-step returns (Sutton & Barto eq. 12.2/12.9):
    G^λ_t = (1 − λ) Σ_{n=1}^{N−1} λ^{n−1} G^{(n)}_t + λ^{N−1} G^{(N)}_t, N = steps to episode end."""
    shape = np.shape(rewards)
    r, nv, d, dn = cols(rewards, next_values, discounts, dones)
    out = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            big_n = episode_end(dn[:, b], t) - t + 1
            g = 0.0
            for n in range(1, big_n):
                g += (1.0 - lam) * lam ** (n - 1) * _n_step_column(r[:, b], nv[:, b], d[:, b], dn[:, b], t, n)
            g += lam ** (big_n - 1) * _n_step_column(r[:, b], nv[:, b], d[:, b], dn[:, b], t, big_n)
            out[t, b] = g
    return out.reshape(shape)


def ref_td_errors(rewards, values, next_values, discounts):
    shape = np.shape(rewards)
    r, v, nv, d = cols(rewards, values, next_values, discounts)
    out = np.zeros_like(r)
    for idx in np.ndindex(r.shape):
        out[idx] = r[idx] + d[idx] * nv[idx] - v[idx]
    return out.reshape(shape)


def ref_gae(rewards, values, next_values, discounts, dones, lam, gamma):
    """A_t = Σ_{l=0}^{end−t} (γλ)^l δ_{t+l}; inside an episode every non-final row has discount γ."""
    shape = np.shape(rewards)
    r, v, nv, d, dn = cols(rewards, values, next_values, discounts, dones)
    delta = r + d * nv - v
    out = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            end = episode_end(dn[:, b], t)
            out[t, b] = sum((gamma * lam) ** l * delta[t + l, b] for l in range(end - t + 1))
    return out.reshape(shape)


def ref_vtrace(rewards, values, next_values, discounts, dones, log_rhos, lam, rho_bar, c_bar,
               pg_rho_bar):
    """Espeholt et al. 2018, eq. (1), forward-sum form, with the trace stopped at episode ends:
    v_s = V(x_s) + Σ_{t=s}^{end} (Π_{i=s}^{t−1} discounts_i c_i) ρ_t δ_t,
    ρ_t = min(ρ̄, π/μ), c_i = λ min(c̄, π/μ), δ_t = r_t + discounts_t V(x'_t) − V(x_t).
    pg_adv_s = min(pg_ρ̄, π/μ)(r_s + discounts_s v_{s+1} − V(x_s)), v_{s+1} = vs[s+1] inside an
    episode and next_values[s] at a done row or the last row."""
    shape = np.shape(rewards)
    r, v, nv, d, dn, lr = cols(rewards, values, next_values, discounts, dones, log_rhos)
    ratio = np.exp(lr)
    rho = np.minimum(rho_bar, ratio)
    c = lam * np.minimum(c_bar, ratio)
    delta = r + d * nv - v
    vs = np.zeros_like(r)
    for b in range(r.shape[1]):
        for s in range(r.shape[0]):
            acc, prod = 0.0, 1.0
            for t in range(s, episode_end(dn[:, b], s) + 1):
                acc += prod * rho[t, b] * delta[t, b]
                prod *= d[t, b] * c[t, b]
            vs[s, b] = v[s, b] + acc
    pg = np.zeros_like(r)
    for b in range(r.shape[1]):
        for s in range(r.shape[0]):
            at_end = dn[s, b] == 1 or s == r.shape[0] - 1
            boot = nv[s, b] if at_end else vs[s + 1, b]
            pg[s, b] = min(pg_rho_bar, ratio[s, b]) * (r[s, b] + d[s, b] * boot - v[s, b])
    return vs.reshape(shape), pg.reshape(shape)


def assert_close(got, want, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------------
# Sanity checks of the input construction itself (so the special-case tests are meaningful)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_inputs_have_mid_trajectory_terminations_and_truncations(shape):
    x = make_traj(0, shape, consistent=True)
    term, trunc = cols(x["terminated"], x["truncated"])
    assert term[1:-1].sum() >= 1 and trunc[1:-1].sum() >= 1
    d, dn = cols(x["discounts"], x["dones"])
    assert np.all(d[term == 1] == 0.0) and np.all(dn[term == 1] == 1.0)
    assert np.all(d[trunc == 1] == GAMMA) and np.all(dn[trunc == 1] == 1.0)
    v, nv = cols(x["values"], x["next_values"])
    inside = dn[:-1] == 0
    np.testing.assert_array_equal(nv[:-1][inside], v[1:][inside])


def test_references_agree_on_hand_computed_example():
    # One episode of 3 steps ending in a truncation, then a terminal step, in 1-D, γ = 0.5.
    r = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([0.5, 0.25, 0.125, 1.0])
    nv = np.array([0.25, 0.125, 10.0, 7.0])  # row 2 truncated: bootstrap V(final obs) = 10
    d = np.array([0.5, 0.5, 0.5, 0.0])       # row 3 terminated
    dn = np.array([0.0, 0.0, 1.0, 1.0])
    g2 = 3.0 + 0.5 * 10.0
    g1 = 2.0 + 0.5 * g2
    g0 = 1.0 + 0.5 * g1
    np.testing.assert_allclose(ref_discounted_returns(r, nv, d, dn), [g0, g1, g2, 4.0])
    assert_close(est.discounted_returns(j(r), j(nv), j(d), j(dn)), [g0, g1, g2, 4.0])
    # n = 2: G_0 = r0 + γ r1 + γ² V(s'_1)
    want2 = [1.0 + 0.5 * 2.0 + 0.25 * 0.125, 2.0 + 0.5 * 3.0 + 0.25 * 10.0, g2, 4.0]
    np.testing.assert_allclose(ref_n_step_returns(r, nv, d, dn, 2), want2)
    assert_close(est.n_step_returns(j(r), j(nv), j(d), j(dn), 2), want2)


# ----------------------------------------------------------------------------------------------
# Each estimator against its reference: [T, B], [T] and [T, 2, 3], several seeds
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_discounted_returns(seed, shape):
    x = make_traj(seed, shape)
    got = est.discounted_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]))
    assert got.shape == shape and got.dtype == jnp.float32
    assert_close(got, ref_discounted_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"]))


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lambda_returns(seed, shape, lam):
    x = make_traj(seed, shape)
    got = est.lambda_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), lam)
    assert got.shape == shape
    assert_close(got, ref_lambda_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], lam))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_returns(seed, shape, n):
    x = make_traj(seed, shape)
    got = est.n_step_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), n)
    assert got.shape == shape
    assert_close(got, ref_n_step_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], n))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_td_errors(seed, shape):
    x = make_traj(seed, shape)
    got = est.td_errors(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]))
    assert got.shape == shape
    assert_close(got, ref_td_errors(x["rewards"], x["values"], x["next_values"], x["discounts"]))


@pytest.mark.parametrize("lam", [0.0, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gae(seed, shape, lam):
    x = make_traj(seed, shape)
    got = est.gae(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
                  j(x["dones"]), lam)
    assert got.shape == shape
    assert_close(got, ref_gae(x["rewards"], x["values"], x["next_values"], x["discounts"], x["dones"],
                       lam, x["gamma"]))


VTRACE_PARAMS = [
    # (lambda_, rho_bar, c_bar, pg_rho_bar)
    (1.0, 1.0, 1.0, 1.0),
    (1.0, 0.5, 0.5, 1.0),
    (1.0, 2.0, 0.9, 2.0),
    (0.7, 1.0, 0.5, 0.5),
    (0.9, 2.0, 1.0, 1.5),
]


@pytest.mark.parametrize("params", VTRACE_PARAMS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_vtrace(seed, shape, params):
    lam, rho_bar, c_bar, pg_rho_bar = params
    x = make_traj(seed, shape, with_rhos=True)
    vs, pg = est.vtrace(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
                        j(x["dones"]), j(x["log_rhos"]), lambda_=lam, rho_bar=rho_bar,
                        c_bar=c_bar, pg_rho_bar=pg_rho_bar)
    assert vs.shape == shape and pg.shape == shape
    want_vs, want_pg = ref_vtrace(x["rewards"], x["values"], x["next_values"], x["discounts"],
                                  x["dones"], x["log_rhos"], lam, rho_bar, c_bar, pg_rho_bar)
    assert_close(vs, want_vs)
    assert_close(pg, want_pg)


# ----------------------------------------------------------------------------------------------
# Special cases and identities between estimators
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lambda_one_is_discounted_returns(seed, shape):
    x = make_traj(seed, shape)
    args = (j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]))
    assert_close(est.lambda_returns(*args, 1.0), np.asarray(est.discounted_returns(*args), np.float64))
    assert_close(est.lambda_returns(*args, 1.0), ref_discounted_returns(
        x["rewards"], x["next_values"], x["discounts"], x["dones"]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lambda_zero_is_td_target(seed, shape):
    x = make_traj(seed, shape)
    got = est.lambda_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), 0.0)
    assert_close(got, x["rewards"] + x["discounts"] * x["next_values"])


@pytest.mark.parametrize("lam", [0.0, 0.6, 0.95, 1.0])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gae_plus_values_is_lambda_returns(seed, shape, lam):
    x = make_traj(seed, shape, consistent=True)
    adv = est.gae(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
                  j(x["dones"]), lam)
    lret = est.lambda_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), lam)
    assert_close(np.asarray(adv, np.float64) + x["values"], np.asarray(lret, np.float64))
    assert_close(np.asarray(adv, np.float64) + x["values"],
          ref_lambda_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], lam))


def test_gae_plus_values_differs_from_lambda_returns_without_consistent_values():
    # Guard for the identity test above: with independent next_values it must NOT hold.
    x = make_traj(0, (T, 5), consistent=False)
    adv = est.gae(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
                  j(x["dones"]), 0.9)
    lret = est.lambda_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), 0.9)
    assert not np.allclose(np.asarray(adv) + x["values"], np.asarray(lret), atol=1e-3)


@pytest.mark.parametrize("shape,n", [(s, T) for s in SHAPES] + [((T, 5), T + 3)])
@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_large_n_is_discounted_returns(seed, shape, n):
    x = make_traj(seed, shape)
    args = (j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]))
    got = est.n_step_returns(*args, n)
    assert_close(got, np.asarray(est.discounted_returns(*args), np.float64))
    assert_close(got, ref_discounted_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_one_is_td_target(seed, shape):
    x = make_traj(seed, shape)
    got = est.n_step_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), 1)
    assert_close(got, x["rewards"] + x["discounts"] * x["next_values"])
    # ... and n-step advantage with n=1 is the TD error.
    assert_close(np.asarray(got, np.float64) - x["values"],
          ref_td_errors(x["rewards"], x["values"], x["next_values"], x["discounts"]))


@pytest.mark.parametrize("lam", [1.0, 0.7])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_vtrace_on_policy_is_lambda_returns(seed, shape, lam):
    x = make_traj(seed, shape, consistent=True)
    zeros = jnp.zeros(shape, jnp.float32)
    vs, pg = est.vtrace(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
                        j(x["dones"]), zeros, lambda_=lam, rho_bar=1.0, c_bar=1.0, pg_rho_bar=1.0)
    lret = est.lambda_returns(j(x["rewards"]), j(x["next_values"]), j(x["discounts"]), j(x["dones"]), lam)
    assert_close(vs, np.asarray(lret, np.float64))
    assert_close(vs, ref_lambda_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], lam))
    # On-policy vs − V is GAE(λ) as well.
    adv = est.gae(j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
                  j(x["dones"]), lam)
    assert_close(np.asarray(vs, np.float64) - x["values"], np.asarray(adv, np.float64))


def test_vtrace_clipping_matters():
    # Guard: with ratios well away from 1, the rho_bar / c_bar / pg_rho_bar settings must change
    # the result, so the parametrised reference comparison above really exercises them.
    x = make_traj(3, (T, 5), with_rhos=True)
    args = (j(x["rewards"]), j(x["values"]), j(x["next_values"]), j(x["discounts"]),
            j(x["dones"]), j(x["log_rhos"]))
    vs_a, pg_a = est.vtrace(*args, rho_bar=1.0, c_bar=1.0, pg_rho_bar=1.0)
    vs_b, _ = est.vtrace(*args, rho_bar=2.0, c_bar=1.0, pg_rho_bar=1.0)
    vs_c, _ = est.vtrace(*args, rho_bar=1.0, c_bar=0.5, pg_rho_bar=1.0)
    _, pg_d = est.vtrace(*args, rho_bar=1.0, c_bar=1.0, pg_rho_bar=2.0)
    for other in (vs_b, vs_c):
        assert not np.allclose(np.asarray(vs_a), np.asarray(other), atol=1e-3)
    assert not np.allclose(np.asarray(pg_a), np.asarray(pg_d), atol=1e-3)


def test_vtrace_has_no_gradient():
    x = make_traj(0, (T, 5), with_rhos=True)

    def f(values, log_rhos):
        vs, pg = est.vtrace(j(x["rewards"]), values, j(x["next_values"]), j(x["discounts"]),
                            j(x["dones"]), log_rhos)
        return jnp.sum(vs) + jnp.sum(pg)

    gv, gr = jax.jit(jax.grad(f, argnums=(0, 1)))(j(x["values"]), j(x["log_rhos"]))
    assert np.all(np.asarray(gv) == 0.0) and np.all(np.asarray(gr) == 0.0)


# ----------------------------------------------------------------------------------------------
# Truncation vs termination
# ----------------------------------------------------------------------------------------------

def test_gae_truncation_bootstraps_from_next_values():
    lam = 0.9
    r = np.array([1.0, -0.5, 2.0, 0.3, 0.7, -1.0])
    v = np.array([0.2, 0.4, -0.1, 0.5, 0.0, 0.3])
    nv = np.array([0.4, -0.1, 5.0, 0.0, 0.3, 1.5])  # row 2: V(final observation) = 5.0
    dones = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    trunc_disc = np.full(6, GAMMA)                   # truncated at row 2: discount stays γ
    term_disc = trunc_disc.copy()
    term_disc[2] = 0.0                               # same trajectory, treated as terminal

    adv_trunc = np.asarray(est.gae(j(r), j(v), j(nv), j(trunc_disc), j(dones), lam), np.float64)
    adv_term = np.asarray(est.gae(j(r), j(v), j(nv), j(term_disc), j(dones), lam), np.float64)

    # At the truncated step: A = r + γ V(final obs) − V(s), not r − V(s).
    assert_close(adv_trunc[2], r[2] + GAMMA * nv[2] - v[2])
    assert_close(adv_term[2], r[2] - v[2])
    assert abs(adv_trunc[2] - adv_term[2]) > 1.0
    # The trace is cut at the truncation: row 1 sees row 2's δ but nothing from row 3 on.
    d1 = r[1] + GAMMA * nv[1] - v[1]
    assert_close(adv_trunc[1], d1 + GAMMA * lam * adv_trunc[2])
    assert_close(adv_trunc, ref_gae(r, v, nv, trunc_disc, dones, lam, GAMMA))
    # The next episode (rows 3..5) is unaffected by how row 2 ended.
    assert_close(adv_trunc[3:], adv_term[3:])


def test_no_trace_crosses_a_done():
    # Changing anything after a done must not change anything at or before it.
    x = make_traj(1, (T,), with_rhos=True)
    t_done = 9  # forced truncation in make_traj
    assert x["dones"][t_done] == 1
    y = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in x.items()}
    for k in ("rewards", "values", "next_values", "log_rhos"):
        y[k][t_done + 1:] += 3.0

    def run(z):
        r, v, nv, d, dn, lr = (j(z[k]) for k in ("rewards", "values", "next_values", "discounts",
                                                 "dones", "log_rhos"))
        return [est.discounted_returns(r, nv, d, dn), est.lambda_returns(r, nv, d, dn, 0.9),
                est.n_step_returns(r, nv, d, dn, 5), est.gae(r, v, nv, d, dn, 0.9),
                *est.vtrace(r, v, nv, d, dn, lr, lambda_=0.9)]

    for a, b in zip(run(x), run(y)):
        np.testing.assert_array_equal(np.asarray(a)[: t_done + 1], np.asarray(b)[: t_done + 1])
        assert not np.allclose(np.asarray(a)[t_done + 1:], np.asarray(b)[t_done + 1:])


# ----------------------------------------------------------------------------------------------
# Cuts select, they do not multiply: garbage beyond an episode end never reaches the rows before
# ----------------------------------------------------------------------------------------------

def test_gae_ignores_a_nan_value_after_a_termination():
    # values [1, 1, nan], the episode terminating at step 1: the next value there is ignored
    # (discount 0) and nothing flows back from step 2, so A_1 = r_1 − V(s_1) = 0 and
    # A_0 = r_0 + γ·V(s'_0) − V(s_0) + γλ·A_1 = γ, exactly; A_2 is the new episode's own NaN.
    gamma, lam = 0.5, 0.9
    values = jnp.array([1.0, 1.0, jnp.nan])
    next_values = jnp.array([1.0, jnp.nan, jnp.nan])
    adv = _est_module.gae(jnp.ones(3), values, next_values, jnp.array([gamma, 0.0, gamma]),
                          jnp.array([False, True, False]), lam)
    np.testing.assert_array_equal(np.asarray(adv[:2]), [gamma, 0.0])
    assert np.isnan(float(adv[2]))


def test_a_zero_discount_ignores_a_nan_next_value_without_a_done():
    # γ = 0 (or any zero discount) leaves no bootstrap term, even where V(s') is NaN or ±inf
    r, v = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.25, 0.125])
    nv = jnp.array([jnp.nan, jnp.inf, -jnp.inf])
    no_done = jnp.zeros(3, bool)
    want = np.asarray(r - v)
    np.testing.assert_array_equal(np.asarray(_est_module.td_errors(r, v, nv, 0.0)), want)
    np.testing.assert_array_equal(np.asarray(_est_module.gae(r, v, nv, 0.0, no_done, 0.9)), want)
    np.testing.assert_array_equal(
        np.asarray(_est_module.lambda_returns(r, nv, 0.0, no_done, 0.9)), np.asarray(r))
    np.testing.assert_array_equal(
        np.asarray(_est_module.discounted_returns(r, nv, 0.0, no_done)), np.asarray(r))
    np.testing.assert_array_equal(
        np.asarray(_est_module.n_step_returns(r, nv, 0.0, no_done, 2)), np.asarray(r))
    vs, pg = _est_module.vtrace(r, v, nv, 0.0, no_done, jnp.zeros(3))
    np.testing.assert_array_equal(np.asarray(vs), np.asarray(r))
    np.testing.assert_array_equal(np.asarray(pg), want)


CUT = 6   # every column of cut_segment ends an episode here
GARBAGE_VALUES = [pytest.param(np.nan, id="nan"), pytest.param(np.inf, id="inf"),
                  pytest.param(-np.inf, id="-inf")]
CUT_KINDS = ["termination", "truncation"]


def cut_segment(kind, garbage, seed=0, beyond=("rewards", "values", "next_values", "log_rhos",
                                                "lambda_", "discounts")):
    """A ``[T, 3]`` segment whose every column ends an episode at row CUT (by ``kind``), after
    earlier ends (a termination at row 2 of column 1, a truncation at row 3 of column 2).

    Returns ``(clean, dirty)``: float64 inputs (per-step λ included), and the same with
    ``garbage`` in the ``beyond`` inputs of every row after CUT and in ``next_values`` at every
    termination (whose discount is 0)."""
    rng = np.random.default_rng(seed)
    shape = (T, 3)
    clean = {k: rng.normal(size=shape) for k in ("rewards", "values", "next_values", "log_rhos")}
    clean["log_rhos"] *= 0.5
    clean["lambda_"] = rng.uniform(0.5, 1.0, size=shape)
    terminated, truncated = np.zeros(shape, bool), np.zeros(shape, bool)
    (terminated if kind == "termination" else truncated)[CUT] = True
    terminated[2, 1], truncated[3, 2] = True, True
    clean["dones"] = (terminated | truncated).astype(np.float64)
    clean["discounts"] = GAMMA * (1.0 - terminated)
    dirty = {k: x.copy() for k, x in clean.items()}
    for k in beyond:
        dirty[k][CUT + 1:] = garbage
    dirty["next_values"][terminated] = garbage
    return clean, dirty


def _vtrace_args(z, lam):
    return (z["rewards"], z["values"], z["next_values"], z["discounts"], z["dones"], z["log_rhos"],
            lam, 1.5, 0.9, 1.2)


# name -> (pgjax on float32 inputs z, NumPy reference on the clean float64 inputs c)
CUT_CASES = {
    "discounted_returns": (
        lambda z: est.discounted_returns(z["rewards"], z["next_values"], z["discounts"], z["dones"]),
        lambda c: ref_discounted_returns(c["rewards"], c["next_values"], c["discounts"], c["dones"])),
    "lambda_returns": (
        lambda z: est.lambda_returns(z["rewards"], z["next_values"], z["discounts"], z["dones"], 0.8),
        lambda c: ref_lambda_returns(c["rewards"], c["next_values"], c["discounts"], c["dones"], 0.8)),
    "lambda_returns per-step λ": (
        lambda z: est.lambda_returns(z["rewards"], z["next_values"], z["discounts"], z["dones"],
                                     z["lambda_"]),
        lambda c: ref_lambda_returns_per_step(c["rewards"], c["next_values"], c["discounts"],
                                              c["dones"], c["lambda_"])),
    "n_step_returns n=3": (
        lambda z: est.n_step_returns(z["rewards"], z["next_values"], z["discounts"], z["dones"], 3),
        lambda c: ref_n_step_returns(c["rewards"], c["next_values"], c["discounts"], c["dones"], 3)),
    "n_step_returns n=T": (
        lambda z: est.n_step_returns(z["rewards"], z["next_values"], z["discounts"], z["dones"], T),
        lambda c: ref_n_step_returns(c["rewards"], c["next_values"], c["discounts"], c["dones"], T)),
    "td_errors": (
        lambda z: est.td_errors(z["rewards"], z["values"], z["next_values"], z["discounts"]),
        lambda c: ref_td_errors(c["rewards"], c["values"], c["next_values"], c["discounts"])),
    "gae": (
        lambda z: est.gae(z["rewards"], z["values"], z["next_values"], z["discounts"], z["dones"], 0.8),
        lambda c: ref_gae(c["rewards"], c["values"], c["next_values"], c["discounts"], c["dones"],
                          0.8, GAMMA)),
    "gae per-step λ": (
        lambda z: est.gae(z["rewards"], z["values"], z["next_values"], z["discounts"], z["dones"],
                          z["lambda_"]),
        lambda c: ref_gae_per_step(c["rewards"], c["values"], c["next_values"], c["discounts"],
                                   c["dones"], c["lambda_"])),
    "vtrace vs": (lambda z: est.vtrace(*_vtrace_args(z, z["lambda_"]))[0],
                  lambda c: ref_vtrace(*_vtrace_args(c, c["lambda_"]))[0]),
    "vtrace pg_advantages": (lambda z: est.vtrace(*_vtrace_args(z, z["lambda_"]))[1],
                             lambda c: ref_vtrace(*_vtrace_args(c, c["lambda_"]))[1]),
}


@pytest.mark.parametrize("garbage", GARBAGE_VALUES)
@pytest.mark.parametrize("kind", CUT_KINDS)
@pytest.mark.parametrize("name", list(CUT_CASES))
def test_garbage_beyond_a_cut_never_reaches_the_rows_before_it(name, kind, garbage):
    # NaN or ±inf in every input of the rows after an episode end, and in V(s') wherever the
    # discount is 0: the rows up to the end are what the NumPy reference gives on clean inputs.
    estimator, reference = CUT_CASES[name]
    clean, dirty = cut_segment(kind, garbage)
    got = np.asarray(estimator({k: j(x) for k, x in dirty.items()}))
    want = reference(clean)
    assert np.all(np.isfinite(got[: CUT + 1])), name
    assert_close(got[: CUT + 1], want[: CUT + 1])
    if name != "td_errors":   # the garbage really was in the computation: the next episode has it
        assert not np.all(np.isfinite(got[CUT + 1:]))


def _loss_scalar_gamma_lambda(rewards, values, next_values, gamma, lam, dones, terminated):
    discounts = gamma * (1.0 - terminated)
    adv = _est_module.gae(rewards, values, next_values, discounts, dones, lam)
    ret = _est_module.lambda_returns(rewards, next_values, discounts, dones, lam)
    return jnp.sum(adv ** 2) + jnp.sum(ret ** 2)


_grad_scalar_gamma_lambda = jax.jit(jax.grad(_loss_scalar_gamma_lambda, argnums=(0, 1, 2, 3, 4)))


@pytest.mark.parametrize("garbage", GARBAGE_VALUES)
def test_gradients_ignore_next_values_at_terminations(garbage):
    # garbage only in V(s') where the discount is 0: every gradient, with respect to the
    # per-step inputs and to a scalar γ and λ (as in a meta-gradient), is the clean one.
    clean, dirty = cut_segment("termination", garbage, beyond=())
    args = lambda z: (j(z["rewards"]), j(z["values"]), j(z["next_values"]),  # noqa: E731
                      jnp.float32(GAMMA), jnp.float32(0.8), j(z["dones"]), j(clean["discounts"] == 0))
    for got, want in zip(_grad_scalar_gamma_lambda(*args(dirty)),
                         _grad_scalar_gamma_lambda(*args(clean))):
        assert np.all(np.isfinite(np.asarray(got)))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _loss_before_the_cut(rewards, values, next_values, discounts, lam, dones):
    """Σ over the rows up to CUT of GAE² and the λ-return², from the estimators alone."""
    before = jnp.asarray(np.broadcast_to(np.arange(T)[:, None] <= CUT, rewards.shape))
    adv = _est_module.gae(rewards, values, next_values, discounts, dones, lam)
    ret = _est_module.lambda_returns(rewards, next_values, discounts, dones, lam)
    return jnp.sum(jnp.where(before, adv, 0.0) ** 2) + jnp.sum(jnp.where(before, ret, 0.0) ** 2)


def _impala_loss_before_the_cut(values, z):
    """IMPALA's critic and policy terms on the rows up to CUT (the losses mask the rest)."""
    before = jnp.asarray(np.broadcast_to(np.arange(T)[:, None] <= CUT, values.shape))
    vs, pg = _est_module.vtrace(z["rewards"], values, z["next_values"], z["discounts"], z["dones"],
                                z["log_rhos"], lambda_=z["lambda_"])
    return (losses.value_loss(values, vs, mask=before)
            + losses.policy_gradient_loss(values, pg, mask=before))


_grad_before_the_cut = jax.jit(jax.grad(_loss_before_the_cut, argnums=(0, 1, 2, 3, 4)))
_impala_grad_before_the_cut = jax.jit(jax.grad(_impala_loss_before_the_cut))


@pytest.mark.parametrize("garbage", GARBAGE_VALUES)
@pytest.mark.parametrize("kind", CUT_KINDS)
def test_gradients_before_a_cut_ignore_garbage_beyond_it(kind, garbage):
    # garbage in the rewards, values, V(s') and importance weights of the next episode (and in
    # V(s') at terminations). A loss on the rows up to the cut has the clean gradient with
    # respect to the values, V(s') and rewards of every row, and with respect to the per-step λ
    # and discounts of the rows up to the cut (there the "double where" matters: the carry of a
    # cut row is selected away *before* it meets λ and γ, so even the cut row's own λ and γ
    # see no 0·NaN). The gradients with respect to the next episode's own λ and γ are its own
    # business (its results are NaN, so they may be too).
    clean, dirty = cut_segment(kind, garbage,
                               beyond=("rewards", "values", "next_values", "log_rhos"))
    results = {}
    for which, z in (("dirty", dirty), ("clean", clean)):
        z = {k: j(x) for k, x in z.items()}
        results[which] = (*_grad_before_the_cut(z["rewards"], z["values"], z["next_values"],
                                                z["discounts"], z["lambda_"], z["dones"]),
                          _impala_grad_before_the_cut(z["values"], z))
    names = ("rewards", "values", "next_values", "discounts", "lambda_", "vtrace values")
    for name, got, want in zip(names, results["dirty"], results["clean"]):
        got, want = np.asarray(got), np.asarray(want)
        rows = slice(0, CUT + 1) if name in ("discounts", "lambda_") else slice(None)
        assert np.all(np.isfinite(got[rows])), name
        np.testing.assert_array_equal(got[rows], want[rows], err_msg=name)


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------

def test_mismatched_shapes_raise():
    a = jnp.zeros((T, 5), jnp.float32)
    b = jnp.zeros((T, 4), jnp.float32)
    c = jnp.zeros((T - 1, 5), jnp.float32)
    for bad in (b, c):
        with pytest.raises(ShapeError, match="discounted_returns: next_values"):
            _est_module.discounted_returns(a, bad, a, a)
        with pytest.raises(ShapeError, match="lambda_returns: dones"):
            _est_module.lambda_returns(a, a, a, bad, 0.9)
        with pytest.raises(ShapeError, match="n_step_returns: next_values"):  # rewards set the shape
            _est_module.n_step_returns(bad, a, a, a, 3)
        with pytest.raises(ShapeError, match="td_errors: next_values"):
            _est_module.td_errors(a, a, bad, a)
        with pytest.raises(ShapeError, match="gae: values"):
            _est_module.gae(a, bad, a, a, a, 0.9)
        with pytest.raises(ShapeError, match="vtrace: log_rhos"):
            _est_module.vtrace(a, a, a, a, a, bad)


def test_scalar_and_bad_n_raise():
    s = jnp.float32(1.0)
    with pytest.raises(ShapeError, match="discounted_returns: trajectory arrays must be time-major"):
        _est_module.discounted_returns(s, s, s, s)
    a = jnp.zeros((T, 5), jnp.float32)
    for n in (0, -1, 2.0):
        with pytest.raises(ArgumentValueError, match="n_step_returns: n must be an int >= 1"):
            _est_module.n_step_returns(a, a, a, a, n)


def test_integer_rewards_raise():
    a = jnp.zeros((T, 5), jnp.float32)
    with pytest.raises(DtypeError, match="discounted_returns: rewards must be a floating-point"):
        _est_module.discounted_returns(jnp.zeros((T, 5), jnp.int32), a, a, a)


def test_boolean_dones_accepted():
    x = make_traj(0, (T, 5))
    args = (j(x["rewards"]), j(x["next_values"]), j(x["discounts"]))
    got = _est_module.discounted_returns(*args, jnp.asarray(x["dones"] > 0))
    assert_close(got, ref_discounted_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"]))


# ----------------------------------------------------------------------------------------------
# jit and vmap over a hyperparameter axis
# ----------------------------------------------------------------------------------------------

def test_eager_matches_reference():
    # The un-jitted functions, called eagerly with Python-float hyperparameters.
    x = make_traj(6, (T, 5), with_rhos=True)
    r, v, nv, d, dn, lr = (j(x[k]) for k in ("rewards", "values", "next_values", "discounts",
                                             "dones", "log_rhos"))
    e = _est_module
    lam = 0.9
    assert_close(e.discounted_returns(r, nv, d, dn),
          ref_discounted_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"]))
    assert_close(e.lambda_returns(r, nv, d, dn, lam),
          ref_lambda_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], lam))
    assert_close(e.n_step_returns(r, nv, d, dn, 3),
          ref_n_step_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], 3))
    assert_close(e.td_errors(r, v, nv, d),
          ref_td_errors(x["rewards"], x["values"], x["next_values"], x["discounts"]))
    assert_close(e.gae(r, v, nv, d, dn, lam),
          ref_gae(x["rewards"], x["values"], x["next_values"], x["discounts"], x["dones"], lam, GAMMA))
    vs, pg = e.vtrace(r, v, nv, d, dn, lr, lambda_=lam, rho_bar=2.0, c_bar=0.7, pg_rho_bar=1.5)
    want_vs, want_pg = ref_vtrace(x["rewards"], x["values"], x["next_values"], x["discounts"],
                                  x["dones"], x["log_rhos"], lam, 2.0, 0.7, 1.5)
    assert_close(vs, want_vs)
    assert_close(pg, want_pg)


def test_jit_matches_reference():
    x = make_traj(2, (T, 5), with_rhos=True)
    r, v, nv, d, dn, lr = (j(x[k]) for k in ("rewards", "values", "next_values", "discounts",
                                             "dones", "log_rhos"))
    lam = 0.85
    assert_close(jax.jit(_est_module.discounted_returns)(r, nv, d, dn),
          ref_discounted_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"]))
    assert_close(jax.jit(_est_module.lambda_returns)(r, nv, d, dn, lam),
          ref_lambda_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], lam))
    assert_close(jax.jit(_est_module.n_step_returns, static_argnums=4)(r, nv, d, dn, 4),
          ref_n_step_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], 4))
    assert_close(jax.jit(_est_module.td_errors)(r, v, nv, d),
          ref_td_errors(x["rewards"], x["values"], x["next_values"], x["discounts"]))
    assert_close(jax.jit(_est_module.gae)(r, v, nv, d, dn, lam),
          ref_gae(x["rewards"], x["values"], x["next_values"], x["discounts"], x["dones"], lam, GAMMA))
    vs, pg = jax.jit(_est_module.vtrace)(r, v, nv, d, dn, lr, lam, 1.5, 0.8, 1.2)
    want_vs, want_pg = ref_vtrace(x["rewards"], x["values"], x["next_values"], x["discounts"],
                                  x["dones"], x["log_rhos"], lam, 1.5, 0.8, 1.2)
    assert_close(vs, want_vs)
    assert_close(pg, want_pg)


LAMBDAS = np.array([0.0, 0.3, 0.8, 0.95, 1.0], np.float32)


def test_vmap_over_lambda():
    x = make_traj(4, (T, 5), with_rhos=True, consistent=True)
    r, v, nv, d, dn, lr = (j(x[k]) for k in ("rewards", "values", "next_values", "discounts",
                                             "dones", "log_rhos"))
    lams = jnp.asarray(LAMBDAS)

    lret = jax.jit(jax.vmap(lambda lam: _est_module.lambda_returns(r, nv, d, dn, lam)))(lams)
    adv = jax.jit(jax.vmap(lambda lam: _est_module.gae(r, v, nv, d, dn, lam)))(lams)
    vs, pg = jax.jit(jax.vmap(lambda lam: _est_module.vtrace(r, v, nv, d, dn, lr, lambda_=lam,
                                                     c_bar=0.9)))(lams)
    assert lret.shape == adv.shape == vs.shape == pg.shape == (len(LAMBDAS), T, 5)
    for i, lam in enumerate(LAMBDAS):
        lam = float(lam)
        # The non-vmapped call (jit-compiled once, λ traced as a scalar).
        np.testing.assert_allclose(lret[i], est.lambda_returns(r, nv, d, dn, lam), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(adv[i], est.gae(r, v, nv, d, dn, lam), rtol=1e-5, atol=1e-5)
        vs_i, pg_i = est.vtrace(r, v, nv, d, dn, lr, lambda_=lam, c_bar=0.9)
        np.testing.assert_allclose(vs[i], vs_i, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pg[i], pg_i, rtol=1e-5, atol=1e-5)
        assert_close(adv[i], ref_gae(x["rewards"], x["values"], x["next_values"], x["discounts"],
                              x["dones"], lam, GAMMA))
    # The λ axis really changes the result.
    assert not np.allclose(np.asarray(adv[1]), np.asarray(adv[3]), atol=1e-3)


def test_vmap_over_batch_axis_matches_batched_call():
    # vmap over the batch axis (in_axes=1) of a [T, B] input gives the same as the batched call.
    x = make_traj(5, (T, 5))
    r, v, nv, d, dn = (j(x[k]) for k in ("rewards", "values", "next_values", "discounts", "dones"))
    got = jax.jit(jax.vmap(lambda *a: _est_module.gae(*a, 0.9), in_axes=1, out_axes=1))(r, v, nv, d, dn)
    assert_close(got, np.asarray(est.gae(r, v, nv, d, dn, 0.9), np.float64))


def test_explained_variance():
    rng = np.random.default_rng(0)
    t = rng.normal(size=100)
    p = t + 0.3 * rng.normal(size=100)
    want = 1.0 - np.var(t - p) / np.var(t)
    assert_close(est.explained_variance(j(p), j(t)), want, rtol=1e-4, atol=1e-5)
    assert_close(est.explained_variance(j(t), j(t)), 1.0)
    assert np.isnan(float(est.explained_variance(j(p), jnp.ones(100, jnp.float32))))


# ----------------------------------------------------------------------------------------------
# Low precision: float16 / bfloat16 in and out, computed in float32
# ----------------------------------------------------------------------------------------------

LOW_PRECISION = [pytest.param(jnp.float16, id="float16"), pytest.param(jnp.bfloat16, id="bfloat16")]


def rounded(x, dtype):
    """The values a ``dtype`` computation actually sees, as float64 for the references."""
    return np.asarray(jnp.asarray(x, dtype).astype(jnp.float32), np.float64)


def _every_estimator(r, v, nv, d, dn, lr, lam):
    """name -> the result of each estimator on one set of inputs (V-trace's two outputs apart)."""
    vs, pg = est.vtrace(r, v, nv, d, dn, lr, lambda_=lam, rho_bar=1.5, c_bar=0.9, pg_rho_bar=1.2)
    return {"discounted_returns": est.discounted_returns(r, nv, d, dn),
            "lambda_returns": est.lambda_returns(r, nv, d, dn, lam),
            "n_step_returns": est.n_step_returns(r, nv, d, dn, 3),
            "td_errors": est.td_errors(r, v, nv, d),
            "gae": est.gae(r, v, nv, d, dn, lam),
            "vtrace vs": vs, "vtrace pg_advantages": pg}


def _every_reference(x, lam, gamma):
    """The float64 NumPy references of :func:`_every_estimator`'s results."""
    rr, rv, rnv, rd, rdn, rlr = (x[k] for k in ("rewards", "values", "next_values", "discounts",
                                                "dones", "log_rhos"))
    vs, pg = ref_vtrace(rr, rv, rnv, rd, rdn, rlr, lam, 1.5, 0.9, 1.2)
    return {"discounted_returns": ref_discounted_returns(rr, rnv, rd, rdn),
            "lambda_returns": ref_lambda_returns(rr, rnv, rd, rdn, lam),
            "n_step_returns": ref_n_step_returns(rr, rnv, rd, rdn, 3),
            "td_errors": ref_td_errors(rr, rv, rnv, rd),
            "gae": ref_gae(rr, rv, rnv, rd, rdn, lam, gamma),
            "vtrace vs": vs, "vtrace pg_advantages": pg}


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_is_computed_in_float32_and_rounded_once(dtype):
    # float16/bfloat16 in, the same dtype out, and exactly the float32 result on the same inputs
    # (widened exactly) rounded once to the dtype: no recursion step is rounded to half precision
    x = make_traj(0, (T, 5), with_rhos=True)
    names = ("rewards", "values", "next_values", "discounts", "log_rhos")
    low = {k: jnp.asarray(x[k], dtype) for k in names}
    dn = jnp.asarray(x["dones"] > 0)   # a bool mask: it must not widen the result
    got = _every_estimator(*(low[k] for k in names[:4]), dn, low["log_rhos"], 0.9)
    wide = _every_estimator(*(low[k].astype(jnp.float32) for k in names[:4]), dn,
                            low["log_rhos"].astype(jnp.float32), 0.9)
    for name in got:
        assert got[name].dtype == dtype, (name, got[name].dtype)
        np.testing.assert_array_equal(np.asarray(got[name].astype(jnp.float32)),
                                      np.asarray(wide[name].astype(dtype).astype(jnp.float32)),
                                      err_msg=name)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_error_is_that_of_the_final_rounding(dtype):
    # Over a long segment (T = 128, 4 columns) a recursion carried out in half precision
    # accumulates one rounding per step (computed in bfloat16 itself, GAE's largest error here
    # was 7.9× the bound's reference, V-trace's 7.4×, float16 λ-returns' 7.0×). Against a float64
    # reference on the same (half-precision) inputs, every estimator's largest error is at most
    # 1.5× that of the float32 computation rounded to ``dtype``.
    steps = 128
    x = make_traj(1, (steps, 4), with_rhos=True)
    names = ("rewards", "values", "next_values", "discounts", "log_rhos")
    low = {k: jnp.asarray(x[k], dtype) for k in names}
    exact = {**{k: rounded(x[k], dtype) for k in names}, "dones": x["dones"]}
    gamma = float(rounded(GAMMA, dtype))   # the discount inside an episode, as the inputs hold it
    lam = 0.95
    dn = jnp.asarray(x["dones"] > 0)
    got = _every_estimator(*(low[k] for k in names[:4]), dn, low["log_rhos"], lam)
    f32 = _every_estimator(*(low[k].astype(jnp.float32) for k in names[:4]), dn,
                           low["log_rhos"].astype(jnp.float32), lam)
    want = _every_reference(exact, lam, gamma)
    for name in got:
        error = np.max(np.abs(rounded(got[name], jnp.float32) - want[name]))
        rounding = np.max(np.abs(rounded(f32[name].astype(dtype), jnp.float32) - want[name]))
        assert rounding > 0, name   # the bound below is not vacuous
        assert error <= 1.5 * rounding, (name, error, rounding)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_hyperparameters_do_not_widen_the_result(dtype):
    # A traced float32 λ / discount (a vmapped hyperparameter) is cast to the trajectory's dtype.
    x = make_traj(1, (T, 3), with_rhos=True)
    r, v, nv, lr = (jnp.asarray(x[k], dtype) for k in ("rewards", "values", "next_values", "log_rhos"))
    dn = jnp.asarray(x["dones"], jnp.float32)
    lam, gamma = jnp.float32(0.9), jnp.float32(GAMMA)
    assert _est_module.lambda_returns(r, nv, gamma, dn, lam).dtype == dtype
    assert _est_module.gae(r, v, nv, gamma, dn, lam).dtype == dtype
    assert all(out.dtype == dtype for out in _est_module.vtrace(
        r, v, nv, gamma, dn, lr, lam, jnp.float32(1.0), jnp.float32(1.0), jnp.float32(1.0)))


# ----------------------------------------------------------------------------------------------
# Scalar discounts, per-step λ, Python lists, the static n
# ----------------------------------------------------------------------------------------------

def test_scalar_discount_broadcasts_to_the_rewards_shape():
    # Every episode end counted as a truncation (no terminal state): the discount is γ on every
    # row, which a scalar expresses; each estimator gives what it gives with a [T, B] array of γ.
    x = make_traj(2, (T, 5), with_rhos=True)
    r, v, nv, dn, lr = (j(x[k]) for k in ("rewards", "values", "next_values", "dones", "log_rhos"))
    full = jnp.full((T, 5), GAMMA, jnp.float32)
    e = _est_module
    for scalar in (GAMMA, np.float32(GAMMA), jnp.float32(GAMMA)):
        pairs = [
            (e.discounted_returns(r, nv, scalar, dn), est.discounted_returns(r, nv, full, dn)),
            (e.lambda_returns(r, nv, scalar, dn, 0.8), est.lambda_returns(r, nv, full, dn, 0.8)),
            (e.n_step_returns(r, nv, scalar, dn, 3), est.n_step_returns(r, nv, full, dn, 3)),
            (e.td_errors(r, v, nv, scalar), est.td_errors(r, v, nv, full)),
            (e.gae(r, v, nv, scalar, dn, 0.8), est.gae(r, v, nv, full, dn, 0.8)),
            (e.vtrace(r, v, nv, scalar, dn, lr)[0], est.vtrace(r, v, nv, full, dn, lr)[0]),
        ]
        for got, want in pairs:
            assert got.shape == (T, 5) and got.dtype == jnp.float32
            assert_close(got, np.asarray(want, np.float64))
    # ... a traced scalar discount too (a vmapped γ)
    got = jax.jit(e.gae)(r, v, nv, jnp.float32(GAMMA), dn, 0.8)
    assert_close(got, ref_gae(x["rewards"], x["values"], x["next_values"], np.full((T, 5), GAMMA),
                              x["dones"], 0.8, GAMMA))


def test_python_lists_and_numpy_arrays_are_accepted():
    x = make_traj(3, (T,))
    r, v, nv, d, dn = (x[k] for k in ("rewards", "values", "next_values", "discounts", "dones"))
    want = ref_gae(r, v, nv, d, dn, 0.9, GAMMA)
    assert_close(_est_module.gae(list(r), tuple(v), nv.astype(np.float32), list(d), list(dn), 0.9), want,
                 rtol=1e-4, atol=1e-4)
    assert_close(_est_module.td_errors(list(r), list(v), list(nv), 0.5), r + 0.5 * nv - v, rtol=1e-5)


def ref_lambda_returns_per_step(rewards, next_values, discounts, dones, lam):
    """λ-return with a per-step λ_t, as a forward sum over the recursion unrolled:
    G_t = Σ_{k=t}^{end} (Π_{j=t}^{k−1} d_j λ_j) · [r_k + d_k (1 − λ_k) V(s'_k)] for k < end, and the
    last term r_end + d_end V(s'_end) (λ_end unused: the episode or segment stops there)."""
    shape = np.shape(rewards)
    r, nv, d, dn, lm = cols(rewards, next_values, discounts, dones, lam)
    out = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            end = episode_end(dn[:, b], t)
            g, w = 0.0, 1.0
            for k in range(t, end + 1):
                keep = 1.0 - lm[k, b] if k < end else 1.0
                g += w * (r[k, b] + d[k, b] * keep * nv[k, b])
                w *= d[k, b] * lm[k, b]
            out[t, b] = g
    return out.reshape(shape)


def ref_gae_per_step(rewards, values, next_values, discounts, dones, lam):
    """A_t = Σ_{l=0}^{end−t} (Π_{j<l} d_{t+j} λ_{t+j}) δ_{t+l} with a per-step λ."""
    shape = np.shape(rewards)
    r, v, nv, d, dn, lm = cols(rewards, values, next_values, discounts, dones, lam)
    delta = r + d * nv - v
    out = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            acc, w = 0.0, 1.0
            for k in range(t, episode_end(dn[:, b], t) + 1):
                acc += w * delta[k, b]
                w *= d[k, b] * lm[k, b]
            out[t, b] = acc
    return out.reshape(shape)


@pytest.mark.parametrize("shape", [(T, 5), (T,)])
def test_per_step_lambda(shape):
    # λ_t weights the continuation out of row t (the same row as discounts_t), as in rlax.
    x = make_traj(4, shape, with_rhos=True)
    lam = np.random.default_rng(9).uniform(0.0, 1.0, size=shape)
    r, v, nv, d, dn, lr = (j(x[k]) for k in ("rewards", "values", "next_values", "discounts", "dones",
                                             "log_rhos"))
    e = _est_module
    got = e.lambda_returns(r, nv, d, dn, j(lam))
    assert got.shape == shape
    assert_close(got, ref_lambda_returns_per_step(x["rewards"], x["next_values"], x["discounts"],
                                                  x["dones"], lam))
    assert_close(e.gae(r, v, nv, d, dn, j(lam)),
                 ref_gae_per_step(x["rewards"], x["values"], x["next_values"], x["discounts"],
                                  x["dones"], lam))
    vs, pg = e.vtrace(r, v, nv, d, dn, lr, lambda_=j(lam), rho_bar=1.5, c_bar=0.9)
    want_vs, want_pg = ref_vtrace(x["rewards"], x["values"], x["next_values"], x["discounts"],
                                  x["dones"], x["log_rhos"], lam.reshape(T, -1), 1.5, 0.9, 1.0)
    assert_close(vs, want_vs)
    assert_close(pg, want_pg)
    # a constant per-step λ is the scalar λ
    const = jnp.full(shape, 0.7, jnp.float32)
    assert_close(e.gae(r, v, nv, d, dn, const), np.asarray(est.gae(r, v, nv, d, dn, 0.7), np.float64))
    assert_close(e.lambda_returns(r, nv, d, dn, const),
                 np.asarray(est.lambda_returns(r, nv, d, dn, 0.7), np.float64))


@pytest.mark.parametrize("n", [3, np.int64(3), np.int32(3), jnp.int32(3)],
                         ids=["int", "np.int64", "np.int32", "jax int32"])
def test_n_step_accepts_any_integer_type(n):
    x = make_traj(5, (T, 5))
    r, nv, d, dn = (j(x[k]) for k in ("rewards", "next_values", "discounts", "dones"))
    assert_close(_est_module.n_step_returns(r, nv, d, dn, n),
                 ref_n_step_returns(x["rewards"], x["next_values"], x["discounts"], x["dones"], 3))


def test_traced_n_asks_for_a_static_argument():
    a = jnp.zeros((T, 5), jnp.float32)
    with pytest.raises(ArgumentTypeError,
                       match=r"n_step_returns: n must be a static Python int.*static_argnums"):
        jax.jit(_est_module.n_step_returns)(a, a, a, a, 3)
    for bad in (True, 2.5, "3"):
        with pytest.raises(ArgumentValueError, match="n_step_returns: n must be an int >= 1"):
            _est_module.n_step_returns(a, a, a, a, bad)


def test_shape_errors_name_the_function_and_the_argument():
    a = jnp.zeros((T, 5), jnp.float32)
    per_batch = jnp.zeros((5,), jnp.float32)   # [B], not [T, B] and not a scalar
    per_time = jnp.zeros((T,), jnp.float32)
    with pytest.raises(ShapeError, match="discounted_returns: discounts"):
        _est_module.discounted_returns(a, a, per_batch, a)
    with pytest.raises(ShapeError, match="gae: lambda_"):
        _est_module.gae(a, a, a, a, a, per_time)
    with pytest.raises(ShapeError, match="lambda_returns: dones"):
        _est_module.lambda_returns(a, a, a, per_time, 0.9)
    with pytest.raises(ShapeError, match="vtrace: rho_bar"):
        _est_module.vtrace(a, a, a, a, a, a, rho_bar=per_batch)
    with pytest.raises(ShapeError, match="td_errors: values"):
        _est_module.td_errors(a, per_batch, a, a)
    with pytest.raises(DtypeError, match="gae: values must be a floating-point"):
        _est_module.gae(a, a.astype(jnp.int32), a, a, a, 0.9)
