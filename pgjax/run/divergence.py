"""Members that went non-finite in a chunk: where, on which metric, and which rows of the chunk are
real updates (the freezing itself happens inside the program,
:mod:`pgjax.run.chunks`)."""

from __future__ import annotations

import numpy as np

from pgjax import algorithms


def divergences(metrics: dict[str, np.ndarray], healthy: np.ndarray, frozen: np.ndarray) -> dict:
    """{member: (chunk index, metric)} of the members that went non-finite in this chunk:
    ``healthy`` is the program's ``[M, n]`` flags, ``frozen`` the members frozen before it. The
    metric is the first watched one that is non-finite there, or "parameters"."""
    found = {}
    for member in np.nonzero(~healthy.all(axis=1) & ~frozen)[0]:
        k = int(np.argmin(healthy[member]))
        bad = [name for name in sorted(metrics) if algorithms.is_watched(name)
               and not np.isfinite(np.asarray(metrics[name][member, k], np.float64))]
        found[int(member)] = (k, bad[0] if bad else "parameters")
    return found


def live_rows(healthy: np.ndarray, frozen: np.ndarray, found: dict) -> np.ndarray:
    """``[M, n]``: which rows of a chunk are real updates of a member — all of an unfrozen member's,
    up to and including the one it diverged at, none of an already frozen one's."""
    live = np.broadcast_to(~frozen[:, None], healthy.shape).copy()
    for member, (k, _) in found.items():
        live[member, k + 1:] = False
    return live




def divergence_message(labels: list[dict], found: dict, done: int) -> str:
    """One line naming each member of ``found`` (its seed and swept setting), the metric and the
    update at which it went non-finite; ``done`` updates preceded the chunk."""
    parts = []
    for member, (k, metric) in sorted(found.items()):
        label = labels[member]
        setting = ", ".join(f"{key[3:]}={value:g}" for key, value in label.items() if key.startswith("hp_"))
        parts.append(f"member {member} (seed {label['seed']}{', ' + setting if setting else ''}) "
                     f"went non-finite ({metric}) at update {done + k + 1}")
    return "; ".join(parts)
