"""Start-up: how long a user waits before training shows progress, and how long a tiny run takes
as a whole process.

    python -m benchmarks.startup [--algos ppo,a2c] [--seeds 3]
    python -m benchmarks.startup --whole      # pgjax train ppo --seeds 3 --total-steps 8192, to exit

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
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


from benchmarks.results_table import machine_description, save_results
from pgjax.run.options import RunOptions

RESULTS = Path(__file__).resolve().parent / "results"
ALGORITHMS = ("ppo", "reinforce", "actor-critic", "a2c", "trpo", "impala")


def import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pgjax.cli, pgjax.run.runner"], check=True,
                   env=_process_env(Path(tempfile.gettempdir())))
    return time.perf_counter() - start


def first_progress(algo: str, seeds: int, cache: Path, runs: Path, name: str) -> dict:
    env = _process_env(cache)
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


WHOLE = ["train", "ppo", "--seeds", "3", "--total-steps", "8192"]


def _process_env(cache: Path) -> dict:
    """A user's process: the runner's compilation cache (and program store) in ``cache``, and
    Python writing bytecode (a sandbox's PYTHONDONTWRITEBYTECODE would recompile every module of
    pgjax at each start)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PGJAX_CACHE_DIR": str(cache),
           "PGJAX_COMPILATION_CACHE": "1"}
    for name in ("JAX_COMPILATION_CACHE_DIR", "PYTHONDONTWRITEBYTECODE", "XLA_FLAGS"):
        env.pop(name, None)
    return env


def whole_process(cache: Path, runs: Path, name: str) -> dict:
    """Seconds of ``pgjax train ppo --seeds 3 --total-steps 8192`` (defaults otherwise: plots,
    TensorBoard, the default evaluations of 200 episodes, checkpoints) from the command to its
    exit, split at its output lines: to the first line (imports, resolving the run), to
    "compiled in" (compiling or loading the training program), to the summary table's last line
    (training, evaluations, checkpoints), to exit (plots)."""
    env = {**_process_env(cache), "JAX_LOG_COMPILES": "1"}
    argv = [sys.executable, "-m", "pgjax.cli", *WHOLE, "--runs-dir", str(runs), "--name", name]
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    marks, jax_lines = {}, []
    for line in process.stdout:
        now = time.perf_counter() - start
        if _JAX_LOG.search(line):
            jax_lines.append(line)
            continue
        marks.setdefault("first_output_s", now)
        if "on CartPole-v1:" in line and "compiled in" in line:
            marks["compiled_s"] = now
        if line.startswith("| device"):
            marks["summary_s"] = now
    _, _, usage = os.wait4(process.pid, 0)
    marks["exit_s"] = time.perf_counter() - start
    marks["cpu_s"] = usage.ru_utime + usage.ru_stime
    return {**marks, **jax_phase_seconds(jax_lines)}


# JAX's own account of each program (JAX_LOG_COMPILES), summed over the programs of a run; programs
# compile side by side in threads, so these are seconds of work, not of waiting
JAX_PHASES = {"tracing": "tracing_s", "jaxpr to MLIR module conversion": "lowering_s",
              "XLA compilation": "xla_compile_s"}
_JAX_LOG = re.compile(r"Finished (tracing|jaxpr to MLIR module conversion|XLA compilation)\b.* in "
                      r"([\d.e+-]+) sec")


def jax_phase_seconds(lines) -> dict[str, float]:
    """Seconds of each of :data:`JAX_PHASES`, summed over JAX's log ``lines``."""
    seconds = dict.fromkeys(JAX_PHASES.values(), 0.0)
    for line in lines:
        found = _JAX_LOG.search(line)
        if found is not None:
            seconds[JAX_PHASES[found.group(1)]] += float(found.group(2))
    return seconds


def _median(runs: list[dict]) -> dict:
    return {key: float(np.median([r[key] for r in runs if key in r])) for key in runs[0]}


def measure_whole(repeats: int = 3) -> dict:
    """Cold (an empty cache) and warm (the second run on that cache), ``repeats`` times each;
    medians. Bytecode is written first, as a user's first import does."""
    subprocess.run([sys.executable, "-c", "import pgjax.cli, pgjax.run.runner, pgjax.report.figures"],
                   check=True, env=_process_env(Path(tempfile.gettempdir())))
    cold, warm = [], []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="pgjax-startup-") as scratch:
            cache, runs = Path(scratch) / "cache", Path(scratch) / "runs"
            cold.append(whole_process(cache, runs, "cold"))
            warm.append(whole_process(cache, runs, "warm"))
            print(f"repeat {repeat}: cold {cold[-1]['exit_s']:.1f} s, warm {warm[-1]['exit_s']:.1f} s",
                  flush=True)
    return {"command": "pgjax " + " ".join(WHOLE), "import_s": import_seconds(), "repeats": repeats,
            "num_evals": RunOptions().num_evals, "cold": _median(cold), "warm": _median(warm),
            "cold_runs": cold, "warm_runs": warm}


def whole_markdown(result: dict, machine: str) -> str:
    lines = [f"`{result['command']}` as a whole process ({machine}), seconds from the command, "
             f"median of {result.get('repeats', 1)}: imports alone take {result['import_s']:.1f} s "
             "(a fresh interpreter). Cold: an empty compilation cache and program store "
             "(`~/.cache/pgjax`); warm: the second run of the same command.", "",
             f"| cache | first output (imports, resolving) | compiled | summary (training, "
             f"{result.get('num_evals', 5)} evaluations, checkpoints) | exit (plots) | CPU seconds "
             "(user + system) | tracing | lowering | XLA compile |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    nan = float("nan")
    for which in ("cold", "warm"):
        m = result[which]
        lines.append(f"| {which} | {m.get('first_output_s', nan):.1f} | {m.get('compiled_s', nan):.1f} | "
                     f"{m.get('summary_s', nan):.1f} | {m['exit_s']:.1f} | {m.get('cpu_s', nan):.1f} | "
                     f"{m.get('tracing_s', nan):.1f} | {m.get('lowering_s', nan):.1f} | "
                     f"{m.get('xla_compile_s', nan):.1f} |")
    lines += ["", "The first five columns are wall-clock seconds from the command. The last three are "
              "JAX's own account of its programs (`JAX_LOG_COMPILES`), summed over every program of "
              "the run (the training, initialisation and evaluation programs compile side by side in "
              "threads, and XLA:CPU compiles one program on several threads), so they are seconds "
              "of work, not of waiting; a warm run's are the loads from the program store and the "
              "compilation cache. On a machine with C cores a run cannot end sooner than its CPU "
              "seconds / C."]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--whole", action="store_true", help="the whole-process measurement only")
    args = parser.parse_args()
    machine = machine_description()
    if args.whole:
        result = measure_whole()
        save_results(RESULTS, "startup_whole", {**result, "machine": machine}, whole_markdown(result, machine))
        return
    rows = measure([a for a in args.algos.split(",") if a], args.seeds)
    save_results(RESULTS, "startup", {"rows": rows, "machine": machine}, markdown(rows, machine))


if __name__ == "__main__":
    main()
