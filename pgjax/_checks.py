"""Input contracts shared by the math layer (private to :mod:`pgjax.estimators`,
:mod:`pgjax.losses` and :mod:`pgjax.distributions`).

Every check names the public function and the argument it refuses, so a mistake reads as
``gae: lambda_ must be a scalar or have the rewards' shape`` at the call, not as a scan-carry or
broadcasting error deep inside. Shapes are static under ``jax.jit``, so all of these run while
tracing and cost nothing in the compiled program.
"""

from __future__ import annotations

import operator

import chex
import jax

Array = chex.Array


def check_float(fn: str, name: str, x: Array) -> None:
    chex.assert_type(x, float, custom_message=f"{fn}: {name} must be a floating-point array")


def check_same_shape(fn: str, **arrays: Array) -> None:
    """All ``arrays`` have one shape (no broadcasting between them)."""
    names = ", ".join(arrays)
    chex.assert_equal_shape(list(arrays.values()),
                            custom_message=f"{fn}: {names} must have the same shape")


def check_shape(fn: str, name: str, x: Array, shape: tuple, what: str) -> None:
    chex.assert_shape(x, shape, custom_message=f"{fn}: {name} must have {what} {shape}")


def check_scalar(fn: str, name: str, x) -> None:
    chex.assert_rank(x, 0, custom_message=f"{fn}: {name} must be a scalar")


def is_traced(x) -> bool:
    """Whether ``x`` is a tracer (its values unknown: inside jit, vmap, ...)."""
    return isinstance(x, jax.core.Tracer)


def static_int(fn: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum``: any integer type (Python, NumPy, a concrete JAX
    scalar) is accepted; a traced value is refused with a hint to make the argument static."""
    if is_traced(value):
        raise TypeError(
            f"{fn}: {name} must be a static Python int, but it is traced (it sets the structure "
            f"of the computation, not a number in it). Under jax.jit mark it static, e.g. "
            f"jax.jit({fn}, static_argnums=...) or static_argnames='{name}'; under vmap close "
            f"over it instead of mapping it.")
    try:
        if isinstance(value, bool) or getattr(value, "dtype", None) == bool:
            raise TypeError
        as_int = operator.index(value)
    except TypeError:
        as_int = None
    if as_int is None or as_int < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}, got {value!r}")
    return as_int
