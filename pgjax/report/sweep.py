"""Deciding between the settings of a sweep: score each setting per seed, rank the settings,
compare each with the best, and read how the swept values are spaced (for the plots' x axes).

A sweep trains hyperparameter settings × seeds in one program, and every setting uses the same
seeds: a seed gives the same initial parameters and environment keys in every setting. Each
setting is scored per seed by its final evaluation return and by the normalised area under its
evaluation curve (:func:`pgjax.report.stats.normalised_auc`); settings are ranked by the mean
over seeds (with a 95% percentile-bootstrap interval), and each one is compared with the best by
the paired bootstrap of the per-seed differences (:func:`pgjax.report.stats.paired_difference`),
as Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice", recommend:
intervals, not point estimates, decide. NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgjax.report.load import RunData, Setting, settings
from pgjax.report.stats import (BOOTSTRAP_SEED, NUM_RESAMPLES, PairedDifference, bootstrap_ci,
                                final_returns, normalised_auc, paired_difference)

# What a setting can be ranked by: key -> what the tables call it.
METRICS = {"final": "final evaluation return", "auc": "area under the evaluation curve"}
SPACINGS = ("log", "linear")
# Two positive values are drawn on a log axis when they span at least this ratio (a decade).
TWO_VALUE_LOG_RATIO = 10.0


@dataclass(frozen=True)
class Estimate:
    """The mean over seeds of one score and its 95% percentile-bootstrap interval."""

    mean: float
    ci: tuple[float, float]   # NaN when n < 2
    n: int                    # seeds with a finite value


def estimate(values, confidence: float = 0.95, num_resamples: int = NUM_RESAMPLES,
             seed: int = BOOTSTRAP_SEED) -> Estimate:
    """:class:`Estimate` of the finite entries of ``values`` (one per seed)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Estimate(math.nan, (math.nan, math.nan), 0)
    if values.size == 1:
        return Estimate(float(values[0]), (math.nan, math.nan), 1)
    low, high = bootstrap_ci(values, "mean", confidence, num_resamples, seed)
    return Estimate(float(values.mean()), (float(low), float(high)), int(values.size))


@dataclass(frozen=True)
class SettingScore:
    """One setting of a sweep, scored per seed (arrays in the order of the setting's rows)."""

    setting: Setting
    values: dict            # swept hyperparameter -> its value in this setting
    seeds: tuple            # seed of each member
    final: np.ndarray       # final evaluation return per member (NaN: none)
    auc: np.ndarray         # normalised area under the evaluation curve per member (NaN: none)
    diverged: int           # members that went non-finite (frozen at their last finite state)
    source: str             # where the final returns come from (see stats.final_returns)
    final_estimate: Estimate
    auc_estimate: Estimate

    @property
    def label(self) -> str:
        return self.setting.label

    def scores(self, metric: str) -> np.ndarray:
        return {"final": self.final, "auc": self.auc}[metric]

    def estimate(self, metric: str) -> Estimate:
        return {"final": self.final_estimate, "auc": self.auc_estimate}[metric]

    def by_seed(self, metric: str) -> dict:
        """seed -> score (only meaningful when no seed repeats: see :attr:`seeds_unique`)."""
        return dict(zip(self.seeds, self.scores(metric).tolist()))

    @property
    def seeds_unique(self) -> bool:
        return len(set(self.seeds)) == len(self.seeds)


def swept_keys(run: RunData) -> list[str]:
    """The swept hyperparameters of ``run`` (its members' ``hp_*`` labels), in order of appearance."""
    keys: dict[str, None] = {}
    for label in run.members:
        keys.update((k[3:], None) for k in label if k.startswith("hp_"))
    return list(keys)


def evaluation_auc(run: RunData, setting: Setting) -> np.ndarray:
    """Normalised area under each member's evaluation curve (``eval_return_mean`` of
    ``eval.jsonl`` against env steps), ``[len(setting.rows)]``; NaN for a member never evaluated."""
    curve = run.eval.get("eval_return_mean")
    if curve is None or not curve.size or not setting.rows:
        return np.full(len(setting.rows), np.nan)
    return normalised_auc(run.eval_env_steps, curve[list(setting.rows)])


def score_settings(run: RunData) -> list[SettingScore]:
    """Every setting of ``run`` scored per seed, in order of appearance."""
    diverged = {d.get("member") for d in run.diverged_members}
    scored = []
    for setting in settings(run):
        final, source = final_returns(run, setting)
        rows = list(setting.rows)
        seeds = tuple(run.members[i].get("seed", i) for i in rows)
        if final.shape[0] != len(rows):  # an older run that names no members: one value per entry
            seeds = tuple(range(final.shape[0]))
        auc = evaluation_auc(run, setting)
        label = run.members[rows[0]] if rows else {}
        values = {k[3:]: v for k, v in label.items() if k.startswith("hp_")}
        members = {run.members[i].get("member", i) for i in rows}
        scored.append(SettingScore(setting, values, seeds, final, auc, len(members & diverged),
                                   source, estimate(final), estimate(auc)))
    return scored


@dataclass(frozen=True)
class Comparison:
    """A setting's place in a ranking and how it compares with the best one."""

    rank: int
    score: SettingScore
    estimate: Estimate
    difference: PairedDifference | None   # setting − best per seed; None for the best itself
    verdict: str

    @property
    def indistinguishable(self) -> bool:
        """The best itself, or a setting whose paired interval of the difference contains 0."""
        return self.verdict in (BEST, INDISTINGUISHABLE)


BEST = "best"
INDISTINGUISHABLE = "indistinguishable from the best"
WORSE = "worse than the best"
BETTER_ON_SHARED = "better than the best on the seeds they share"
NO_VALUE = "no value"
NOT_PAIRED = "not compared: no seed in common with the best"
REPEATED_SEEDS = "not compared: a seed repeats within a setting, so seeds do not pair"
ONE_PAIR = "one seed in common: no interval, undecided"


def rank(scores: list[SettingScore], metric: str = "final") -> list[Comparison]:
    """``scores`` best first by the mean over seeds of ``metric`` (ties and settings without a
    value keep their order, the latter last), each compared with the first by
    :func:`pgjax.report.stats.paired_difference` of their per-seed scores."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    order = sorted(scores, key=lambda s: _descending(s.estimate(metric).mean))
    if not order:
        return []
    best = order[0]
    ranked = [Comparison(1, best, best.estimate(metric), None,
                         BEST if best.estimate(metric).n else NO_VALUE)]
    for position, score in enumerate(order[1:], start=2):
        difference, verdict = _compare(best, score, metric)
        ranked.append(Comparison(position, score, score.estimate(metric), difference, verdict))
    return ranked


def _descending(mean: float) -> tuple:
    return (0, -mean) if math.isfinite(mean) else (1, 0.0)


def _compare(best: SettingScore, other: SettingScore, metric: str
             ) -> tuple[PairedDifference | None, str]:
    if not (best.estimate(metric).n and other.estimate(metric).n):
        return None, NO_VALUE
    if not (best.seeds_unique and other.seeds_unique):
        return None, REPEATED_SEEDS
    difference = paired_difference(best.by_seed(metric), other.by_seed(metric))
    if difference.n == 0:
        return difference, NOT_PAIRED
    if difference.n == 1:
        return difference, ONE_PAIR
    low, high = difference.ci
    if low <= 0.0 <= high:
        return difference, INDISTINGUISHABLE
    return difference, WORSE if high < 0.0 else BETTER_ON_SHARED


def top_settings(run: RunData, k: int) -> list[tuple[int | None, Setting]]:
    """The ``k`` best settings of ``run`` by final evaluation return, as ``(rank, setting)``;
    a run with one setting gives ``[(None, setting)]``."""
    groups = settings(run)
    if len(groups) == 1:
        return [(None, groups[0])]
    return [(c.rank, c.score.setting) for c in rank(score_settings(run), "final")[:k]]


# --------------------------------------------------------------------------- spacing of values

def spacing_of(values) -> str:
    """``"log"`` when the swept ``values`` are positive and evenly spaced in ratio rather than in
    difference, else ``"linear"``.

    Unevenness of a sequence of steps is ``(max − min) / mean``; with three or more distinct
    values the steps of ``log(v)`` are compared with the steps of ``v`` (1e-4, 3e-4, 1e-3: log;
    0.1, 0.2, 0.3: linear; a tie: linear). Two values carry no spacing, so they are drawn on a
    log axis when they span a ratio of at least :data:`TWO_VALUE_LOG_RATIO`.
    """
    v = np.unique(np.asarray([x for x in values if _is_number(x)], dtype=np.float64))
    v = v[np.isfinite(v)]
    if v.size < 2 or v[0] <= 0.0:
        return "linear"
    if v.size == 2:
        return "log" if v[1] / v[0] >= TWO_VALUE_LOG_RATIO else "linear"
    return "log" if _unevenness(np.diff(np.log(v))) < _unevenness(np.diff(v)) else "linear"


def _unevenness(steps: np.ndarray) -> float:
    return float((steps.max() - steps.min()) / steps.mean())


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def axis_scales(run: RunData) -> dict[str, str]:
    """The x-axis scale of each swept key of ``run``: ``config.json``'s ``sweep_space`` entry for
    the key when it has one (``{"learning_rate": "log"}``), else :func:`spacing_of` its values.

    Raises :class:`pgjax.config.ConfigError` for a ``sweep_space`` that is not a table of
    ``"log"``/``"linear"``, or that asks for a log axis of values that are not all positive.
    """
    stated = run.config.get("sweep_space")
    where = f"{run.path / 'config.json'}: sweep_space"
    if stated is not None and not isinstance(stated, dict):
        _refuse(f"{where}={stated!r} is not allowed: a table of swept key = \"log\" or \"linear\"")
    scales = {}
    for key in swept_keys(run):
        values = [label[f"hp_{key}"] for label in run.members if f"hp_{key}" in label]
        choice = (stated or {}).get(key)
        if choice is None:
            scales[key] = spacing_of(values)
            continue
        if choice not in SPACINGS:
            _refuse(f"{where}.{key}={choice!r} is not allowed: \"log\" or \"linear\"")
        if choice == "log" and not all(_is_number(v) and v > 0 for v in values):
            _refuse(f"{where}.{key}='log' is not allowed: its values {sorted(set(values))} are "
                    "not all positive (a log axis needs positive values); use \"linear\"")
        scales[key] = choice
    return scales


def _refuse(message: str) -> None:
    from pgjax.config_error import ConfigError
    raise ConfigError(message)
