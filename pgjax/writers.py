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
    """Appends one JSON object per line: one line per update and per seed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)

    def write_chunk(self, metrics: dict[str, np.ndarray], seeds: list[int], extra: dict | None = None):
        """``metrics[name]`` is ``[num_seeds, K]``; writes K·num_seeds lines, update-major."""
        names = sorted(metrics)
        num_updates = next(iter(metrics.values())).shape[1]
        lines = []
        for k in range(num_updates):
            for s, seed in enumerate(seeds):
                row = {"seed": seed, **(extra or {})}
                row.update({name: metrics[name][s, k] for name in names})
                lines.append(json.dumps(to_jsonable(row), sort_keys=True))
        self._file.write("\n".join(lines) + "\n")

    def write(self, row: dict):
        self._file.write(json.dumps(to_jsonable(row), sort_keys=True) + "\n")

    def close(self):
        self._file.close()


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
