"""Metric writers (host side). Non-finite numbers are written as JSON ``null``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return to_jsonable(array.tolist()) if array.ndim else to_jsonable(array.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and ``os.replace`` so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, sort_keys=True))
    os.replace(tmp, path)


class JsonlWriter:
    """Appends one JSON object per line: one line per update and per population member."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)

    def write_chunk(self, metrics: dict[str, np.ndarray], labels: list[dict], first_update: int = 1,
                    live: np.ndarray | None = None, marks: dict | None = None):
        """``metrics[name]`` is ``[num_members, K]``; writes a line per update and member,
        update-major, each with the member's ``labels`` (seed, hyperparameters) and ``update``
        (1-based). ``live`` ``[num_members, K]`` keeps only some rows; ``marks[(m, k)]`` adds
        fields to row (m, k) (e.g. ``diverged``)."""
        names = sorted(metrics)
        num_updates = next(iter(metrics.values())).shape[1]
        marks = marks or {}
        lines = []
        for k in range(num_updates):
            for m, label in enumerate(labels):
                if live is not None and not live[m, k]:
                    continue
                row = {**label, "update": first_update + k, **marks.get((m, k), {})}
                row.update({name: metrics[name][m, k] for name in names})
                lines.append(json.dumps(to_jsonable(row), sort_keys=True))
        if lines:
            self._file.write("\n".join(lines) + "\n")

    def write(self, row: dict):
        self._file.write(json.dumps(to_jsonable(row), sort_keys=True) + "\n")

    def close(self):
        self._file.close()


def truncate_jsonl(path: Path, keep) -> None:
    """Atomically rewrite ``path`` keeping the rows for which ``keep(row)`` is true (a resumed run
    drops what was logged after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and keep(json.loads(line))]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in rows))
    os.replace(tmp, path)


class TensorBoardWriter:
    """One TensorBoard event folder per population member (``tb/<member label>``), scalars
    against environment steps. tensorboardX writes the event files; TensorFlow is not needed."""

    def __init__(self, root: Path, member_names: list[str], purge_step: int | None = None):
        from tensorboardX import SummaryWriter
        self.writers = [SummaryWriter(str(Path(root) / name), purge_step=purge_step, flush_secs=30)
                        for name in member_names]

    def write_chunk(self, metrics: dict[str, np.ndarray], env_steps: np.ndarray, prefix: str = "train"):
        """``metrics[name]`` and ``env_steps`` are ``[num_members, K]``; non-finite values skipped."""
        for m, writer in enumerate(self.writers):
            for name, values in metrics.items():
                for value, step in zip(np.asarray(values[m], np.float64), env_steps[m]):
                    if math.isfinite(value):
                        writer.add_scalar(f"{prefix}/{name}", value, int(step))

    def write_scalars(self, scalars: dict[str, float], step: int, member: int | None = None):
        """Scalars for one member (or for all when ``member`` is None)."""
        targets = self.writers if member is None else [self.writers[member]]
        for writer in targets:
            for name, value in scalars.items():
                if value is not None and math.isfinite(float(value)):
                    writer.add_scalar(name, float(value), int(step))

    def close(self):
        for writer in self.writers:
            writer.close()


class WandbWriter:
    """Weights & Biases logging (optional; ``pip install 'pgjax[wandb]'``): the population mean
    of every metric per update, and every member's evaluation return."""

    def __init__(self, project: str, name: str, config: dict, run_dir: Path, member_names: list[str]):
        import wandb
        self.member_names = member_names
        self.run = wandb.init(project=project, name=name, config=to_jsonable(config),
                              dir=str(run_dir), resume="allow", id=name)

    def write_chunk(self, metrics: dict[str, np.ndarray], env_steps: np.ndarray, prefix: str = "train"):
        with np.errstate(all="ignore"):
            means = {name: np.nanmean(np.asarray(v, np.float64), axis=0) for name, v in metrics.items()}
        for k, step in enumerate(env_steps[0]):
            self.run.log({f"{prefix}/{n}": float(v[k]) for n, v in means.items() if math.isfinite(v[k])},
                         step=int(step))

    def write_scalars(self, scalars: dict[str, float], step: int, member: int | None = None):
        """A member's scalars go under ``<member name>/``, so members do not overwrite each other."""
        prefix = "" if member is None else f"{self.member_names[member]}/"
        self.run.log({prefix + k: float(v) for k, v in scalars.items() if v is not None}, step=int(step))

    def close(self):
        self.run.finish()


def wandb_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("wandb") is not None
