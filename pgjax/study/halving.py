"""Successive halving (Jamieson & Talwalkar 2016, "Non-stochastic best arm identification and
hyperparameter optimization"; the rung schedule of Li et al. 2018, "Hyperband").

A study of S settings runs in rungs. Rung r ends at ``rung_updates[r]`` updates per member, a
geometric schedule with ratio η that ends at the full budget; at the end of every rung but the last,
the settings are ranked by their score (the mean over seeds of the evaluation return at that point)
and only the top ⌈S_r/η⌉ go on. The survivors are sliced out of the member-stacked state and train
on in a smaller program, so a stopped setting costs nothing after its rung.
"""

from __future__ import annotations

import math

import numpy as np

from pgjax.config_error import ConfigError


def rung_updates(num_updates: int, num_settings: int, eta: int, num_rungs: int | None = None) -> list[int]:
    """Updates per member at the end of each rung: ``num_updates · η^-(R-1-r)`` rounded down (at
    least 1, strictly increasing), the last = ``num_updates``. ``R`` defaults to the number of
    halvings that leave one setting: ⌈log_η S⌉ + 1."""
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"prune_eta={eta!r} is not allowed: an integer ≥ 2 (the fraction 1/η of "
                          "settings that go on at each rung)")
    if num_rungs is None:
        num_rungs = max(1, math.ceil(math.log(num_settings) / math.log(eta) - 1e-12) + 1)
    if isinstance(num_rungs, bool) or not isinstance(num_rungs, int) or num_rungs < 1:
        raise ConfigError(f"prune_rungs={num_rungs!r} is not allowed: a positive integer")
    ends = [max(1, num_updates // eta ** (num_rungs - 1 - r)) for r in range(num_rungs)]
    if len(set(ends)) != len(ends):
        raise ConfigError(f"prune_rungs={num_rungs} is not allowed: {num_updates} updates cannot "
                          f"be split into {num_rungs} rungs of ratio η={eta} (rung ends {ends}); "
                          "use fewer rungs or a larger total_steps")
    return ends


def survivors(scores, eta: int) -> np.ndarray:
    """Indices (sorted ascending) of the top ⌈S/η⌉ settings by ``scores`` [S]; a non-finite score
    (a setting whose seeds all diverged) ranks last, ties go to the lower index."""
    scores = np.asarray(scores, np.float64)
    keep = math.ceil(len(scores) / eta)
    key = np.where(np.isfinite(scores), -scores, np.inf)
    order = np.lexsort((np.arange(len(scores)), key))
    return np.sort(order[:keep])


def steps_saved(rung_ends: list[int], settings_per_rung: list[int], steps_per_update: int,
                seeds: int) -> tuple[int, int]:
    """(env steps the halving study ran, env steps the full grid would have run)."""
    full = settings_per_rung[0] * seeds * rung_ends[-1] * steps_per_update
    ran, start = 0, 0
    for end, count in zip(rung_ends, settings_per_rung):
        ran += count * seeds * (end - start) * steps_per_update
        start = end
    return ran, full
