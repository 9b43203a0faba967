"""``jax.random.permutation``'s order, bit for bit, computed faster on XLA:CPU.

``jax.random.permutation(key, n)`` sorts n random 32-bit keys with the indices as a payload, twice
for n ≥ 1,626 (its rounds keep ties from biasing the order); the order is the *stable* argsort of
each round's keys. XLA:CPU (jaxlib 0.10) sorts key–payload pairs through a generic comparator,
several times slower than it sorts one operand of unsigned integers. :func:`sorted_permutation`
therefore gets the same stable argsort from a one-operand sort: each key's low bits are replaced
by its index, and an odd–even transposition pass then repairs the rare neighbours whose high bits
tie (see :func:`stable_argsort_uint32`). ``python -m benchmarks.dev.shuffle_speed`` measures it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Index bits packed beside the key's high bits. With more, the runs of tied high bits grow
# (≈ n² / 2^32 per element) and the transposition passes cost more than jax's own sort saves
# (``python -m benchmarks.dev.shuffle_speed`` measures where).
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
    """``jax.random.permutation(key, n)``, bit for bit, faster on XLA:CPU: the same
    split keys and 32-bit random keys per round, each round's stable argsort computed by
    :func:`stable_argsort_uint32`. For n > 2^18 it is ``jax.random.permutation`` itself."""
    if _index_bits(n) > _MAX_PACKED_BITS:
        return jax.random.permutation(key, n)
    order = jnp.arange(n, dtype=jnp.int32)
    for _ in range(_permutation_rounds(n)):
        key, round_key = jax.random.split(key)
        order = order[stable_argsort_uint32(jax.random.bits(round_key, (n,), jnp.uint32))]
    return order
