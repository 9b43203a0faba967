"""Reports on finished (or running) runs: load, summarise over seeds, plot, tabulate.

Host side only (NumPy + matplotlib; no JAX). Reads the files the runner writes in ``runs/<name>/``:

    config.json     algorithm, config, hparams, seeds, members, device, steps_per_update
    metrics.jsonl   one line per update and per member (``null`` for non-finite numbers)
    eval.jsonl      one line per evaluation and per member (optional)
    summary.json    final evaluation per member, steps/s, compile time (absent while running)

A member is one seed of one hyperparameter setting (rows carry ``member`` and the swept
``hp_*`` values; older runs have one member per seed). Statistics are over the seeds of each
setting, and a run that swept several settings reports one line per setting.

Statistics follow Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice": the
interquartile mean (IQM) and percentile-bootstrap 95% confidence intervals over seeds.

Writes ``runs/<name>/plots/<metric>.png`` (one run, mean over seeds with a 95% bootstrap band) and,
for :func:`report`, ``OUT/<metric>.png`` (runs overlaid) and ``OUT/report.md``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Metrics drawn when present: (key in the row, label on the y axis).
TRAIN_CURVES = (
    ("episode_return", "training episodic return (last finished episode)"),
    ("policy_loss", "policy loss"),
    ("value_loss", "value loss"),
    ("entropy", "policy entropy"),
    ("grad_norm", "gradient global norm"),
)
EVAL_CURVE = ("eval_return_mean", "evaluation return")
# Episode statistics are null in an update where no episode ended: the curve holds the last value.
HOLD_LAST = frozenset({"episode_return", "episode_length"})
BOOTSTRAP_SEED = 0
NUM_RESAMPLES = 2000
_MAX_ELEMENTS = 4_000_000  # bound on a resampled block held in memory at once


# --------------------------------------------------------------------------- statistics

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


# --------------------------------------------------------------------------- loading

# Row keys that say which member and which point a row is, rather than being a metric.
_LABEL_KEYS = frozenset({"seed", "member", "update", "env_steps", "greedy", "algorithm", "diverged"})


def _is_label_key(key: str) -> bool:
    return key in _LABEL_KEYS or key.startswith("hp_")


def _member_key(label: dict):
    """A population member's identity: its ``member`` index, or its seed in older runs."""
    return label["member"] if "member" in label else label.get("seed")


def _member_label(row: dict) -> dict:
    """The part of a row that names its member: seed, member index, swept ``hp_*`` values."""
    return {k: v for k, v in row.items() if k in ("seed", "member") or k.startswith("hp_")}


@dataclass
class RunData:
    """One run directory, loaded. Curves are ``[num_members, num_points]`` with NaN for gaps;
    a member is one seed of one hyperparameter setting (older runs: one seed)."""

    name: str
    path: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # label of each array row: seed, member, hp_*
    env_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))        # [num_points]
    metrics: dict = field(default_factory=dict)                               # name -> [M, P]
    eval_env_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))   # [num_evals]
    eval: dict = field(default_factory=dict)                                  # name -> [M, E]
    skipped_lines: int = 0  # unreadable lines (e.g. a line cut short while the run was writing)
    status: dict = field(default_factory=dict)  # status.json (pgjax.run_folder.read_status)

    @property
    def state(self) -> str:
        """completed / interrupted / diverged / running / killed / failed; a folder without
        status.json (older pgjax) counts as completed when it has summary.json."""
        return self.status.get("status") or ("completed" if self.summary else "unknown")

    @property
    def diverged_members(self) -> list[dict]:
        return list(self.summary.get("diverged") or self.status.get("diverged") or [])

    @property
    def seeds(self) -> list:
        return [label.get("seed") for label in self.members]

    @property
    def algorithm(self) -> str:
        return self.config.get("algorithm") or self.summary.get("algorithm") or "?"

    @property
    def env_id(self) -> str:
        return (self.config.get("config") or {}).get("env_id") or self.summary.get("env_id") or "?"


@dataclass(frozen=True)
class Setting:
    """The members of a run that share one hyperparameter setting (they differ only by seed)."""

    label: str              # "" when the run has one setting, else e.g. "learning_rate=0.001"
    rows: tuple[int, ...]   # their rows in the run's arrays


def settings(run: RunData) -> list[Setting]:
    """Group ``run``'s members by their swept hyperparameters (``hp_*``), in order of appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, label in enumerate(run.members):
        key = tuple(sorted((k[3:], v) for k, v in label.items() if k.startswith("hp_")))
        groups.setdefault(key, []).append(i)
    if not groups:
        return [Setting("", ())]
    return [Setting(", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                              for k, v in key), tuple(rows)) for key, rows in groups.items()]


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``, or ``{}`` when it is missing or unreadable."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a JSON-lines file (``[]`` if missing) and how many lines could not be parsed."""
    try:
        text = Path(path).read_text()
    except OSError:
        return [], 0
    rows, skipped = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped += 1
    return rows, skipped


def _as_float(value) -> float:
    """A JSON scalar as float: ``null`` (and anything non-numeric) becomes NaN."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    return math.nan


def _is_number_or_null(value) -> bool:
    return value is None or isinstance(value, (bool, int, float))


def align_rows(rows: Sequence[dict], members: Sequence[dict] = (),
               steps_per_point: float | None = None
               ) -> tuple[list[dict], np.ndarray, dict[str, np.ndarray]]:
    """Arrange per-member rows into ``[num_members, num_points]`` arrays aligned on ``env_steps``.

    Rows belong to the member named by their ``member`` index (older runs: their ``seed``);
    members come in the order of ``members`` (label dicts), then of first appearance. A point is
    keyed by ``(env_steps, update)`` when rows carry an ``update`` number, otherwise by
    ``(env_steps, k)`` where ``k`` counts the member's earlier rows with the same ``env_steps``
    (so updates that reuse a batch stay apart). A repeated key (a resumed run rewriting the
    updates after its checkpoint) keeps the last row. Rows without ``env_steps`` use their
    position within the member times ``steps_per_point`` (or 1). Numeric keys other than the
    labels (``seed``, ``member``, ``update``, ``env_steps``, ``greedy``, ``hp_*``) are metrics;
    missing or ``null`` values are NaN.

    Returns ``(members, env_steps [P], {name: [M, P]})``.
    """
    members = [dict(label) for label in members]
    row_of = {_member_key(label): i for i, label in enumerate(members)}
    for row in rows:
        if _member_key(row) not in row_of:
            row_of[_member_key(row)] = len(members)
            members.append(_member_label(row))
    position = dict.fromkeys(row_of, 0)
    repeats: dict = {}
    keyed: dict = {}
    for row in rows:
        member = _member_key(row)
        steps = row.get("env_steps")
        if not isinstance(steps, (int, float)) or isinstance(steps, bool):
            steps = (position[member] + 1) * (steps_per_point or 1)
        position[member] += 1
        if isinstance(row.get("update"), int):
            tie = row["update"]
        else:
            tie = repeats.get((member, steps), 0)
            repeats[(member, steps)] = tie + 1
        keyed[(member, (steps, tie))] = row
    points = sorted({point for _, point in keyed})
    column = {point: j for j, point in enumerate(points)}
    names = sorted({k for row in rows for k, v in row.items()
                    if not _is_label_key(k) and _is_number_or_null(v)})
    arrays = {name: np.full((len(members), len(points)), np.nan) for name in names}
    for (member, point), row in keyed.items():
        i, j = row_of[member], column[point]
        for name in names:
            arrays[name][i, j] = _as_float(row.get(name))
    env_steps = np.array([steps for steps, _ in points], dtype=np.float64)
    return members, env_steps, arrays


def _declared_members(config: dict, summary: dict) -> list[dict]:
    """Members named by ``config.json`` (``members``, in member order) or else its ``seeds``."""
    declared = config.get("members") or summary.get("members")
    if isinstance(declared, list) and declared and all(isinstance(m, dict) for m in declared):
        labels = [_member_label(m) for m in declared]
        return sorted(labels, key=lambda m: m.get("member", 0))
    return [{"seed": seed} for seed in (config.get("seeds") or summary.get("seeds") or [])]


def load_run(run_dir) -> RunData:
    """Load ``run_dir``: missing files give empty parts, ``null`` numbers NaN (see :func:`align_rows`)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run directory {str(path)!r} does not exist")
    config = _read_json(path / "config.json")
    summary = _read_json(path / "summary.json")
    train_rows, skipped_train = _read_jsonl(path / "metrics.jsonl")
    eval_rows, skipped_eval = _read_jsonl(path / "eval.jsonl")
    members, env_steps, metrics = align_rows(train_rows, _declared_members(config, summary),
                                             config.get("steps_per_update"))
    members, eval_steps, evals = align_rows(eval_rows, members)  # may add members seen only there
    metrics = {k: _pad_rows(v, len(members)) for k, v in metrics.items()}
    from pgjax.run_folder import read_status
    return RunData(name=path.resolve().name, path=path, config=config, summary=summary,
                   members=members, env_steps=env_steps, metrics=metrics,
                   eval_env_steps=eval_steps, eval=evals,
                   skipped_lines=skipped_train + skipped_eval, status=read_status(path))


def _pad_rows(array: np.ndarray, num_rows: int) -> np.ndarray:
    """Append NaN rows so ``array`` has ``num_rows`` rows."""
    missing = num_rows - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.full((missing, array.shape[1]), np.nan)], axis=0)


# --------------------------------------------------------------------------- final numbers

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
    return values if len(settings(run)) == 1 else None  # older runs: one entry per seed


def _final_per_seed(run: RunData, setting: Setting) -> tuple[np.ndarray, str, list | None]:
    """Each seed's final mean evaluation return, where it came from, and (summary) its entries."""
    from_summary = _summary_rows(run, setting, "eval_return_per_seed")
    if from_summary is not None:
        values = np.array([_as_float(v) for v in from_summary])
        if np.isfinite(values).any():
            return values[np.isfinite(values)], "summary.json", list(np.isfinite(values))
    returns = run.eval.get("eval_return_mean")
    if returns is not None and returns.size and setting.rows:
        last = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan
                         for row in returns[list(setting.rows)]])
        last = last[np.isfinite(last)]
        if last.size:
            return last, "eval.jsonl (last evaluation)", None
    return np.zeros(0), "none", None


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


# --------------------------------------------------------------------------- plots

def _new_axes(ylabel: str, title: str):
    """A matplotlib figure and axes drawn with the Agg canvas (no pyplot, no display)."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_xlabel("environment steps (per seed)")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    return figure, axes


def _draw_curve(axes, env_steps, values, label: str | None, smooth: int) -> bool:
    """Mean over seeds and its 95% bootstrap band; points where no seed has a value are left out.
    Returns whether anything was drawn."""
    values = moving_average(values, smooth)
    mean, low, high = curve_band(values)
    keep = np.isfinite(mean)
    if not keep.any():
        return False
    x = np.asarray(env_steps)[keep]
    line, = axes.plot(x, mean[keep], label=label, linewidth=1.2)
    axes.fill_between(x, low[keep], high[keep], color=line.get_color(), alpha=0.25, linewidth=0)
    return True


def _ylabel(label: str, smooth: int) -> str:
    return label if smooth == 1 else f"{label} (moving average of {smooth} points)"


def curves(run: RunData, setting: Setting) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``(key, label, env_steps [P], values [num_seeds, P])`` of every standard curve that
    ``setting`` of ``run`` has values for; episode statistics hold their last value (see
    :func:`forward_fill`)."""
    rows = list(setting.rows)
    found = []
    for key, label in TRAIN_CURVES:
        values = run.metrics.get(key)
        if values is not None and np.isfinite(values[rows]).any():
            values = forward_fill(values[rows]) if key in HOLD_LAST else values[rows]
            found.append((key, label, run.env_steps, values))
    key, label = EVAL_CURVE
    if key in run.eval and np.isfinite(run.eval[key][rows]).any():
        found.insert(1, (key, label, run.eval_env_steps, run.eval[key][rows]))
    return found


def _plot_entries(entries, out_dir: Path, smooth: int, title: str) -> list[Path]:
    """One PNG per curve key in ``out_dir`` overlaying ``entries`` of ``(label, run, setting)``."""
    by_key: dict[str, list] = {}
    names: dict[str, str] = {}
    for label, run, setting in entries:
        for key, name, env_steps, values in curves(run, setting):
            by_key.setdefault(key, []).append((label, env_steps, values))
            names[key] = name
    written = []
    for key, drawn_entries in by_key.items():
        figure, axes = _new_axes(_ylabel(names[key], smooth), title)
        drawn = [_draw_curve(axes, steps, values, label, smooth)
                 for label, steps, values in drawn_entries]
        if any(drawn):
            if any(label for label, _, _ in drawn_entries):
                axes.legend(fontsize=8)
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{key}.png"
            figure.savefig(path)
            written.append(path)
    return written


def plot_run(run_dir, out_dir=None, smooth: int = 1) -> list[Path]:
    """Write one PNG per curve of one run (default ``run_dir/plots/<metric>.png``): the mean over
    seeds and a 95% percentile-bootstrap band against env steps, one curve per hyperparameter
    setting. ``smooth > 1`` applies a trailing moving average of that many points to every seed
    first (and says so on the axis); by default nothing is smoothed. Returns the paths written.
    """
    run = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "plots"
    entries = [(setting.label or None, run, setting) for setting in settings(run)]
    title = (f"{run.name}: {run.algorithm} on {run.env_id}, {len(run.members)} member(s); "
             "mean over seeds, 95% bootstrap CI")
    return _plot_entries(entries, out, smooth, title)


def run_labels(paths: Sequence) -> list[str]:
    """Each run's directory name; ``parent/name`` where two runs share a name."""
    names = [Path(p).resolve().name for p in paths]
    return [f"{Path(p).resolve().parent.name}/{n}" if names.count(n) > 1 else n
            for p, n in zip(paths, names)]


def report_entries(runs: Sequence[RunData], labels: Sequence[str]) -> list[tuple]:
    """``(label, run, setting)`` for every hyperparameter setting of every run; a run with several
    settings gets one entry per setting, labelled ``name [setting]``."""
    return [(f"{label} [{setting.label}]" if setting.label else label, run, setting)
            for run, label in zip(runs, labels) for setting in settings(run)]


# --------------------------------------------------------------------------- report

def _fmt(value: float, spec: str = ".2f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def _fmt_ci(pair: tuple[float, float]) -> str:
    return "—" if not all(math.isfinite(v) for v in pair) else f"[{pair[0]:.2f}, {pair[1]:.2f}]"


def report_table(entries: Sequence[tuple]) -> str:
    """The markdown table of :func:`report` for ``(label, run, setting)`` entries, one row each,
    followed by the notes that explain it."""
    header = ("| run | status | algorithm | env | seeds | eval return (mean ± std) | 95% CI of mean "
              "| IQM | 95% CI of IQM | IQM over | steps/s | compile (s) |")
    lines = [header, "|" + "---|" * (header.count(" | ") + 1)]
    notes = []
    for label, run, setting in entries:
        final = final_eval(run, setting)
        sps = _as_float(run.summary.get("steps_per_second"))
        compile_s = _as_float(run.summary.get("compile_seconds"))
        seeds = final.per_seed.size or len(setting.rows)
        mean_std = "—" if not math.isfinite(final.mean) else f"{final.mean:.2f} ± {final.std:.2f}"
        over = final.iqm_over if final.per_seed.size else "—"
        state, diverged = _run_state(run, setting)
        lines.append(f"| {label} | {state} | {run.algorithm} | {run.env_id} | {seeds} | {mean_std} "
                     f"| {_fmt_ci(final.ci)} | {_fmt(final.iqm)} | {_fmt_ci(final.iqm_ci)} "
                     f"| {over} | {_fmt(sps, ',.0f')} | {_fmt(compile_s, '.1f')} |")
        if run.state != "completed":
            notes.append(f"- {label}: **not finished** ({run.state} at update "
                         f"{run.status.get('update', '?')} of {run.config.get('num_updates', '?')}); "
                         "its numbers come from its last evaluation and are not comparable with "
                         "finished runs.")
        if diverged:
            notes.append(f"- {label}: diverged member(s) " + "; ".join(
                f"seed {d.get('seed')} at update {d.get('update')} ({d.get('metric')})" for d in diverged)
                + " — frozen at their last finite state and evaluated there; included above.")
        if final.source == "none":
            notes.append(f"- {label}: no final evaluation yet (no summary.json or eval.jsonl).")
        elif final.source != "summary.json":
            notes.append(f"- {label}: final evaluation from {final.source}.")
    runs = {id(run): run for _, run, _ in entries}.values()
    for run in runs:
        if run.skipped_lines:
            notes.append(f"- {run.name}: {run.skipped_lines} unreadable line(s) skipped.")
    episodes = sorted({r.summary["eval_episodes"] for _, r, _ in entries
                       if isinstance(r.summary.get("eval_episodes"), int)})
    per_seed = f"{'/'.join(map(str, episodes))} episodes per seed" if episodes else "per seed"
    notes[:0] = [
        f"- eval return: each seed's mean final evaluation return ({per_seed}); mean ± std "
        "(ddof 0) over seeds.",
        f"- 95% CI: percentile bootstrap over seeds ({NUM_RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}).",
        "- IQM: interquartile mean (Agarwal et al. 2021) of the seeds' mean returns (\"seeds\") or "
        "of every evaluation episode pooled (\"episodes\"); the exact middle 50%, boundary values "
        "weighted in part when the count is not divisible by 4.",
        "- steps/s: environment steps per second, all members together, after compilation.",
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _run_state(run: RunData, setting: Setting) -> tuple[str, list[dict]]:
    """The table's status cell for one setting of a run, and its diverged members."""
    members = {run.members[i].get("member", i) for i in setting.rows}
    diverged = [d for d in run.diverged_members if d.get("member") in members]
    state = run.state
    if diverged:
        state += f", {len(diverged)}/{len(setting.rows)} diverged"
    return state, diverged


def report(run_dirs: Sequence, out_dir, *, smooth: int = 1, per_run_plots: bool = True) -> str:
    """Compare runs: overlay figures ``out_dir/<metric>.png`` and ``out_dir/report.md``.

    Each run is labelled by its directory name (and its hyperparameter setting when it swept
    several). With ``per_run_plots`` each run's own curves also go to ``RUN_DIR/plots/``.
    ``smooth`` is a moving-average window in points (1: no smoothing). Returns the markdown.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("report needs at least one run directory")
    runs = [load_run(p) for p in paths]
    entries = report_entries(runs, run_labels(paths))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if per_run_plots:
        for run in runs:
            plot_run(run, smooth=smooth)
    figures = _plot_entries(entries, out, smooth, "mean over seeds and 95% bootstrap CI")
    parts = ["# pgjax report", "", report_table(entries)]
    if figures:
        parts += ["## Curves", ""] + [f"![{f.stem}]({f.name})" for f in figures]
    markdown = "\n".join(parts) + "\n"
    (out / "report.md").write_text(markdown)
    return markdown
