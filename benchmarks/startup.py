"""Start-up: how long a user waits before training shows progress (issue 12 §2).

    python benchmarks/startup.py [--algos ppo,a2c] [--seeds 3] [--repeats 1]

For every algorithm: the import time of ``pgjax.cli`` (a fresh interpreter), then ``pgjax train
ALGO --env CartPole-v1 --seeds 3`` twice in a subprocess — cold (an empty persistent compilation
cache) and warm (the same cache, the same configuration) — recording the wall time to the
"compiled in" line and to the first progress line, and the compile times ``summary.json``
would report. Each run is stopped with SIGTERM at its first progress line. Writes
``benchmarks/results/startup.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_table import save_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ALGORITHMS = ("ppo", "reinforce", "actor-critic", "a2c", "trpo", "impala")


def import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pgjax.cli, pgjax.run.runner"], check=True)
    return time.perf_counter() - start


def first_progress(algo: str, seeds: int, cache: Path, runs: Path, name: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PGJAX_CACHE_DIR": str(cache),
           "PGJAX_COMPILATION_CACHE": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    argv = [sys.executable, "-m", "pgjax.cli", "train", algo, "--env", "CartPole-v1", "--seeds",
            str(seeds), "--runs-dir", str(runs), "--name", name, "--no-plots"]
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    row = {"algorithm": algo}
    for line in process.stdout:
        if "compiled in" in line:
            row["to_compiled_s"] = time.perf_counter() - start
            row["compile_s"] = float(re.search(r"compiled in ([\d.]+)s", line).group(1))
        if line.startswith("  steps"):
            row["to_first_progress_s"] = time.perf_counter() - start
            process.send_signal(signal.SIGTERM)
            break
    process.communicate(timeout=300)
    return row


def measure(algos, seeds: int) -> list[dict]:
    rows = []
    for algo in algos:
        with tempfile.TemporaryDirectory(prefix="pgjax-startup-") as scratch:
            cache, runs = Path(scratch) / "cache", Path(scratch) / "runs"
            cold = first_progress(algo, seeds, cache, runs, "cold")
            warm = first_progress(algo, seeds, cache, runs, "warm")
        rows.append({"algorithm": algo, "seeds": seeds, "import_s": import_seconds(),
                     **{f"cold_{k}": v for k, v in cold.items() if k != "algorithm"},
                     **{f"warm_{k}": v for k, v in warm.items() if k != "algorithm"}})
        print(rows[-1], flush=True)
    return rows


def markdown(rows, machine: str) -> str:
    lines = [f"Start-up of `pgjax train ALGO --env CartPole-v1 --seeds N` ({machine}); seconds of "
             "wall time from the command to its first progress line, cold (empty compilation "
             "cache) and warm (second run, same configuration):", "",
             "| algorithm | seeds | import | cold: compiled (compile) | cold: first progress | "
             "warm: compiled (compile) | warm: first progress |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['seeds']} | {r['import_s']:.1f} | "
                     f"{r.get('cold_to_compiled_s', float('nan')):.1f} ({r.get('cold_compile_s', float('nan')):.1f}) | "
                     f"{r.get('cold_to_first_progress_s', float('nan')):.1f} | "
                     f"{r.get('warm_to_compiled_s', float('nan')):.1f} ({r.get('warm_compile_s', float('nan')):.1f}) | "
                     f"{r.get('warm_to_first_progress_s', float('nan')):.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default=",".join(ALGORITHMS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = measure([a for a in args.algos.split(",") if a], args.seeds)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU-only"
    save_results(RESULTS, "startup", {"rows": rows, "machine": machine}, markdown(rows, machine))


if __name__ == "__main__":
    main()
