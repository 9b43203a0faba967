"""What each XLA:CPU workaround in ``pgjax/_xla_cpu`` buys, measured by turning it off alone.

    python -m benchmarks.dev.xla_cpu_tricks [--repeats 2]   # the results: --repeats 1

For none (every trick on), every trick alone (``PGJAX_PLAIN=<trick>``) and all
(``PGJAX_PLAIN=1``), in a fresh process without a compilation cache: PPO's whole training
program (``pgjax.make_train``, :func:`benchmarks.throughput.measure`) on CartPole-v1 (MLP; 3
seeds at 4 × 128 steps per update, 1 seed at 64 × 128) and on Breakout-MinAtar (the CNN, 16 ×
128: flax's convolution is slow enough on XLA:CPU that a bigger shape takes many minutes plain),
recording its compile seconds and steps/s; and the import time of gymnax (the
``gymnax_import`` trick). Each trick's row says its gain against the all-on run, its size in
lines and what it is bound to. Writes ``benchmarks/results/xla_cpu_tricks.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.results_table import machine_description, save_results
from pgjax import _xla_cpu

RESULTS = Path(__file__).resolve().parents[1] / "results"
ROOT = Path(__file__).resolve().parents[2]
SHAPES = {  # name -> (env id, num_envs, rollout, seeds, total steps, torso): PPO, 4 epochs × 4 minibatches
    "CartPole 4×128 ×3 seeds": ("CartPole-v1", 4, 128, 3, 300_000, "mlp"),
    "CartPole 64×128": ("CartPole-v1", 64, 128, 1, 1_000_000, "mlp"),
    "MinAtar Breakout 16×128 CNN": ("Breakout-MinAtar", 16, 128, 1, 20_480, "cnn"),
}
FILES = {  # trick -> the file that holds it, and what it is bound to
    "matmul": ("pgjax/_xla_cpu/matmul.py", "XLA:CPU's dot for a batch-contracting weight gradient"),
    "conv": ("pgjax/_xla_cpu/patch_conv.py", "XLA:CPU's convolution kernels"),
    "orthogonal": ("pgjax/_xla_cpu/initialisers.py",
                   "jaxlib 0.10's batched LAPACK on the intra-op pool (with the scheduler rule)"),
    "joint_draws": ("pgjax/_xla_cpu/initialisers.py",
                    "threefry's partitionable draws; flax's init tracing (placeholders by id)"),
    "permutation": ("pgjax/_xla_cpu/one_operand_sort.py",
                    "XLA:CPU's key–payload sort; jax.random.permutation's rounds"),
    "init_level": ("pgjax/_xla_cpu/init_level.py", "XLA:CPU's LLVM pipeline at each level (jaxlib 0.10)"),
    "gymnax_import": ("envs/_gymnax.py", "gymnax 1.0.1's module-level plotting imports"),
}


def _environment(plain: str) -> dict:
    """A user's process with ``PGJAX_PLAIN=plain`` and no compilation cache."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PGJAX_COMPILATION_CACHE": "0", _xla_cpu.SWITCH: plain}
    for name in ("JAX_COMPILATION_CACHE_DIR", "PYTHONDONTWRITEBYTECODE", "XLA_FLAGS"):
        env.pop(name, None)
    return env


def child(plain: str, repeats: int) -> dict:
    """Every shape's cold compile seconds and steps/s (best of ``repeats`` runs) in a fresh
    process with ``PGJAX_PLAIN=plain`` and no compilation cache (the script's ``--child`` mode)."""
    found = subprocess.run([sys.executable, "-m", "benchmarks.dev.xla_cpu_tricks", "--child",
                            "--repeats", str(repeats)], env=_environment(plain), check=True,
                           capture_output=True, text=True).stdout
    return json.loads(found.splitlines()[-1])


def measure_shapes(repeats: int) -> dict:
    """The child's side: :func:`benchmarks.throughput.measure` for every shape, and the compile
    seconds of the runner's initialisation program for it (:func:`init_compile_seconds`)."""
    from benchmarks.throughput import measure as throughput
    return {name: {**{k: throughput("ppo", envs, rollout, seeds, steps, repeats, env_id=env, torso=torso)[k]
                      for k in ("compile_s", "steps_per_s")},
                   "init_compile_s": init_compile_seconds(env, envs, rollout, seeds, torso)}
            for name, (env, envs, rollout, seeds, steps, torso) in SHAPES.items()}


def init_compile_seconds(env: str, envs: int, rollout: int, seeds: int, torso: str) -> float:
    """Seconds to compile ``pgjax train``'s initialisation program (``runner.init_program``,
    through ``_xla_cpu.compile_once`` as the runner does) for PPO at this shape."""
    import time

    import jax

    from pgjax.algorithms import ppo
    from pgjax.run import runner
    from pgjax.run.population import Population
    config = ppo.Config(env_id=env, num_envs=envs, rollout_length=rollout, torso=torso)
    population = Population(tuple(range(seeds)), (ppo.Hparams(),))
    lowered = runner.init_program(config).lower(population.keys(), population.hparams())
    start = time.perf_counter()
    jax.block_until_ready(_xla_cpu.compile_once(lowered))
    return time.perf_counter() - start


def gymnax_import_seconds(plain: str, repeats: int = 3) -> float:
    code = ("import time, jax; t = time.perf_counter(); from pgjax.envs import _gymnax; "
            "_gymnax.load(); print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], env=_environment(plain),
                                 check=True, capture_output=True, text=True).stdout)
            for _ in range(repeats)]
    return float(np.median(runs))


def measure(repeats: int) -> dict:
    variants = {"none": "", **{t: t for t in _xla_cpu.TRICKS if t != "gymnax_import"}, "all": "1"}
    runs = {}
    for label, plain in variants.items():
        for name, row in child(plain, repeats).items():
            runs[f"{label}/{name}"] = row
            print(label, name, row, flush=True)
    imports = {"on": gymnax_import_seconds(""), "plain": gymnax_import_seconds("gymnax_import")}
    lines = {t: len((ROOT / path).read_text().splitlines()) for t, (path, _) in FILES.items()}
    return {"runs": runs, "gymnax_import_s": imports, "lines": lines, "repeats": repeats,
            "shapes": {name: list(shape) for name, shape in SHAPES.items()}}


def _gain(result: dict, trick: str) -> str:
    """The plain run against the all-on run, as text."""
    if trick == "gymnax_import":
        saved = result["gymnax_import_s"]["plain"] - result["gymnax_import_s"]["on"]
        return f"{saved:+.2f} s of every process start (import gymnax)"
    parts = []
    for name in SHAPES:
        on, plain = result["runs"][f"none/{name}"], result["runs"][f"{trick}/{name}"]
        if trick == "init_level":
            parts.append(f"{name}: {plain['init_compile_s'] - on['init_compile_s']:+.1f} s compile of "
                         "the initialisation program")
            continue
        parts.append(f"{name}: {plain['compile_s'] - on['compile_s']:+.1f} s compile, "
                     f"{on['steps_per_s'] / plain['steps_per_s']:.2f}× throughput")
    return "; ".join(parts)


def markdown(result: dict, machine: str) -> str:
    out = [f"Each XLA:CPU workaround of `pgjax/_xla_cpu` against its plain implementation "
           f"(`PGJAX_PLAIN=<trick>`) on {machine}: PPO (`pgjax.make_train`, 4 epochs × 4 "
           "minibatches) jitted whole in a fresh process without a compilation cache; compile "
           f"seconds, and steps/s of {result['repeats']} timed run(s). Gain = what the trick "
           "saves (compile seconds the plain program spends more; steps/s with the trick ÷ plain; "
           "run-to-run noise on this machine is about ±15 %: the CartPole rows of `conv`, which has no convolution to run, show it). Regenerate: "
           "`python -m benchmarks.dev.xla_cpu_tricks`.", "",
           "| trick | gain | lines | bound to |", "|---|---|---:|---|"]
    for trick, (path, bound) in FILES.items():
        out.append(f"| `{trick}` (`{path}`) | {_gain(result, trick)} | {result['lines'][trick]} | {bound} |")
    out += ["", "| plain (`PGJAX_PLAIN`) | shape | compile (s) | steps/s | initialisation compile (s) |",
            "|---|---|---:|---:|---:|"]
    for key, row in result["runs"].items():
        variant, name = key.split("/")
        out.append(f"| {variant} | {name} | {row['compile_s']:.1f} | {row['steps_per_s']:,.0f} | "
                   f"{row['init_compile_s']:.1f} |")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", action="store_true", help="measure in this process, print JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_shapes(args.repeats)))
        return
    result = measure(args.repeats)
    machine = machine_description()
    result["machine"] = machine
    save_results(RESULTS, "xla_cpu_tricks", result, markdown(result, machine))


if __name__ == "__main__":
    main()
