"""Orthogonal initialisation without LAPACK, and the normal draws of all kernels made at once.

flax's orthogonal initialiser takes a QR decomposition of a normal draw; under ``jax.vmap`` (a
population's members initialised together) that is a batched LAPACK QR, which jaxlib 0.10's
XLA:CPU runs on its intra-op pool and which must then be compiled with the slower scheduler
(:mod:`pgjax._xla_cpu.scheduler`). :func:`orthogonal` computes the same Q (R's diagonal positive,
flax's sign convention) by Gram–Schmidt, with matrix products and a loop only.

:func:`init_params` draws the standard normals of every small orthogonal kernel of a module in one
vmapped ``jax.random.normal`` instead of one random-number loop per kernel, which XLA:CPU
compiles faster; the random bits are the same.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core.tracers import current_trace


def _gram_schmidt(a: jax.Array) -> jax.Array:
    """Q of the QR decomposition of a tall ``[m, n]`` matrix with R's diagonal positive, by
    classical Gram–Schmidt with one re-orthogonalisation pass (CGS2, as accurate as Householder
    for well-conditioned matrices; Giraud et al. 2005). Only matrix products and a loop: no LAPACK
    call, so a vmapped initialisation holds no custom call that could block XLA:CPU's thread pool
    (jaxlib 0.10's batched QR does, and deadlocks under its default concurrent scheduler)."""
    n = a.shape[1]

    def column(j, q):
        earlier = q * (jnp.arange(n) < j)
        v = a[:, j]
        for _ in range(2):
            v = v - earlier @ (earlier.T @ v)
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def _matrix_shape(shape) -> tuple[tuple[int, int], bool]:
    """The tall matrix an orthogonal kernel of ``shape`` (last axis the output) is drawn as, and
    whether the kernel is its transpose (flax's convention: rows = product of the other axes)."""
    n_cols = shape[-1]
    n_rows = int(np.prod(shape)) // n_cols
    if n_rows < n_cols:
        return (n_cols, n_rows), True
    return (n_rows, n_cols), False


def _orthogonal_kernel(normal_matrix: jax.Array, shape, scale: float, dtype) -> jax.Array:
    """scale · Q of a standard-normal draw of :func:`_matrix_shape`, as a kernel of ``shape``."""
    _, transpose = _matrix_shape(shape)
    q = _gram_schmidt(normal_matrix)
    if transpose:
        q = q.T
    return (scale * q).reshape(shape).astype(dtype)


class _KernelRequest(NamedTuple):
    """An orthogonal kernel flax asked for inside :func:`init_params`: the placeholder it got."""
    placeholder: jax.Array
    key: jax.Array
    shape: tuple[int, ...]
    scale: float
    dtype: Any


class _KernelRequests(threading.local):
    """What :func:`init_params` is collecting: the trace it runs flax's ``init`` in (only kernels
    asked for in that trace are deferred) and the requests so far. ``pending`` None: draw at once."""
    trace: Any = None
    pending: list[_KernelRequest] | None = None


_REQUESTS = _KernelRequests()


def orthogonal(scale: float = 1.0):
    """Orthogonal initialiser (Saxe et al. 2014) for a kernel whose last axis is the output: the
    same matrix as ``flax.linen.initializers.orthogonal(scale)`` draws from the same key (the sign
    convention of R's positive diagonal included), computed by :func:`_gram_schmidt`. Inside
    :func:`init_params` it returns a placeholder and the kernel is drawn there, jointly."""
    def init(key, shape, dtype=jnp.float32):
        if _REQUESTS.pending is not None and current_trace() == _REQUESTS.trace:
            placeholder = jnp.zeros(shape, dtype)
            _REQUESTS.pending.append(_KernelRequest(placeholder, key, tuple(shape), scale, dtype))
            return placeholder
        normal = jax.random.normal(key, _matrix_shape(shape)[0], jnp.float32)
        return _orthogonal_kernel(normal, shape, scale, dtype)
    return init


def _draws_are_prefixes(key) -> bool:
    """Whether ``jax.random.normal(k, (m, n))`` equals the first m·n values of
    ``jax.random.normal(k, (size,))`` for size ≥ m·n: true of the threefry generator in jax's
    partitionable mode (the default since jax 0.5), where each value's bits depend only on the key
    and the value's flat index."""
    if not jax.config.jax_threefry_partitionable:
        return False
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        return "threefry" in str(jax.random.key_impl(key))
    return jax.config.jax_default_prng_impl == "threefry2x32"


# Kernels of at most this many elements share one draw, each padded to the largest of them (so the
# padding costs at most this many floats per kernel, per member of a vmapped population).
JOINT_DRAW_MAX_SIZE = 2 ** 14


def _normal_draws(keys: list, shapes: list[tuple[int, int]]) -> list[jax.Array]:
    """``jax.random.normal(key, shape)`` for each pair: the small ones (≤ JOINT_DRAW_MAX_SIZE
    elements) as prefixes of one vmapped draw over their keys (:func:`_draws_are_prefixes`), the
    others each on its own."""
    small = [i for i, (rows, cols) in enumerate(shapes) if rows * cols <= JOINT_DRAW_MAX_SIZE]
    draws = {i: jax.random.normal(keys[i], shapes[i], jnp.float32)
             for i in range(len(shapes)) if i not in small}
    if small:
        longest = max(shapes[i][0] * shapes[i][1] for i in small)
        joint = jax.vmap(lambda k: jax.random.normal(k, (longest,), jnp.float32))(
            jnp.stack([keys[i] for i in small]))
        for row, i in enumerate(small):
            rows, cols = shapes[i]
            draws[i] = joint[row, :rows * cols].reshape(rows, cols)
    return [draws[i] for i in range(len(shapes))]


def init_params(module: nn.Module, key, *args):
    """``module.init(key, *args)`` with the standard-normal draws of all its small :func:`orthogonal`
    kernels made by one vmapped ``jax.random.normal`` over their keys (each kernel takes the prefix
    of its own key's draw that it needs; see :func:`_normal_draws`) instead of one random-number
    loop per kernel, which XLA:CPU compiles faster (``python -m benchmarks.startup``). The random
    bits are the same; the floats made from them are the same bit for bit
    under XLA:CPU's default options (whole PPO runs hash the same), and can differ in the last bit
    where the compiler vectorises the two draws differently (the test suite's optimisation level
    0). Falls back to ``module.init`` where the prefix property does not hold.

    flax's ``init`` runs the module's forward pass on zero placeholder kernels, so this is for
    modules whose initialisation does not depend on the values of their own parameters (every
    network here). Kernels asked for under another trace (flax's ``eval_shape`` shape check of a
    shared module, a lifted transform) are drawn at once, as without this function."""
    if not _draws_are_prefixes(key):
        return module.init(key, *args)
    outer = (_REQUESTS.trace, _REQUESTS.pending)
    _REQUESTS.trace, _REQUESTS.pending = current_trace(), []
    try:
        params = module.init(key, *args)
        requests = _REQUESTS.pending
    finally:
        _REQUESTS.trace, _REQUESTS.pending = outer
    if not requests:
        return params
    shapes = [_matrix_shape(r.shape)[0] for r in requests]
    normals = _normal_draws([r.key for r in requests], shapes)
    kernels = {id(r.placeholder): _orthogonal_kernel(normal, r.shape, r.scale, r.dtype)
               for r, normal in zip(requests, normals)}
    placed = [id(leaf) for leaf in jax.tree.leaves(params) if id(leaf) in kernels]
    if len(kernels) != len(requests) or sorted(placed) != sorted(kernels):
        raise RuntimeError(f"init_params: {len(requests)} orthogonal kernels were asked for, but "
                           f"{len(set(placed))} distinct placeholders came back in the parameters; "
                           "use module.init")
    return jax.tree.map(lambda leaf: kernels.get(id(leaf), leaf), params)
