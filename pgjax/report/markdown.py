"""The report: overlay figures and a markdown table of final evaluation returns per run and
setting, with status marks for runs that did not finish; for a sweep, its settings ranked and
compared with the best (:mod:`pgjax.report.sweep`) and its sensitivity plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pgjax.report.figures import (TOP_SETTINGS, _plot_entries, _safe, curve_entries, plot_run,
                                  plot_sensitivity)
from pgjax.report.load import (RunData, Setting, _as_float, load_run, report_entries, run_labels,
                               settings)
from pgjax.report.stats import BOOTSTRAP_SEED, NUM_RESAMPLES, final_eval
from pgjax.report.sweep import (BEST, INDISTINGUISHABLE, METRICS, NO_VALUE, WORSE, Comparison,
                                axis_scales, rank, score_settings)


FEW_SEEDS = 5  # below this many seeds the ranking notes that its intervals are rough


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


def _fmt_delta(comparison: Comparison) -> tuple[str, str, str]:
    """(pairs, Δ, CI of Δ) cells of a ranking row."""
    difference = comparison.difference
    if difference is None:
        return "—", "—", "—"
    delta = "—" if not math.isfinite(difference.mean) else f"{difference.mean:+.2f}"
    return str(difference.n), delta, _fmt_ci(difference.ci)


def _per_seed_cell(comparison: Comparison, metric: str) -> str:
    score = comparison.score
    return ", ".join(f"s{seed}: {_fmt(value)}" for seed, value in
                     sorted(zip(score.seeds, score.scores(metric).tolist()), key=lambda p: str(p[0])))


def ranking_table(ranked: Sequence[Comparison], metric: str, per_seed: bool = False) -> str:
    """The markdown table of a ranking (:func:`pgjax.report.sweep.rank`), best first."""
    header = (f"| rank | setting | seeds | {METRICS[metric]} (mean) | 95% CI | pairs "
              "| Δ vs best (mean of paired differences) | 95% CI of Δ | verdict | diverged |"
              + (" per seed |" if per_seed else ""))
    lines = [header, "|" + "---|" * header.count(" |")]
    for c in ranked:
        pairs, delta, delta_ci = _fmt_delta(c)
        place = str(c.rank) if c.estimate.n else "—"  # no value: not ranked
        lines.append(f"| {place} | {c.score.label} | {c.estimate.n} | {_fmt(c.estimate.mean)} "
                     f"| {_fmt_ci(c.estimate.ci)} | {pairs} | {delta} | {delta_ci} | {c.verdict} "
                     f"| {c.score.diverged}/{len(c.score.seeds)} |"
                     + (f" {_per_seed_cell(c, metric)} |" if per_seed else ""))
    return "\n".join(lines)


def _decision(ranked: Sequence[Comparison], metric: str) -> str:
    """One sentence: which settings the ranking cannot tell apart from the best."""
    best = ranked[0]
    if best.verdict == NO_VALUE:
        return f"No setting has a {METRICS[metric]} yet."
    if best.estimate.n < 2:
        return (f"Best by {METRICS[metric]}: {best.score.label}, but with one seed per setting "
                "there is no interval: the settings cannot be told apart.")
    same = [c.score.label for c in ranked[1:] if c.verdict == INDISTINGUISHABLE]
    undecided = [f"{c.score.label} ({c.verdict})" for c in ranked[1:]
                 if c.verdict not in (INDISTINGUISHABLE, WORSE, BEST)]
    text = (f"Best by {METRICS[metric]}: **{best.score.label}**. "
            + (f"Indistinguishable from it (the 95% CI of the paired difference contains 0): "
               f"{', '.join(same)}." if same else
               "Every other setting is distinguishable from it (worse: the 95% CI of the paired "
               "difference lies below 0)." if not undecided else ""))
    if undecided:
        text += f" Not decided: {'; '.join(undecided)}."
    return text


def ranking_markdown(label: str, run: RunData, per_seed: bool = False) -> str:
    """The section of the report that ranks the settings of the sweep ``run`` (labelled
    ``label``) by final evaluation return and by the area under the evaluation curve, each with
    the paired comparison of every setting with the best."""
    scores = score_settings(run)
    seeds = sorted({len(s.seeds) for s in scores})
    parts = [f"## Settings of {label}, best first", "",
             f"{run.algorithm} on {run.env_id}: {len(scores)} settings × "
             f"{'/'.join(map(str, seeds))} seed(s), the same seeds in every setting.", ""]
    for metric in METRICS:
        ranked = rank(scores, metric)
        parts += [f"### By {METRICS[metric]}", "", ranking_table(ranked, metric, per_seed), "",
                  _decision(ranked, metric), ""]
    parts += [
        "- final evaluation return: each seed's mean return at the final evaluation; mean over "
        f"seeds with a 95% percentile-bootstrap CI ({NUM_RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}; Agarwal et al. 2021).",
        "- area under the evaluation curve: for each seed, the trapezoid rule over its "
        "evaluations (eval.jsonl) divided by the env-step span they cover, i.e. its average "
        "evaluation return over training; rewards learning early as well as ending high.",
        "- Δ vs best: mean over the seeds both settings have (pairs) of setting − best. A seed "
        "gives the same initial parameters and environment keys in every setting, so the "
        "differences are paired; their 95% CI is the percentile bootstrap over resampled seeds "
        f"(seed {BOOTSTRAP_SEED}). A CI that contains 0: indistinguishable from the best.",
        "- diverged: members that went non-finite, frozen at their last finite state and "
        "evaluated there (included above).",
    ]
    if 1 < seeds[0] < FEW_SEEDS:
        parts.append(f"- only {seeds[0]} seeds: a percentile-bootstrap interval over so few seeds "
                     "cannot reach beyond the values observed, so it is narrow by construction; "
                     "treat the verdicts as tentative (Agarwal et al. 2021).")
    if run.config.get("study_kind") == "halving":
        parts.append("- successive halving: a pruned setting's final evaluation and area are those "
                     "of the evaluations it reached (its curve ends at its rung), so it is compared "
                     "with the best on a shorter budget; study.json lists each rung's settings.")
    return "\n".join(parts) + "\n"


def report(run_dirs: Sequence, out_dir, *, smooth: int = 1, per_run_plots: bool = True,
           top: int = TOP_SETTINGS, per_seed: bool = False) -> str:
    """Compare runs: overlay figures ``out_dir/<metric>.png`` and ``out_dir/report.md``.

    Each run is labelled by its directory name (and its hyperparameter setting when it swept
    several). A sweep also gets its settings ranked (:func:`ranking_markdown`, per-seed scores
    with ``per_seed``) and ``sensitivity_<key>.png`` per swept key; its learning curves show its
    ``top`` best settings only. Environments get a panel each. With ``per_run_plots`` each run's
    own curves also go to ``out_dir/<run label>/``. Nothing is written into the run folders (a
    reader never modifies a run). ``smooth`` is a moving-average window in points (1: no
    smoothing). Returns the markdown.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("report needs at least one run directory")
    if not (isinstance(top, int) and top >= 1):
        from pgjax.config_error import ConfigError
        raise ConfigError(f"--top={top!r} is not allowed: a positive integer (settings per sweep "
                          "whose learning curves are drawn)")
    runs = [load_run(p) for p in paths]
    for run in runs:
        axis_scales(run)  # a bad sweep_space is refused before anything is written
    labels = run_labels(paths)
    entries = report_entries(runs, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if per_run_plots and len(runs) > 1:
        for run, label in zip(runs, labels):
            plot_run(run, out / _safe(label), smooth=smooth, top=top)
    drawn, cut = [], False
    for run, label in zip(runs, labels):
        chosen, total = curve_entries(run, label, top)
        drawn += chosen
        cut |= len(chosen) < total
    title = "mean over seeds and 95% bootstrap CI" + (
        f"; a sweep shows its top {top} settings by final evaluation return" if cut else "")
    figures = _plot_entries(drawn, out, smooth, title)
    parts = ["# pgjax report", "", report_table(entries)]
    sweeps = [(run, label) for run, label in zip(runs, labels) if len(settings(run)) > 1]
    for run, label in sweeps:
        prefix = f"{_safe(label)}_" if len(sweeps) > 1 else ""
        parts += [ranking_markdown(label, run, per_seed)]
        parts += [f"![{f.stem}]({f.name})" for f in plot_sensitivity(run, out, prefix)] + [""]
    from pgjax.report.pbt import plot_pbt
    for run, label in zip(runs, labels):
        drawn_pbt = plot_pbt(run, out, f"{_safe(label)}_" if len(runs) > 1 else "")
        if drawn_pbt:
            parts += [f"## Population-based training: {label}", "",
                      "Lineage and hyperparameter schedules (pbt.jsonl).", ""]
            parts += [f"![{f.stem}]({f.name})" for f in drawn_pbt] + [""]
    if figures:
        parts += ["## Curves", ""] + [f"![{f.stem}]({f.name})" for f in figures]
    markdown = "\n".join(parts) + "\n"
    (out / "report.md").write_text(markdown)
    return markdown
