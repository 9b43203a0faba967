"""Input contracts shared by the math layer (private to :mod:`pgjax.estimators`,
:mod:`pgjax.losses`, :mod:`pgjax.distributions`, :mod:`pgjax.diagnostics` and
:mod:`pgjax.recurrent`).

Every check names the public function and the argument it refuses, so a mistake reads as
``gae: lambda_ must be a scalar or have the rewards' shape`` at the call, not as a scan-carry or
broadcasting error deep inside. Each raises an error of the :mod:`pgjax.errors` family
(:class:`~pgjax.errors.ShapeError`, :class:`~pgjax.errors.DtypeError`, ...), never a bare
``AssertionError``. Shapes and dtypes are static under ``jax.jit``, so all of these run while
tracing and cost nothing in the compiled program.

Also here: the precision rule of the math layer, :func:`compute_dtype` (half-precision inputs are
computed in float32 and the result is cast back).
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

from pgjax.errors import ArgumentTypeError, ArgumentValueError, DtypeError, ShapeError

Array = jax.Array

HALF_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def _shape(x) -> tuple[int, ...]:
    return tuple(np.shape(x))


def check_float(fn: str, name: str, x: Array) -> None:
    """``x`` has a floating-point dtype."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise DtypeError(fn, name, f"{fn}: {name} must be a floating-point array, got dtype {dtype}")


def check_same_shape(fn: str, **arrays: Array) -> None:
    """All ``arrays`` have one shape (no broadcasting between them)."""
    (first, first_array), *rest = arrays.items()
    for name, x in rest:
        if _shape(x) != _shape(first_array):
            shapes = ", ".join(f"{n} {_shape(a)}" for n, a in arrays.items())
            raise ShapeError(fn, name, f"{fn}: {', '.join(arrays)} must have the same shape, got "
                                       f"{shapes}")


def check_shape(fn: str, name: str, x: Array, shape: tuple, what: str) -> None:
    """``x`` has exactly ``shape``, described to the user as ``what``."""
    if _shape(x) != tuple(shape):
        raise ShapeError(fn, name, f"{fn}: {name} must have {what} {tuple(shape)}, got "
                                   f"{_shape(x)}")


def check_scalar(fn: str, name: str, x) -> None:
    """``x`` is a scalar (a Python number or a rank-0 array, possibly traced)."""
    if np.ndim(x) != 0:
        raise ShapeError(fn, name, f"{fn}: {name} must be a scalar, got shape {_shape(x)}")


def check_leading_axes(fn: str, name: str, leaves, num_axes: int) -> None:
    """Every array in ``leaves`` has at least ``num_axes`` axes and they agree."""
    shapes = [_shape(x) for x in leaves]
    if (not shapes or any(len(s) < num_axes for s in shapes)
            or len({s[:num_axes] for s in shapes}) > 1):
        raise ShapeError(fn, name, f"{fn}: every leaf of {name} must share its first {num_axes} "
                                   f"axes, got shapes {shapes}")


def check_same_tree(fn: str, name: str, tree, reference, reference_name: str) -> None:
    """``tree`` has the pytree structure of ``reference`` and each leaf the shape of its
    counterpart (e.g. a step in parameter space against the parameters)."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    ref_leaves, ref_structure = jax.tree_util.tree_flatten(reference)
    if structure != ref_structure:
        raise ShapeError(fn, name, f"{fn}: {name} must have the pytree structure of "
                                   f"{reference_name}, got {structure} and {ref_structure}")
    for leaf, ref_leaf in zip(leaves, ref_leaves):
        if _shape(leaf) != _shape(ref_leaf):
            raise ShapeError(fn, name, f"{fn}: every leaf of {name} must have the shape of its "
                                       f"{reference_name} leaf, got {_shape(leaf)} for "
                                       f"{_shape(ref_leaf)}")


def is_traced(x) -> bool:
    """Whether ``x`` is a tracer (its values unknown: inside jit, vmap, ...)."""
    return isinstance(x, jax.core.Tracer)


def static_int(fn: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum``: any integer type (Python, NumPy, a concrete JAX
    scalar) is accepted; a traced value is refused with a hint to make the argument static."""
    if is_traced(value):
        raise ArgumentTypeError(
            fn, name,
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
        raise ArgumentValueError(fn, name, f"{fn}: {name} must be an int >= {minimum}, got {value!r}")
    return as_int


def compute_dtype(dtype) -> jnp.dtype:
    """The dtype the math layer computes in for inputs of ``dtype``: float32 for float16 and
    bfloat16, ``dtype`` itself otherwise.

    Half precision keeps 11 (float16) or 8 (bfloat16) significant bits and float16 overflows
    above 65504, so a T-step recursion or a sum of squares carried out in it loses far more than
    the final rounding (Higham 2002, "Accuracy and Stability of Numerical Algorithms", §4.2: the
    error bound of a recursive sum grows with the number of terms times the unit roundoff). Computing
    in float32 and rounding once at the end keeps the error at that of the final rounding."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype in HALF_PRECISION else dtype
