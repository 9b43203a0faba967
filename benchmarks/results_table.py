"""Render benchmarks/results/*.json as markdown tables: ``results/learning.md`` and
``results/throughput.md`` (the docs' benchmarks page includes them; the suite checks they match
their JSON, so no table is hand-copied).

    python -m benchmarks.results_table
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def learning_table(rows: dict) -> str:
    lines = ["| algorithm (row) | env | env steps/seed | target | eval return, mean ± std over 3 seeds (200 greedy episodes each) | per seed | met | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        target = "—" if row["target"] is None else f"{row['target']:g}"
        met = "—" if row["passed"] is None else ("yes" if row["passed"] else "**no**")
        # returns of order 1 (MemoryChain, the grid world) get three decimals, others one
        decimals = 3 if max(abs(r) for r in [*row["per_seed"], row["target"] or 0]) < 10 else 1
        per_seed = ", ".join(f"{r:.{decimals}f}" for r in row["per_seed"])
        notes = [f"{row['eval_episodes']} episodes"] if row.get("eval_episodes", 200) != 200 else []
        notes += [] if row.get("eval_greedy", True) else ["sampled actions"]
        sampled = f" ({', '.join(notes)})" if notes else ""
        lines.append(f"| {row['algorithm']} | {row['env_id']} | {row['total_steps']:,} | {target} | "
                     f"{row['eval_mean']:.{decimals}f} ± {row['eval_std']:.{decimals}f}{sampled} | {per_seed} | "
                     f"{met} | {row['wall_s']:.0f} |")
    return "\n".join(lines) + _machines_note(rows)


def _machines_note(rows: dict) -> str:
    """Which machine measured which rows (rows measured before machines were recorded: an
    earlier 2-core x86_64 machine)."""
    by_machine: dict[str, list[str]] = {}
    for row in rows.values():
        if row.get("machine"):
            by_machine.setdefault(row["machine"], []).append(f"{row['algorithm']} {row['env_id']}")
    if not by_machine:
        return ""
    parts = [f"{machine}: {', '.join(names)}" for machine, names in by_machine.items()]
    return ("\n\nMachines, where a row records one (the others ran on an earlier 2-core x86_64 "
            "machine): " + "; ".join(parts) + ".")


def cpu_description() -> str:
    """The CPU's model name, architecture and core count (a row's machine)."""
    import os
    import platform
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({platform.machine()}), {os.cpu_count()} cores"


def throughput_table(data: dict) -> str:
    lines = [f"Machine: {data['machine']}", "",
             "| algorithm | num_envs × rollout | seeds | env steps | compile s | steps/s |", "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['algorithm']} | {r['num_envs']} × {r['rollout']} | {r['seeds']} | {r['env_steps']:,} | "
                     f"{r['compile_s']:.1f} | {r['steps_per_s']:,.0f} |")
    return "\n".join(lines)


def machine_description() -> str:
    """This machine in one line for a results table: CPU model, architecture, cores, JAX device kind."""
    import os
    import platform

    import jax
    return f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, {jax.devices()[0].device_kind}"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    import platform
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def save_results(results_dir: Path, name: str, result: dict, markdown: str, indent: int = 2) -> None:
    """Write a study's ``<name>.json`` and its markdown fragment ``<name>.md`` (the table
    ``python -m benchmarks.readme`` gathers into benchmarks/README.md) to ``results_dir``, and
    print the fragment."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=indent))
    (results_dir / f"{name}.md").write_text(markdown)
    print(markdown)


TABLES = {"learning": learning_table, "throughput": throughput_table}


def main():
    for name, render in TABLES.items():
        source = RESULTS / f"{name}.json"
        if source.exists():
            text = render(json.loads(source.read_text())) + "\n"
            (RESULTS / f"{name}.md").write_text(text)
            print(text)


if __name__ == "__main__":
    main()
