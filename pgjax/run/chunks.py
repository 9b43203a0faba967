"""The runner's one training program: up to ``max_updates`` guarded updates of every population
member, with the number actually run chosen per call.

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
import threading
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from pgjax import _xla_cpu, algorithms
from pgjax._xla_cpu import compile as compile_program
from pgjax.run import executables


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


def _program_key(config, states, max_updates: int, shardings=None) -> tuple:
    shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype), str(getattr(x, "sharding", None))), states)
    return (config, max_updates, jax.tree.structure(states), tuple(jax.tree.leaves(shapes)),
            None if shardings is None else str(shardings[1:]), _xla_cpu.selection())


def compiled_already(config, states, max_updates: int, shardings=None) -> bool:
    """Whether :func:`compile_chunk` holds this program already (it returns at once)."""
    return _program_key(config, states, max_updates, shardings) in _COMPILED


def compile_chunk(config, states, max_updates: int, shardings=None):
    """AOT-compile :func:`chunk_fn` for these state shapes (compile time is measured apart).
    Programs are kept per (config, max_updates, state shapes and shardings), so runs in one process
    (a notebook, a test session, a resumed run) reuse them; the program store
    (:mod:`pgjax.run.executables`) and JAX's persistent compilation cache
    (:mod:`pgjax.run.compilation_cache`) do the same across processes. An update chunk has no
    blocking custom calls, so on CPU it gets XLA's faster scheduler (:func:`pgjax._xla_cpu.compile`).

    ``shardings`` = (state, frozen, host) places the program on a mesh
    (:class:`pgjax.run.devices.Layout`): the state keeps its sharding from call to call, and the
    metrics and health flags the host reads come back with the ``host`` sharding."""
    key = _program_key(config, states, max_updates, shardings)
    if key not in _COMPILED:
        members = jax.tree.leaves(states)[0].shape[0]
        placement = {}
        frozen = jax.ShapeDtypeStruct((members,), bool)
        if shardings is not None:
            state_sharding, frozen_sharding, host_sharding = shardings
            placement = dict(in_shardings=(state_sharding, frozen_sharding, host_sharding),
                             out_shardings=(state_sharding, frozen_sharding, host_sharding,
                                            host_sharding))
        args = (states, frozen, jax.ShapeDtypeStruct((), jnp.int32))
        if shardings is not None:
            _COMPILED[key] = compile_program(
                jax.jit(chunk_fn(config, max_updates), **placement).lower(*args))
        else:
            _COMPILED[key] = executables.load_or_compile(
                ("chunk", *key), chunk_fn(config, max_updates), args, compile_program,
                store=executables.storable(config))
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


class CompileNotice:
    """Says that a program is compiling instead of leaving the terminal silent: a line when it
    starts, the elapsed time while it goes on (after ``quiet`` seconds: on a terminal the same line
    rewritten every ``every`` seconds, default 1; otherwise a line every ``every`` seconds, default
    10), and how long it took, noting a hit in the persistent compilation cache. ``out`` None says
    nothing (a process other than 0 of a multi-process run).

    :meth:`start`, then :meth:`finish` (or :meth:`close` when the compilation failed or was
    abandoned); :meth:`run` does both around a function. The compile thread starts and finishes
    it while a daemon thread ticks; a lock keeps their lines whole."""

    def __init__(self, what: str, detail: str, out, *, tty: bool | None = None,
                 every: float | None = None, quiet: float = 5.0, clock=time.monotonic):
        self.what, self.detail, self.out, self.clock = what, detail, out, clock
        self.tty = _is_terminal(out) if tty is None else tty
        self.every = every if every is not None else (1.0 if self.tty else 10.0)
        self.quiet = quiet
        self.started: float | None = None
        self._cache_before: int | None = None
        self._over = threading.Event()
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._open = False  # started and not yet finished or closed

    @property
    def head(self) -> str:
        return f"compiling {self.what} ({self.detail})… "

    def _write(self, text: str, last: bool = False) -> None:
        with self._lock:
            if self._open and self.out is not None:
                self.out.write(text)
                self.out.flush()
            if last:
                self._open = False

    def start(self, started: float | None = None) -> None:
        """Announce the compilation (begun at ``started`` on :attr:`clock`, default now)."""
        from pgjax.run import compilation_cache
        self.started = self.clock() if started is None else started
        self._cache_before = compilation_cache.entries()
        self._open = True
        self._write(self.head if self.tty else self.head.rstrip() + "\n")
        if self.out is not None:
            # started before it is published: a close() racing this start (a signal during
            # set-up) sees no ticker or a started one, never one it cannot join; a ticker that
            # starts after close() finds the stop event set and ends at once
            ticker = threading.Thread(target=self._tick, name="pgjax-compile-notice", daemon=True)
            ticker.start()
            self._ticker = ticker

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _tick(self) -> None:
        wait = max(self.quiet - self.elapsed(), 0.0)
        while not self._over.wait(wait):
            seconds = self.elapsed()
            self._write(f"\r{self.head}{seconds:.0f} s" if self.tty
                        else f"  still compiling {self.what}: {seconds:.0f} s\n")
            wait = self.every

    def finish(self) -> float:
        """Say how long it took (from :meth:`start`); returns the seconds."""
        from pgjax.run import compilation_cache
        seconds = self.elapsed()
        self._stop_ticker()
        after = compilation_cache.entries()
        hit = " (from the compilation cache)" if after is not None and after == self._cache_before \
            else ""
        self._write(f"\r{self.head}compiled in {seconds:.1f} s{hit}\n" if self.tty
                    else f"compiled {self.what} in {seconds:.1f} s{hit}\n", last=True)
        return seconds

    def close(self) -> None:
        """Stop saying anything (a terminal's open line is ended)."""
        self._stop_ticker()
        self._write("\n" if self.tty else "", last=True)

    def _stop_ticker(self) -> None:
        self._over.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()

    def run(self, fn, *args):
        """``fn(*args)`` announced: :meth:`start`, then :meth:`finish` (:meth:`close` if it raised)."""
        self.start()
        try:
            result = fn(*args)
        except BaseException:
            self.close()
            raise
        self.finish()
        return result


def _is_terminal(out) -> bool:
    try:
        return bool(out is not None and out.isatty())
    except (AttributeError, ValueError):
        return False


def training_notice_detail(members: int, config, max_updates: int) -> str:
    """What :class:`CompileNotice` says of the training program."""
    return (f"{members:,d} member(s), {config.num_envs:,d} envs × {config.rollout_length:,d} steps, "
            f"up to {max_updates:,d} updates per call")


def timed(fn, *args):
    """(fn(*args) with its outputs fetched to the host, wall seconds)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start
