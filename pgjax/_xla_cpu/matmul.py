"""A dense layer's matrix product whose weight gradient XLA:CPU runs on its fast matmul path.

Reverse-mode autodiff of y = x·W gives the weight gradient ∂W = xᵀ·∂y. JAX emits it as a dot that
contracts the batch axis of both operands, and XLA folds any transpose of x into that dot. XLA:CPU
(jaxlib 0.10) sends such a dot to a generic kernel rather than to XNNPACK/YNNPACK; at PPO's
minibatch shapes these weight-gradient dots are the slowest ops of the update
(``python -m benchmarks.dev.ppo_profile`` shows where an update's time goes).

:func:`dense_dot_general` computes the same product y = x·W with a custom JVP whose weight tangent
is written with xᵀ materialised behind an optimisation barrier (so XLA cannot fold the transpose
back in). Transposing that tangent for reverse mode gives ∂W = (xᵀ)·∂y, an ordinary
``[F, B]·[B, O]`` matmul. Only XLA:CPU gets the barrier; other platforms keep a plain transpose,
which their matmul libraries take for free. The value is the same product; gradients differ from
plain autodiff only by the rounding of another summation order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def _transposed(x: jax.Array) -> jax.Array:
    """xᵀ of a ``[B, F]`` matrix; on CPU materialised, so no later pass folds it into a dot."""
    return jax.lax.platform_dependent(
        x, cpu=lambda x: jax.lax.optimization_barrier(x.T), default=lambda x: x.T)


@jax.custom_jvp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x·W for ``x [B, F]`` and ``w [F, O]``, differentiated as described in the module docstring."""
    return x @ w


def _matmul_jvp(primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = x @ w
    terms = []  # a zero tangent (e.g. of the observations) costs nothing
    if not isinstance(dx, SymbolicZero):
        terms.append(dx @ w)
    if not isinstance(dw, SymbolicZero):  # x·dW written as (xᵀ)ᵀ·dW, contracting xᵀ's first axis
        terms.append(jax.lax.dot_general(_transposed(x), dw, (((0,), (0,)), ((), ()))))
    return y, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)


matmul.defjvp(_matmul_jvp, symbolic_zeros=True)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """A drop-in ``dot_general`` for ``flax.linen.Dense``: its contraction (the last axis of
    ``lhs [..., F]`` with the first of a ``[F, O]`` kernel) goes through :func:`matmul`, with the
    leading axes flattened; any other contraction, or a set precision or output type, is passed to
    ``jax.lax.dot_general`` unchanged."""
    (lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch) = dimension_numbers
    is_dense = (rhs.ndim == 2 and lhs.ndim >= 1 and tuple(lhs_contracting) == (lhs.ndim - 1,)
                and tuple(rhs_contracting) == (0,) and not lhs_batch and not rhs_batch
                and precision is None and preferred_element_type is None)
    if not is_dense:
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type)
    rows = lhs.reshape((-1, lhs.shape[-1]))
    return matmul(rows, rhs).reshape(lhs.shape[:-1] + (rhs.shape[1],))
