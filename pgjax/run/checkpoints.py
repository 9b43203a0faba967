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
refuses zero-size arrays) and are rebuilt empty on restore. A temporary folder left by a process
killed mid-save is removed when the run folder is next opened.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


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
    """``like_state`` in the layout of checkpoints written before 2026-12-01, when the optimiser
    was wrapped in ``optax.inject_hyperparams``: its state held an update count and a copy of the
    step sizes and clip norm beside the inner state (which is today's optimiser state, unchanged).
    Restoring a run folder of that version goes through this layout and keeps the inner state."""
    import optax
    counter = jax.ShapeDtypeStruct(like_state.update_step.shape, jnp.int32)
    scalar = jax.ShapeDtypeStruct(like_state.update_step.shape, jnp.float32)
    names = ["learning_rate", "max_grad_norm"]
    if hasattr(like_state.hparams, "critic_learning_rate"):
        names.append("critic_learning_rate")
    return like_state.replace(opt_state=optax.InjectStatefulHyperparamsState(
        count=counter, hyperparams={name: scalar for name in names}, hyperparams_states={},
        inner_state=like_state.opt_state))


class Checkpoints:
    """The latest ``keep`` checkpoints plus the best one by evaluation return."""

    def __init__(self, run_dir: Path, keep: int = 3):
        root = Path(run_dir).absolute() / "checkpoints"
        common = dict(enable_async_checkpointing=False, create=True, cleanup_tmp_directories=True)
        self.latest = ocp.CheckpointManager(
            root / "latest", options=ocp.CheckpointManagerOptions(max_to_keep=keep, **common))
        self.best = ocp.CheckpointManager(
            root / "best", options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda m: m["eval_return"], best_mode="max", **common))

    def _manager(self, which: str) -> ocp.CheckpointManager:
        if which not in ("latest", "best"):
            raise ValueError(f"checkpoint kind {which!r} is not allowed: 'latest' or 'best'")
        return self.latest if which == "latest" else self.best

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Save ``state`` (all members) and the runner's ``meta`` counters as ``step``."""
        if step in self.latest.all_steps():
            return
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(to_savable(state)), meta=ocp.args.JsonSave(meta)))
        self.latest.wait_until_finished()

    def save_best(self, step: int, state, meta: dict[str, Any], eval_return: float) -> None:
        """Offer ``state`` to the best-by-evaluation slot (kept only if it beats the saved one)."""
        if step in self.best.all_steps():
            return
        self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(to_savable(state)), meta=ocp.args.JsonSave(meta)),
            metrics={"eval_return": float(eval_return)})
        self.best.wait_until_finished()

    def steps(self, which: str = "latest") -> list[int]:
        return sorted(self._manager(which).all_steps())

    def restore(self, like_state, step: int | None = None, which: str = "latest"):
        """Return (state, meta) of checkpoint ``step`` (default: the newest of ``which``).
        ``like_state`` gives the structure: a state or ``jax.eval_shape`` of one."""
        manager = self._manager(which)
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"no {which} checkpoint in {manager.directory}")
        if step is None:
            step = steps[-1]
        if step not in steps:
            raise ValueError(f"step={step} is not allowed: the {which} checkpoints hold steps {steps}")
        try:
            return self._restore(manager, step, like_state)
        except ValueError as error:
            mismatch = error
        try:  # saved before the learning rate moved out of the optimiser state?
            state, meta = self._restore(manager, step, with_injected_hyperparams(like_state))
        except ValueError:
            raise mismatch from None
        return state.replace(opt_state=state.opt_state.inner_state), meta

    @staticmethod
    def _restore(manager, step: int, like_state):
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_of(like_state)), meta=ocp.args.JsonRestore()))
        return from_saved(restored["state"], like_state), dict(restored["meta"])

    def close(self) -> None:
        self.latest.close()
        self.best.close()
