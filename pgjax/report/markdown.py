"""The report: overlay figures and a markdown table of final evaluation returns per run and
setting, with status marks for runs that did not finish."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pgjax.report.figures import _plot_entries, plot_run
from pgjax.report.load import RunData, Setting, _as_float, load_run, report_entries, run_labels
from pgjax.report.stats import BOOTSTRAP_SEED, NUM_RESAMPLES, final_eval


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
