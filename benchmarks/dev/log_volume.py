"""Bytes a run writes per hour of training: the bounded default logging against full
detail (a row per update), for a small and a large population.

    python -m benchmarks.dev.log_volume [--members 3,2048] [--seconds 60]

Each case trains PPO on CartPole-v1 (the default network; 4 envs × 32 steps per member, so a
2048-member update fits this CPU) in a subprocess for ``--seconds`` of training wall time (then
SIGINT: the run saves and stops), with TensorBoard on, and measures every file the run folder
holds except checkpoints and the evaluation-episode cache (which do not grow with updates):
``metrics.jsonl``, ``metrics_settings.jsonl``, ``eval.jsonl``, ``tb/``. Bytes per run-hour =
bytes × 3600 / training seconds. Writes ``benchmarks/results/log_volume.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from benchmarks.results_table import machine_description, save_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
MODES = {"bounded (default)": None,
         "full detail (--log-every-seconds 0 --log-members 1000000)": "0"}


def folder_bytes(run: Path) -> dict[str, int]:
    """Bytes per output that grows with training (checkpoints and eval/ episodes excluded)."""
    sizes = {name: (run / name).stat().st_size if (run / name).exists() else 0
             for name in ("metrics.jsonl", "metrics_settings.jsonl", "eval.jsonl")}
    sizes["tb/"] = sum(f.stat().st_size for f in (run / "tb").rglob("*") if f.is_file()) \
        if (run / "tb").exists() else 0
    return sizes


def measure(members: int, log_every: str | None, seconds: float, root: Path) -> dict:
    name = f"m{members}-{'full' if log_every else 'bounded'}"
    argv = [sys.executable, "-m", "pgjax.cli", "train", "ppo", "--env", "CartPole-v1", "--seeds",
            str(members), "--total-steps", str(10 ** 11), "--set", "num_envs=4",
            "--set", "rollout_length=32", "--num-evals", "1000", "--eval-episodes", "8",
            "--cache-episodes", "0", "--runs-dir", str(root), "--name", name, "--no-plots"]
    if log_every is not None:
        argv += ["--log-every-seconds", log_every, "--log-members", "1000000"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "JAX_PLATFORMS": "cpu"})
    for line in process.stdout:  # training starts at the line that says it compiled
        if "compiled in" in line:
            break
    time.sleep(seconds)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=600)
    run = root / name
    train_seconds = seconds  # from the "compiled in" line to the signal
    sizes = folder_bytes(run)
    total = sum(sizes.values())
    updates = max(json.loads(line)["update"] for name in ("metrics.jsonl", "metrics_settings.jsonl")
                  if (run / name).exists() for line in (run / name).read_text().splitlines())
    return {"members": members, "mode": "full" if log_every else "bounded", "seconds": train_seconds,
            "updates": updates, "bytes": sizes, "total_bytes": total,
            "mb_per_hour": total * 3600 / train_seconds / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", default="3,2048")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for members in (int(m) for m in args.members.split(",")):
            for label, log_every in MODES.items():
                row = measure(members, log_every, args.seconds, Path(tmp))
                row["label"] = label
                rows.append(row)
                print(json.dumps(row), flush=True)
    lines = [f"PPO CartPole-v1, 4 envs × 32 steps per member, TensorBoard on; {args.seconds:.0f} s of "
             f"training per case, extrapolated to an hour. Machine: {machine_description()}.", "",
             "| members | logging | updates | metrics.jsonl | metrics_settings.jsonl | tb/ | eval.jsonl | MB per run-hour |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = r["bytes"]
        lines.append(f"| {r['members']} | {r['label']} | {r['updates']} | {b['metrics.jsonl'] / 1e6:.2f} MB | "
                     f"{b['metrics_settings.jsonl'] / 1e6:.2f} MB | {b['tb/'] / 1e6:.2f} MB | "
                     f"{b['eval.jsonl'] / 1e6:.3f} MB | {r['mb_per_hour']:,.0f} |")
    save_results(RESULTS, "log_volume", {"machine": machine_description(), "rows": rows},
                 "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
