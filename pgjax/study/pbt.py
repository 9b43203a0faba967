"""Population-based training (Jaderberg et al. 2017, "Population based training of neural networks"):
the exploit and explore steps on a member-stacked population.

Every K updates the host ranks the members by a score (the mean training episode return since the
last round) and

- **exploit** (truncation selection, §3 of the paper): each member in the bottom ``fraction`` of
  the ranking copies a member drawn uniformly from the top ``fraction`` — its parameters, optimiser
  state, hyperparameters, algorithm state (``extra``) and observation-normalisation statistics.
  Its environments, observations, random key and recurrent memory stay its own, so a copy goes on
  with its own experience;
- **explore**: each member that copied perturbs every searched hyperparameter by a factor drawn
  from ``factors`` (0.8 or 1.2 in the paper) or, with probability ``resample_probability``,
  resamples it from its range; the result is clipped to the hyperparameter's declared range.

The choices (:func:`exploit_sources`, :func:`explore`) are NumPy functions of a generator seeded
from the study's sweep seed and the round number (:func:`round_generator`), so a resumed study
draws what an uninterrupted one draws; the copy (:func:`copy_members`) is a gather over the member
axis that runs on the device where the population lives. Members whose score is not finite (a
diverged member) rank below every finite score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bounds:
    """Where explore may move one hyperparameter: ``[low, high]`` (``log``: perturbations and
    resampling in log space, for step sizes)."""
    low: float
    high: float
    log: bool = False


def round_generator(sweep_seed: int, round_index: int) -> np.random.Generator:
    """The generator of one PBT round: a function of the study's seed and the round alone."""
    return np.random.Generator(np.random.PCG64([int(sweep_seed), int(round_index)]))


def ranking(scores) -> np.ndarray:
    """Member indices from best to worst; non-finite scores last, ties by member index."""
    scores = np.asarray(scores, np.float64)
    key = np.where(np.isfinite(scores), -scores, np.inf)
    return np.lexsort((np.arange(len(scores)), key))


def exploit_sources(scores, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``sources[i]``: the member whose learner state member ``i`` takes (``i`` itself unless ``i``
    is in the bottom ``fraction``; then a member drawn uniformly from the top ``fraction``)."""
    order = ranking(scores)
    count = int(math.floor(fraction * len(order)))
    sources = np.arange(len(order))
    if count == 0:
        return sources
    top, bottom = order[:count], order[len(order) - count:]
    sources[bottom] = top[rng.integers(0, count, size=count)]
    return sources


def explore(values: dict[str, np.ndarray], replaced: np.ndarray, bounds: dict[str, Bounds],
            rng: np.random.Generator, *, factors=(0.8, 1.2),
            resample_probability: float = 0.0) -> dict[str, np.ndarray]:
    """New ``[M]`` values of the searched hyperparameters: members where ``replaced`` is true are
    perturbed (a factor drawn from ``factors``) or resampled (probability ``resample_probability``,
    uniform — log-uniform for ``log`` bounds — on the range), then clipped to the range. Keys are
    processed in sorted order, so the draws do not depend on the dict's order."""
    out = {}
    count = len(replaced)
    for name in sorted(values):
        value = np.asarray(values[name], np.float64).copy()
        bound = bounds[name]
        factor = np.asarray(factors, np.float64)[rng.integers(0, len(factors), size=count)]
        resample = rng.random(count) < resample_probability
        if bound.log:
            fresh = np.exp(rng.uniform(math.log(bound.low), math.log(bound.high), count))
        else:
            fresh = rng.uniform(bound.low, bound.high, count)
        moved = np.clip(np.where(resample, fresh, value * factor), bound.low, bound.high)
        out[name] = np.where(replaced, moved, value)
    return out


LEARNER_FIELDS = ("params", "opt_state", "hparams", "extra")


def copy_members(states, sources, obs_stats_path=None):
    """``states`` (a member-stacked TrainState, leaves ``[M, ...]``) with the learner fields of
    member ``sources[i]`` in row ``i``: parameters, optimiser state, hyperparameters, ``extra``
    and, when ``obs_stats_path`` is given, the observation statistics (``get, set`` functions on
    the env state). Environment state, observations, keys and memory stay each member's own."""
    import jax  # the rest of the study rules are NumPy alone
    gather = lambda tree: jax.tree.map(lambda x: x[sources], tree)
    changes = {name: gather(getattr(states, name)) for name in LEARNER_FIELDS}
    states = states.replace(**changes)
    if obs_stats_path is not None:
        get, put = obs_stats_path
        stats = get(states.env_state)
        if stats is not None:
            states = states.replace(env_state=put(states.env_state, gather(stats)))
    return states


def lineage_rows(round_index: int, update: int, sources, scores, before: dict, after: dict) -> list[dict]:
    """One row per member for ``pbt.jsonl``: what it copied (``parent``), its score and its
    searched hyperparameters before and after explore."""
    rows = []
    for member, parent in enumerate(np.asarray(sources).tolist()):
        score = float(np.asarray(scores)[member])
        rows.append({"round": round_index, "update": update, "member": member, "parent": parent,
                     "copied": parent != member, "score": score if math.isfinite(score) else None,
                     **{f"hp_{k}": float(after[k][member]) for k in sorted(after)},
                     **{f"before_{k}": float(before[k][member]) for k in sorted(before)}})
    return rows
