"""Throughput: environment steps per second of whole jitted training runs, compile time apart.

    python -m benchmarks.throughput [--algos ppo] [--total-steps 500000] [--repeats 2] [--lean]

For every algorithm: (num_envs, rollout) = (4, 128), (64, 128), (2048, 32) with one seed, and 8 seeds
vmapped at (4, 128). PPO uses 4 epochs × 4 minibatches. steps/s counts the steps of all seeds and
is the best of ``--repeats`` runs after compilation (``--repeats 0``: compile only). Programs are
compiled with :func:`pgjax._xla_cpu.compile` (XLA's concurrency-optimised scheduler unless the
program holds a custom call that could deadlock under it; the JSON rows record which). Memory:
``program_bytes`` is XLA's own account of the compiled program's buffers (arguments + outputs +
temporaries − aliased, from ``memory_analysis()`` where the backend gives one, as CPU and GPU do;
no run needed; an upper bound on what the program holds at once), ``peak_device_bytes`` the
allocator's high-water mark where the device reports one (GPU/TPU, not CPU). ``--lean`` sets
``lean_metrics``. Prints a markdown table and writes ``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax


import pgjax
from pgjax import _xla_cpu, algorithms

SHAPES = [(4, 128, 1), (64, 128, 1), (2048, 32, 1), (4, 128, 8)]


def measure(algo_name: str, num_envs: int, rollout: int, seeds: int, total_steps: int, repeats: int,
            lean: bool = False, env_id: str = "CartPole-v1", **config_fields):
    algo = algorithms.get(algo_name)
    steps_per_update = num_envs * rollout
    total = max(total_steps, 10 * steps_per_update)
    fields = {f.name for f in dataclasses.fields(algo.Config)}
    extra = {**{k: v for k, v in {"epochs": 4, "minibatches": 4}.items() if k in fields}, **config_fields}
    config = algo.Config(env_id=env_id, num_envs=num_envs, rollout_length=rollout,
                         total_steps=total, lean_metrics=lean, **extra)
    train = pgjax.make_train(config)
    keys = jax.random.split(jax.random.key(0), seeds)
    fn = jax.jit(jax.vmap(train, in_axes=(0, None))) if seeds > 1 else jax.jit(train)
    args = (keys if seeds > 1 else keys[0], algo.Hparams())
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    compiled = _xla_cpu.compile(lowered)  # XLA's concurrency scheduler where it is safe
    compile_s = time.perf_counter() - t0
    concurrent = _xla_cpu.concurrency_scheduler_safe(lowered.as_text())
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    steps = config.num_updates * steps_per_update * seeds
    stats = jax.devices()[0].memory_stats() or {}  # GPU/TPU: the allocator's peak; CPU: none
    program = compiled.memory_analysis()  # None where the backend gives no analysis
    buffers = None if program is None else {
        "program_bytes": (program.argument_size_in_bytes + program.output_size_in_bytes
                          + program.temp_size_in_bytes - program.alias_size_in_bytes),
        "temp_bytes": program.temp_size_in_bytes, "output_bytes": program.output_size_in_bytes}
    return {"peak_device_bytes": stats.get("peak_bytes_in_use"),
            **(buffers or dict.fromkeys(("program_bytes", "temp_bytes", "output_bytes"))),
            "lean_metrics": lean,
            "algorithm": algo_name, "num_envs": num_envs, "rollout": rollout, "seeds": seeds,
            "env_steps": steps, "compile_s": compile_s, "run_s": best if repeats else None,
            "steps_per_s": steps / best if repeats else None, "concurrency_scheduler": concurrent}


def _megabytes(n) -> str:
    return "—" if n is None else f"{n / 2**20:,.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algos", default=",".join(sorted(algorithms.ALGORITHMS)))
    parser.add_argument("--total-steps", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (0: compile only)")
    parser.add_argument("--lean", action="store_true", help="lean_metrics=True (benchmark mode)")
    parser.add_argument("--shapes", default=None,
                        help="ENVSxROLLOUTxSEEDS,... (default: 4x128x1,64x128x1,2048x32x1,4x128x8)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    args = parser.parse_args(argv)
    machine = f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}"
    rows = []
    print(f"| algorithm | num_envs × rollout | seeds | env steps | compile s | steps/s | program MB | "
          f"of it temporaries | outputs |  ({machine}{', lean metrics' if args.lean else ''})")
    print("|---|---|---|---|---|---|---|---|---|")
    for algo_name in args.algos.split(","):
        shapes = SHAPES if args.shapes is None else [
            tuple(int(v) for v in shape.split("x")) for shape in args.shapes.split(",")]
        for num_envs, rollout, seeds in shapes:
            row = measure(algo_name, num_envs, rollout, seeds, args.total_steps, args.repeats,
                          args.lean)
            rows.append(row)
            rate = "—" if row["steps_per_s"] is None else f"{row['steps_per_s']:,.0f}"
            print(f"| {algo_name} | {num_envs} × {rollout} | {seeds} | {row['env_steps']:,} | "
                  f"{row['compile_s']:.1f} | {rate} | {_megabytes(row['program_bytes'])} | "
                  f"{_megabytes(row['temp_bytes'])} | {_megabytes(row['output_bytes'])} |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "cpu_count": jax.device_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
