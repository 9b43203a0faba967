"""The runner's one training program: up to ``max_updates`` guarded updates of every population
member, with the number actually run chosen per call (shared/DESIGN.md, "Host side").

One program serves every chunk of a run. ``num_updates`` is a traced argument: the program scans
``max_updates`` steps and a ``lax.cond`` on an unbatched predicate skips the steps past
``num_updates``, so the host can size each chunk by wall time (a few seconds, whatever the budget)
without compiling a program per chunk length, and a signal is answered within a chunk.

**Population health.** Every update of every member is checked inside the program: the member's
new parameters and its loss terms and gradient norm must be finite. A member that fails is
*frozen*: it keeps its last finite state (selected with ``jnp.where`` inside the vmapped step, so
the other members and the program are untouched) for the rest of the run, and its flag in
``frozen`` [M] stays set. The per-update ``healthy`` flags tell the host where it happened.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from pgjax import algorithms


def member_is_healthy(params, metrics: dict) -> jax.Array:
    """True when every watched metric and every floating-point parameter is finite (one member)."""
    checks = [jnp.all(jnp.isfinite(value)) for name, value in metrics.items()
              if algorithms.is_watched(name)]
    checks += [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)
               if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks))


def guarded_update(config, state, frozen):
    """One update of one member, kept only if the member is not frozen and the result is healthy.
    Returns (state, frozen, metrics, healthy)."""
    new_state, metrics = algorithms.update(config, state)
    healthy = member_is_healthy(new_state.params, metrics)
    keep_old = frozen | ~healthy
    state = jax.tree.map(lambda old, new: jnp.where(keep_old, old, new), state, new_state)
    return state, keep_old, metrics, healthy


def chunk_fn(config, max_updates: int):
    """``chunk(states, frozen, num_updates) -> (states, frozen, metrics, healthy)`` for the
    member-stacked ``states`` (leaves ``[M, ...]``) and ``frozen`` ``[M]``: ``num_updates`` ≤
    ``max_updates`` guarded updates. ``metrics[name]`` and ``healthy`` come back ``[M,
    max_updates]``; only the first ``num_updates`` columns hold updates (the rest are zeros)."""
    step = jax.vmap(lambda s, f: guarded_update(config, s, f))

    def chunk(states, frozen, num_updates):
        def active(carry):
            states, frozen = carry
            states, frozen, metrics, healthy = step(states, frozen)
            return (states, frozen), (metrics, healthy)

        skipped_shapes = jax.eval_shape(active, (states, frozen))[1]

        def idle(carry):
            return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), skipped_shapes)

        def body(carry, index):
            return jax.lax.cond(index < num_updates, active, idle, carry)

        (states, frozen), (metrics, healthy) = jax.lax.scan(
            body, (states, frozen), jnp.arange(max_updates))
        member_major = lambda x: jnp.swapaxes(x, 0, 1)
        return states, frozen, jax.tree.map(member_major, metrics), member_major(healthy)

    return chunk


_COMPILED: dict = {}


def compile_chunk(config, states, max_updates: int, shardings=None):
    """AOT-compile :func:`chunk_fn` for these state shapes (compile time is measured apart).
    Programs are kept per (config, max_updates, state shapes and shardings), so runs in one process
    (a notebook, a test session, a resumed run) reuse them; JAX's persistent compilation cache
    (:mod:`pgjax.run.compilation_cache`) does the same across processes. An update chunk has no
    blocking custom calls, so on CPU it gets XLA's faster scheduler (:func:`pgjax.compile_program`).

    ``shardings`` = (state, frozen, host) places the program on a mesh
    (:class:`pgjax.run.devices.Layout`): the state keeps its sharding from call to call, and the
    metrics and health flags the host reads come back with the ``host`` sharding."""
    from pgjax import compile_program
    shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype), str(getattr(x, "sharding", None))), states)
    key = (config, max_updates, jax.tree.structure(states), tuple(jax.tree.leaves(shapes)),
           None if shardings is None else str(shardings[1:]))
    if key not in _COMPILED:
        members = jax.tree.leaves(states)[0].shape[0]
        placement = {}
        frozen = jax.ShapeDtypeStruct((members,), bool)
        if shardings is not None:
            state_sharding, frozen_sharding, host_sharding = shardings
            placement = dict(in_shardings=(state_sharding, frozen_sharding, host_sharding),
                             out_shardings=(state_sharding, frozen_sharding, host_sharding,
                                            host_sharding))
        _COMPILED[key] = compile_program(jax.jit(chunk_fn(config, max_updates), **placement).lower(
            states, frozen, jax.ShapeDtypeStruct((), jnp.int32)))
    return _COMPILED[key]


def default_max_updates(num_updates: int, num_members: int) -> int:
    """Updates one call can run at most: the whole run for small budgets, otherwise bounded so the
    per-update metrics a call returns stay small (about 2^17 member-updates)."""
    return max(1, min(num_updates, 1024, max(16, 2 ** 17 // max(num_members, 1))))


@dataclass
class ChunkPlanner:
    """Sizes each chunk so it takes about ``target_seconds`` of wall time: the first chunk is one
    update, later ones follow the measured time per update (growing at most 4× per chunk), never
    past the next scheduled event nor ``max_updates``. ``fixed`` gives every chunk that many
    updates instead (deterministic chunk boundaries, e.g. for tests)."""
    max_updates: int
    target_seconds: float = 3.0
    fixed: int | None = None
    seconds_per_update: float | None = None
    last_size: int = 0

    def next_size(self, until_event: int) -> int:
        if self.fixed is not None:
            wanted = self.fixed
        elif self.seconds_per_update is None:
            wanted = 1
        else:
            by_time = math.floor(self.target_seconds / max(self.seconds_per_update, 1e-9))
            wanted = min(by_time, 4 * max(self.last_size, 1))
        size = max(1, min(wanted, self.max_updates, until_event))
        self.last_size = size
        return size

    def observe(self, size: int, seconds: float) -> None:
        self.seconds_per_update = seconds / max(size, 1)


def timed(fn, *args):
    """(fn(*args) with its outputs fetched to the host, wall seconds)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start
