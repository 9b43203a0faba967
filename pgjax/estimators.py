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
  ``lambda_``, which may also be scalars; a mismatch is refused, never broadcast. A refused
  argument raises :class:`~pgjax.errors.ShapeError` (a ``ValueError``) or
  :class:`~pgjax.errors.DtypeError` (a ``TypeError``), both of the :mod:`pgjax.errors` family,
  naming the function and the argument;
- ``dones`` may be bool, integer or float; any nonzero entry is an episode end;
- the result has the floating dtype of the ``[T, *batch]`` inputs. float16 and bfloat16 inputs
  are computed in float32 and the result is rounded once to their dtype, so its error is that of
  the final rounding, not of a T-step recursion in half precision; scalar hyperparameters
  (γ, λ, ρ̄, c̄) are used at the computing precision and never widen the result's dtype;
- Python scalars, lists and NumPy arrays are converted with ``jnp.asarray``;
- hyperparameters that are only numbers in the maths (γ, λ, ρ̄, c̄) may be traced (vmapped);
  ``n`` of :func:`n_step_returns` sets the program's structure and must be static.

Cuts select, they do not multiply. Nothing beyond an episode end (any input of a later row of
the same column: a new episode's rewards, values, importance weights), and no ``next_values[t]``
whose discount is 0 (a termination), reaches a result at or before that end: such terms are
*selected away* with ``jnp.where`` before any arithmetic, never multiplied by 0 (0·NaN and 0·∞
are NaN). So NaN or ±inf there changes neither the results of the rows up to the cut nor their
gradients with respect to those rows' inputs (rewards, values, next values, per-step discounts
and λ). The rows of the next episode depend on its own inputs, as they should; one consequence:
a *scalar* γ or λ is also an input of those rows, so where their results are NaN its gradient is
NaN too (0·NaN in the chain rule), even for a loss on the earlier rows alone. NaN in
``next_values`` where the discount is 0 leaves every gradient finite, a scalar γ or λ included.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from pgjax._checks import (check_float, check_same_shape, check_scalar, check_shape,
                           compute_dtype, static_int)
from pgjax.errors import DtypeError, ShapeError

__all__ = ["discounted_returns", "lambda_returns", "n_step_returns", "td_errors", "gae", "vtrace",
           "explained_variance"]

Array = chex.Array
Numeric = chex.Numeric

# inputs that may be a scalar, broadcast to the rewards' shape
_MAY_BE_SCALAR = frozenset({"discounts", "lambda_"})


def _trajectory(fn: str, dones=None, **inputs) -> tuple:
    """Checks and converts the trajectory inputs of ``fn``.

    Returns ``(dtype, *inputs, dones)``: the result dtype (the promotion of the inputs that are
    arrays of the rewards' shape), the inputs in the order given, in the computing dtype
    (:func:`pgjax._checks.compute_dtype`: float32 for half precision), then, when ``dones`` is
    given, ``dones`` as an array (checked, in its own dtype). A scalar ``discounts`` or
    ``lambda_`` stays a scalar (it broadcasts in the arithmetic, and :func:`_backward` uses it on
    every row without materialising a ``[T, *batch]`` copy)."""
    arrays = {name: jnp.asarray(x) for name, x in inputs.items()}
    shape = arrays["rewards"].shape
    if not shape:
        raise ShapeError(fn, "rewards", f"{fn}: trajectory arrays must be time-major [T, *batch]; "
                                        f"rewards is a scalar")
    for name, x in arrays.items():
        if name in _MAY_BE_SCALAR and x.ndim == 0:
            continue
        check_float(fn, name, x)
        what = "the rewards' shape [T, *batch]" + (" (or be a scalar)" if name in _MAY_BE_SCALAR else "")
        check_shape(fn, name, x, shape, what)
    dtype = jnp.result_type(*(x for x in arrays.values() if x.ndim))
    work = compute_dtype(dtype)
    out = [x.astype(work) for x in arrays.values()]
    if dones is not None:
        dones = jnp.asarray(dones)
        check_shape(fn, "dones", dones, shape, "the rewards' shape [T, *batch]")
        if not (dones.dtype == bool or jnp.issubdtype(dones.dtype, jnp.integer)
                or jnp.issubdtype(dones.dtype, jnp.floating)):
            raise DtypeError(fn, "dones", f"{fn}: dones must be bool, integer or float, got dtype "
                                          f"{dones.dtype}")
        out.append(dones)
    return (dtype, *out)


def _hyperparameter(fn: str, name: str, x: Numeric, dtype) -> Array:
    """A scalar hyperparameter (possibly traced), cast to the computing dtype."""
    check_scalar(fn, name, x)
    return jnp.asarray(x).astype(dtype)


def _continues(dones: Array) -> Array:
    """bool ``[T, *batch]``: True where the trace may run on into row t+1; False at episode ends
    (any nonzero ``dones``) and at the last row. (:func:`_backward` needs no last-row flag: it
    tests ``dones == 0`` row by row and starts from the value after the segment instead.)"""
    # an iota comparison rather than ``.at[-1].set``, so that it fuses into its consumers
    # instead of being a scatter of its own
    row = jax.lax.broadcasted_iota(jnp.int32, dones.shape, 0)
    return (dones == 0) & (row < dones.shape[0] - 1)


def _kept(keep: Array, x: Array) -> Array:
    """``x`` where ``keep``, 0 elsewhere, by selection: what is not kept reaches neither the value
    nor the gradient, whatever it holds (NaN, ±inf). Applied to an input *before* the arithmetic
    that uses it, it is the inner half of the "double where" that keeps NaN out of gradients too
    (the outer half is the product with a zero coefficient)."""
    return jnp.where(keep, x, jnp.zeros((), x.dtype))


def _discounted(discounts: Array, x: Array) -> Array:
    """discounts·x, with ``x`` selected away where the discount is 0: after a termination the
    bootstrap term is exactly 0 even where ``x`` is NaN or ±inf (0·NaN is NaN)."""
    return discounts * _kept(discounts != 0, x)


def _backward(terms: Callable[..., tuple[Array, Array]], *inputs: Array,
              after: Array | None = None) -> Array:
    """y_t = base_t + coef_t·y_{t+1} for t = T−1 … 0, from y_T = ``after`` (0 by default): the
    linear recursion every trace-based estimator reduces to (GAE: base = δ, coef = γλ; V-trace:
    base = ρ̄-clipped ρδ, coef = γc; returns: base = r (+ γV(s') where they stop), coef = γ), cut
    where coef_t = 0.

    ``(base_t, coef_t) = terms(*row_t)``, where row t holds ``inputs[i][t]`` of each
    ``[T, *batch]`` input and the input itself for a scalar one (γ or λ, used on every row). The
    first input fixes the carry's shape and dtype. The last row needs no cut of its own: it
    continues into ``after``, the value beyond the segment (0 for an advantage, V(s'_{T−1}) for a
    return).

    y_{t+1} is selected away where coef_t = 0, so a cut (``terms`` zeroes coef at episode ends)
    lets no NaN or ±inf of a later episode into y_t or its gradient.

    Speed: one reverse ``lax.scan`` over time with the whole batch ``[*batch]`` as its carry, and
    ``terms`` evaluated *inside* it, so each step is one fused kernel that reads row t of the
    inputs and writes row t of y: no ``[T, *batch]`` intermediate (δ, γλ) is written to memory
    and read back, and (for GAE) nothing is computed outside the loop. On XLA:CPU this is faster
    than computing base and coef first, than rlax's vmapped GAE, and than unrolling the scan
    (``python -m benchmarks.dev.estimator_speed`` measures them)."""
    per_row = [jnp.ndim(x) > 0 for x in inputs]
    rows = tuple(x for x, is_row in zip(inputs, per_row) if is_row)

    def step(next_y, row):
        row = iter(row)
        base, coef = terms(*(next(row) if is_row else x for x, is_row in zip(inputs, per_row)))
        y = base + coef * _kept(coef != 0, next_y)
        return y, y

    first = inputs[0]
    init = jnp.zeros(first.shape[1:], first.dtype) if after is None else after
    _, ys = jax.lax.scan(step, init, rows, reverse=True)
    return ys


def _deltas(rewards: Array, values: Array, next_values: Array, discounts: Array) -> Array:
    """δ_t = r_t + discounts_t·V(s'_t) − V(s_t), with no V(s'_t) where discounts_t = 0."""
    return rewards + _discounted(discounts, next_values) - values


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
    dtype, rewards, next_values, discounts, dones = _trajectory(
        "discounted_returns", dones, rewards=rewards, next_values=next_values, discounts=discounts)

    def terms(r, nv, d, done):
        # G_t = [r_t + discounts_t·V(s'_t) where the episode ends at row t] + [discounts_t where
        # it continues]·G_{t+1}; V(s'_t) of a row that continues is never used
        continues = done == 0
        return r + _discounted(d, _kept(~continues, nv)), _kept(continues, d)

    # the last row continues (unless its episode ends) into G_T = V(s'_{T−1}), its bootstrap
    return _backward(terms, rewards, next_values, discounts, dones,
                     after=next_values[-1]).astype(dtype)


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
    dtype, rewards, next_values, discounts, lambda_, dones = _trajectory(
        "lambda_returns", dones, rewards=rewards, next_values=next_values, discounts=discounts,
        lambda_=lambda_)
    shape = rewards.shape
    discounts, lambda_ = jnp.broadcast_to(discounts, shape), jnp.broadcast_to(lambda_, shape)
    next_values = _kept(discounts != 0, next_values)
    cont = _continues(dones)
    # G^λ_{t+1} is used by row t only where the trace continues and discounts_t ≠ 0; row t+1
    # selects it away itself when it hands it on (``used_by_previous_row``), so the product
    # below never sees a NaN or ±inf of a later episode
    uses_next = cont & (discounts != 0)
    used_by_previous_row = jnp.concatenate([jnp.zeros_like(uses_next[:1]), uses_next[:-1]], axis=0)

    def step(next_return, x):
        r, nv, d, lam, c, handed_on = x
        inner = (1 - lam) * nv + lam * next_return
        g = r + d * jnp.where(c, inner, nv)
        return _kept(handed_on, g), g

    _, returns = jax.lax.scan(step, jnp.zeros_like(rewards[0]),
                              (rewards, next_values, discounts, lambda_, cont, used_by_previous_row),
                              reverse=True)
    return returns.astype(dtype)


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
    dtype, rewards, next_values, discounts, dones = _trajectory(
        "n_step_returns", dones, rewards=rewards, next_values=next_values, discounts=discounts)
    cont = _continues(dones)
    # G^{(1)}_t = r_t + d_t V(s'_t);  G^{(k)}_t = r_t + d_t·(G^{(k-1)}_{t+1} if c_t else V(s'_t))
    returns = rewards + _discounted(discounts, next_values)
    for _ in range(n - 1):
        shifted = jnp.concatenate([returns[1:], jnp.zeros_like(returns[:1])], axis=0)
        returns = rewards + _discounted(discounts, jnp.where(cont, shifted, next_values))
    return returns.astype(dtype)


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
    dtype, *inputs = _trajectory("td_errors", rewards=rewards, values=values,
                                 next_values=next_values, discounts=discounts)
    return _deltas(*inputs).astype(dtype)


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
    dtype, rewards, values, next_values, discounts, lambda_, dones = _trajectory(
        "gae", dones, rewards=rewards, values=values, next_values=next_values, discounts=discounts,
        lambda_=lambda_)

    def terms(r, v, nv, d, lam, done):
        return _deltas(r, v, nv, d), _kept(done == 0, d * lam)

    return _backward(terms, rewards, values, next_values, discounts, lambda_, dones).astype(dtype)


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
    dtype, rewards, values, next_values, discounts, log_rhos, lambda_, dones = _trajectory(
        "vtrace", dones, rewards=rewards, values=values, next_values=next_values,
        discounts=discounts, log_rhos=log_rhos, lambda_=lambda_)
    rho_bar, c_bar, pg_rho_bar = (
        _hyperparameter("vtrace", name, x, rewards.dtype)
        for name, x in (("rho_bar", rho_bar), ("c_bar", c_bar), ("pg_rho_bar", pg_rho_bar)))
    rhos = jnp.exp(log_rhos)
    # ρ_t·δ_t is formed before the scan (and the traces c_t inside it) so that the multiply-add
    # of each step rounds exactly as it always has: IMPALA's float32 results stay bit-identical
    weighted_deltas = jnp.minimum(rho_bar, rhos) * _deltas(rewards, values, next_values, discounts)

    def terms(rho_delta, d, log_rho, lam, done):
        return rho_delta, _kept(done == 0, d * (lam * jnp.minimum(c_bar, jnp.exp(log_rho))))

    vs = values + _backward(terms, weighted_deltas, discounts, log_rhos, lambda_, dones)
    cont = _continues(dones)
    vs_next = jnp.concatenate([vs[1:], jnp.zeros_like(vs[:1])], axis=0)
    bootstrap = jnp.where(cont, vs_next, next_values)
    pg_advantages = jnp.minimum(pg_rho_bar, rhos) * (rewards + _discounted(discounts, bootstrap)
                                                     - values)
    return (jax.lax.stop_gradient(vs.astype(dtype)),
            jax.lax.stop_gradient(pg_advantages.astype(dtype)))


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
    dtype = jnp.result_type(predictions, targets)
    predictions, targets = (x.astype(compute_dtype(dtype)) for x in (predictions, targets))
    var_targets = jnp.var(targets)
    ratio = jnp.var(targets - predictions) / jnp.where(var_targets > 0, var_targets, 1)
    return jnp.where(var_targets > 0, 1 - ratio, jnp.nan).astype(dtype)
