"""The end of a run: its :class:`RunResult`, the ``summary.json`` record and the summary table
(for a sweep, one row per setting, best first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgjax.run.loggers import write_json_atomic, writing


@dataclass
class RunResult:
    run_dir: Path
    status: str                      # completed | interrupted | diverged
    eval_returns: np.ndarray         # [num_members] mean final evaluation return (NaN if none)
    steps_per_second: float
    compile_seconds: float
    wall_seconds: float
    message: str = ""
    metrics_last: dict = field(default_factory=dict)
    final_state: object = None
    diverged: dict = field(default_factory=dict)  # member -> {"update", "metric"}


def summary_record(run: dict, final_eval: dict | None, *, steps_per_second: float,
                   compile_seconds: float, compile_seconds_eval: float | None,
                   wall_seconds: float) -> dict:
    """``summary.json`` of a completed run: ``run`` (algorithm, env, seeds, members, device, …)
    plus the final evaluation (``returns [M, E]``: per-member means, their mean and std over
    members, every episode's return), throughput, and compile and wall time."""
    if final_eval is not None:
        episode_returns = np.asarray(final_eval["returns"])
        per_member = episode_returns.mean(axis=1)
    else:
        episode_returns, per_member = None, np.full(len(run["members"]), np.nan)
    return {**run, "eval_return_per_seed": per_member, "eval_episode_returns": episode_returns,
            "eval_return_mean": float(per_member.mean()), "eval_return_std": float(per_member.std()),
            "steps_per_second": steps_per_second, "compile_seconds": compile_seconds,
            "compile_seconds_train": compile_seconds, "compile_seconds_eval": compile_seconds_eval,
            "wall_seconds": wall_seconds}


def write_summary(run_dir: Path, run: dict, final_eval: dict | None, *, out, plots: bool,
                  **timings) -> dict:
    """Write ``summary.json`` (:func:`summary_record` of ``run`` and ``timings``), print the
    summary table to ``out`` and, with ``plots``, draw the run's learning curves into ``plots/``."""
    summary = summary_record(run, final_eval, **timings)
    write_json_atomic(run_dir / "summary.json", summary)
    print(summary_table(summary), file=out, flush=True)
    if plots:
        from pgjax import report
        with writing(run_dir / "plots"):
            report.plot_run(run_dir)
    return summary


@dataclass(frozen=True)
class SettingSummary:
    """The final evaluation of one hyperparameter setting of a run, over its seeds."""

    values: dict               # swept hyperparameter -> value ({} when nothing was swept)
    seeds: tuple               # seed of each member
    returns: np.ndarray        # final mean evaluation return of each member (NaN: none)
    diverged: int              # members that went non-finite
    mean: float                # over the seeds with a finite return
    std: float                 # ddof 0, as summary.json
    ci: tuple[float, float]    # 95% percentile bootstrap of the mean; NaN with fewer than 2 seeds

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_number(v)}" for k, v in self.values.items())


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def setting_summaries(summary: dict) -> list[SettingSummary]:
    """The settings of a run (members grouped by their swept ``hp_*`` values, as
    ``summary["members"]`` labels them) with their final evaluation over seeds, best mean
    first; settings without a finite return come last, in their order. The interval is the
    percentile bootstrap of :func:`pgjax.report.stats.bootstrap_ci` (Agarwal et al. 2021)."""
    from pgjax.report.stats import bootstrap_ci
    returns = np.asarray(summary["eval_return_per_seed"], dtype=np.float64)
    members = summary.get("members") or []
    if len(members) != len(returns):
        members = [{"seed": s} for s in summary.get("seeds", range(len(returns)))][:len(returns)]
        members += [{} for _ in range(len(returns) - len(members))]
    diverged = {d.get("member") for d in summary.get("diverged") or []}
    groups: dict[tuple, list[int]] = {}
    for i, label in enumerate(members):
        groups.setdefault(tuple((k[3:], v) for k, v in label.items() if k.startswith("hp_")), []).append(i)
    found = []
    for key, rows in groups.items():
        values = returns[rows]
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if finite.size else float("nan")
        std = float(finite.std()) if finite.size else float("nan")
        ci = tuple(float(v) for v in bootstrap_ci(finite)) if finite.size > 1 else (np.nan, np.nan)
        found.append(SettingSummary(dict(key), tuple(members[i].get("seed", i) for i in rows),
                                    values, len({members[i].get("member", i) for i in rows} & diverged),
                                    mean, std, ci))
    return sorted(found, key=lambda s: (0, -s.mean) if np.isfinite(s.mean) else (1, 0.0))


def _ci_text(ci: tuple[float, float]) -> str:
    return "—" if not all(np.isfinite(ci)) else f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def settings_table(settings: list[SettingSummary], per_seed: bool = False) -> str:
    """One row per setting, best first: its swept values, seeds, final evaluation return mean ±
    std and 95% CI over seeds, diverged members; each seed's return only with ``per_seed``."""
    keys = list(dict.fromkeys(k for s in settings for k in s.values))
    header = (["rank"] + keys + ["seeds", "eval return (mean ± std)", "95% CI of mean", "diverged"]
              + (["per seed (seed: return)"] if per_seed else []))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, s in enumerate(settings, start=1):
        finite = int(np.isfinite(s.returns).sum())
        mean = "—" if not np.isfinite(s.mean) else f"{s.mean:.1f} ± {s.std:.1f}"
        cells = ([str(rank)] + [_number(s.values.get(k, "—")) for k in keys]
                 + [str(finite) if finite == len(s.seeds) else f"{finite} of {len(s.seeds)}",
                    mean, _ci_text(s.ci), f"{s.diverged}/{len(s.seeds)}"])
        if per_seed:
            cells.append(", ".join(f"{seed}: {r:.1f}" for seed, r in zip(s.seeds, s.returns)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(summary: dict, per_seed: bool = False) -> str:
    """The summary as the markdown table a run prints at its end. A run of one setting shows its
    final evaluation in the table, each seed's return included; a sweep is followed by
    :func:`settings_table`, best setting first, each seed's return only with ``per_seed`` (they
    are all in ``summary.json``)."""
    settings = setting_summaries(summary)
    episodes = f"eval return ({summary['eval_episodes']} episodes/seed)"
    if len(settings) == 1:
        seeds = ", ".join(f"{r:.1f}" for r in summary["eval_return_per_seed"])
        evaluation = [(episodes, f"{summary['eval_return_mean']:.1f} ± "
                                 f"{summary['eval_return_std']:.1f}  [{seeds}]"),
                      ("95% CI of mean (bootstrap over seeds)", _ci_text(settings[0].ci))]
    else:
        evaluation = [(episodes, f"{len(settings)} settings, ranked below (best first)")]
    rows = [
        ("algorithm", summary["algorithm"]), ("env", summary["env_id"]),
        ("seeds", str(summary["seeds"])),
        *evaluation,
        ("env steps per seed", f"{summary['env_steps_per_seed']:,d}"),
        ("steps/s (all seeds, after compile)", f"{summary['steps_per_second']:,.0f}"),
        ("compile time (train program; evaluation)",
         f"{summary['compile_seconds']:.1f} s; " + (f"{summary['compile_seconds_eval']:.1f} s"
                                                    if summary.get("compile_seconds_eval") else "—")
         + (" (from the compilation cache)" if summary.get("compile_cache_hit") else "")),
        ("wall time", f"{summary['wall_seconds']:.1f} s"),
        ("device", summary["device"]),
    ]
    if summary.get("diverged"):
        rows.append(("diverged (frozen at last finite state)", "; ".join(
            f"member {d['member']} (seed {d['seed']}) at update {d['update']} ({d['metric']})"
            for d in summary["diverged"])))
    width = max(len(k) for k, _ in rows)
    lines = ["", "| " + "metric".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    if len(settings) > 1:
        lines += ["", settings_table(settings, per_seed)]
    return "\n".join(lines)
