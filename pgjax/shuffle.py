"""Random orders for minibatches: ``jax.random.permutation``'s uniform order (computed faster, bit
for bit the same) or a keyed bijection of ``range(n)`` that needs no sort.

``jax.random.permutation(key, n)`` sorts n random 32-bit keys with the indices as a payload, twice
for n ≥ 1,626 (its rounds keep ties from biasing the order); the order is the *stable* argsort of
each round's keys. XLA:CPU sorts key–payload pairs through a generic comparator, about 5× slower
than it sorts one operand of unsigned integers. :func:`sorted_permutation` therefore gets the same
stable argsort from a one-operand sort: each key's low bits are replaced by its index, and an
odd–even transposition pass then repairs the rare neighbours whose high bits tie (see
:func:`stable_argsort_uint32`). :func:`hashed_permutation` maps every index through a composition
of bijections of ``b``-bit integers (n = 2^b): xor with a random key, multiplication by a random
odd number mod 2^b, and xor-shifts ``x ^ (x >> s)``, several rounds. Each step is invertible, so
the map is a permutation; it is O(n), fully vectorised, and its statistics (where an element
lands, which elements share a minibatch) are checked against the uniform permutation in
``tests/test_shuffle.py``. It is a pseudo-random permutation from a keyed family, not a uniform
draw over all n! orders.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SHUFFLES = ("sort", "hash")
_ROUNDS = 6
# Index bits packed beside the key's high bits. With more, the runs of tied high bits grow
# (≈ n² / 2^32 per element) and the transposition passes cost more than jax's own sort saves:
# measured 3× faster than jax's at n = 2^16 and 2^17, 1.7× at 2^18, slower at 2^19.
_MAX_PACKED_BITS = 18


def _index_bits(n: int) -> int:
    """Bits that hold every index of ``range(n)`` (at least one)."""
    return max(1, (n - 1).bit_length())


def _after(keys_a, index_a, keys_b, index_b) -> jax.Array:
    """Whether ``(key, index)`` pair a comes after pair b in lexicographic order."""
    return (keys_a > keys_b) | ((keys_a == keys_b) & (index_a > index_b))


def _transposition_phase(keys, index, parity: int):
    """One phase of odd–even transposition sort: every pair of neighbours ``(p, p + 1)`` with
    ``p % 2 == parity`` that is out of ``(key, index)`` order swaps, all at once."""
    n = keys.shape[0]
    shift_left = lambda x, fill: jnp.concatenate([x[1:], jnp.full((1,), fill, x.dtype)])  # noqa: E731
    shift_right = lambda x: jnp.concatenate([x[:1], x[:-1]])  # noqa: E731
    next_keys, next_index = shift_left(keys, 0xFFFFFFFF), shift_left(index, n)
    swaps_with_next = (jnp.arange(n) % 2 == parity) & _after(keys, index, next_keys, next_index)
    swaps_with_previous = jnp.concatenate([jnp.zeros((1,), bool), swaps_with_next[:-1]])
    pick = lambda x, nxt: jnp.where(swaps_with_next, nxt,  # noqa: E731
                                    jnp.where(swaps_with_previous, shift_right(x), x))
    return pick(keys, next_keys), pick(index, next_index)


def stable_argsort_uint32(keys: jax.Array) -> jax.Array:
    """``argsort(keys, stable=True)`` (int32 ``[n]``) of uint32 ``keys [n]``, n ≤ 2^18, with a
    one-operand sort: sorting ``high bits of the key | index`` orders by the key's high bits, ties
    by index; neighbours whose high bits tie are then put in full ``(key, index)`` order by
    odd–even transposition sort, run until no neighbours are out of order (for random keys, runs
    of tied high bits are short, so one or a few passes)."""
    n = keys.shape[0]
    index_bits = _index_bits(n)
    if index_bits > _MAX_PACKED_BITS:
        raise ValueError(f"n={n} is not allowed: stable_argsort_uint32 packs indices in "
                         f"{_MAX_PACKED_BITS} bits (n ≤ {2 ** _MAX_PACKED_BITS})")
    low_bits = jnp.uint32((1 << index_bits) - 1)
    index = lax.sort((keys & ~low_bits) | jnp.arange(n, dtype=jnp.uint32)) & low_bits
    in_order = (keys[index], index)
    out_of_order = lambda c: jnp.any(_after(c[0][:-1], c[1][:-1], c[0][1:], c[1][1:]))  # noqa: E731
    both_phases = lambda c: _transposition_phase(*_transposition_phase(*c, 0), 1)  # noqa: E731
    _, index = lax.while_loop(out_of_order, both_phases, in_order)
    return index.astype(jnp.int32)


def _permutation_rounds(n: int) -> int:
    """How many sorts ``jax.random.permutation`` does for n elements (tjablin's heuristic, as in
    jax's ``_shuffle``): ⌈3 ln n / ln(2^32 − 1)⌉."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


def sorted_permutation(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)``, bit for bit, about 3× faster on XLA:CPU: the same
    split keys and 32-bit random keys per round, each round's stable argsort computed by
    :func:`stable_argsort_uint32`. For n > 2^18 it is ``jax.random.permutation`` itself."""
    if _index_bits(n) > _MAX_PACKED_BITS:
        return jax.random.permutation(key, n)
    order = jnp.arange(n, dtype=jnp.int32)
    for _ in range(_permutation_rounds(n)):
        key, round_key = jax.random.split(key)
        order = order[stable_argsort_uint32(jax.random.bits(round_key, (n,), jnp.uint32))]
    return order


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
    (on CPU computed by :func:`sorted_permutation`; other platforms sort key–payload pairs fast
    and keep jax's own); ``"hash"`` is :func:`hashed_permutation` when ``n`` is a power of two,
    else the sort."""
    if method == "hash" and is_power_of_two(n):
        return hashed_permutation(key, n)
    return lax.platform_dependent(key, cpu=lambda k: sorted_permutation(k, n),
                                  default=lambda k: jax.random.permutation(k, n))


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
