"""Statistics over seeds (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"):
the interquartile mean (IQM) and percentile-bootstrap confidence intervals, curve bands, smoothing,
the normalised area under a curve and the paired bootstrap of per-seed differences; and a run's
final evaluation numbers (:func:`final_eval`). NumPy only."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pgjax.report.load import RunData, Setting, _as_float, settings

BOOTSTRAP_SEED = 0
NUM_RESAMPLES = 2000
_MAX_ELEMENTS = 4_000_000  # bound on a resampled block held in memory at once



def iqm_weights(n: int) -> np.ndarray:
    """Weights of the sorted samples in the interquartile mean of ``n`` samples.

    Sorted sample ``i`` owns the quantile interval ``[i/n, (i+1)/n]`` of the empirical
    distribution; its weight is twice the overlap of that interval with ``[1/4, 3/4]``. So the IQM
    is exactly the mean of the middle 50% of the empirical distribution: for ``n`` divisible by 4
    it drops ``n/4`` samples at each end (= ``scipy.stats.trim_mean(x, 0.25)``); otherwise the two
    boundary samples count in part (n=3: weights 1/6, 2/3, 1/6; n=1 and n=2: the plain mean).
    ``trim_mean`` (and rliable) would instead drop ``floor(n/4)`` samples, i.e. keep more than half.
    """
    if n < 1:
        raise ValueError(f"IQM needs at least one sample, got n={n}")
    lower = np.arange(n) / n
    overlap = np.clip(np.minimum(lower + 1.0 / n, 0.75) - np.maximum(lower, 0.25), 0.0, None)
    return 2.0 * overlap


def iqm(x, axis: int = 0) -> np.ndarray:
    """Interquartile mean of ``x`` along ``axis`` (see :func:`iqm_weights`); NaN where any is NaN."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    weights = iqm_weights(x.shape[-1])
    result = np.sort(x, axis=-1) @ weights
    return np.where(np.isnan(x).any(axis=-1), np.nan, result)


def _resample_indices(n: int, num_resamples: int, seed: int) -> np.ndarray:
    """``[B, n]`` indices drawn uniformly with replacement (the nonparametric bootstrap)."""
    return np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))


def _bootstrap_means(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """NaN-ignoring mean of every resample, ``[B, *rest]``, as a count-weighted sum (no copy of x)."""
    num_resamples, n = idx.shape
    counts = np.bincount((idx + n * np.arange(num_resamples)[:, None]).ravel(),
                         minlength=num_resamples * n).reshape(num_resamples, n).astype(np.float64)
    flat = x.reshape(n, -1)
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (counts @ np.where(finite, flat, 0.0)) / (counts @ finite)
    return means.reshape((num_resamples,) + x.shape[1:])


def _bootstrap_statistic(x: np.ndarray, idx: np.ndarray, statistic: Callable) -> np.ndarray:
    """``statistic(x[idx_block])`` for blocks of resamples, concatenated to ``[B, ...]``."""
    per_resample = max(1, x.size)
    block = max(1, _MAX_ELEMENTS // per_resample)
    return np.concatenate([np.asarray(statistic(x[idx[i:i + block]]))
                           for i in range(0, len(idx), block)], axis=0)


def bootstrap_ci(x, statistic: str | Callable = "mean", confidence: float = 0.95,
                 num_resamples: int = NUM_RESAMPLES, seed: int = BOOTSTRAP_SEED
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence interval of ``statistic`` over the first axis of ``x``.

    Args:
      x: ``[n, *rest]`` samples (``n`` seeds); the interval is computed for every trailing index
        with the same resamples of the ``n`` rows (Efron & Tibshirani 1993, ch. 13).
      statistic: ``"mean"`` (NaN entries are left out of each resample's mean), ``"iqm"``
        (:func:`iqm` over the resampled rows; NaN propagates), or a callable mapping the resampled
        ``[b, n, *rest]`` to ``[b, ...]``.
      confidence: the interval's level (0.95: the 2.5th and 97.5th percentiles).
      num_resamples, seed: the bootstrap; a fixed seed makes the interval reproducible.

    Returns: ``(low, high)``, each ``[*rest]`` (or the callable's trailing shape). NaN where no
    resample has a finite value; ``low == high`` for a single sample.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"bootstrap_ci needs samples along the first axis, got shape {x.shape}")
    idx = _resample_indices(x.shape[0], num_resamples, seed)
    if statistic == "mean":
        stats = _bootstrap_means(x, idx)
    elif statistic == "iqm":
        stats = _bootstrap_statistic(x, idx, lambda r: iqm(r, axis=1))
    elif callable(statistic):
        stats = _bootstrap_statistic(x, idx, statistic)
    else:
        raise ValueError(f"statistic must be 'mean', 'iqm' or a callable, got {statistic!r}")
    tail = 50.0 * (1.0 - confidence)
    with warnings.catch_warnings():  # an all-NaN column gives NaN bounds, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(stats, [tail, 100.0 - tail], axis=0)
    return low, high


def curve_band(values, confidence: float = 0.95, num_resamples: int = NUM_RESAMPLES,
               seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and its bootstrap band for a learning curve.

    ``values`` is ``[num_seeds, num_points]`` with NaN where a seed has no value (no finished
    episode in that update). Each point's mean and interval use the seeds finite there; points
    are processed in blocks so memory stays bounded for long runs. Returns ``(mean, low, high)``,
    each ``[num_points]``.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, values, 0.0).sum(0) / finite.sum(0)
    block = max(1, _MAX_ELEMENTS // num_resamples)
    lows, highs = [], []
    for start in range(0, values.shape[1], block):
        low, high = bootstrap_ci(values[:, start:start + block], "mean", confidence,
                                 num_resamples, seed)
        lows.append(low)
        highs.append(high)
    if not lows:
        return mean, mean.copy(), mean.copy()
    return mean, np.concatenate(lows), np.concatenate(highs)


def moving_average(values, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points along the last axis, ignoring NaN.

    Not applied unless asked for (``smooth=`` of the plotting functions); window 1 is the identity.
    """
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    if window == 1:
        return values
    finite = np.isfinite(values)
    total = np.cumsum(np.where(finite, values, 0.0), axis=-1)
    count = np.cumsum(finite, axis=-1)
    shifted = lambda c: np.concatenate([np.zeros_like(c[..., :window]), c[..., :-window]], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total - shifted(total)) / (count - shifted(count))


def forward_fill(values) -> np.ndarray:
    """Replace each NaN along the last axis by the last finite value before it (leading NaN stay).

    Used for episode statistics, which are ``null`` in updates where no episode finished: the
    curve then shows, at every update, the return of the most recently finished episode.
    """
    values = np.asarray(values, dtype=np.float64)
    positions = np.arange(values.shape[-1])
    last = np.maximum.accumulate(np.where(np.isfinite(values), positions, 0), axis=-1)
    filled = np.take_along_axis(values, last, axis=-1)
    seen = np.maximum.accumulate(np.isfinite(values), axis=-1)
    return np.where(seen, filled, np.nan)



def normalised_auc(env_steps, values) -> np.ndarray:
    """Area under each row's curve divided by the env-step span it covers: the curve's average
    height, in the units of ``values`` (Agarwal et al. 2021 report such areas to compare learning
    speed, not only the end point).

    ``values`` is ``[num_seeds, num_points]`` against ``env_steps [num_points]`` (NaN: no value).
    For each row, the trapezoid rule over its finite points ``(x_i, y_i)`` in order of ``x``,
    ``sum_i (x_{i+1} - x_i) (y_i + y_{i+1}) / 2``, divided by ``x_last - x_first``. A row with one
    finite point gets that value (the limit of a vanishing span); a row with none gets NaN.
    Returns ``[num_seeds]``.
    """
    env_steps = np.asarray(env_steps, dtype=np.float64)
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[-1] != env_steps.shape[0]:
        raise ValueError(f"values have {values.shape[-1]} points but env_steps has {env_steps.shape[0]}")
    order = np.argsort(env_steps, kind="stable")
    return np.array([_row_auc(env_steps[order], row[order]) for row in values])


def _row_auc(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(y) & np.isfinite(x)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return math.nan
    span = x[-1] - x[0]
    if x.size == 1 or span <= 0:
        return float(y.mean())
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0) / span)


@dataclass(frozen=True)
class PairedDifference:
    """``mean(other − reference)`` over the seeds both have, with a bootstrap interval."""

    n: int                      # seeds in common (with a finite value in both)
    mean: float
    ci: tuple[float, float]     # NaN when n < 2 (one pair says nothing about the spread)


def paired_difference(reference: dict, other: dict, confidence: float = 0.95,
                      num_resamples: int = NUM_RESAMPLES, seed: int = BOOTSTRAP_SEED
                      ) -> PairedDifference:
    """Paired comparison of two settings that were trained with the same seeds.

    ``reference`` and ``other`` map seed → value (e.g. final return). Runs with the same seed
    start from the same parameters and environment keys, so the per-seed differences
    ``d_s = other[s] − reference[s]`` remove the part of the variation that the seed causes. The
    interval is the percentile bootstrap of ``mean(d)`` over resampled seeds (Efron & Tibshirani
    1993, ch. 13; the paired design as in Agarwal et al. 2021's probability of improvement),
    with the fixed ``seed`` so that a report is reproducible.
    """
    shared = [s for s in reference if s in other
              and math.isfinite(reference[s]) and math.isfinite(other[s])]
    differences = np.array([other[s] - reference[s] for s in shared], dtype=np.float64)
    if differences.size == 0:
        return PairedDifference(0, math.nan, (math.nan, math.nan))
    mean = float(differences.mean())
    if differences.size == 1:
        return PairedDifference(1, mean, (math.nan, math.nan))
    low, high = bootstrap_ci(differences, "mean", confidence, num_resamples, seed)
    return PairedDifference(int(differences.size), mean, (float(low), float(high)))


@dataclass(frozen=True)
class FinalEval:
    """The final evaluation of one setting of a run, with its statistics over seeds."""

    per_seed: np.ndarray        # [num_seeds] mean evaluation return of each seed
    source: str                 # "summary.json", "eval.jsonl (last evaluation)" or "none"
    mean: float
    std: float                  # over seeds, ddof=0 (as summary.json)
    ci: tuple[float, float]     # percentile bootstrap of the mean over seeds
    iqm: float
    iqm_ci: tuple[float, float]
    iqm_over: str               # "seeds" or "episodes"


def final_eval(run: RunData, setting: Setting | None = None, confidence: float = 0.95,
               num_resamples: int = NUM_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> FinalEval:
    """Final evaluation returns of one ``setting`` of ``run`` (default: its first) and their mean,
    IQM and bootstrap intervals over seeds.

    Per-seed returns come from ``summary.json`` (``eval_return_per_seed``, one per member), or
    else from each seed's last evaluation in ``eval.jsonl``. The IQM is over the seeds' mean
    returns, unless ``summary.json`` holds every evaluation episode as ``eval_episode_returns``
    (``[num_members, num_episodes]``): then it is the IQM of all episodes pooled, with its
    interval from resampling seeds (each resampled seed brings all its episodes).
    """
    setting = setting or settings(run)[0]
    per_seed, source, rows = _final_per_seed(run, setting)
    nan_pair = (math.nan, math.nan)
    if per_seed.size == 0:
        return FinalEval(per_seed, "none", math.nan, math.nan, nan_pair, math.nan, nan_pair, "seeds")
    ci = tuple(float(v) for v in bootstrap_ci(per_seed, "mean", confidence, num_resamples, seed))
    episodes = _episode_returns(run, setting, rows) if source == "summary.json" else None
    if episodes is not None:
        pooled = lambda r: iqm(r.reshape(r.shape[0], -1), axis=1)
        value = float(iqm(episodes.ravel()))
        iqm_ci = bootstrap_ci(episodes, pooled, confidence, num_resamples, seed)
        over = "episodes"
    else:
        value = float(iqm(per_seed))
        iqm_ci = bootstrap_ci(per_seed, "iqm", confidence, num_resamples, seed)
        over = "seeds"
    return FinalEval(per_seed, source, float(per_seed.mean()), float(per_seed.std()), ci,
                     value, tuple(float(v) for v in iqm_ci), over)


def _summary_rows(run: RunData, setting: Setting, key: str) -> list | None:
    """The entries of a per-member list in ``summary.json`` that belong to ``setting``."""
    values = run.summary.get(key)
    if not isinstance(values, list) or not values:
        return None
    if len(values) == len(run.members):
        return [values[i] for i in setting.rows]
    return values if len(settings(run)) == 1 else None  # rows without members: one entry per seed


def final_returns(run: RunData, setting: Setting) -> tuple[np.ndarray, str]:
    """Final mean evaluation return of each member of ``setting``, in the order of its rows (NaN
    for a member without one), and where they came from: ``summary.json``
    (``eval_return_per_seed``) when it has any finite value for the setting, else each member's
    last evaluation in ``eval.jsonl``, else ``"none"``. An older run whose files name no members
    has one value per entry of its summary instead of one per row."""
    from_summary = _summary_rows(run, setting, "eval_return_per_seed")
    if from_summary is not None:
        values = np.array([_as_float(v) for v in from_summary])
        if np.isfinite(values).any():
            return values, "summary.json"
    returns = run.eval.get("eval_return_mean")
    if returns is not None and returns.size and setting.rows:
        last = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan
                         for row in returns[list(setting.rows)]])
        if np.isfinite(last).any():
            return last, "eval.jsonl (last evaluation)"
    return np.full(len(setting.rows), np.nan), "none"


def _final_per_seed(run: RunData, setting: Setting) -> tuple[np.ndarray, str, list | None]:
    """Each seed's final mean evaluation return, where it came from, and (summary) its entries."""
    values, source = final_returns(run, setting)
    finite = np.isfinite(values)
    if source == "none":
        return np.zeros(0), source, None
    return values[finite], source, (list(finite) if source == "summary.json" else None)


def _episode_returns(run: RunData, setting: Setting, keep: list | None) -> np.ndarray | None:
    """``summary['eval_episode_returns']`` of the setting's seeds kept in ``keep``, as
    ``[num_seeds, E]``, when present and well formed."""
    rows = _summary_rows(run, setting, "eval_episode_returns")
    if rows is None or keep is None or len(rows) != len(keep):
        return None
    try:
        array = np.array([[_as_float(v) for v in row] for row, k in zip(rows, keep) if k])
    except TypeError:
        return None
    return array if array.ndim == 2 and array.shape[1] > 0 and np.isfinite(array).all() else None


