"""Population-based training in a run (host side): a round after every evaluation but the last.

``pgjax train ALGO --sweep KEY=SPEC ... --pbt`` trains the settings × seeds of the search space as
one population in the one compiled program; after each scheduled evaluation the members are ranked
by its mean return and :mod:`pgjax.study.pbt` exploits (the bottom ``pbt_fraction`` copy a top
member's learner state) and explores (their searched hyperparameters perturbed by 0.8 or 1.2, or
resampled with probability ``pbt_resample``, within the search space's range and the field's
declared range). A round's draws depend only on the sweep seed and the update it happens at, and
its scores are the evaluation's (fixed keys), so a resumed run repeats exactly what an
uninterrupted one does. Each round appends one row per member to ``pbt.jsonl`` (its parent, score
and hyperparameters before and after).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import numpy as np

from pgjax.config import ConfigError, settings_of
from pgjax.envs import obs_stats_of, with_obs_stats
from pgjax.study import pbt

LOG_KINDS = ("log", "loguniform")


def searched_bounds(spec) -> dict[str, pbt.Bounds]:
    """``{hyperparameter: Bounds}`` of the numeric axes of the run's search space, each range
    clipped to the field's declared range; a ConfigError when there is nothing to search."""
    axes = (spec.study or {}).get("axes", [])
    declared = settings_of(type(spec.settings[0]))
    bounds = {}
    for axis in axes:
        if axis["kind"] == "choice":
            continue
        values = [float(v) for v in axis.get("values", [])]
        low, high = (axis["low"], axis["high"]) if axis.get("low") is not None else (min(values), max(values))
        setting = declared[axis["key"]]
        if setting.low is not None:
            low = max(low, setting.low)
        if setting.high is not None and setting.high != math.inf:
            high = min(high, setting.high)
        bounds[axis["key"]] = pbt.Bounds(float(low), float(high), log=axis["kind"] in LOG_KINDS)
    if not bounds or len(spec.seeds) * len(spec.settings) < 2:
        raise ConfigError("pbt=True is not allowed: population-based training needs a --sweep of at "
                          "least one numeric hyperparameter and a population of at least 2 members")
    return bounds


@functools.lru_cache(maxsize=8)
def _copy_program():
    return jax.jit(lambda states, sources: pbt.copy_members(states, sources, (obs_stats_of, with_obs_stats)))


def pbt_round(state, scores, update: int, spec, bounds: dict[str, pbt.Bounds]):
    """(new state, pbt.jsonl rows, the members that copied) of the round after the evaluation at
    ``update`` with member ``scores`` (NaN for a diverged member)."""
    options = spec.options
    rng = pbt.round_generator((spec.study or {}).get("sweep_seed") or 0, update)
    sources = pbt.exploit_sources(scores, options.pbt_fraction, rng)
    copied = sources != np.arange(len(sources))
    before = {k: np.asarray(getattr(state.hparams, k), np.float64)[sources] for k in bounds}
    after = pbt.explore(before, copied, bounds, rng, resample_probability=options.pbt_resample)
    state = _copy_program()(state, jax.numpy.asarray(sources))
    hparams = state.hparams.replace(**{
        k: jax.device_put(np.asarray(v, np.float32), getattr(state.hparams, k).sharding)
        for k, v in after.items()})
    rows = pbt.lineage_rows(update, update, sources, scores, before, after)
    return state.replace(hparams=hparams), rows, np.flatnonzero(copied)


def check_options(spec) -> dict[str, pbt.Bounds] | None:
    """The searched bounds when the run asks for PBT (refusing what cannot work), else None."""
    if not spec.options.pbt:
        return None
    if jax.process_count() > 1:
        raise ConfigError("pbt=True is not allowed in a multi-process run (yet): its rounds gather "
                          "the population on one host")
    return searched_bounds(spec)


def rows_path(run_dir: Path) -> Path:
    return Path(run_dir) / "pbt.jsonl"


__all__ = ["check_options", "pbt_round", "rows_path", "searched_bounds"]
