"""Steps/s against device count, for population parallelism (``--shard members``)
and data parallelism (``--shard envs``), with the efficiency ``steps/s(N) / (N · steps/s(1))``.

    python -m benchmarks.scaling [--devices 1,2,4] [--seconds 8]

Each device count runs in its own subprocess (on CPU the devices are forced with
``--xla_force_host_platform_device_count``; on a GPU machine pass the real counts). Each cell
trains PPO on CartPole-v1 through the runner for about ``--seconds`` and reads the steps/s the
runner reports (after compile):

- population: 8 seeds × (4 envs × 128 steps), split over the devices;
- data: 1 seed × (64 envs × 32 steps), its environment batch split over the devices.

For the data-parallel program the child also counts the collectives XLA put in the compiled
update (all-reduce, all-gather, ...) and the gradient bytes an update all-reduces, and checks
every algorithm's ``--shard envs`` run against its one-device run (max relative difference of
the final parameters). Writes ``benchmarks/results/scaling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


from benchmarks.results_table import save_results

RESULTS = Path(__file__).resolve().parent / "results"
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def child(devices: int, seconds: float, root: str, check: bool) -> dict:
    import dataclasses
    import io
    import time

    import jax
    import numpy as np

    from benchmarks.results_table import machine_description
    from pgjax import algorithms
    from pgjax.algorithms import ppo
    from pgjax.run import chunks, runner
    from pgjax.run.checkpoints import to_savable
    from pgjax.run.population import Population

    def options(shard, devices):
        return runner.RunOptions(eval_episodes=2, cache_episodes=0, num_evals=1, tensorboard=False,
                                 plots=False, devices=devices, shard=shard, compile_cache=False)

    def speed(name, shard, config, seeds):
        # a short run to size the budget, then one of about `seconds`
        probe = runner.run("ppo", config, ppo.Hparams(), seeds, f"{root}/{name}{devices}-probe",
                           options=options(shard, devices), out=io.StringIO())
        steps = int(probe.steps_per_second * seconds / len(seeds))
        steps = max(config.steps_per_update * 4, steps - steps % config.steps_per_update)
        start = time.perf_counter()
        result = runner.run("ppo", dataclasses.replace(config, total_steps=steps), ppo.Hparams(), seeds, f"{root}/{name}{devices}", options=options(shard, devices),
                            out=io.StringIO())
        return {"steps_per_second": result.steps_per_second, "env_steps": steps * len(seeds),
                "wall_seconds": time.perf_counter() - start}

    out = {"devices": devices, "machine": machine_description(), "platform": jax.devices()[0].platform}
    population = ppo.Config(num_envs=4, rollout_length=128, total_steps=4 * 128 * 8)
    data = ppo.Config(num_envs=64, rollout_length=32, total_steps=64 * 32 * 8)
    out["population"] = speed("population", "members", population, list(range(8)))
    out["data"] = speed("data", "envs", data, [0])
    if devices > 1:
        texts = [c.as_text() for key, c in chunks._COMPILED.items() if key[0] == data]
        out["collectives"] = {kind: sum(len(re.findall(rf"\b{kind}(?:-start)?\(", t)) for t in texts)
                              for kind in COLLECTIVES}
    one = Population((0,), (ppo.Hparams(),))
    params = jax.eval_shape(runner.init_program(data), one.keys(), one.hparams()).params
    out["param_bytes"] = int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(params)))
    out["gradient_steps_per_update"] = data.epochs * data.minibatches
    if check and devices > 1:
        out["equal_to_one_device"] = {}
        for name, algo in algorithms.ALGORITHMS.items():
            config = algo.Config(num_envs=8)
            config = dataclasses.replace(config, total_steps=4 * config.steps_per_update)
            runs = [runner.run(name, config, algo.Hparams(), [0], f"{root}/check{devices}-{name}-{d}",
                               options=options("envs", d), out=io.StringIO()) for d in (devices, 1)]
            a, b = [[np.asarray(x) for x in jax.tree.leaves(to_savable(r.final_state.params))] for r in runs]
            out["equal_to_one_device"][name] = max(float(np.max(np.abs(x - y) / (np.abs(y) + 1e-6)))
                                                    for x, y in zip(a, b))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--force-host-devices", action=argparse.BooleanOptionalAction, default=True,
                        help="force CPU devices with XLA_FLAGS (default); --no-force-host-devices "
                             "uses the machine's own devices")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child, args.seconds, args.root, check=True)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for n in (int(d) for d in args.devices.split(",")):
            env = dict(os.environ)
            if args.force_host_devices:
                env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
                env.setdefault("JAX_PLATFORMS", "cpu")
            done = subprocess.run([sys.executable, __file__, "--child", str(n), "--seconds", str(args.seconds),
                                   "--root", root], env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"the {n}-device child failed:\n{done.stderr[-3000:]}")
            row = json.loads(next(line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")))
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = {kind: rows[0][kind]["steps_per_second"] for kind in ("population", "data")}
    lines = [f"Machine: {rows[0]['machine']}; devices forced: {args.force_host_devices}. PPO CartPole-v1; "
             "population = 8 seeds × (4 envs × 128 steps) split over the devices; data = 1 seed × "
             "(64 envs × 32 steps), its env batch split over the devices.", "",
             "| devices | population steps/s | efficiency | data-parallel steps/s | efficiency | collectives in the data-parallel update |",
             "|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        n = row["devices"]
        eff = {k: row[k]["steps_per_second"] / (n * base[k]) for k in base}
        coll = ", ".join(f"{k} {v}" for k, v in row.get("collectives", {}).items() if v) or "—"
        lines.append(f"| {n} | {row['population']['steps_per_second']:,.0f} | {eff['population']:.2f} | "
                     f"{row['data']['steps_per_second']:,.0f} | {eff['data']:.2f} | {coll} |")
    checks = [row for row in rows if "equal_to_one_device" in row]
    if checks:
        lines += ["", "`--shard envs` against one device, max relative difference of the final parameters "
                  "(1 seed, 8 envs, 4 updates):", "",
                  "| devices | " + " | ".join(checks[0]["equal_to_one_device"]) + " |",
                  "|---:|" + "---:|" * len(checks[0]["equal_to_one_device"])]
        for row in checks:
            lines.append(f"| {row['devices']} | " + " | ".join(f"{v:.1e}" for v in row["equal_to_one_device"].values()) + " |")
    lines += ["", f"Gradient bytes per data-parallel update: {rows[0]['param_bytes']:,d} B of parameters × "
              f"{rows[0]['gradient_steps_per_update']} gradient steps = "
              f"{rows[0]['param_bytes'] * rows[0]['gradient_steps_per_update']:,d} B all-reduced per update."]
    save_results(RESULTS, "scaling", {"rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
