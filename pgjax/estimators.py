"""Return and advantage estimators: pure, jittable, time-major ``[T, *batch]``.

Every function takes the same description of a trajectory segment:

- ``rewards[t]``      r_t, the reward for the transition out of s_t.
- ``values[t]``       V(s_t), the critic at the state where the action was taken.
- ``next_values[t]``  V(s'_t) of the *true* successor of step t: the next state inside an episode,
                      the pre-reset final observation where the episode ended (terminated or
                      truncated). Only its discount decides whether it is used.
- ``discounts[t]``    γ·(1 − terminated_t): zero after a true terminal state, γ otherwise
                      (a time-limit truncation keeps γ, so it bootstraps from V(final_observation)).
- ``dones[t]``        terminated_t or truncated_t: the next row belongs to a new episode, so no
                      trace, n-step sum or return may cross it.

The last row of a segment is always treated as an episode boundary for the recursion (it
bootstraps from ``next_values[-1]``). Treating a truncation as a terminal state is the classic
bug; here the two are separate inputs on purpose (shared/DESIGN.md, "Episode ends, done right").
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def _check_trajectory(*arrays: Array) -> None:
    chex.assert_equal_shape(arrays)
    if arrays[0].ndim < 1:
        raise ValueError("trajectory arrays must be time-major [T, *batch]; got a scalar")
    for array in arrays:
        chex.assert_type(array, float)


def _continue_mask(dones: Array) -> Array:
    """1.0 where the trace may run on into row t+1, 0.0 at episode ends and at the last row."""
    not_done = 1.0 - jnp.asarray(dones, jnp.float32)
    return not_done.at[-1].set(0.0)


def _reverse_scan(step, init, xs):
    _, out = jax.lax.scan(step, init, xs, reverse=True)
    return out


def discounted_returns(rewards: Array, next_values: Array, discounts: Array, dones: Array) -> Array:
    """Monte-Carlo returns G_t = R_{t+1} + γ G_{t+1} (seed slide "Value-based methods";
    Sutton & Barto 2018, eq. 3.9), bootstrapped with ``next_values`` where the segment or an
    episode stops before a terminal state.

    G_t = r_t + discounts_t · (G_{t+1} if the episode continues in row t+1 else next_values_t).

    Pass ``next_values = 0`` for pure Monte-Carlo returns over complete episodes (REINFORCE with no
    critic); then a truncated episode is, unavoidably, not bootstrapped.

    Args: rewards, next_values, discounts, dones: ``[T, *batch]`` float arrays (see module doc).
    Returns: ``[T, *batch]`` returns.
    """
    dones = jnp.asarray(dones, jnp.float32)
    _check_trajectory(rewards, next_values, discounts, dones)
    cont = _continue_mask(dones)

    def step(next_return, x):
        r, nv, d, c = x
        g = r + d * (c * next_return + (1.0 - c) * nv)
        return g, g

    return _reverse_scan(step, jnp.zeros_like(rewards[0]), (rewards, next_values, discounts, cont))


def lambda_returns(rewards: Array, next_values: Array, discounts: Array, dones: Array,
                   lambda_: float | Array) -> Array:
    """λ-returns, recursive form (Sutton & Barto 2018, eq. 12.18; Schulman et al. 2016, §3):

    G^λ_t = r_t + discounts_t · [(1 − λ)·next_values_t + λ·G^λ_{t+1}]   inside an episode,
    G^λ_t = r_t + discounts_t · next_values_t                          at an episode end / last row.

    λ = 1 gives :func:`discounted_returns`; λ = 0 the one-step TD target.

    Args: ``[T, *batch]`` rewards, next_values, discounts, dones; scalar ``lambda_`` in [0, 1]
    (may be traced, so it can be a vmapped hyperparameter).
    Returns: ``[T, *batch]`` λ-returns.
    """
    dones = jnp.asarray(dones, jnp.float32)
    _check_trajectory(rewards, next_values, discounts, dones)
    cont = _continue_mask(dones)

    def step(next_return, x):
        r, nv, d, c = x
        inner = (1.0 - lambda_) * nv + lambda_ * next_return
        g = r + d * (c * inner + (1.0 - c) * nv)
        return g, g

    return _reverse_scan(step, jnp.zeros_like(rewards[0]), (rewards, next_values, discounts, cont))


def n_step_returns(rewards: Array, next_values: Array, discounts: Array, dones: Array,
                   n: int) -> Array:
    """n-step returns (seed slide "Advantage Estimates (II)"; Sutton & Barto 2018, eq. 7.1):

    G^{(n)}_t = Σ_{i=0}^{k-1} (Π_{j<i} discounts_{t+j}) r_{t+i} + (Π_{j<k} discounts_{t+j}) V(s'_{t+k-1}),

    with k = n, or fewer where the episode or the segment ends first (then the sum stops at the end
    and bootstraps from ``next_values`` of that last step; a terminal step's discount is 0).
    The n-step advantage of the seed is ``n_step_returns(...) - values``.

    Args: ``[T, *batch]`` rewards, next_values, discounts, dones; static int ``n >= 1``.
    Returns: ``[T, *batch]``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n_step_returns: n must be an int >= 1, got {n!r}")
    dones = jnp.asarray(dones, jnp.float32)
    _check_trajectory(rewards, next_values, discounts, dones)
    cont = _continue_mask(dones)
    # G^{(1)}_t = r_t + d_t V(s'_t);  G^{(k)}_t = r_t + d_t [c_t G^{(k-1)}_{t+1} + (1 - c_t) V(s'_t)]
    returns = rewards + discounts * next_values
    for _ in range(n - 1):
        shifted = jnp.concatenate([returns[1:], jnp.zeros_like(returns[:1])], axis=0)
        returns = rewards + discounts * (cont * shifted + (1.0 - cont) * next_values)
    return returns


def td_errors(rewards: Array, values: Array, next_values: Array, discounts: Array) -> Array:
    """One-step TD error δ_t = r_t + discounts_t·V(s'_t) − V(s_t) (seed slide "Value-based methods")."""
    _check_trajectory(rewards, values, next_values, discounts)
    return rewards + discounts * next_values - values


def gae(rewards: Array, values: Array, next_values: Array, discounts: Array, dones: Array,
        lambda_: float | Array) -> Array:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16; seed slide
    "Advantage Estimates (II)"):

    A_t = Σ_{l≥0} (γλ)^l δ_{t+l},  δ_t = r_t + discounts_t·V(s'_t) − V(s_t),

    computed as A_t = δ_t + discounts_t·λ·A_{t+1}, with the trace cut where ``dones_t`` (termination
    or truncation) and at the last row. Value targets are ``advantages + values``.

    Args: ``[T, *batch]`` rewards, values, next_values, discounts, dones; scalar ``lambda_``.
    Returns: ``[T, *batch]`` advantages.
    """
    dones = jnp.asarray(dones, jnp.float32)
    _check_trajectory(rewards, values, next_values, discounts, dones)
    deltas = td_errors(rewards, values, next_values, discounts)
    cont = _continue_mask(dones)

    def step(next_adv, x):
        delta, d, c = x
        adv = delta + d * lambda_ * c * next_adv
        return adv, adv

    return _reverse_scan(step, jnp.zeros_like(rewards[0]), (deltas, discounts, cont))


def vtrace(rewards: Array, values: Array, next_values: Array, discounts: Array, dones: Array,
           log_rhos: Array, lambda_: float | Array = 1.0, rho_bar: float | Array = 1.0,
           c_bar: float | Array = 1.0, pg_rho_bar: float | Array = 1.0) -> tuple[Array, Array]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, eq. 1 and §4.2;
    seed slide "IMPALA V-Trace").

    v_s = V(x_s) + Σ_{t≥s} (Π_{i=s}^{t-1} discounts_i·c_i) ρ_t (r_t + discounts_t·V(x'_t) − V(x_t)),

    with ρ_t = min(ρ̄, π/μ) and c_i = λ·min(c̄, π/μ) (the λ of Espeholt et al., Remark 2), computed
    backwards as v_s − V(x_s) = δ_s + discounts_s·c_s·(v_{s+1} − V(x_{s+1})), the trace cut at episode
    ends and the last row. The policy-gradient advantage is

    pg_advantages_s = min(pg_ρ̄, π/μ)·(r_s + discounts_s·v_{s+1} − V(x_s)),

    where v_{s+1} is ``vs[s+1]`` inside an episode and ``next_values[s]`` at an episode end or the
    last row.

    Args: ``[T, *batch]`` rewards, values, next_values, discounts, dones, and
    ``log_rhos = log π(a_t|x_t) − log μ(a_t|x_t)``; scalar (traceable) λ, ρ̄, c̄, pg_ρ̄.
    Returns: ``(vs, pg_advantages)``, both ``[T, *batch]``, with no gradient flowing through them.
    """
    dones = jnp.asarray(dones, jnp.float32)
    _check_trajectory(rewards, values, next_values, discounts, dones, log_rhos)
    rhos = jnp.exp(log_rhos)
    clipped_rhos = jnp.minimum(rho_bar, rhos)
    cs = lambda_ * jnp.minimum(c_bar, rhos)
    deltas = clipped_rhos * td_errors(rewards, values, next_values, discounts)
    cont = _continue_mask(dones)

    def step(next_acc, x):
        delta, d, c, k = x
        acc = delta + d * c * k * next_acc
        return acc, acc

    vs_minus_v = _reverse_scan(step, jnp.zeros_like(rewards[0]), (deltas, discounts, cs, cont))
    vs = values + vs_minus_v
    vs_next = jnp.concatenate([vs[1:], jnp.zeros_like(vs[:1])], axis=0)
    bootstrap = cont * vs_next + (1.0 - cont) * next_values
    pg_advantages = jnp.minimum(pg_rho_bar, rhos) * (rewards + discounts * bootstrap - values)
    return jax.lax.stop_gradient(vs), jax.lax.stop_gradient(pg_advantages)


def explained_variance(predictions: Array, targets: Array) -> Array:
    """1 − Var[targets − predictions] / Var[targets]; 1 is perfect, ≤ 0 no better than a constant."""
    chex.assert_equal_shape((predictions, targets))
    var_targets = jnp.var(targets)
    return jnp.where(var_targets > 0, 1.0 - jnp.var(targets - predictions) / jnp.maximum(var_targets, 1e-12),
                     jnp.nan)
