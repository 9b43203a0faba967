"""Orbax checkpoints of the whole (vmapped) train state, atomic and without pickle.

    runs/<name>/checkpoints/latest/<step>/   the last ``keep`` saves (by env steps or wall time)
    runs/<name>/checkpoints/best/<step>/     the save with the best mean evaluation return

``step`` is the number of environment steps per population member. Each save holds the train
state of every member (parameters, optimiser state, env state with its normalisation
statistics, keys, counters, hyperparameters) and a small JSON of runner counters. Orbax writes
into a temporary folder and renames it when complete, so a process killed mid-save leaves the
previous checkpoints intact. Arrays are stored with tensorstore and metadata as JSON: nothing is
unpickled on load.

Typed PRNG keys are stored as their raw ``uint32`` key data and re-wrapped on restore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_savable(tree):
    """Replace typed key arrays by their ``uint32`` key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def from_saved(saved, like):
    """Inverse of :func:`to_savable`, using ``like`` (same structure) to know where keys were."""
    return jax.tree.map(lambda s, l: jax.random.wrap_key_data(s) if _is_key(l) else s, saved, like)


def abstract_of(tree):
    """ShapeDtypeStructs of the savable form of ``tree`` (a state or ``jax.eval_shape`` of one)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        jax.eval_shape(to_savable, tree))


class Checkpoints:
    """The latest ``keep`` checkpoints plus the best one by evaluation return."""

    def __init__(self, run_dir: Path, keep: int = 3):
        root = Path(run_dir).absolute() / "checkpoints"
        common = dict(enable_async_checkpointing=False, create=True)
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
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_of(like_state)), meta=ocp.args.JsonRestore()))
        return from_saved(restored["state"], like_state), dict(restored["meta"])

    def close(self) -> None:
        self.latest.close()
        self.best.close()
