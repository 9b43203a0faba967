"""Policy and value losses: pure, jittable scalars to *minimise* with any optax optimiser.

The sign convention: each policy loss is the negative of the objective on the seed's slides, so
``jax.grad`` of it is −∇J. Advantages and targets are treated as constants (``stop_gradient``).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from pgjax.distributions import Distribution

Array = chex.Array


def policy_gradient_loss(log_probs: Array, advantages: Array) -> Array:
    """Score-function policy-gradient loss (seed slides "Policy Gradient Theorem (III)/(IV)",
    Williams 1992): L^{PG}(θ) = −E_t[log π_θ(a_t|s_t) · Ψ_t], where Ψ_t is whatever multiplies the
    score: G_t (REINFORCE), G_t − b(s_t), Q, A, δ. ``jax.grad`` gives −E_t[Ψ_t ∇log π_θ(a_t|s_t)].

    Args: ``log_probs``, ``advantages``: same shape, any rank. Returns: scalar.
    """
    chex.assert_equal_shape((log_probs, advantages))
    return -jnp.mean(log_probs * jax.lax.stop_gradient(advantages))


def ppo_clip_loss(log_probs: Array, old_log_probs: Array, advantages: Array,
                  clip_eps: float | Array) -> Array:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7; seed slide "Proximal Policy Optimization"):

    −E_t[min(r_t A_t, clip(r_t, 1−ε, 1+ε) A_t)],  r_t = exp(log π_θ − log π_θ_old).

    Args: same-shape ``log_probs`` (differentiated), ``old_log_probs``, ``advantages``; scalar ε.
    Returns: scalar.
    """
    chex.assert_equal_shape((log_probs, old_log_probs, advantages))
    advantages = jax.lax.stop_gradient(advantages)
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(old_log_probs))
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -jnp.mean(jnp.minimum(unclipped, clipped))


def importance_sampled_surrogate(log_probs: Array, old_log_probs: Array, advantages: Array) -> Array:
    """L^{IS}_{θ_old}(θ) = E_t[π_θ(a_t|s_t)/π_θ_old(a_t|s_t) · A_t] (seed slide "Importance Sampling",
    the TRPO objective). Returned with a positive sign: it is *maximised*."""
    chex.assert_equal_shape((log_probs, old_log_probs, advantages))
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(old_log_probs))
    return jnp.mean(ratio * jax.lax.stop_gradient(advantages))


def value_loss(values: Array, targets: Array, old_values: Array | None = None,
               clip_eps: float | Array | None = None) -> Array:
    """Squared-error critic regression ½·E[(V_φ(s_t) − target_t)²] (seed slide "VFA Objective").

    With ``old_values`` and ``clip_eps`` it is the clipped form used by PPO implementations
    (Engstrom et al. 2020, §3 "value function clipping"):
    ½·E[max((V − target)², (V_old + clip(V − V_old, −ε, ε) − target)²)].
    """
    chex.assert_equal_shape((values, targets))
    targets = jax.lax.stop_gradient(targets)
    squared = (values - targets) ** 2
    if old_values is None or clip_eps is None:
        return 0.5 * jnp.mean(squared)
    chex.assert_equal_shape((values, old_values))
    old_values = jax.lax.stop_gradient(old_values)
    clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum(squared, (clipped_values - targets) ** 2))


def entropy(dist: Distribution) -> Array:
    """Mean policy entropy E_t[H(π(·|s_t))]; an entropy *bonus* β·H is subtracted from the loss
    (seed slide "A3C": regularisation term β∇H(π))."""
    return jnp.mean(dist.entropy())


def mean_kl(old_dist: Distribution, new_dist: Distribution) -> Array:
    """E_t[KL[π_old(·|s_t) ‖ π_new(·|s_t)]] — the TRPO constraint (seed slide "Trust Region Policy
    Optimization")."""
    return jnp.mean(old_dist.kl(new_dist))


def approx_kl(log_probs: Array, old_log_probs: Array) -> Array:
    """Sample estimate of KL[π_old ‖ π] from actions drawn by π_old: E[(r − 1) − log r]
    (Schulman 2020, "Approximating KL divergence", k3). Non-negative, unbiased."""
    log_ratio = log_probs - old_log_probs
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def clip_fraction(log_probs: Array, old_log_probs: Array, clip_eps: float | Array) -> Array:
    """Fraction of samples whose ratio lies outside [1−ε, 1+ε]."""
    ratio = jnp.exp(log_probs - old_log_probs)
    return jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
