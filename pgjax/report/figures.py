"""Figures: learning curves, mean over seeds with a 95% bootstrap band, one figure per metric
(matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pgjax.report.load import RunData, Setting, load_run, settings
from pgjax.report.stats import curve_band, forward_fill, moving_average

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


