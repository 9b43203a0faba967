"""Trust-region machinery for TRPO (Schulman et al. 2015, §6 and Appendix C: the second-order
expansion of the KL constraint, the conjugate-gradient search direction and the backtracking line
search). Pure, jittable, over parameter pytrees; no dense matrix is ever formed. A vector or
step whose pytree does not match the parameters', or a non-scalar ``damping`` / ``max_kl``,
raises :class:`~pgjax.errors.ShapeError` (a ``ValueError`` of the :mod:`pgjax.errors` family).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from pgjax._checks import check_same_tree, check_scalar

tree_vdot = optax.tree.vdot


def _axpy(alpha, x, y):
    """alpha·x + y over pytrees."""
    return jax.tree.map(lambda a, b: alpha * a + b, x, y)


def conjugate_gradient(matvec: Callable, b, iterations: int = 10, residual_tol: float = 1e-10):
    """Solve A x = b for symmetric positive-definite A given only x ↦ A x (Hestenes & Stiefel 1952;
    Nocedal & Wright 2006, Algorithm 5.2), starting from x = 0, for at most ``iterations`` steps
    or until ‖r‖² < ``residual_tol``. Returns (x, final squared residual ‖b − A x‖² as tracked)."""
    x = jax.tree.map(jnp.zeros_like, b)
    r, p = b, b
    rr = tree_vdot(r, r)

    def body(carry):
        i, x, r, p, rr = carry
        ap = matvec(p)
        alpha = rr / (tree_vdot(p, ap) + 1e-12)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        rr_new = tree_vdot(r, r)
        p = _axpy(rr_new / (rr + 1e-12), p, r)
        return i + 1, x, r, p, rr_new

    def cond(carry):
        i, _, _, _, rr = carry
        return (i < iterations) & (rr > residual_tol)

    _, x, _, _, rr = jax.lax.while_loop(cond, body, (0, x, r, p, rr))
    return x, rr


def fisher_vector_product(mean_kl_fn: Callable, params, vector, damping: float = 0.0):
    """H v + damping·v, where H = ∇²_θ mean_kl_fn(θ) at ``params`` (the Fisher information when
    ``mean_kl_fn(θ)`` = E_s[KL[π_θ_old(·|s) ‖ π_θ(·|s)]] with θ_old = params). Computed as a
    forward-over-reverse Hessian-vector product: jvp of ∇KL along v (Pearlmutter 1994)."""
    check_same_tree("fisher_vector_product", "vector", vector, params, "params")
    check_scalar("fisher_vector_product", "damping", damping)
    _, hvp = jax.jvp(jax.grad(mean_kl_fn), (params,), (vector,))
    return _axpy(damping, vector, hvp)


def backtracking_line_search(improvement_fn: Callable, kl_fn: Callable, params, full_step,
                             max_kl, max_backtracks: int = 10, shrink: float = 0.5):
    """Try θ + shrink^j · full_step for j = 0, 1, …, accepting the first step whose surrogate
    improvement is > 0 and whose mean KL ≤ ``max_kl``. If none qualifies the parameters are left
    unchanged. Returns (new params, accepted?, backtracks taken, improvement, KL) where the last two
    are those of the accepted step (0, 0 if none)."""
    check_same_tree("backtracking_line_search", "full_step", full_step, params, "params")
    check_scalar("backtracking_line_search", "max_kl", max_kl)

    def candidate(j):
        scale = shrink ** j.astype(jnp.float32)
        new_params = _axpy(scale, full_step, params)
        return new_params, improvement_fn(new_params), kl_fn(new_params)

    def cond(carry):
        j, accepted, *_ = carry
        return (j < max_backtracks) & ~accepted

    def body(carry):
        j, _, _, _, _ = carry
        _, improvement, kl = candidate(j)
        ok = (improvement > 0) & (kl <= max_kl) & jnp.isfinite(improvement) & jnp.isfinite(kl)
        return j + 1, ok, j, improvement, kl

    init = (jnp.asarray(0), jnp.asarray(False), jnp.asarray(0), jnp.asarray(0.0), jnp.asarray(0.0))
    _, accepted, j, improvement, kl = jax.lax.while_loop(cond, body, init)
    stepped, _, _ = candidate(j)
    new_params = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), stepped, params)
    return (new_params, accepted, jnp.where(accepted, j, max_backtracks),
            jnp.where(accepted, improvement, 0.0), jnp.where(accepted, kl, 0.0))
