"""When a run evaluates and checkpoints (host side): scheduled points in update counts, plus the
checkpoint policy (at those points, at the end, after ``checkpoint_minutes`` of wall time, and
when the run is stopping). Chunks of updates end at the next scheduled event."""

from __future__ import annotations

import math
from dataclasses import dataclass


def schedule(num_updates: int, steps_per_update: int, every_steps: int | None, count: int) -> list[int]:
    """Update counts after which an event (evaluation, checkpoint) is due, ending at the last update."""
    if every_steps is not None:
        every = max(1, math.ceil(every_steps / steps_per_update))
        points = list(range(every, num_updates, every))
    else:
        points = [round(num_updates * i / count) for i in range(1, count)]
    return sorted({p for p in points if 0 < p < num_updates} | {num_updates})




def next_point(points, after: int) -> int:
    """The first scheduled update count strictly after ``after`` (the last one if none is)."""
    return next((p for p in points if p > after), points[-1])


@dataclass(frozen=True)
class Events:
    """The evaluation and checkpoint schedule of one run, in update counts."""
    num_updates: int
    eval_points: tuple[int, ...]
    checkpoint_points: tuple[int, ...]
    checkpoint_seconds: float  # wall time after which a checkpoint is due anyway
    stops: tuple[int, ...] = ()  # where the run stops before its end (it evaluates and saves there)

    @classmethod
    def for_run(cls, num_updates: int, steps_per_update: int, options, stops=()) -> "Events":
        """From :class:`pgjax.run.options.RunOptions`: ``num_evals`` spread evenly or one every
        ``eval_every`` env steps; checkpoints every ``checkpoint_every`` env steps when given
        (otherwise by wall time, :meth:`checkpoint_due`); an evaluation and a checkpoint at each of
        ``stops`` too (a rung's end)."""
        evals = schedule(num_updates, steps_per_update, options.eval_every, options.num_evals)
        saves = [num_updates] if options.checkpoint_every is None else schedule(
            num_updates, steps_per_update, options.checkpoint_every, 1)
        stops = tuple(sorted(set(stops)))
        return cls(num_updates, tuple(sorted(set(evals) | set(stops))),
                   tuple(sorted(set(saves) | set(stops))), 60.0 * options.checkpoint_minutes, stops)

    def updates_to_next(self, done: int) -> int:
        """Updates from ``done`` to the next scheduled evaluation or checkpoint."""
        return min(next_point(self.eval_points, done), next_point(self.checkpoint_points, done)) - done

    def evaluation_due(self, done: int, chunk: int) -> bool:
        """Whether the chunk of ``chunk`` updates that ended at ``done`` reached an evaluation."""
        return done >= next_point(self.eval_points, done - chunk)

    def checkpoint_due(self, done: int, chunk: int, seconds_since_save: float, stopping: bool) -> bool:
        """After the chunk ending at ``done``: at a scheduled point, at the end of the run, once
        ``checkpoint_seconds`` have passed since the last save, or when the run is stopping."""
        return (done >= next_point(self.checkpoint_points, done - chunk) or done == self.num_updates
                or done in self.stops or seconds_since_save > self.checkpoint_seconds or stopping)
