"""The figure of a population-based training run (Jaderberg et al. 2017): each member's lineage
(whom it copied at each round) and each searched hyperparameter's schedule, from ``pbt.jsonl``
(:mod:`pgjax.run.pbt_rounds`: one row per member per round, with its parent and its values
before and after explore)."""

from __future__ import annotations

import json
from pathlib import Path

from pgjax.report.figures import _new_figure, _save, _title
from pgjax.report.load import RunData


def pbt_rows(run: RunData) -> list[dict]:
    """The rows of ``run``'s ``pbt.jsonl`` (``[]`` for a run without PBT); unreadable lines skipped."""
    try:
        text = (Path(run.path) / "pbt.jsonl").read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in rows if isinstance(r, dict) and "member" in r and "update" in r]


def schedules(run: RunData, rows: list[dict]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """``{key: {member: [(update, value), ...]}}``: each member's value of each searched key from
    update 0 (its setting's value) through every round (the value after explore) to the run's end."""
    keys = sorted({k[3:] for r in rows for k in r if k.startswith("hp_")})
    end = int((run.config.get("num_updates") or max(r["update"] for r in rows)))
    found: dict[str, dict[int, list]] = {k: {} for k in keys}
    for label in run.members:
        for k in keys:
            first = next((r[f"before_{k}"] for r in sorted(rows, key=lambda r: r["update"])
                          if r["member"] == label.get("member") and not r["copied"]), None)
            start = label.get(f"hp_{k}", first)
            if start is not None:
                found[k][label["member"]] = [(0, float(start))]
    for row in sorted(rows, key=lambda r: (r["update"], r["member"])):
        for k in keys:
            found[k].setdefault(row["member"], []).append((row["update"], float(row[f"hp_{k}"])))
    for k in keys:
        for series in found[k].values():
            series.append((end, series[-1][1]))
    return found


def plot_pbt(run: RunData, out_dir, prefix: str = "") -> list[Path]:
    """``out_dir/<prefix>pbt.png`` for a PBT run: a lineage panel (member against round, a line
    from the parent each copy came from) and one schedule panel per searched hyperparameter (each
    member's value against updates, log axis for a log-spaced key). Nothing without pbt.jsonl."""
    rows = pbt_rows(run)
    if not rows:
        return []
    series = schedules(run, rows)
    space = run.config.get("sweep_space") or {}
    figure, axes = _new_figure(1 + len(series), width=6.4)
    lineage = axes[0]
    rounds = sorted({r["update"] for r in rows})
    previous = {u: (rounds[i - 1] if i else 0) for i, u in enumerate(rounds)}
    members = sorted({r["member"] for r in rows})
    for m in members:
        lineage.plot([0, rounds[-1]], [m, m], color="0.85", linewidth=0.8)
    for row in rows:
        if row["copied"]:
            lineage.plot([previous[row["update"]], row["update"]], [row["parent"], row["member"]],
                         color="C3", linewidth=1.0)
    lineage.set_xlabel("update (a PBT round after each evaluation)")
    lineage.set_ylabel("member")
    lineage.set_title(_title(f"{run.name}: lineage, a red line from the member copied "
                             "(exploit) to the member replaced"), fontsize=10)
    for ax, (key, by_member) in zip(axes[1:], series.items()):
        for m, points in sorted(by_member.items()):
            xs, ys = zip(*points)
            ax.step(xs, ys, where="post", linewidth=1.0, color=f"C{m % 10}")
        if space.get(key) == "log" and all(v > 0 for p in by_member.values() for _, v in p):
            ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_ylabel(key)
        ax.set_title(_title(f"{key} of each member (a colour per member) over training"), fontsize=10)
    return [_save(figure, Path(out_dir) / f"{prefix}pbt.png")]


__all__ = ["pbt_rows", "plot_pbt", "schedules"]
