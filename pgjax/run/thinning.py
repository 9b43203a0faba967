"""Bounded logging: what the metric sinks receive grows with wall time, not with
the number of updates or members.

The training program returns every update's metrics for every member; :class:`Thinner` turns
them into *rows* that each cover about ``every_seconds`` of wall time (the mean of each metric
over the row's updates, the env-step count and update number of its last update, and ``span``:
how many updates it covers). ``every_seconds=0`` keeps a row per update (full detail).

Per-member rows of a large population are written less often (``member_stride``), and
:func:`setting_statistics` summarises the seeds of every hyperparameter setting (mean, min, max,
quartiles) for every row, so a 2048-member run writes about as much as a small one per hour.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from pgjax.run.records import ChunkRecord

QUANTILES = {"min": 0.0, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}


def member_stride(members: int, log_members: int) -> int:
    """Member rows are written every ``stride``-th row, so a population writes about as many
    member rows per hour as ``log_members`` members would."""
    return max(1, math.ceil(members / max(log_members, 1)))


def concatenate(first: ChunkRecord | None, second: ChunkRecord) -> ChunkRecord:
    """Two consecutive records as one (the marks of ``second`` shift right)."""
    if first is None:
        return second
    n = first.live.shape[1]
    return ChunkRecord(
        {name: np.concatenate([first.metrics[name], second.metrics[name]], axis=1)
         for name in second.metrics},
        second.labels, np.concatenate([first.updates, second.updates]),
        np.concatenate([first.live, second.live], axis=1),
        {**first.marks, **{(m, k + n): mark for (m, k), mark in second.marks.items()}},
        np.concatenate([first.spans(), second.spans()]))


def window(record: ChunkRecord, start: int, stop: int) -> ChunkRecord:
    """Columns ``[start, stop)`` of ``record``."""
    return ChunkRecord({name: v[:, start:stop] for name, v in record.metrics.items()},
                       record.labels, record.updates[start:stop], record.live[:, start:stop],
                       {(m, k - start): mark for (m, k), mark in record.marks.items()
                        if start <= k < stop}, record.spans()[start:stop])


def summarise(record: ChunkRecord) -> ChunkRecord:
    """One row per member for the whole ``record``: the mean of every metric over the member's
    live updates (``env_steps`` and ``update``: the last one's; ``span``: how many updates)."""
    hidden = record.hidden()
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        metrics = {name: np.nanmean(values, axis=1, keepdims=True) for name, values in hidden.items()}
    if "env_steps" in record.metrics:
        metrics["env_steps"] = record.metrics["env_steps"][:, -1:]
    marks = {}
    for (m, _), mark in record.marks.items():
        marks.setdefault((m, 0), {}).update(mark)
    return ChunkRecord(metrics, record.labels, record.updates[-1:], record.live.any(axis=1, keepdims=True),
                       marks, np.asarray([int(record.spans().sum())]))


def _quiet_nan_warnings():
    """``nanmean`` of an all-NaN slice (no episode ended in a row) is NaN, without a warning."""
    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)


class Thinner:
    """Cuts the per-update records of consecutive chunks into rows of about ``every_seconds`` of
    wall time each; the updates of an unfinished row wait for the next chunk (or :meth:`flush`)."""

    def __init__(self, every_seconds: float):
        self.every_seconds = float(every_seconds)
        self.pending: ChunkRecord | None = None

    def rows(self, record: ChunkRecord, seconds: float) -> ChunkRecord | None:
        """The complete rows after a chunk of ``seconds`` wall time (None: none complete yet)."""
        n = record.live.shape[1]
        if self.every_seconds <= 0:
            return record
        per_row = max(1, round(self.every_seconds * n / max(seconds, 1e-9)))
        merged = concatenate(self.pending, record)
        complete = (merged.live.shape[1] // per_row) * per_row
        self.pending = window(merged, complete, merged.live.shape[1]) \
            if complete < merged.live.shape[1] else None
        if complete == 0:
            return None
        return _join([summarise(window(merged, k, k + per_row)) for k in range(0, complete, per_row)])

    def flush(self) -> ChunkRecord | None:
        """The unfinished row, if any (at a checkpoint and at the end of the run)."""
        pending, self.pending = self.pending, None
        return None if pending is None else summarise(pending)


def _join(rows: list[ChunkRecord]) -> ChunkRecord:
    joined = rows[0]
    for row in rows[1:]:
        joined = concatenate(joined, row)
    return joined


def setting_statistics(values: np.ndarray, groups: list[list[int]]) -> dict[str, np.ndarray]:
    """``values [members, n]`` summarised over the members of each group (a setting's seeds),
    ignoring NaN: ``{"mean": [groups, n], "min": …, "q25", "median", "q75", "max"}``."""
    out = {}
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        stacked = [np.asarray(values, np.float64)[group] for group in groups]
        out["mean"] = np.stack([np.nanmean(v, axis=0) for v in stacked])
        for name, q in QUANTILES.items():
            out[name] = np.stack([np.nanquantile(v, q, axis=0) for v in stacked])
    return out
