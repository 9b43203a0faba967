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
# Bad inputs
# ----------------------------------------------------------------------------------------------

def test_mismatched_shapes_raise():
    a = jnp.zeros((T, 5), jnp.float32)
    b = jnp.zeros((T, 4), jnp.float32)
    c = jnp.zeros((T - 1, 5), jnp.float32)
    for bad in (b, c):
        with pytest.raises((AssertionError, ValueError, TypeError)):
            _est_module.discounted_returns(a, bad, a, a)
        with pytest.raises((AssertionError, ValueError, TypeError)):
            _est_module.lambda_returns(a, a, a, bad, 0.9)
        with pytest.raises((AssertionError, ValueError, TypeError)):
            _est_module.n_step_returns(bad, a, a, a, 3)
        with pytest.raises((AssertionError, ValueError, TypeError)):
            _est_module.td_errors(a, a, bad, a)
        with pytest.raises((AssertionError, ValueError, TypeError)):
            _est_module.gae(a, bad, a, a, a, 0.9)
        with pytest.raises((AssertionError, ValueError, TypeError)):
            _est_module.vtrace(a, a, a, a, a, bad)


def test_scalar_and_bad_n_raise():
    s = jnp.float32(1.0)
    with pytest.raises((AssertionError, ValueError)):
        _est_module.discounted_returns(s, s, s, s)
    a = jnp.zeros((T, 5), jnp.float32)
    for n in (0, -1, 2.0):
        with pytest.raises(ValueError):
            _est_module.n_step_returns(a, a, a, a, n)


def test_integer_rewards_raise():
    a = jnp.zeros((T, 5), jnp.float32)
    with pytest.raises(AssertionError):
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
# Low precision: float16 / bfloat16 in, the same dtype out, close to a float64 reference
# ----------------------------------------------------------------------------------------------

LOW_PRECISION = [pytest.param(jnp.float16, id="float16"), pytest.param(jnp.bfloat16, id="bfloat16")]


def rounded(x, dtype):
    """The values a ``dtype`` computation actually sees, as float64 for the references."""
    return np.asarray(jnp.asarray(x, dtype).astype(jnp.float32), np.float64)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_keeps_the_dtype_and_matches_a_float64_reference(dtype):
    x = make_traj(0, (T, 5), with_rhos=True)
    names = ("rewards", "values", "next_values", "discounts", "log_rhos")
    low = {k: jnp.asarray(x[k], dtype) for k in names}
    ref = {k: rounded(x[k], dtype) for k in names}
    r, v, nv, d, lr = (low[k] for k in names)
    dn = jnp.asarray(x["dones"] > 0)   # a bool mask: it must not widen the computation
    gamma = float(rounded(GAMMA, dtype))
    lam = 0.9
    # Error budget: a T-step recursion of rounded multiply-adds; observed ≈ 1.3·eps·(1 + |G|).
    eps = float(jnp.finfo(dtype).eps)
    tol = dict(rtol=4 * eps, atol=8 * eps)
    rr, rv, rnv, rd, rlr = (ref[k] for k in names)
    rdn = x["dones"]
    cases = {
        "discounted_returns": (est.discounted_returns(r, nv, d, dn),
                               ref_discounted_returns(rr, rnv, rd, rdn)),
        "lambda_returns": (est.lambda_returns(r, nv, d, dn, lam), ref_lambda_returns(rr, rnv, rd, rdn, lam)),
        "n_step_returns": (est.n_step_returns(r, nv, d, dn, 3), ref_n_step_returns(rr, rnv, rd, rdn, 3)),
        "td_errors": (est.td_errors(r, v, nv, d), ref_td_errors(rr, rv, rnv, rd)),
        "gae": (est.gae(r, v, nv, d, dn, lam), ref_gae(rr, rv, rnv, rd, rdn, lam, gamma)),
    }
    vs, pg = est.vtrace(r, v, nv, d, dn, lr, lambda_=lam, rho_bar=1.5, c_bar=0.9, pg_rho_bar=1.2)
    want_vs, want_pg = ref_vtrace(rr, rv, rnv, rd, rdn, rlr, lam, 1.5, 0.9, 1.2)
    cases["vtrace vs"], cases["vtrace pg_advantages"] = (vs, want_vs), (pg, want_pg)
    for name, (got, want) in cases.items():
        assert got.dtype == dtype, (name, got.dtype)
        assert_close(got, want, **tol)
    # ... and a low-precision computation is not secretly a float32 one rounded at the end:
    # a float32 run of the same inputs differs from it by more than the final rounding.
    f32 = est.gae(*(a.astype(jnp.float32) for a in (r, v, nv, d)), dn, lam)
    assert not np.array_equal(np.asarray(cases["gae"][0].astype(jnp.float32)),
                              np.asarray(f32.astype(dtype).astype(jnp.float32)))


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
    with pytest.raises(TypeError, match=r"n_step_returns: n must be a static Python int.*static_argnums"):
        jax.jit(_est_module.n_step_returns)(a, a, a, a, 3)
    for bad in (True, 2.5, "3"):
        with pytest.raises(ValueError, match="n_step_returns: n must be an int >= 1"):
            _est_module.n_step_returns(a, a, a, a, bad)


def test_shape_errors_name_the_function_and_the_argument():
    a = jnp.zeros((T, 5), jnp.float32)
    per_batch = jnp.zeros((5,), jnp.float32)   # [B], not [T, B] and not a scalar
    per_time = jnp.zeros((T,), jnp.float32)
    with pytest.raises(AssertionError, match="discounted_returns: discounts"):
        _est_module.discounted_returns(a, a, per_batch, a)
    with pytest.raises(AssertionError, match="gae: lambda_"):
        _est_module.gae(a, a, a, a, a, per_time)
    with pytest.raises(AssertionError, match="lambda_returns: dones"):
        _est_module.lambda_returns(a, a, a, per_time, 0.9)
    with pytest.raises(AssertionError, match="vtrace: rho_bar"):
        _est_module.vtrace(a, a, a, a, a, a, rho_bar=per_batch)
    with pytest.raises(AssertionError, match="td_errors: values"):
        _est_module.td_errors(a, per_batch, a, a)
    with pytest.raises(AssertionError, match="gae: values must be a floating-point"):
        _est_module.gae(a, a.astype(jnp.int32), a, a, a, 0.9)
