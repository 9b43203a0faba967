"""Orbax checkpoints of the whole (vmapped) train state, atomic and without pickle.

    runs/<name>/checkpoints/latest/<step>/   the last ``keep`` saves (by env steps or wall time)
    runs/<name>/checkpoints/best/<step>/     the save with the best mean evaluation return

``step`` is the number of environment steps per population member. Each save holds the train
state of every member (parameters, optimiser state, env state with its normalisation
statistics, keys, counters, hyperparameters) and a small JSON of runner counters. Orbax writes
into a temporary folder and renames it when complete, so a process killed mid-save leaves the
previous checkpoints intact. Arrays are stored with tensorstore and metadata as JSON: nothing is
unpickled on load.

Typed PRNG keys are stored as their raw ``uint32`` key data and re-wrapped on restore. Arrays
with no elements (e.g. an empty ring buffer of parameter snapshots) are not stored at all (orbax
refuses zero-size arrays) and are rebuilt empty on restore.

**Writer and readers.** Only the run's lock holder, the trainer, opens the folder for writing: it
removes the temporary folder a process killed mid-save left. Everything else (``pgjax eval``,
tests, any load path) opens it read-only (``read_only=True``): nothing is created, removed or
rewritten, so a reader may look at a run while it trains (a save in progress is a temporary folder
it ignores) and at a folder it cannot write.

**Faults.** A save that cannot be written (disk full, file too large, I/O error) raises
:class:`pgjax.run.loggers.WriteFailed` naming the step's folder. A restore first compares the
shapes and dtypes stored with the checkpoint against the state the configuration builds, and
refuses a mismatch (a hand-edited ``config.json``) naming the first leaf that differs; then a step
whose files are damaged (truncated or deleted) is skipped, with a one-line warning, for the newest
intact one, and with none intact the restore is refused in one line.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from pgjax.config import ConfigError
from pgjax.run.loggers import WriteFailed, describe_error, writing


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_empty(x) -> bool:
    return hasattr(x, "shape") and math.prod(x.shape) == 0


def to_savable(tree):
    """Replace typed key arrays by their ``uint32`` key data and drop arrays with no elements."""
    return jax.tree.map(lambda x: None if _is_empty(x) else
                        jax.random.key_data(x) if _is_key(x) else x, tree)


def from_saved(saved, like):
    """Inverse of :func:`to_savable`, using ``like`` (same structure) to know where keys and
    empty arrays were."""
    def rebuild(like_leaf, saved_leaf):
        if _is_empty(like_leaf):
            return jnp.zeros(like_leaf.shape, like_leaf.dtype)
        return jax.random.wrap_key_data(saved_leaf) if _is_key(like_leaf) else saved_leaf
    return jax.tree.map(rebuild, like, _with_empty_slots(saved, like))


def _with_empty_slots(saved, like):
    """``saved`` with a None put back where ``like`` has an empty array (so the trees align)."""
    flat_like, treedef = jax.tree.flatten(like)
    saved_leaves = iter(jax.tree.leaves(saved))
    return jax.tree.unflatten(treedef, [None if _is_empty(x) else next(saved_leaves) for x in flat_like])


def abstract_of(tree):
    """ShapeDtypeStructs of the savable form of ``tree`` (a state or ``jax.eval_shape`` of one),
    with each leaf's sharding, or the first local device where it has none: a restore places every
    process's shards, whatever devices and processes saved it."""
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # for a leaf with none
    shardings = [getattr(x, "sharding", None) or here for x in jax.tree.leaves(tree) if not _is_empty(x)]
    saved = jax.tree.leaves(jax.eval_shape(to_savable, tree))
    treedef = jax.tree.structure(jax.eval_shape(to_savable, tree))
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
                                        for x, sharding in zip(saved, shardings)])


def with_injected_hyperparams(like_state):
    """``like_state`` in the layout of a checkpoint whose optimiser was wrapped in
    ``optax.inject_hyperparams``: its state held an update count and a copy of the
    step sizes and clip norm beside the inner state (which is today's optimiser state, unchanged).
    Restoring such a run folder goes through this layout and keeps the inner state."""
    import optax
    counter = jax.ShapeDtypeStruct(like_state.update_step.shape, jnp.int32)
    scalar = jax.ShapeDtypeStruct(like_state.update_step.shape, jnp.float32)
    names = ["learning_rate", "max_grad_norm"]
    if hasattr(like_state.hparams, "critic_learning_rate"):
        names.append("critic_learning_rate")
    return like_state.replace(opt_state=optax.InjectStatefulHyperparamsState(
        count=counter, hyperparams={name: scalar for name in names}, hyperparams_states={},
        inner_state=like_state.opt_state))


class CheckpointDamaged(ConfigError):
    """A checkpoint whose files cannot be read back (truncated or deleted data, missing metadata)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaf_specs(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"params.params.Dense_0.kernel": (shape, dtype)}`` for every array of ``tree``, named by
    its path the way orbax names a saved leaf (attribute, key or index, joined by dots), in the
    tree's order."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {".".join(_key_name(k) for k in path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
            for path, leaf in flat}


def first_mismatch(expected: dict, saved: dict) -> str | None:
    """The first leaf (in ``expected``'s order, then ``saved``'s) whose shape or dtype differs, or
    which only one of the two has, described in words; None when they agree."""
    def text(spec):
        return f"{spec[1]}{list(spec[0])}"
    for name, spec in expected.items():
        if name not in saved:
            return f"{name} ({text(spec)}) is not in the checkpoint"
        if saved[name] != spec:
            return f"{name} is {text(spec)} in the configuration but {text(saved[name])} in the checkpoint"
    extra = [name for name in saved if name not in expected]
    return f"the checkpoint holds {extra[0]} ({text(saved[extra[0]])}), which the configuration does not" \
        if extra else None


@contextlib.contextmanager
def _orbax_quiet():
    """Orbax logs through absl: a read-only manager warns that it is read-only, and a failed save
    or restore logs its error with a traceback from each of orbax's threads before raising it.
    The caller reports that error once, in one line, so orbax's log is kept to CRITICAL here."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    _drop_late_wakeups()
    try:
        yield
    finally:
        logger.setLevel(level)


def _drop_late_wakeups() -> None:
    """A save or restore that fails ends orbax's event loop on the first error, yet tensorstore
    completes every read or write it had started, and each completion's wake-up of the closed loop
    is reported by Python as an unraisable ``RuntimeError: Event loop is closed`` with its
    traceback: dozens for one damaged checkpoint, saying nothing the first error did not. This
    process-wide hook drops exactly those and hands anything else to the hook it wraps; put in
    place before each save or restore unless it already is."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_late_wakeups", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        previous(unraisable)

    hook.drops_late_wakeups = True
    sys.unraisablehook = hook


def _is_write_error(error: BaseException) -> bool:
    """An OSError, or tensorstore's ValueError for one (it carries ``os_error_code``)."""
    return isinstance(error, OSError) or (isinstance(error, ValueError)
                                          and "os_error_code=" in str(error))


class Checkpoints:
    """The latest ``keep`` checkpoints plus the best one by evaluation return; ``read_only`` for
    every reader (nothing in the folder is created, removed or rewritten)."""

    def __init__(self, run_dir: Path, keep: int = 3, *, read_only: bool = False):
        self.shown = Path(run_dir) / "checkpoints"  # as the caller wrote it, for messages
        self.read_only = read_only
        self.restored_step: int | None = None  # the step the last restore read
        self.damaged: dict[str, set[int]] = {"latest": set(), "best": set()}  # skipped by a restore
        self._held_best: tuple | None = None  # (step, state, meta, eval return) until written
        root = Path(run_dir).absolute() / "checkpoints"
        if read_only:
            common = dict(read_only=True, create=False, cleanup_tmp_directories=False,
                          save_interval_steps=0, max_to_keep=None)
        else:
            common = dict(create=True, cleanup_tmp_directories=True, max_to_keep=keep)
        # a writer creates the folders and removes what a killed save left: that may fail to write
        with _orbax_quiet(), contextlib.nullcontext() if read_only else writing(self.shown):
            self.latest = ocp.CheckpointManager(
                root / "latest", item_handlers=_handlers(), options=ocp.CheckpointManagerOptions(
                    enable_async_checkpointing=False, **common))
            self.best = ocp.CheckpointManager(
                root / "best", item_handlers=_handlers(), options=ocp.CheckpointManagerOptions(
                    enable_async_checkpointing=False, best_fn=lambda m: m["eval_return"],
                    best_mode="max", **{**common, "max_to_keep": None if read_only else 1}))

    def _manager(self, which: str) -> ocp.CheckpointManager:
        if which not in ("latest", "best"):
            raise ValueError(f"checkpoint kind {which!r} is not allowed: 'latest' or 'best'")
        return self.latest if which == "latest" else self.best

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Save ``state`` (all members) and the runner's ``meta`` counters as ``step`` (in place of
        a damaged save of that step that a restore skipped), then the best state held by
        :meth:`offer_best` since the last save, if any."""
        if step in self.latest.all_steps():
            if step not in self.damaged["latest"]:
                self.write_best()
                return
            with _orbax_quiet():
                self.latest.delete(step)
            self.damaged["latest"].discard(step)
        self._save("latest", step, state, meta)
        self.write_best()

    def best_return(self) -> float:
        """The evaluation return of the best state saved or held (-inf when there is none)."""
        if self._held_best is not None:
            return self._held_best[3]
        step = self.best.best_step()
        metrics = None if step is None else self.best.metrics(step)
        return -math.inf if not metrics else float(metrics["eval_return"])

    def offer_best(self, step: int, state, meta: dict[str, Any], eval_return: float) -> bool:
        """Hold ``state`` for the best-by-evaluation slot when ``eval_return`` beats the best so
        far; it is written with the next :meth:`save` (a run saves at its end and when it stops),
        so evaluating often costs no extra writes. A process killed before that save loses the held
        state, as it loses every update since its latest checkpoint; the resumed run evaluates at
        the same step again and finds it again. Returns whether it was held."""
        if step in self.best.all_steps() or not eval_return > self.best_return():
            return False
        self._held_best = (step, state, meta, float(eval_return))
        return True

    def write_best(self) -> None:
        """Write the state :meth:`offer_best` holds, if any (orbax keeps the better of it and the
        saved best)."""
        if self._held_best is None:
            return
        step, state, meta, eval_return = self._held_best
        self._held_best = None
        if step not in self.best.all_steps():
            self._save("best", step, state, meta, metrics={"eval_return": eval_return})

    def _save(self, which: str, step: int, state, meta: dict[str, Any], **extra) -> None:
        """One orbax save, waited for; :class:`WriteFailed` naming the step's folder when it
        cannot be written (orbax leaves a temporary folder, removed when the run resumes)."""
        if self.read_only:
            raise ValueError(f"{self.shown} was opened read-only: a reader does not save")
        manager = self._manager(which)
        try:
            with _orbax_quiet():
                manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(to_savable(state)), meta=ocp.args.JsonSave(meta)),
                    **extra)
                manager.wait_until_finished()
        except (OSError, ValueError) as error:
            if not _is_write_error(error):
                raise
            raise WriteFailed(self.shown / which / str(step), error) from None

    def steps(self, which: str = "latest") -> list[int]:
        return sorted(self._manager(which).all_steps())

    def restore(self, like_state, step: int | None = None, which: str = "latest"):
        """Return (state, meta) of checkpoint ``step`` (default: the newest intact one of
        ``which``). ``like_state`` gives the structure: a state or ``jax.eval_shape`` of one.

        A checkpoint that does not hold ``like_state``'s leaves (shapes, dtypes) is refused
        (ConfigError naming the first that differs) before anything is read. Without ``step``, a
        damaged newer checkpoint is skipped with a one-line warning (a writer saves that step
        again when it trains past it). :class:`CheckpointDamaged` when none is intact (or the
        ``step`` asked for is damaged)."""
        manager = self._manager(which)
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"no {which} checkpoint in {self.shown / which}")
        if step is not None and step not in steps:
            raise ValueError(f"step={step} is not allowed: the {which} checkpoints hold steps {steps}")
        damaged = []
        for candidate in [step] if step is not None else reversed(steps):
            try:
                restored = self._restore(manager, which, candidate, like_state)
            except CheckpointDamaged as error:
                damaged.append(error)
                continue
            self._skipped(which, damaged, candidate)
            self.restored_step = candidate
            return restored
        if step is not None:
            raise damaged[0]
        raise CheckpointDamaged(f"no intact {which} checkpoint in {self.shown / which}: "
                                + "; ".join(str(error) for error in damaged))

    def _skipped(self, which: str, damaged: list[CheckpointDamaged], restored: int) -> None:
        """Warn, one line each, about the damaged steps skipped for ``restored``; a writer saves
        those steps again as it trains past them (:meth:`save`)."""
        for error in damaged:
            self.damaged[which].add(error.step)
            again = "" if self.read_only or which != "latest" else " (saved again when training reaches it)"
            warnings.warn(f"{error}: skipped{again}; using step {restored}", stacklevel=3)

    def check_matches(self, like_state, which: str = "latest") -> None:
        """Refuse (ConfigError naming the first leaf that differs) a ``like_state`` that the
        newest checkpoint with readable metadata does not hold, in today's layout or the
        ``inject_hyperparams`` one (:func:`with_injected_hyperparams`). Reads the stored metadata only."""
        manager = self._manager(which)
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                self._layout(manager, which, step, like_state)
            except CheckpointDamaged:
                continue
            return

    def _layout(self, manager, which: str, step: int, like_state):
        """(the ``like_state`` to restore ``step`` into, whether it is the old layout)."""
        saved = self._saved_leaves(manager, which, step)
        mismatch = first_mismatch(leaf_specs(jax.eval_shape(to_savable, like_state)), saved)
        if mismatch is None:
            return like_state, False
        legacy = with_injected_hyperparams(like_state)
        if first_mismatch(leaf_specs(jax.eval_shape(to_savable, legacy)), saved) is None:
            return legacy, True
        raise ConfigError(f"the run's configuration does not match its {which} checkpoint at step "
                          f"{step} ({self.shown / which / str(step)}): {mismatch} (was config.json "
                          "edited after the run saved it?)")

    def _saved_leaves(self, manager, which: str, step: int) -> dict:
        """The stored shapes and dtypes of checkpoint ``step`` (:func:`leaf_specs`)."""
        where = self.shown / which / str(step)
        try:
            with _orbax_quiet():
                metadata = manager.item_metadata(step)["state"]
        except (OSError, ValueError, KeyError) as error:  # missing or damaged metadata files
            raise CheckpointDamaged(f"checkpoint {where} is damaged ({describe_error(error)})",
                                    step) from None
        if metadata is None:
            raise CheckpointDamaged(f"checkpoint {where} is damaged (its metadata is missing)", step)
        return leaf_specs(metadata)

    def _restore(self, manager, which: str, step: int, like_state):
        into, legacy = self._layout(manager, which, step, like_state)
        try:
            with _orbax_quiet():
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_of(into)), meta=ocp.args.JsonRestore()))
        except (OSError, ValueError, KeyError) as error:  # the leaves matched: the files failed
            raise CheckpointDamaged(f"checkpoint {self.shown / which / str(step)} is damaged "
                                    f"({describe_error(error)})", step) from None
        state, meta = from_saved(restored["state"], into), dict(restored["meta"])
        return (state.replace(opt_state=state.opt_state.inner_state) if legacy else state), meta

    def close(self) -> None:
        with _orbax_quiet():
            self.latest.close()
            self.best.close()


def _handlers() -> dict:
    """The two items of every save: the train state (arrays) and the runner's counters (JSON)."""
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
