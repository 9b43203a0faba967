"""Return and advantage estimators: small pure functions, jittable and vmappable.

Every function takes a trajectory segment stored **time-major**, ``[T, *batch]`` (time first,
then any batch shape, including none), described by the same arrays:

- ``rewards[t]``      r_t, the reward for the transition out of s_t.
- ``values[t]``       V(s_t), the critic at the state where the action was taken.
- ``next_values[t]``  V(s'_t) of the *true* successor of step t: the next state inside an episode,
                      the pre-reset final observation where the episode ended (terminated or
                      truncated). Only its discount decides whether it is used.
- ``discounts[t]``    γ·(1 − terminated_t): zero after a true terminal state, γ otherwise (a
                      time-limit truncation keeps γ, so it bootstraps from V(final observation)).
                      A scalar γ is broadcast to the rewards' shape.
- ``dones[t]``        terminated_t or truncated_t (bool, int or float): the next row belongs to a
                      new episode, so no trace, n-step sum or return may cross it.

The last row of a segment is always treated as an episode boundary for the recursions (it
bootstraps from ``next_values[-1]``). Terminations and truncations are separate inputs on purpose:
treating a time limit as a terminal state biases every estimate near the limit (Pardo et al.
2018, "Time Limits in Reinforcement Learning").

Contracts (checked when the function is traced, so they cost nothing under ``jax.jit``):

- the float inputs must be floating-point and share the rewards' shape, except ``discounts`` and
  ``lambda_``, which may also be scalars; a mismatch is refused, never broadcast;
- the result has the floating dtype of the ``[T, *batch]`` inputs (float16 and bfloat16 stay
  float16 and bfloat16); scalar hyperparameters (γ, λ, ρ̄, c̄) are cast to it, so a float32
  hyperparameter does not widen a low-precision computation;
- Python scalars, lists and NumPy arrays are converted with ``jnp.asarray``;
- hyperparameters that are only numbers in the maths (γ, λ, ρ̄, c̄) may be traced (vmapped);
  ``n`` of :func:`n_step_returns` sets the program's structure and must be static.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from pgjax._checks import check_float, check_same_shape, check_scalar, check_shape, static_int

__all__ = ["discounted_returns", "lambda_returns", "n_step_returns", "td_errors", "gae", "vtrace",
           "explained_variance"]

Array = chex.Array
Numeric = chex.Numeric

# inputs that may be a scalar, broadcast to the rewards' shape
_MAY_BE_SCALAR = frozenset({"discounts", "lambda_"})


def _trajectory(fn: str, dones=None, **inputs) -> tuple[Array, ...]:
    """Checks and converts the trajectory inputs of ``fn``; returns them in the order given, then
    (when ``dones`` is given) the continuation mask, all ``[T, *batch]`` in one floating dtype.

    ``rewards`` fixes the shape. The dtype is the promotion of the inputs that are arrays of that
    shape; a scalar ``discounts`` or ``lambda_`` is cast to it and broadcast."""
    arrays = {name: jnp.asarray(x) for name, x in inputs.items()}
    shape = arrays["rewards"].shape
    if not shape:
        raise ValueError(f"{fn}: trajectory arrays must be time-major [T, *batch]; rewards is a scalar")
    for name, x in arrays.items():
        if name in _MAY_BE_SCALAR and x.ndim == 0:
            continue
        check_float(fn, name, x)
        what = "the rewards' shape [T, *batch]" + (" (or be a scalar)" if name in _MAY_BE_SCALAR else "")
        check_shape(fn, name, x, shape, what)
    dtype = jnp.result_type(*(x for x in arrays.values() if x.ndim))
    out = [jnp.broadcast_to(x.astype(dtype), shape) for x in arrays.values()]
    if dones is not None:
        dones = jnp.asarray(dones)
        check_shape(fn, "dones", dones, shape, "the rewards' shape [T, *batch]")
        out.append(_continue_mask(dones, dtype))
    return tuple(out)


def _hyperparameter(fn: str, name: str, x: Numeric, dtype) -> Array:
    """A scalar hyperparameter (possibly traced), cast to the trajectory's dtype."""
    check_scalar(fn, name, x)
    return jnp.asarray(x).astype(dtype)


def _continue_mask(dones: Array, dtype) -> Array:
    """1 where the trace may run on into row t+1; 0 at episode ends and at the last row."""
    not_done = 1 - dones.astype(dtype)
    return not_done.at[-1].set(0)


def _reverse_scan(step, init: Array, xs) -> Array:
    _, out = jax.lax.scan(step, init, xs, reverse=True)
    return out


def _deltas(rewards: Array, values: Array, next_values: Array, discounts: Array) -> Array:
    return rewards + discounts * next_values - values


def discounted_returns(rewards: Array, next_values: Array, discounts: Numeric, dones: Array) -> Array:
    """Discounted returns, bootstrapped where an episode or the segment stops before a terminal.

    The return G_t = r_t + γ G_{t+1} (Sutton & Barto 2018, §3.3, eq. 3.9), computed backwards as

        G_t = r_t + discounts_t · (G_{t+1} if the episode continues into row t+1 else V(s'_t)).

    Pass ``next_values = 0`` for Monte-Carlo returns of complete episodes (REINFORCE without a
    critic; Williams 1992); a truncated episode is then, unavoidably, not bootstrapped.

    Args:
      rewards: ``[T, *batch]`` float rewards r_t.
      next_values: ``[T, *batch]`` V(s'_t), used where the episode or segment stops at row t.
      discounts: ``[T, *batch]`` γ·(1 − terminated_t), or a scalar γ.
      dones: ``[T, *batch]`` terminated_t or truncated_t.

    Returns:
      ``[T, *batch]`` returns G_t, in the rewards' dtype.
    """
    rewards, next_values, discounts, cont = _trajectory(
        "discounted_returns", dones, rewards=rewards, next_values=next_values, discounts=discounts)

    def step(next_return, x):
        r, nv, d, c = x
        g = r + d * (c * next_return + (1 - c) * nv)
        return g, g

    return _reverse_scan(step, jnp.zeros_like(rewards[0]), (rewards, next_values, discounts, cont))


def lambda_returns(rewards: Array, next_values: Array, discounts: Numeric, dones: Array,
                   lambda_: Numeric) -> Array:
    """λ-returns: the λ-weighted average of all n-step returns, in its recursive form.

    The λ-return (Sutton & Barto 2018, §12.1, eq. 12.2), truncated at the segment's end (§12.3)
    and computed backwards as

        G^λ_t = r_t + discounts_t · [(1 − λ_t)·V(s'_t) + λ_t·G^λ_{t+1}]   inside an episode,
        G^λ_t = r_t + discounts_t · V(s'_t)                              at an episode end or the last row.

    λ = 1 gives :func:`discounted_returns`; λ = 0 the one-step TD target r_t + discounts_t·V(s'_t).
    λ_t, when it varies per step, weights the continuation out of row t (as discounts_t does).

    Args:
      rewards: ``[T, *batch]`` float rewards r_t.
      next_values: ``[T, *batch]`` V(s'_t).
      discounts: ``[T, *batch]`` γ·(1 − terminated_t), or a scalar γ.
      dones: ``[T, *batch]`` terminated_t or truncated_t.
      lambda_: λ in [0, 1]: a scalar (may be traced, e.g. a vmapped hyperparameter) or
        ``[T, *batch]`` per-step values.

    Returns:
      ``[T, *batch]`` λ-returns, in the rewards' dtype.
    """
    rewards, next_values, discounts, lambda_, cont = _trajectory(
        "lambda_returns", dones, rewards=rewards, next_values=next_values, discounts=discounts,
        lambda_=lambda_)

    def step(next_return, x):
        r, nv, d, lam, c = x
        inner = (1 - lam) * nv + lam * next_return
        g = r + d * (c * inner + (1 - c) * nv)
        return g, g

    return _reverse_scan(step, jnp.zeros_like(rewards[0]),
                         (rewards, next_values, discounts, lambda_, cont))


def n_step_returns(rewards: Array, next_values: Array, discounts: Numeric, dones: Array,
                   n: int) -> Array:
    """n-step returns: n rewards, then the critic's value (Sutton & Barto 2018, §7.1, eq. 7.1).

        G^{(n)}_t = Σ_{i<k} (Π_{j<i} discounts_{t+j})·r_{t+i} + (Π_{j<k} discounts_{t+j})·V(s'_{t+k−1}),

    with k = n, or fewer where the episode or the segment ends first (the sum then stops at that
    row and bootstraps from its ``next_values``; a terminal row's discount is 0). The n-step
    advantage is ``n_step_returns(...) - values``.

    Args:
      rewards: ``[T, *batch]`` float rewards r_t.
      next_values: ``[T, *batch]`` V(s'_t).
      discounts: ``[T, *batch]`` γ·(1 − terminated_t), or a scalar γ.
      dones: ``[T, *batch]`` terminated_t or truncated_t.
      n: number of steps, an integer >= 1 of any integer type. It is unrolled into the program,
        so under ``jax.jit`` it must be static (``static_argnums=4`` or ``static_argnames="n"``).

    Returns:
      ``[T, *batch]`` n-step returns, in the rewards' dtype.
    """
    n = static_int("n_step_returns", "n", n)
    rewards, next_values, discounts, cont = _trajectory(
        "n_step_returns", dones, rewards=rewards, next_values=next_values, discounts=discounts)
    # G^{(1)}_t = r_t + d_t V(s'_t);  G^{(k)}_t = r_t + d_t [c_t G^{(k-1)}_{t+1} + (1 - c_t) V(s'_t)]
    returns = rewards + discounts * next_values
    for _ in range(n - 1):
        shifted = jnp.concatenate([returns[1:], jnp.zeros_like(returns[:1])], axis=0)
        returns = rewards + discounts * (cont * shifted + (1 - cont) * next_values)
    return returns


def td_errors(rewards: Array, values: Array, next_values: Array, discounts: Numeric) -> Array:
    """One-step temporal-difference errors (Sutton & Barto 2018, §6.1, eq. 6.5).

        δ_t = r_t + discounts_t·V(s'_t) − V(s_t).

    Args:
      rewards: ``[T, *batch]`` float rewards r_t (any shape with at least one axis).
      values: ``[T, *batch]`` V(s_t).
      next_values: ``[T, *batch]`` V(s'_t).
      discounts: ``[T, *batch]`` γ·(1 − terminated_t), or a scalar γ.

    Returns:
      ``[T, *batch]`` TD errors δ_t, in the rewards' dtype.
    """
    return _deltas(*_trajectory("td_errors", rewards=rewards, values=values,
                                next_values=next_values, discounts=discounts))


def gae(rewards: Array, values: Array, next_values: Array, discounts: Numeric, dones: Array,
        lambda_: Numeric) -> Array:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16).

        A_t = Σ_{l≥0} (Π_{j<l} discounts_{t+j}·λ_{t+j}) δ_{t+l},   δ_t = r_t + discounts_t·V(s'_t) − V(s_t),

    i.e. Σ_l (γλ)^l δ_{t+l} inside an episode, computed backwards as
    A_t = δ_t + discounts_t·λ_t·A_{t+1}, with the sum cut where ``dones_t`` (termination or
    truncation) and at the last row. The matching value targets are ``advantages + values`` (the
    λ-returns when ``next_values[t] == values[t+1]`` inside episodes).

    Args:
      rewards: ``[T, *batch]`` float rewards r_t.
      values: ``[T, *batch]`` V(s_t).
      next_values: ``[T, *batch]`` V(s'_t).
      discounts: ``[T, *batch]`` γ·(1 − terminated_t), or a scalar γ.
      dones: ``[T, *batch]`` terminated_t or truncated_t.
      lambda_: λ in [0, 1]: a scalar (may be traced) or ``[T, *batch]`` per-step values.

    Returns:
      ``[T, *batch]`` advantages A_t, in the rewards' dtype.

    Example: three steps of one episode that is cut by a time limit at t = 1 (truncated, so it
    bootstraps from V(s'_1) = 10) and a new one at t = 2; with λ = 1 and γ = 0.5 the advantage at
    t = 0 is δ_0 + γ·δ_1 and nothing flows back from t = 2:

    >>> import jax.numpy as jnp
    >>> from pgjax.estimators import gae
    >>> gae(rewards=jnp.array([1.0, 1.0, 1.0]), values=jnp.zeros(3),
    ...     next_values=jnp.array([0.0, 10.0, 0.0]), discounts=0.5,
    ...     dones=jnp.array([False, True, False]), lambda_=1.0)
    Array([4., 6., 1.], dtype=float32)
    """
    rewards, values, next_values, discounts, lambda_, cont = _trajectory(
        "gae", dones, rewards=rewards, values=values, next_values=next_values, discounts=discounts,
        lambda_=lambda_)

    def step(next_adv, x):
        delta, d, lam, c = x
        adv = delta + d * lam * c * next_adv
        return adv, adv

    deltas = _deltas(rewards, values, next_values, discounts)
    return _reverse_scan(step, jnp.zeros_like(rewards[0]), (deltas, discounts, lambda_, cont))


def vtrace(rewards: Array, values: Array, next_values: Array, discounts: Numeric, dones: Array,
           log_rhos: Array, lambda_: Numeric = 1.0, rho_bar: Numeric = 1.0,
           c_bar: Numeric = 1.0, pg_rho_bar: Numeric = 1.0) -> tuple[Array, Array]:
    """V-trace value targets and policy-gradient advantages (Espeholt et al. 2018, §4.1 eq. 1, §4.2).

        v_s = V(x_s) + Σ_{t≥s} (Π_{i=s}^{t−1} discounts_i·c_i)·ρ_t·(r_t + discounts_t·V(x'_t) − V(x_t)),

    with ρ_t = min(ρ̄, π/μ) and c_i = λ_i·min(c̄, π/μ) (λ scales the traces as in Retrace(λ),
    Munos et al. 2016; λ = 1 is eq. 1), computed backwards as
    v_s − V(x_s) = ρ_s δ_s + discounts_s·c_s·(v_{s+1} − V(x_{s+1})) and cut at episode ends and
    the last row. The policy-gradient advantage (§4.2) is

        pg_advantages_s = min(pg_ρ̄, π/μ)·(r_s + discounts_s·v_{s+1} − V(x_s)),

    where v_{s+1} is ``vs[s+1]`` inside an episode and ``next_values[s]`` at an episode end or the
    last row. On-policy (``log_rhos = 0``, ρ̄ = c̄ = 1) ``vs`` is the λ-return.

    Args:
      rewards: ``[T, *batch]`` float rewards r_t.
      values: ``[T, *batch]`` V(x_t).
      next_values: ``[T, *batch]`` V(x'_t).
      discounts: ``[T, *batch]`` γ·(1 − terminated_t), or a scalar γ.
      dones: ``[T, *batch]`` terminated_t or truncated_t.
      log_rhos: ``[T, *batch]`` log π(a_t|x_t) − log μ(a_t|x_t), target minus behaviour policy.
      lambda_: λ in [0, 1]: a scalar (may be traced) or ``[T, *batch]`` per-step values.
      rho_bar: ρ̄, the clip of the importance weight in the TD term (scalar, may be traced).
      c_bar: c̄, the clip of the trace coefficients (scalar, may be traced).
      pg_rho_bar: the clip of the importance weight in the policy-gradient advantage (scalar).

    Returns:
      ``(vs, pg_advantages)``, both ``[T, *batch]`` in the rewards' dtype, with no gradient
      flowing through them (they are targets).
    """
    rewards, values, next_values, discounts, log_rhos, lambda_, cont = _trajectory(
        "vtrace", dones, rewards=rewards, values=values, next_values=next_values,
        discounts=discounts, log_rhos=log_rhos, lambda_=lambda_)
    rho_bar, c_bar, pg_rho_bar = (
        _hyperparameter("vtrace", name, x, rewards.dtype)
        for name, x in (("rho_bar", rho_bar), ("c_bar", c_bar), ("pg_rho_bar", pg_rho_bar)))
    rhos = jnp.exp(log_rhos)
    cs = lambda_ * jnp.minimum(c_bar, rhos)
    deltas = jnp.minimum(rho_bar, rhos) * _deltas(rewards, values, next_values, discounts)

    def step(next_acc, x):
        delta, d, c, k = x
        acc = delta + d * c * k * next_acc
        return acc, acc

    vs = values + _reverse_scan(step, jnp.zeros_like(rewards[0]), (deltas, discounts, cs, cont))
    vs_next = jnp.concatenate([vs[1:], jnp.zeros_like(vs[:1])], axis=0)
    bootstrap = cont * vs_next + (1 - cont) * next_values
    pg_advantages = jnp.minimum(pg_rho_bar, rhos) * (rewards + discounts * bootstrap - values)
    return jax.lax.stop_gradient(vs), jax.lax.stop_gradient(pg_advantages)


def explained_variance(predictions: Array, targets: Array) -> Array:
    """Explained variance of a critic: how much of the targets' variance its predictions capture.

        EV = 1 − Var[targets − predictions] / Var[targets],

    over all elements. 1 is perfect, 0 no better than predicting the mean, negative worse; NaN
    when the targets are constant (the ratio is undefined).

    Args:
      predictions: float array, any shape (e.g. ``[T, *batch]`` values V(s_t)).
      targets: float array of the same shape (e.g. returns or λ-returns).

    Returns:
      A scalar in the inputs' dtype.
    """
    fn = "explained_variance"
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    check_same_shape(fn, predictions=predictions, targets=targets)
    check_float(fn, "predictions", predictions)
    check_float(fn, "targets", targets)
    var_targets = jnp.var(targets)
    ratio = jnp.var(targets - predictions) / jnp.where(var_targets > 0, var_targets, 1)
    return jnp.where(var_targets > 0, 1 - ratio, jnp.nan)
