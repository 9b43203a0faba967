"""How long one minibatch order of n steps takes: ``jax.random.permutation`` against
:func:`pgjax._xla_cpu.one_operand_sort.sorted_permutation` (the same order, bit for bit) and
:func:`pgjax.shuffle.hashed_permutation`.

    python -m benchmarks.dev.shuffle_speed [--sizes 512,8192,65536,131072,262144,524288] [--repeats 20]

Each function is jitted alone and timed after compilation (best of three blocks of ``--repeats``
calls). Writes ``benchmarks/results/shuffle_speed.{json,md}``. PPO's batches: 4 × 128 = 512,
64 × 128 = 8,192, 2048 × 32 = 65,536.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np


from benchmarks.results_table import machine_description, save_results
from pgjax import shuffle
from pgjax._xla_cpu.one_operand_sort import sorted_permutation

RESULTS = Path(__file__).resolve().parents[1] / "results"


def milliseconds_per_call(fn, key, repeats: int) -> float:
    compiled = jax.jit(fn)
    jax.block_until_ready(compiled(key))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = compiled(key)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e3


def measure(n: int, repeats: int) -> dict:
    key = jax.random.key(n)
    same = np.array_equal(sorted_permutation(key, n), jax.random.permutation(key, n))
    row = {"n": n, "rounds": shuffle._permutation_rounds(n), "bit_identical": bool(same),
           "jax_ms": milliseconds_per_call(lambda k: jax.random.permutation(k, n), key, repeats),
           "sorted_ms": milliseconds_per_call(lambda k: sorted_permutation(k, n), key, repeats)}
    if shuffle.is_power_of_two(n):
        row["hash_ms"] = milliseconds_per_call(lambda k: shuffle.hashed_permutation(k, n), key, repeats)
    return row


def markdown(rows: list[dict]) -> str:
    lines = [f"One minibatch order of n steps ({machine_description()}, jax {jax.__version__}), "
             "ms per call, best of 3 blocks.", "",
             "| n | sorts | `jax.random.permutation` | `sorted_permutation` (same order) | speed-up "
             "| same bits | `hashed_permutation` |",
             "|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        hash_ms = f"{r['hash_ms']:.3f}" if "hash_ms" in r else "—"
        lines.append(f"| {r['n']:,} | {r['rounds']} | {r['jax_ms']:.3f} | {r['sorted_ms']:.3f} | "
                     f"{r['jax_ms'] / r['sorted_ms']:.1f}× | {'yes' if r['bit_identical'] else 'NO'} "
                     f"| {hash_ms} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,8192,65536,131072,262144,524288")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rows = [measure(int(n), args.repeats) for n in args.sizes.split(",")]
    save_results(RESULTS, "shuffle_speed", {"machine": machine_description(), "rows": rows},
                 markdown(rows))


if __name__ == "__main__":
    main()
