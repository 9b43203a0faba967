"""The host loop: jitted chunks of updates for every seed at once, with I/O between chunks.

    runs/<name>/config.json     algorithm, config, hyperparameters, seeds, device
    runs/<name>/metrics.jsonl   one line per update and per seed (every metric of DESIGN.md)
    runs/<name>/summary.json    final evaluation (mean ± std over seeds), steps/s, compile time
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pgjax import algorithms, evaluation
from pgjax.config import config_to_dict, hparams_as_arrays, hparams_to_dict, validate_hparams
from pgjax.train import scan_updates
from pgjax.writers import JsonlWriter, write_json_atomic


@dataclass
class RunResult:
    run_dir: Path
    eval_returns: np.ndarray         # [num_seeds] mean evaluation return of each seed
    steps_per_second: float
    compile_seconds: float
    wall_seconds: float
    metrics_last: dict = field(default_factory=dict)


def choose_chunk(num_updates: int, target_chunks: int = 20) -> int:
    """Updates per jitted chunk: a divisor of ``num_updates`` near ``num_updates/target_chunks`` so
    one compiled program covers the run."""
    target = max(1, num_updates // target_chunks)
    for k in range(target, 0, -1):
        if num_updates % k == 0 and k >= target // 2:
            return k
    return target


def _compile_chunk(config, state, num_updates: int):
    """AOT-compile ``num_updates`` vmapped updates (so compile time is measured apart)."""
    return jax.jit(jax.vmap(lambda s: scan_updates(config, s, num_updates))).lower(state).compile()


def _progress_line(done_steps, total_steps, returns, sps, eta, last_eval):
    per_seed = " ".join("  nan " if not np.isfinite(r) else f"{r:6.1f}" for r in returns)
    eval_part = f" | eval {last_eval:7.1f}" if last_eval is not None else ""
    return (f"  steps {done_steps:>10,d}/{total_steps:,d} | return/seed [{per_seed}] | "
            f"{sps:>9,.0f} steps/s | ETA {eta:6.1f}s{eval_part}")


def run(algo_name: str, config, hparams, seeds: list[int], run_dir: Path, *,
        eval_episodes: int = 200, target_chunks: int = 20, out=None) -> RunResult:
    """Train ``len(seeds)`` seeds of ``algo_name`` with one vmapped program, then evaluate."""
    algo = algorithms.get(algo_name)
    out = out or sys.stdout  # looked up per call (a default bound at import goes stale under capture)
    validate_hparams(hparams)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = str(jax.devices()[0])
    write_json_atomic(run_dir / "config.json", {
        "algorithm": algo_name, "config": config_to_dict(config),
        "hparams": hparams_to_dict(hparams), "seeds": seeds, "device": device,
        "num_updates": config.num_updates, "steps_per_update": config.steps_per_update})

    num_updates = config.num_updates
    chunk = choose_chunk(num_updates, target_chunks)
    hp = hparams_as_arrays(hparams)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))

    t0 = time.perf_counter()
    init_fn = jax.jit(jax.vmap(lambda key: algo.init(config, hp, key)))
    state = init_fn(keys)
    compiled = {chunk: _compile_chunk(config, state, chunk)}
    compile_seconds = time.perf_counter() - t0
    print(f"{algo_name} on {config.env_id}: {len(seeds)} seed(s), {num_updates} updates of "
          f"{config.steps_per_update} steps, chunks of {chunk}; compiled in {compile_seconds:.1f}s "
          f"on {device}", file=out, flush=True)

    writer = JsonlWriter(run_dir / "metrics.jsonl")
    train_seconds, done = 0.0, 0
    last_returns = np.full(len(seeds), np.nan)
    metrics_np = {}
    while done < num_updates:
        n = min(chunk, num_updates - done)
        if n not in compiled:
            compiled[n] = _compile_chunk(config, state, n)
        t = time.perf_counter()
        state, metrics = compiled[n](state)
        metrics_np = jax.tree.map(np.asarray, metrics)
        train_seconds += time.perf_counter() - t
        done += n
        writer.write_chunk(metrics_np, seeds, {"algorithm": algo_name})
        chunk_returns = metrics_np["episode_return"]
        for s in range(len(seeds)):
            finite = chunk_returns[s][np.isfinite(chunk_returns[s])]
            if finite.size:
                last_returns[s] = finite[-1]
        steps = done * config.steps_per_update
        sps = steps * len(seeds) / max(train_seconds, 1e-9)
        eta = (num_updates - done) * config.steps_per_update * len(seeds) / max(sps, 1e-9)
        print(_progress_line(steps, num_updates * config.steps_per_update, last_returns, sps, eta, None),
              file=out, flush=True)
    writer.close()

    eval_fn = jax.jit(jax.vmap(
        lambda params, env_state: evaluation.evaluate(config, params, env_state, evaluation.eval_key(),
                                                      num_episodes=eval_episodes)))
    eval_result = jax.tree.map(np.asarray, eval_fn(state.params, state.env_state))
    eval_returns = eval_result["returns"].mean(axis=1)
    wall = time.perf_counter() - t0
    sps = num_updates * config.steps_per_update * len(seeds) / max(train_seconds, 1e-9)
    summary = {
        "algorithm": algo_name, "env_id": config.env_id, "seeds": seeds,
        "eval_episodes": eval_episodes,
        "eval_return_per_seed": eval_returns, "eval_return_mean": float(eval_returns.mean()),
        "eval_return_std": float(eval_returns.std()), "steps_per_second": sps,
        "compile_seconds": compile_seconds, "wall_seconds": wall, "device": device,
        "env_steps_per_seed": num_updates * config.steps_per_update,
    }
    write_json_atomic(run_dir / "summary.json", summary)
    print(summary_table(summary), file=out, flush=True)
    last = {k: v[:, -1] for k, v in metrics_np.items()} if metrics_np else {}
    return RunResult(run_dir, eval_returns, sps, compile_seconds, wall, last)


def summary_table(summary: dict) -> str:
    per_seed = ", ".join(f"{r:.1f}" for r in summary["eval_return_per_seed"])
    rows = [
        ("algorithm", summary["algorithm"]), ("env", summary["env_id"]),
        ("seeds", str(summary["seeds"])),
        (f"eval return ({summary['eval_episodes']} episodes/seed)",
         f"{summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f}  [{per_seed}]"),
        ("env steps per seed", f"{summary['env_steps_per_seed']:,d}"),
        ("steps/s (all seeds, after compile)", f"{summary['steps_per_second']:,.0f}"),
        ("compile time", f"{summary['compile_seconds']:.1f} s"),
        ("wall time", f"{summary['wall_seconds']:.1f} s"),
        ("device", summary["device"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "| " + "metric".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)
