"""What a run hands its sinks (:mod:`pgjax.run.loggers`) and what thinning
(:mod:`pgjax.run.thinning`) reduces: the records of one chunk and of the live display. A module of
its own so that the sinks and the thinning both read it and neither imports the other's module
for it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ChunkRecord:
    """Metric rows of one chunk: ``metrics[name]`` is ``[members, n]`` (``env_steps`` and ``fps``
    included); column k is update ``updates[k]`` (1-based) or, once thinned
    (:mod:`pgjax.run.thinning`), the mean over the ``span[k]`` updates ending there; ``live[m, k]``
    says whether row (m, k) holds a real update of member m (a diverged member's rows stop after
    the update it diverged at); ``marks[(m, k)]`` adds fields to a row."""
    metrics: dict[str, np.ndarray]
    labels: list[dict]
    updates: np.ndarray
    live: np.ndarray
    marks: dict = field(default_factory=dict)
    span: np.ndarray | None = None

    def spans(self) -> np.ndarray:
        return np.ones(len(self.updates), np.int64) if self.span is None else np.asarray(self.span)

    def hidden(self) -> dict[str, np.ndarray]:
        """The metrics with rows that are not live set to NaN (sinks skip non-finite values)."""
        return {name: np.where(self.live, np.asarray(v, np.float64), np.nan)
                for name, v in self.metrics.items()}


@dataclass
class Progress:
    """What the live display shows after a chunk."""
    env_steps: int
    total_env_steps: int
    last_returns: np.ndarray          # [members] latest finished-episode return (NaN: none yet)
    steps_per_second: float
    eta_seconds: float
    last_eval: float | None
    diverged: frozenset = frozenset()
    eval_returns: np.ndarray | None = None  # [members] mean return of the latest evaluation
