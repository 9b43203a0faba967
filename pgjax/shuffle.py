"""Random orders for minibatches: ``jax.random.permutation``'s uniform order, or a keyed bijection
of ``range(n)`` that needs no sort.

``"sort"`` is ``jax.random.permutation``'s order (on XLA:CPU computed bit for bit the same by a
faster route, :func:`pgjax._xla_cpu.permutation`). ``"hash"`` is :func:`hashed_permutation`: it
maps every index through a composition of bijections of ``b``-bit integers (n = 2^b): xor with a
random key, multiplication by a random odd number mod 2^b, and xor-shifts ``x ^ (x >> s)``,
several rounds. Each step is invertible, so the map is a permutation; it is O(n), fully
vectorised, and its statistics (where an element lands, which elements share a minibatch) are
checked against the uniform permutation in ``tests/test_shuffle.py``. It is a pseudo-random
permutation from a keyed family, not a uniform draw over all n! orders.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax import _xla_cpu

SHUFFLES = ("sort", "hash")
_ROUNDS = 6


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def hashed_permutation(key: jax.Array, n: int) -> jax.Array:
    """A keyed pseudo-random permutation of ``range(n)`` (int32 ``[n]``) for ``n`` a power of two,
    without sorting: ``_ROUNDS`` rounds of x ← x ⊕ k, x ← x·m mod n (m odd), x ← x ⊕ (x ≫ s)."""
    if not is_power_of_two(n):
        raise ValueError(f"n={n} is not allowed: hashed_permutation needs a power of two")
    bits = n.bit_length() - 1
    if bits == 0:
        return jnp.zeros((1,), jnp.int32)
    mask = jnp.uint32(n - 1)
    shift = max(1, bits // 2)
    xors, multipliers = jax.random.bits(key, (2, _ROUNDS), jnp.uint32)
    x = jnp.arange(n, dtype=jnp.uint32)
    for r in range(_ROUNDS):
        x = (x ^ xors[r]) & mask
        x = (x * (multipliers[r] | jnp.uint32(1))) & mask
        x = x ^ (x >> shift)
    return x.astype(jnp.int32)


def permutation(key: jax.Array, n: int, method: str = "sort") -> jax.Array:
    """A random order of ``range(n)``: ``"sort"`` is ``jax.random.permutation``'s uniform order
    (:func:`pgjax._xla_cpu.permutation`); ``"hash"`` is :func:`hashed_permutation` when ``n`` is a
    power of two, else the sort."""
    if method == "hash" and is_power_of_two(n):
        return hashed_permutation(key, n)
    return _xla_cpu.permutation(key, n)


def shuffled_minibatches(batch, key: jax.Array, num_minibatches: int, method: str = "sort"):
    """One epoch's minibatches: every leaf of ``batch`` (``[B, ...]``) put in the random order of
    :func:`permutation` and cut into ``[num_minibatches, B / num_minibatches, ...]``."""
    size = jax.tree.leaves(batch)[0].shape[0]
    order = permutation(key, size, method)
    return jax.tree.map(
        lambda x: x[order].reshape((num_minibatches, size // num_minibatches) + x.shape[1:]), batch)


def shuffled_sequence_minibatches(sequences, per_sequence, key: jax.Array, num_minibatches: int,
                                  method: str = "sort"):
    """One epoch's minibatches of whole sequences, for recurrent policies: the N sequences (axis 1
    of every ``[T, N, ...]`` leaf of ``sequences``, axis 0 of every ``[N, ...]`` leaf of
    ``per_sequence``, e.g. their start memories) put in the random order of :func:`permutation`
    and cut into groups. Returns ``([M, T, N/M, ...] leaves, [M, N/M, ...] leaves)``, M =
    ``num_minibatches``; time order inside each sequence is kept."""
    size = jax.tree.leaves(sequences)[0].shape[1]
    order = permutation(key, size, method)
    group = lambda x: x.reshape((num_minibatches, size // num_minibatches) + x.shape[1:])  # noqa: E731
    time_major = jax.tree.map(lambda x: jnp.swapaxes(group(jnp.swapaxes(x, 0, 1)[order]), 1, 2),
                              sequences)
    return time_major, jax.tree.map(lambda x: group(x[order]), per_sequence)
