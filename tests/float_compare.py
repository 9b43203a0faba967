"""How the tests compare the float results of two XLA programs (a helper module, not a test file).

XLA:CPU rounds one computation differently from one program to another (fusion, loop and vector
shapes, FMA contraction) and from one processor to another (AVX-512 or AVX2 code, and the matmul
kernels its libraries pick at run time), so two programs meant to compute the same training agree
only to float32 rounding, and how closely they agree on one machine says little about another: a
tolerance tuned on an Intel Xeon failed on an AMD EPYC. The suite's rules:

* the same compiled program on the same inputs (a resumed run, a reused program) is bit-identical
  on any one machine: compare exactly;
* two programs that take ONE update from a common state differ by a few roundings: compare with
  :func:`assert_trees_close` at a tight bound;
* two programs over several updates drift apart, each update feeding the last one's rounding into
  the next (Adam's normalisation turns a small relative error of a tiny gradient entry into a
  large one of that entry's step, so single entries near zero can differ by percents): compare
  with :func:`assert_trees_close` at a bound stated beside the test with its reason, and check
  that a genuinely different run (another seed or learning rate) lies far outside that bound.

The measure is normwise (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002,
§1.6): for each leaf, max|a − b| / max|b|, the largest difference relative to the leaf's largest
entry, which unlike an entrywise relative error stays meaningful for entries near zero. Integer,
boolean and PRNG-key leaves (counters, flags, keys) must be equal.

Adam (Kingma & Ba 2015) steps an entry by lr·m̂/(√v̂ + ε); pgjax's ε is 1e-5. Where an entry's
gradient g is far below ε the step is about (lr/ε)·g, so the rounding of g (~1e-9 absolute in
these small runs) comes out lr/ε = 3000 times larger in the step at lr 3e-2, while entries with
|g| ≫ ε take steps of about ±lr whatever their rounding. Hence :data:`FEW_ADAM_UPDATES`.
"""

from __future__ import annotations

import jax
import numpy as np

# Two programs from a common start, one to a few Adam updates (up to 16 optimiser steps) apart:
# measured at most 1.2e-4 of a leaf's largest entry after ONE update of two programs (an entry in
# Adam's (lr/ε)·g regime), at most 4e-5 after several, over XLA_FLAGS --xla_cpu_max_isa=AVX2 or
# SSE4_2, optimisation level 0 or 2, and "--xla_backend_optimization_level=2
# --xla_cpu_use_fusion_emitters=true --xla_cpu_max_isa=SSE4_2", under which the old entrywise
# tolerance failed here as it did on an AMD EPYC (one entry of 4096 off by 2 %: 4e-5 here). A run
# that differs for a reason (another seed, learning rate, policy lag or replay order) is 4e-2 or
# more away, so the tests also check ``assert_trees_far(..., 10 * FEW_ADAM_UPDATES)`` where they
# can.
FEW_ADAM_UPDATES = 1e-3
# The same rollout (forward passes and environment steps, no update) in two programs: measured at
# most ~1e-7.
ROLLOUT = 1e-5


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def relative_difference(a, b) -> float:
    """max|a − b| / max|b| of two float arrays, in float64 (0 when they are equal; inf when
    ``b`` is all zeros and ``a`` is not). NaNs at the same places count as equal."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    scale = np.max(np.abs(np.where(np.isnan(b), 0.0, b)))
    diff = np.max(np.where(same, 0.0, np.abs(a - b)))
    return float(diff / scale) if scale > 0 else float("inf")


def tree_difference(a, b) -> tuple[str, float]:
    """(path, difference) of the leaf where two trees of the same structure differ most: the
    :func:`relative_difference` of float leaves; inf where other leaves are not equal."""
    worst = ("", 0.0)
    leaves_b = jax.tree.leaves(b)
    paths_a = jax.tree_util.tree_leaves_with_path(a)
    assert len(paths_a) == len(leaves_b), (len(paths_a), len(leaves_b))
    for (path, x), y in zip(paths_a, leaves_b):
        x, y = _as_numpy(x), _as_numpy(y)
        assert x.shape == y.shape, (jax.tree_util.keystr(path), x.shape, y.shape)
        if x.dtype.kind == "f":
            diff = relative_difference(x, y)
        else:
            diff = 0.0 if np.array_equal(x, y) else float("inf")
        if diff > worst[1]:
            worst = (jax.tree_util.keystr(path), diff)
    return worst


def assert_trees_close(a, b, bound: float, what: str = "") -> float:
    """Every float leaf of ``a`` within ``bound`` of ``b``'s in max|a − b| / max|b|, every other
    leaf equal. Returns the largest difference found."""
    path, diff = tree_difference(a, b)
    assert diff <= bound, f"{what}{path}: max|a - b| / max|b| = {diff:.3g} > {bound:.3g}"
    return diff


def assert_trees_far(a, b, bound: float, what: str = "") -> float:
    """Some leaf of ``a`` differs from ``b``'s by more than ``bound`` (the check that a
    comparison's bound separates equal runs from different ones). Returns that difference."""
    path, diff = tree_difference(a, b)
    assert diff > bound, f"{what}: the trees differ by at most {diff:.3g} <= {bound:.3g}"
    return diff
