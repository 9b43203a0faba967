"""Policy and value losses and the metrics around them: pure, jittable scalars.

Conventions:

- Each *loss* is a quantity to **minimise** with any optax optimiser: a policy loss is the
  negative of the objective, so ``jax.grad`` of it is −∇J. Two functions are objectives or bonuses
  and say so: :func:`importance_sampled_surrogate` (maximised, as in TRPO) and :func:`entropy`
  (returns +H, to be *subtracted* with a coefficient, β·H, as an entropy bonus).
- Policy terms take **log-probabilities** (log π_θ(a_t|s_t) from ``dist.log_prob(actions)``), not
  probability ratios; ratios are formed inside as exp(log π_θ − log π_old).
- Advantages, targets and old log-probabilities are constants: gradients are stopped on them.
- Inputs are per-step arrays of one shape, any rank (typically time-major ``[T, *batch]`` or a
  flattened minibatch ``[B]``); shapes must match exactly, they are never broadcast.
- Every loss and metric takes an optional keyword ``mask`` of the same shape (bool, 0/1, or
  float weights) and averages over the steps where ``mask > 0``:

      mean_mask(x) = Σ_{t: mask_t > 0} mask_t·x_t / max(Σ_{t: mask_t > 0} mask_t, 1),

  so padded or invalid steps are excluded and an empty mask gives 0. Masked-out steps may hold
  anything, NaN and ±inf included: they are replaced before any arithmetic (a ``where``, not a
  multiplication by 0), so neither the value nor the gradient with respect to these inputs sees
  them (the gradient there is exactly 0). Without a mask the mean is over all steps.
- Precision: the result has the dtype of the (promoted) float inputs. float16 and bfloat16 inputs
  are computed in float32 (squares, ratios, sums) and the scalar is rounded once to their dtype
  at the end, so nothing overflows or loses precision on the way: ½·mean (V − y)² with
  |V − y| = 256 on every step is 32768 in float16, where computing in float16 would square
  256 to inf. A result beyond the dtype's range is still ±inf in that dtype: in float16 (largest
  finite value 65504) a loss above 65504, e.g. ½·mean (V − y)² with |V − y| ≳ 362 on every step,
  is inf. Pass float32 inputs for a float32 loss.
- Bad arguments raise the :mod:`pgjax.errors` family: :class:`~pgjax.errors.ShapeError` (a
  ``ValueError``) for a shape or rank, :class:`~pgjax.errors.DtypeError` (a ``TypeError``) for a
  dtype, each naming the function and the argument.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from pgjax._checks import check_float, check_same_shape, check_scalar, check_shape, compute_dtype
from pgjax.distributions import Distribution
from pgjax.errors import ArgumentTypeError, ArgumentValueError

__all__ = ["policy_gradient_loss", "ppo_clip_loss", "ppo_kl_penalty_loss",
           "importance_sampled_surrogate", "value_loss",
           "entropy", "mean_kl", "approx_kl", "clip_fraction", "masked_mean"]

Array = chex.Array
Numeric = chex.Numeric


def _per_step(fn: str, mask: Array | None, **arrays) -> tuple:
    """Checks ``fn``'s per-step inputs (float, one shape, the mask's too).

    Returns ``(dtype, *arrays)``: the result dtype (the inputs' promoted dtype), then the inputs
    in the computing dtype (float32 for half precision) with the masked-out steps replaced by 0,
    so that no garbage there reaches the arithmetic."""
    arrays = {name: jnp.asarray(x) for name, x in arrays.items()}
    for name, x in arrays.items():
        check_float(fn, name, x)
    if mask is not None:
        mask = jnp.asarray(mask)
        check_same_shape(fn, **arrays, mask=mask)
    else:
        check_same_shape(fn, **arrays)
    dtype = jnp.result_type(*arrays.values())
    arrays = [x.astype(compute_dtype(dtype)) for x in arrays.values()]
    if mask is None:
        return (dtype, *arrays)
    keep = mask > 0
    return (dtype, *(jnp.where(keep, x, jnp.zeros((), x.dtype)) for x in arrays))


def _mean(x: Array, mask: Array | None) -> Array:
    """mean_mask(x) of the module docstring; the plain mean without a mask."""
    if mask is None:
        return jnp.mean(x)
    mask = jnp.asarray(mask)
    weights = jnp.where(mask > 0, mask, 0).astype(x.dtype)
    return jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1)


def masked_mean(x: Array, *, mask: Array | None = None) -> Array:
    """The mean every loss here reduces with, over the steps where ``mask > 0``.

        mean_mask(x) = Σ_t mask_t·x_t / max(Σ_t mask_t, 1)

    (0 for an empty mask; masked-out entries of ``x`` may be NaN or ±inf, they are never used).

    Args:
      x: float array, any shape.
      mask: optional bool or float weights of ``x``'s shape; None averages over everything.

    Returns:
      A scalar in ``x``'s dtype.

    Example: padded steps, even non-finite ones, do not count:

    >>> import jax.numpy as jnp
    >>> from pgjax.losses import masked_mean
    >>> masked_mean(jnp.array([1.0, 3.0, jnp.nan]), mask=jnp.array([True, True, False]))
    Array(2., dtype=float32)
    """
    dtype, x = _per_step("masked_mean", mask, x=x)
    return _mean(x, mask).astype(dtype)


def policy_gradient_loss(log_probs: Array, advantages: Array, *, mask: Array | None = None) -> Array:
    """Score-function (REINFORCE) policy-gradient loss (Williams 1992; Sutton & Barto 2018, §13.3).

        L^PG(θ) = −mean_t[log π_θ(a_t|s_t) · Ψ_t],   so   ∇L^PG = −mean_t[Ψ_t ∇log π_θ(a_t|s_t)],

    where Ψ_t is whatever multiplies the score: the return G_t (REINFORCE), G_t − b(s_t) (with a
    baseline, §13.4), Q(s_t, a_t), an advantage A_t or a TD error δ_t (actor-critic, §13.5).

    Args:
      log_probs: ``[T, *batch]`` (or any shape) log π_θ(a_t|s_t), differentiated.
      advantages: Ψ_t, same shape; a constant (gradient stopped).
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar loss.
    """
    dtype, log_probs, advantages = _per_step("policy_gradient_loss", mask, log_probs=log_probs,
                                             advantages=advantages)
    return (-_mean(log_probs * jax.lax.stop_gradient(advantages), mask)).astype(dtype)


def _ratio(log_probs: Array, old_log_probs: Array) -> Array:
    """r_t = π_θ/π_old = exp(log π_θ − log π_old), differentiable in θ only."""
    return jnp.exp(log_probs - jax.lax.stop_gradient(old_log_probs))


def _surrogate_inputs(fn: str, mask, scalar_name: str, scalar, log_probs, old_log_probs, advantages):
    """The checks every PPO surrogate makes (its scalar, the per-step arrays and the mask) and
    (dtype, log π_θ, log π_old, A) with A a constant."""
    check_scalar(fn, scalar_name, scalar)
    dtype, log_probs, old_log_probs, advantages = _per_step(
        fn, mask, log_probs=log_probs, old_log_probs=old_log_probs, advantages=advantages)
    return dtype, log_probs, old_log_probs, jax.lax.stop_gradient(advantages)


def _k3(log_ratio):
    """(r − 1) − log r per step, r = exp(log_ratio): the non-negative per-sample estimate of
    KL[π_old ‖ π_θ] from actions π_old took (Schulman 2020, estimator k3)."""
    return jnp.expm1(log_ratio) - log_ratio


def ppo_clip_loss(log_probs: Array, old_log_probs: Array, advantages: Array, clip_eps: Numeric, *,
                  mask: Array | None = None) -> Array:
    """PPO's clipped surrogate, negated (Schulman et al. 2017, eq. 7).

        L^CLIP(θ) = −mean_t[min(r_t A_t, clip(r_t, 1 − ε, 1 + ε) A_t)],   r_t = exp(log π_θ − log π_old).

    Args:
      log_probs: ``[T, *batch]`` (or any shape) log π_θ(a_t|s_t), differentiated.
      old_log_probs: log π_old(a_t|s_t) of the policy that collected the data, same shape.
      advantages: A_t, same shape; a constant.
      clip_eps: ε, a scalar (may be traced, e.g. vmapped).
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar loss.

    Example: at the old policy (ratio 1) the loss is −mean(A), and a ratio beyond 1 + ε earns no
    more than the clipped one when A > 0:

    >>> import jax.numpy as jnp
    >>> from pgjax.losses import ppo_clip_loss
    >>> old = jnp.log(jnp.array([0.5, 0.5]))
    >>> ppo_clip_loss(old, old, jnp.array([1.0, 3.0]), 0.2)
    Array(-2., dtype=float32)
    >>> ppo_clip_loss(old + jnp.log(2.0), old, jnp.array([1.0, 3.0]), 0.2)
    Array(-2.4, dtype=float32)
    """
    dtype, log_probs, old_log_probs, advantages = _surrogate_inputs(
        "ppo_clip_loss", mask, "clip_eps", clip_eps, log_probs, old_log_probs, advantages)
    ratio = _ratio(log_probs, old_log_probs)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return (-_mean(jnp.minimum(ratio * advantages, clipped * advantages), mask)).astype(dtype)


def ppo_kl_penalty_loss(log_probs: Array, old_log_probs: Array, advantages: Array, beta: Numeric, *,
                        mask: Array | None = None) -> Array:
    """PPO's KL-penalised surrogate, negated (Schulman et al. 2017, §4, eq. 8).

        L^KLPEN(θ) = −mean_t[r_t A_t − β·k_t],   r_t = exp(log π_θ − log π_old),

    where k_t = (r_t − 1) − log r_t is the per-sample estimate of KL[π_old(·|s_t) ‖ π_θ(·|s_t)]
    from the action π_old took (:func:`approx_kl`: unbiased, non-negative), since only
    log π_old(a_t|s_t) is kept from the rollout. Its gradient is (r_t − 1)∇log π_θ(a_t|s_t).

    Args:
      log_probs: ``[T, *batch]`` (or any shape) log π_θ(a_t|s_t), differentiated.
      old_log_probs: log π_old(a_t|s_t) of the policy that collected the data, same shape.
      advantages: A_t, same shape; a constant.
      beta: β ≥ 0, the penalty coefficient, a scalar (may be traced: adapted between updates).
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar loss.

    Example: at the old policy the ratio is 1 and the penalty 0, so the loss is −mean(A):

    >>> import jax.numpy as jnp
    >>> from pgjax.losses import ppo_kl_penalty_loss
    >>> old = jnp.log(jnp.array([0.5, 0.5]))
    >>> ppo_kl_penalty_loss(old, old, jnp.array([1.0, 3.0]), 1.0)
    Array(-2., dtype=float32)
    """
    dtype, log_probs, old_log_probs, advantages = _surrogate_inputs(
        "ppo_kl_penalty_loss", mask, "beta", beta, log_probs, old_log_probs, advantages)
    log_ratio = log_probs - jax.lax.stop_gradient(old_log_probs)
    return (-_mean(jnp.exp(log_ratio) * advantages - beta * _k3(log_ratio), mask)).astype(dtype)


def importance_sampled_surrogate(log_probs: Array, old_log_probs: Array, advantages: Array, *,
                                 mask: Array | None = None) -> Array:
    """The importance-sampled surrogate objective of TRPO (Schulman et al. 2015, §5, eq. 14).

        L^IS_θold(θ) = mean_t[π_θ(a_t|s_t) / π_θold(a_t|s_t) · A_t].

    Returned with a **positive** sign: it is an objective, to be *maximised* (its gradient at
    θ = θ_old is the policy gradient).

    Args:
      log_probs: ``[T, *batch]`` (or any shape) log π_θ(a_t|s_t), differentiated.
      old_log_probs: log π_θold(a_t|s_t), same shape; a constant.
      advantages: A_t, same shape; a constant.
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar surrogate.
    """
    dtype, log_probs, old_log_probs, advantages = _per_step(
        "importance_sampled_surrogate", mask, log_probs=log_probs, old_log_probs=old_log_probs,
        advantages=advantages)
    surrogate = _mean(_ratio(log_probs, old_log_probs) * jax.lax.stop_gradient(advantages), mask)
    return surrogate.astype(dtype)


def value_loss(values: Array, targets: Array, old_values: Array | None = None,
               clip_eps: Numeric | None = None, *, mask: Array | None = None) -> Array:
    """Squared-error critic regression, optionally with PPO-style value clipping.

        L^V(φ) = ½·mean_t[(V_φ(s_t) − y_t)²]

    (the semi-gradient value objective, Sutton & Barto 2018, §9.2–9.3, with the targets y_t held
    constant). With ``old_values`` and ``clip_eps`` it is the clipped form of PPO implementations
    (Engstrom et al. 2020, §3 "value function clipping"; Andrychowicz et al. 2021):

        ½·mean_t[max((V − y)², (V_old + clip(V − V_old, −ε, ε) − y)²)].

    Args:
      values: ``[T, *batch]`` (or any shape) predictions V_φ(s_t), differentiated.
      targets: y_t (returns, λ-returns, V-trace targets), same shape; constants.
      old_values: V_old(s_t) of the critic that collected the data, same shape; give it together
        with ``clip_eps`` or not at all.
      clip_eps: ε, a scalar (may be traced); only together with ``old_values``.
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar loss.

    Raises:
      pgjax.errors.ArgumentValueError: if only one of ``old_values`` and ``clip_eps`` is given
        (a clipped loss needs both; with one, the clipping would be skipped unseen).
    """
    fn = "value_loss"
    if (old_values is None) != (clip_eps is None):
        given = "old_values" if clip_eps is None else "clip_eps"
        raise ArgumentValueError(fn, given, f"{fn}: pass both old_values and clip_eps for the "
                                            f"clipped loss, or neither for the plain one; got only "
                                            f"{given}")
    if old_values is None:
        dtype, values, targets = _per_step(fn, mask, values=values, targets=targets)
        return (0.5 * _mean((values - jax.lax.stop_gradient(targets)) ** 2, mask)).astype(dtype)
    check_scalar(fn, "clip_eps", clip_eps)
    dtype, values, old_values, targets = _per_step(fn, mask, values=values, old_values=old_values,
                                                   targets=targets)
    targets, old_values = jax.lax.stop_gradient(targets), jax.lax.stop_gradient(old_values)
    clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    squares = jnp.maximum((values - targets) ** 2, (clipped_values - targets) ** 2)
    return (0.5 * _mean(squares, mask)).astype(dtype)


def _distribution_dtype(dist: Distribution):
    """The promoted dtype of a distribution's parameters (the dtype of its entropy, KL, ...)."""
    return jnp.result_type(*jax.tree_util.tree_leaves(dist))


def _in_compute_dtype(dist: Distribution) -> Distribution:
    """``dist`` with half-precision parameters widened to float32 (the math layer's rule);
    parameters that are not floating-point are left for the distribution's own checks."""
    work = compute_dtype(_distribution_dtype(dist))

    def widen(param):
        param = jnp.asarray(param)
        return param.astype(work) if jnp.issubdtype(param.dtype, jnp.floating) else param

    return jax.tree_util.tree_map(widen, dist)


def _per_step_distribution(fn: str, dist: Distribution, mask: Array | None) -> Distribution:
    """Checks the mask against ``dist``'s batch shape and replaces the parameters of masked-out
    steps by 0 (parameters without the batch axes, e.g. a shared log σ, are left as they are);
    half-precision parameters are widened to float32."""
    dist = _in_compute_dtype(dist)
    if mask is None:
        return dist
    mask = jnp.asarray(mask)
    check_shape(fn, "mask", mask, dist.batch_shape, "the distribution's batch shape")
    keep = mask > 0

    def select(param):
        per_step = param.ndim > keep.ndim and param.shape[:keep.ndim] == keep.shape
        if not per_step:
            return param
        k = keep.reshape(keep.shape + (1,) * (param.ndim - keep.ndim))
        return jnp.where(k, param, jnp.zeros((), param.dtype))

    return jax.tree_util.tree_map(select, dist)


def entropy(dist: Distribution, *, mask: Array | None = None) -> Array:
    """Mean policy entropy mean_t[H(π(·|s_t))], returned as **+H** (an entropy *bonus*).

    Subtract it with a coefficient, L = … − β·H (Williams & Peng 1991; Mnih et al. 2016, §4),
    to keep the policy from collapsing early.

    Args:
      dist: a :class:`~pgjax.distributions.Categorical` or
        :class:`~pgjax.distributions.DiagGaussian` with batch shape ``[T, *batch]`` (or any).
      mask: optional bool/float of the batch shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar mean entropy (nats).
    """
    dtype = _distribution_dtype(dist)
    dist = _per_step_distribution("entropy", dist, mask)
    return _mean(dist.entropy(), mask).astype(dtype)


def mean_kl(old_dist: Distribution, new_dist: Distribution, *, mask: Array | None = None) -> Array:
    """Mean KL divergence mean_t[KL[π_old(·|s_t) ‖ π_new(·|s_t)]], the trust-region constraint
    of TRPO (Schulman et al. 2015, §4, eq. 12), in closed form.

    Args:
      old_dist: π_old, a distribution with batch shape ``[T, *batch]`` (or any).
      new_dist: π_new, of the same type and shapes.
      mask: optional bool/float of the batch shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar mean KL (nats).
    """
    fn = "mean_kl"
    if type(old_dist) is not type(new_dist):
        raise ArgumentTypeError(fn, "new_dist",
                                f"{fn}: old_dist and new_dist must be the same kind of "
                                f"distribution, got {type(old_dist).__name__} and "
                                f"{type(new_dist).__name__}")
    dtype = jnp.result_type(_distribution_dtype(old_dist), _distribution_dtype(new_dist))
    old_dist = _per_step_distribution(fn, old_dist, mask)
    new_dist = _per_step_distribution(fn, new_dist, mask)
    return _mean(old_dist.kl(new_dist), mask).astype(dtype)


def approx_kl(log_probs: Array, old_log_probs: Array, *, mask: Array | None = None) -> Array:
    """Sample estimate of KL[π_old ‖ π_θ] from actions drawn by π_old (Schulman 2020,
    "Approximating KL divergence", estimator k3).

        KL ≈ mean_t[(r_t − 1) − log r_t],   r_t = exp(log π_θ − log π_old).

    Unbiased and non-negative per sample. A diagnostic: no gradient is intended through it.

    Args:
      log_probs: ``[T, *batch]`` (or any shape) log π_θ(a_t|s_t).
      old_log_probs: log π_old(a_t|s_t) of the behaviour policy, same shape.
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar estimate (nats).
    """
    dtype, log_probs, old_log_probs = _per_step("approx_kl", mask, log_probs=log_probs,
                                                old_log_probs=old_log_probs)
    return _mean(_k3(log_probs - old_log_probs), mask).astype(dtype)


def clip_fraction(log_probs: Array, old_log_probs: Array, clip_eps: Numeric, *,
                  mask: Array | None = None) -> Array:
    """Fraction of steps whose probability ratio lies outside PPO's interval [1 − ε, 1 + ε].

        mean_t[1{|r_t − 1| > ε}],   r_t = exp(log π_θ − log π_old)   (Schulman et al. 2017, §3).

    Args:
      log_probs: ``[T, *batch]`` (or any shape) log π_θ(a_t|s_t).
      old_log_probs: log π_old(a_t|s_t), same shape.
      clip_eps: ε, a scalar (may be traced).
      mask: optional bool/float of the same shape: average over the steps where ``mask > 0``.

    Returns:
      The scalar fraction in [0, 1], in the log-probabilities' dtype.
    """
    fn = "clip_fraction"
    check_scalar(fn, "clip_eps", clip_eps)
    dtype, log_probs, old_log_probs = _per_step(fn, mask, log_probs=log_probs,
                                                old_log_probs=old_log_probs)
    ratio = jnp.exp(log_probs - old_log_probs)
    return _mean((jnp.abs(ratio - 1.0) > clip_eps).astype(log_probs.dtype), mask).astype(dtype)
