"""pgjax.shuffle: the default order is ``jax.random.permutation``'s, bit for bit, and its stable
argsort matches NumPy's; the sort-free permutation is a permutation, and its statistics match a
uniform random permutation's where minibatch SGD can feel them (which elements share a minibatch,
where an element lands, no trend between an index and its slot)."""

import jax
import numpy as np
import pytest

from pgjax._xla_cpu import one_operand_sort as permutation_module
from pgjax.algorithms import ppo
from pgjax._xla_cpu.one_operand_sort import sorted_permutation, stable_argsort_uint32
from pgjax.config import ConfigError
from pgjax.shuffle import hashed_permutation, permutation

N, DRAWS, MINIBATCH = 512, 6000, 128


@pytest.fixture(scope="module")
def slots():
    """``[DRAWS, N]``: the slot each index lands in, one row per key."""
    orders = jax.jit(jax.vmap(lambda k: hashed_permutation(k, N)))(
        jax.random.split(jax.random.key(0), DRAWS))
    return np.argsort(np.asarray(orders), axis=1)


@pytest.mark.parametrize("n", [1, 2, 8, 512, 65536])
def test_is_a_permutation(n):
    order = np.asarray(hashed_permutation(jax.random.key(n), n))
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_different_keys_give_different_orders():
    a, b = (np.asarray(hashed_permutation(jax.random.key(k), N)) for k in (1, 2))
    assert (a != b).mean() > 0.9


def test_pairs_share_a_minibatch_as_often_as_under_a_uniform_permutation(slots):
    """P(i and j in the same minibatch of 128 out of 512) = 127/511 for a uniform permutation,
    whatever i and j; checked for neighbours in time-major order (same env, next step: i, i+4),
    neighbours in index (i, i+1) and distant pairs, within 4.5 standard errors."""
    expected = (MINIBATCH - 1) / (N - 1)
    tolerance = 4.5 * np.sqrt(expected * (1 - expected) / DRAWS)
    batch = slots // MINIBATCH
    for i, j in [(0, 1), (5, 6), (0, 4), (100, 104), (0, 128), (0, 256), (3, 259), (0, 511)]:
        together = np.mean(batch[:, i] == batch[:, j])
        assert abs(together - expected) < tolerance, (i, j, together, expected)


def test_an_element_lands_anywhere_and_the_slot_has_no_trend(slots):
    for element in (0, 1, 255, 511):
        counts = np.bincount(slots[:, element] // 32, minlength=16)
        chi2 = ((counts - DRAWS / 16) ** 2 / (DRAWS / 16)).sum()
        assert chi2 < 40.0, (element, chi2)  # 15 degrees of freedom: P(chi2 > 40) ≈ 5e-4
    correlations = [np.corrcoef(np.arange(N), s)[0, 1] for s in slots[:400]]
    assert abs(np.mean(correlations)) < 4 * np.sqrt(1 / (N - 1)) / np.sqrt(400)


def test_sort_is_jax_random_permutation_and_hash_falls_back_off_powers_of_two():
    key = jax.random.key(3)
    np.testing.assert_array_equal(permutation(key, 512, "sort"), jax.random.permutation(key, 512))
    np.testing.assert_array_equal(permutation(key, 384, "hash"), jax.random.permutation(key, 384))
    with pytest.raises(ValueError, match="n=384 is not allowed"):
        hashed_permutation(key, 384)
    with pytest.raises(ConfigError, match="shuffle"):
        ppo.Config(shuffle="random")


def _tied_keys(rng, n, kind):
    if kind == "random":
        return rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    if kind == "few values":  # long runs of equal keys: only the index breaks ties
        return rng.integers(0, 4, n).astype(np.uint32)
    # equal high bits, different low bits: the packed sort alone gets these wrong
    return (rng.integers(0, 2, n).astype(np.uint32) << 31) | rng.integers(0, 2 ** 12, n).astype(np.uint32)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("kind", ["random", "few values", "tied high bits"])
def test_stable_argsort_matches_numpy(n, kind):
    keys = _tied_keys(np.random.default_rng(n), n, kind)
    np.testing.assert_array_equal(jax.jit(stable_argsort_uint32)(keys),
                                  np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("n", [1, 5, 512, 1625, 1626, 8192, 65536, 131072])
def test_sorted_permutation_is_jax_random_permutation_bit_for_bit(n):
    """Vmapped over keys (the runner vmaps seeds), at sizes around the one-to-two-round change
    (1,626), PPO's 64 × 128 and 2048 × 32 batches, and 2^17 (long runs of tied high bits)."""
    keys = jax.random.split(jax.random.key(n), 4)
    ours = jax.jit(jax.vmap(lambda k: sorted_permutation(k, n)))(keys)
    theirs = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    np.testing.assert_array_equal(ours, theirs)
    raw_key = jax.random.PRNGKey(n)  # the legacy uint32 key form too
    np.testing.assert_array_equal(sorted_permutation(raw_key, n), jax.random.permutation(raw_key, n))


def test_sorted_permutation_is_jax_own_past_the_packed_bits(monkeypatch):
    """Past ``_MAX_PACKED_BITS`` index bits (2^18 elements; lowered here to 4 bits to keep the
    test small) it returns jax's permutation itself, and the argsort refuses the size."""
    monkeypatch.setattr(permutation_module, "_MAX_PACKED_BITS", 4)
    key = jax.random.key(17)
    np.testing.assert_array_equal(sorted_permutation(key, 17), jax.random.permutation(key, 17))
    with pytest.raises(ValueError, match="n=17 is not allowed"):
        stable_argsort_uint32(np.zeros(17, np.uint32))


def test_stable_argsort_refuses_sizes_past_the_packed_bits():
    with pytest.raises(ValueError, match="n=262145 is not allowed"):
        stable_argsort_uint32(np.zeros(2 ** 18 + 1, np.uint32))
