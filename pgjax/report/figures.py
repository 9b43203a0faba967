"""Figures (matplotlib, Agg canvas): learning curves, mean over seeds with a 95% bootstrap band,
one file per metric and one panel per environment; and for a sweep, the sensitivity of the final
evaluation return to each swept hyperparameter. Legends sit outside the data, below it."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgjax.report.load import RunData, Setting, load_run, settings
from pgjax.report.stats import curve_band, forward_fill, moving_average
from pgjax.report.sweep import estimate, score_settings, swept_keys, top_settings

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
TOP_SETTINGS = 3          # learning curves of a sweep: its best settings only (pgjax report --top)
MAX_SENSITIVITY_LINES = 6  # beyond this many combinations of the other swept values: their mean
_TITLE_WIDTH = 72


def _new_figure(panels: int = 1, width: float = 6.4):
    """A matplotlib figure with ``panels`` axes side by side, drawn with the Agg canvas (no
    pyplot, no display), laid out by constrained layout so titles and outside legends fit."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width * panels, 4.2), dpi=100, layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure, list(axes)


def _title(text: str) -> str:
    return "\n".join(textwrap.wrap(text, _TITLE_WIDTH)) if text else text


def _legend_outside(figure, axes) -> None:
    """One legend for the figure, outside the data, below the panels (``"outside lower center"``:
    constrained layout reserves room for it, and it never meets the title)."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", fontsize=8,
                      ncols=min(2, len(handles)))


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)  # constrained layout already fits titles and the legend
    return path


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
    """One PNG per curve key in ``out_dir`` overlaying ``entries`` of ``(label, run, setting)``,
    with one panel per environment (returns of different environments never share an axis)."""
    by_key: dict[str, dict[str, list]] = {}
    names: dict[str, str] = {}
    for label, run, setting in entries:
        for key, name, env_steps, values in curves(run, setting):
            by_key.setdefault(key, {}).setdefault(run.env_id, []).append((label, env_steps, values))
            names[key] = name
    written = []
    for key, by_env in by_key.items():
        figure = curve_figure(by_env, _ylabel(names[key], smooth), title, smooth)
        if figure is not None:
            written.append(_save(figure, out_dir / f"{key}.png"))
    return written


def curve_figure(by_env: dict[str, list], ylabel: str, title: str, smooth: int = 1):
    """The figure of one metric: a panel per environment (``{env_id: [(label, env_steps,
    values [num_seeds, P])]}``), the legend below; None when nothing could be drawn."""
    figure, axes = _new_figure(len(by_env))
    drawn = False
    for ax, (env_id, drawn_entries) in zip(axes, by_env.items()):
        ax.set_xlabel("environment steps (per seed)")
        ax.set_ylabel(ylabel)
        ax.set_title(env_id, fontsize=10)
        drawn |= any([_draw_curve(ax, steps, values, label, smooth)
                      for label, steps, values in drawn_entries])
    if not drawn:
        return None
    figure.suptitle(_title(title), fontsize=10)
    _legend_outside(figure, axes)
    return figure


def curve_entries(run: RunData, label: str | None, top: int) -> tuple[list[tuple], int]:
    """``(label, run, setting)`` of the ``top`` best settings of ``run`` (every setting when it
    has at most ``top``), labelled with their rank; and how many settings the run has."""
    chosen = top_settings(run, top)
    entries = []
    for position, setting in chosen:
        name = (f"{label} [{setting.label}]" if label and setting.label
                else label or setting.label)
        entries.append((f"#{position} {name}" if position is not None else (name or None),
                        run, setting))
    return entries, len(settings(run))


def plot_run(run_dir, out_dir=None, smooth: int = 1, top: int = TOP_SETTINGS) -> list[Path]:
    """Write one PNG per curve of one run (default ``run_dir/plots/<metric>.png``): the mean over
    seeds and a 95% percentile-bootstrap band against env steps, one curve for each of the ``top``
    best settings by final evaluation return; for a sweep also
    ``sensitivity_<key>.png`` per swept hyperparameter (:func:`plot_sensitivity`).
    ``smooth > 1`` applies a trailing moving average of that many points to every seed first
    (and says so on the axis); by default nothing is smoothed. Returns the paths written.
    """
    run = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "plots"
    entries, total = curve_entries(run, None, top)
    shown = (f"top {len(entries)} of {total} settings by final evaluation return, "
             if len(entries) < total else "")
    title = (f"{run.name}: {run.algorithm} on {run.env_id}, {len(run.members)} member(s); "
             f"{shown}mean over seeds, 95% bootstrap CI")
    return _plot_entries(entries, out, smooth, title) + plot_sensitivity(run, out)


# --------------------------------------------------------------------------- sensitivity

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "run"


def sensitivity_lines(run: RunData, key: str, max_lines: int = MAX_SENSITIVITY_LINES
                      ) -> list[tuple[str, list[tuple[float, np.ndarray]]]]:
    """The lines of the sensitivity plot of ``key``: ``(label, [(value of key, final return per
    seed)])``, values in increasing order.

    When other hyperparameters were swept too, each combination of their values is one line
    (labelled by it), as long as there are at most ``max_lines`` combinations; with more, one
    line shows, at each value of ``key``, each seed's mean final return over all the settings
    with that value (the other swept values averaged out; its interval is then over seeds of
    that average)."""
    scores = score_settings(run)
    others = [k for k in swept_keys(run) if k != key]
    groups: dict[tuple, list] = {}
    for score in scores:
        if key in score.values:
            groups.setdefault(tuple((k, score.values.get(k)) for k in others), []).append(score)
    if len(groups) <= max_lines:
        return [(", ".join(f"{k}={_format(v)}" for k, v in group), _points(members, key))
                for group, members in groups.items()]
    pooled = [s for members in groups.values() for s in members]
    label = f"mean over the other swept values ({', '.join(others)})"
    return [(label, _points(pooled, key, average=True))]


def _format(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _points(scores, key: str, average: bool = False) -> list[tuple[float, np.ndarray]]:
    """Per value of ``key``: the final returns of its seeds (averaged per seed over settings)."""
    by_value: dict[float, dict] = {}
    for score in scores:
        seeds = by_value.setdefault(score.values[key], {})
        for seed, value in zip(score.seeds, score.final):
            seeds.setdefault(seed, []).append(value)
    points = []
    for value in sorted(by_value):
        per_seed = by_value[value].values()
        if average:
            per_seed = [[np.nanmean(v) if np.isfinite(v).any() else np.nan] for v in per_seed]
        points.append((value, np.array([x for v in per_seed for x in v], dtype=np.float64)))
    return points


def plot_sensitivity(run: RunData, out_dir, prefix: str = "") -> list[Path]:
    """For a sweep, ``out_dir/<prefix>sensitivity_<key>.png`` per swept hyperparameter: the final
    evaluation return against the swept value, seeds as points, the mean over seeds and its 95%
    percentile-bootstrap interval as a line with error bars (:func:`sensitivity_lines`). The x
    axis is logarithmic when the values are log-spaced (:func:`pgjax.report.sweep.axis_scales`).
    Nothing for a run with one setting."""
    from pgjax.report.sweep import axis_scales
    keys = swept_keys(run)
    if len(settings(run)) < 2 or not keys:
        return []
    scales = axis_scales(run)
    written = []
    for key in keys:
        figure = sensitivity_figure(run, key, scales[key])
        if figure is not None:
            written.append(_save(figure, Path(out_dir) / f"{prefix}sensitivity_{_safe(key)}.png"))
    return written


def sensitivity_figure(run: RunData, key: str, scale: str):
    """The sensitivity figure of one swept ``key`` on a ``scale`` ("log"/"linear") x axis; None
    when no setting has a final return."""
    lines = sensitivity_lines(run, key)
    figure, (ax,) = _new_figure(1)
    drawn = False
    for label, points in lines:
        drawn |= _draw_sensitivity_line(ax, points, label or None)
    if not drawn:
        return None
    ax.set_xscale(scale)
    ax.set_xlabel(f"{key} ({scale} axis)")
    ax.set_ylabel("final evaluation return")
    ax.set_title(_title(f"{run.name}: {run.algorithm} on {run.env_id}; final evaluation "
                        f"return vs {key}: points are seeds, line the mean with its 95% "
                        "bootstrap CI"), fontsize=10)
    _legend_outside(figure, [ax])
    return figure


def _draw_sensitivity_line(ax, points: Sequence[tuple[float, np.ndarray]], label: str | None) -> bool:
    xs, means, lows, highs = [], [], [], []
    scatter_x, scatter_y = [], []
    for x, per_seed in points:
        finite = per_seed[np.isfinite(per_seed)]
        if not finite.size:
            continue
        est = estimate(finite)
        xs.append(x)
        means.append(est.mean)
        lows.append(est.mean - est.ci[0] if est.n > 1 else 0.0)
        highs.append(est.ci[1] - est.mean if est.n > 1 else 0.0)
        scatter_x += [x] * finite.size
        scatter_y += finite.tolist()
    if not xs:
        return False
    container = ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=3, linewidth=1.2,
                            label=label)
    from matplotlib.transforms import offset_copy
    beside = offset_copy(ax.transData, fig=ax.figure, x=7, y=0, units="points")  # clear of the bar
    ax.scatter(scatter_x, scatter_y, s=22, alpha=0.6, marker="x", zorder=3, transform=beside,
               color=container.lines[0].get_color())
    return True
