"""Workarounds for XLA:CPU (jaxlib 0.10), in one room, behind the small interface the core calls.

Each function here has a plain implementation (what the anchors use: flax's ``nn.Dense``,
``nn.Conv`` and orthogonal initialiser, ``module.init``, ``jax.random.permutation``) and, on the
CPU backend, a faster or safer one kept in this package:

- ``matmul`` (plain: ``jax.lax.dot_general``): a dense layer's weight gradient as an ordinary
  matmul, not XLA:CPU's slow batch-contracting dot (:mod:`.matmul`; gradients equal to rounding).
- ``conv`` (plain: ``flax.linen.Conv``): a 3×3 "SAME" convolution as one matrix product
  (:mod:`.patch_conv`; the same function and parameters).
- ``orthogonal`` (plain: flax's QR-based orthogonal initialiser): Gram–Schmidt, so a vmapped
  initialisation holds no batched LAPACK call (:mod:`.initialisers`; the same matrix to float
  round-off).
- ``joint_draws`` (plain: ``module.init``): every small kernel's normal draw in one vmapped call,
  less to compile (:mod:`.initialisers`; the same random bits).
- ``permutation`` (plain: ``jax.random.permutation``): the same order from a one-operand sort
  (:mod:`.one_operand_sort`; bit for bit).
- ``init_level`` (plain: XLA's default, LLVM level 3): the initialisation program, which runs
  once, compiled at LLVM level 1 (:func:`compile_once`, :mod:`.init_level`; the initial state's
  last bits can differ, as between two CPUs).
- ``gymnax_import`` (plain: ``import gymnax``): gymnax imported with its plotting stack deferred
  (``envs/_gymnax.py``; ``envs`` imports nothing of pgjax's, so it reads the switch itself; any
  backend).

``PGJAX_PLAIN=1`` (or ``all``) selects every plain implementation; ``PGJAX_PLAIN=matmul,conv``
selects those named. Other backends always get the plain ones. Set it before the first program is
built: programs are cached per process and in the program store by what was selected
(:func:`selection`). What each trick buys on this project's reference machine, and its size, is
``benchmarks/results/xla_cpu_tricks.md`` (``python -m benchmarks.dev.xla_cpu_tricks``).

:func:`compile` (and :func:`compile_once`) follow a correctness rule that is no trick
(:mod:`.scheduler`): a program holding a blocking custom call (the plain initialiser's batched QR)
is compiled with XLA:CPU's memory-optimised scheduler, plain or not, or the thread pool can
deadlock.
"""

from __future__ import annotations

import os

import jax

from pgjax._xla_cpu import init_level
from pgjax._xla_cpu.scheduler import compile_program, concurrency_scheduler_safe

TRICKS = ("matmul", "conv", "orthogonal", "joint_draws", "permutation", "init_level", "gymnax_import")
SWITCH = "PGJAX_PLAIN"

__all__ = ["SWITCH", "TRICKS", "compile", "compile_once", "concurrency_scheduler_safe", "conv", "dense_dot_general",
           "init_params", "orthogonal", "permutation", "selection", "used"]


def _plain_names() -> frozenset[str]:
    """The tricks ``PGJAX_PLAIN`` turns off; a name it does not know is refused."""
    value = os.environ.get(SWITCH, "").strip()
    if value in ("", "0"):
        return frozenset()
    if value in ("1", "all"):
        return frozenset(TRICKS)
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    unknown = sorted(names - set(TRICKS))
    if unknown:
        raise ValueError(f"{SWITCH}={value!r} is not allowed: {unknown[0]!r} is not a trick; use 1 "
                         f"(all), 0 (none) or a comma-separated list of {', '.join(TRICKS)}")
    return names


def used(trick: str) -> bool:
    """Whether ``trick`` (one of :data:`TRICKS`) is used: on the CPU backend, unless
    ``PGJAX_PLAIN`` turns it off."""
    return trick not in _plain_names() and jax.default_backend() == "cpu"


def selection() -> str:
    """The tricks in use, as text for cache keys (e.g. ``"matmul,conv"``)."""
    return ",".join(t for t in TRICKS if used(t))


def compile(lowered):  # noqa: A001 - the interface's name
    """``lowered.compile()`` under the scheduler rule (:func:`.scheduler.compile_program`)."""
    return compile_program(lowered)


def compile_once(lowered):
    """:func:`compile` for a program that runs once per run (the initialisation): at
    :mod:`.init_level`'s LLVM level where that trick is used."""
    return compile_program(lowered, init_level.compiler_options() if used("init_level") else None)


def dense_dot_general():
    """The ``dot_general`` for ``flax.linen.Dense`` (:mod:`.matmul`, or ``jax.lax.dot_general``)."""
    if used("matmul"):
        from pgjax._xla_cpu.matmul import dense_dot_general as ours
        return ours
    return jax.lax.dot_general


def conv(features: int, size: int, kernel_init, name: str):
    """A stride-1 "SAME" ``size``×``size`` convolution layer: :class:`.patch_conv.PatchConv` or
    ``flax.linen.Conv`` (the same parameters, ``kernel [size, size, C, features]`` and ``bias``)."""
    import flax.linen as nn
    if used("conv"):
        from pgjax._xla_cpu.patch_conv import PatchConv
        return PatchConv(features, size, kernel_init=kernel_init, name=name)
    return nn.Conv(features, (size, size), padding="SAME", kernel_init=kernel_init, name=name)


def orthogonal(scale: float = 1.0):
    """An orthogonal initialiser (Saxe et al. 2014) for kernels whose last axis is the output."""
    if used("orthogonal"):
        from pgjax._xla_cpu.initialisers import orthogonal as ours
        return ours(scale)
    import flax.linen as nn
    return nn.initializers.orthogonal(scale)


def init_params(module, key, *args):
    """``module.init(key, *args)``, its orthogonal kernels' draws made jointly where that is used."""
    if used("joint_draws"):
        from pgjax._xla_cpu.initialisers import init_params as ours
        return ours(module, key, *args)
    return module.init(key, *args)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)``'s order (:mod:`.one_operand_sort` on CPU, bit for bit)."""
    if used("permutation"):
        from pgjax._xla_cpu.one_operand_sort import sorted_permutation
        return jax.lax.platform_dependent(key, cpu=lambda k: sorted_permutation(k, n),
                                          default=lambda k: jax.random.permutation(k, n))
    return jax.random.permutation(key, n)
