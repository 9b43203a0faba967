"""The end of a run: its :class:`RunResult`, the ``summary.json`` record and the summary table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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


def summary_table(summary: dict) -> str:
    """The summary as the markdown table a run prints at its end."""
    per_seed = ", ".join(f"{r:.1f}" for r in summary["eval_return_per_seed"])
    rows = [
        ("algorithm", summary["algorithm"]), ("env", summary["env_id"]),
        ("seeds", str(summary["seeds"])),
        (f"eval return ({summary['eval_episodes']} episodes/seed)",
         f"{summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f}  [{per_seed}]"),
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
    return "\n".join(lines)
