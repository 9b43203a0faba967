"""Soak: memory of a long run through the real runner stays flat.

    python -m benchmarks.dev.soak [--minutes 10] [--total-steps 6000000] [--seeds 3] [--every 5]

Starts ``pgjax train ppo`` on CartPole-v1 in a subprocess (default configuration, wall-time chunks,
checkpoints every --checkpoint-minutes 1 so the save path is exercised), samples its resident
memory (VmRSS from /proc) every ``--every`` seconds, and stops it with SIGTERM after ``--minutes``
(or when it finishes). It reports the RSS over time and a least-squares trend (MB per minute)
fitted after the first minute (start-up and compilation excluded), then writes
``benchmarks/results/soak.json`` and ``soak.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


from benchmarks.results_table import save_results

RESULTS = Path(__file__).resolve().parents[1] / "results"


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def soak(minutes: float, total_steps: int, seeds: int, every: float) -> dict:
    runs = Path(tempfile.mkdtemp(prefix="pgjax-soak-"))
    argv = [sys.executable, "-m", "pgjax.cli", "train", "ppo", "--env", "CartPole-v1", "--seeds",
            str(seeds), "--total-steps", str(total_steps), "--runs-dir", str(runs), "--name", "soak",
            "--checkpoint-minutes", "1", "--no-plots"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "JAX_PLATFORMS": "cpu"})
    start = time.monotonic()
    samples = []
    while process.poll() is None and time.monotonic() - start < 60 * minutes:
        value = rss_mb(process.pid)
        if value is not None:
            samples.append((time.monotonic() - start, value))
        time.sleep(every)
    finished = process.poll() is not None
    if not finished:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    metrics = runs / "soak" / "metrics.jsonl"
    updates = sum(1 for _ in metrics.open()) // seeds if metrics.exists() else 0
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    late = t > 60
    slope = float(np.polyfit(t[late] / 60, mb[late], 1)[0]) if late.sum() >= 3 else float("nan")
    return {"minutes": (time.monotonic() - start) / 60, "seeds": seeds, "total_steps": total_steps,
            "finished": finished, "exit_status": process.returncode, "updates_logged": updates,
            "rss_mb_min": float(mb.min()), "rss_mb_max": float(mb.max()),
            "rss_mb_after_1min_min": float(mb[late].min()) if late.any() else float("nan"),
            "rss_mb_after_1min_max": float(mb[late].max()) if late.any() else float("nan"),
            "trend_mb_per_min": slope, "samples": samples, "stderr_tail": err[-2000:],
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version()}


def markdown(result: dict) -> str:
    t = np.array([s[0] for s in result["samples"]])
    mb = np.array([s[1] for s in result["samples"]])
    marks = sorted({int(i) for i in np.linspace(0, len(t) - 1, 8)})
    rows = "\n".join(f"| {t[i] / 60:.1f} | {mb[i]:.0f} |" for i in marks)
    return (f"Soak: `pgjax train ppo --env CartPole-v1 --seeds {result['seeds']} --total-steps "
            f"{result['total_steps']:,}` for {result['minutes']:.1f} min "
            f"({'finished' if result['finished'] else 'stopped by SIGTERM'}, exit "
            f"{result['exit_status']}, {result['updates_logged']:,} updates logged per seed).\n\n"
            "| minute | RSS (MB) |\n|---:|---:|\n" + rows + "\n\n"
            f"RSS after the first minute: {result['rss_mb_after_1min_min']:.0f}–"
            f"{result['rss_mb_after_1min_max']:.0f} MB; least-squares trend "
            f"{result['trend_mb_per_min']:+.2f} MB/min. Machine: {result['machine']}.\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--total-steps", type=int, default=6_000_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    args = parser.parse_args()
    result = soak(args.minutes, args.total_steps, args.seeds, args.every)
    save_results(RESULTS, "soak", result, markdown(result))


if __name__ == "__main__":
    main()
