"""PPO throughput side by side with the peers a user would pick instead.

    pip install -e ".[compare]"          # rejax (a JAX PPO on gymnax) from the package index
    python -m benchmarks.peers [--shapes 4x128,64x128,2048x32] [--total-steps 500000] [--rounds 3]

Every framework trains PPO on gymnax's CartPole-v1 at one matched configuration per row: 64×64 tanh
MLPs, 4 epochs × 4 minibatches, γ 0.99, λ 0.95, clip 0.2, entropy 0.01, value 0.5, lr 2.5e-4,
gradient clipping 0.5, one seed. Each framework's whole run (initialisation + every update) is one
jitted program, compiled once and timed apart from its compilation; the frameworks are run in
turn, ``--rounds`` times, in one process, and each keeps its best time. Ratios (pgjax's steps/s
over the peer's) are the headline: the box is shared and absolute numbers drift between runs.

``pgjax-hash`` is pgjax with ``shuffle="hash"``: minibatch orders from a sort-free keyed
permutation (:mod:`pgjax.shuffle`) instead of ``jax.random.permutation``'s order. ``pgjax-lean``
is pgjax with ``lean_metrics=True`` (benchmark mode: per-update metrics cut to episode statistics,
losses, entropy and gradient norm, so the program computes no others; training is the same).

Where the work per step differs:
- rejax's PPO keeps separate actor and critic optimisers and clips gradients element-wise
  (``optax.clip``) rather than by global norm; it has no learning-rate annealing, so pgjax's is
  turned off here too. Its training loop evaluates every ``eval_freq`` steps; we time its own
  ``train_iteration`` scanned over the budget instead, so no evaluation is inside either timing.
- Stable-Baselines3 (PyTorch, CPU) is measured when ``stable_baselines3`` and ``torch`` import;
  the package index here only has torch's CUDA build (about 2.5 GB with its CUDA wheels), so it is
  optional and reported as missing otherwise.

Writes ``benchmarks/results/peers.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import time
from pathlib import Path

import jax


import pgjax
from benchmarks.results_table import machine_description, save_results
from pgjax import _xla_cpu
from pgjax.algorithms import ppo

RESULTS = Path(__file__).resolve().parent / "results"
MATCHED = dict(learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01,
               vf_coef=0.5, max_grad_norm=0.5, epochs=4, minibatches=4, hidden=(64, 64))


def timed_program(fn, *args):
    """(compile seconds, ``run() -> seconds`` of one whole run of the compiled ``fn(*args)``)."""
    start = time.perf_counter()
    compiled = _xla_cpu.compile(jax.jit(fn).lower(*args))
    compile_seconds = time.perf_counter() - start

    def run() -> float:
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        return time.perf_counter() - start
    return compile_seconds, run


def pgjax_ppo(num_envs: int, rollout: int, total_steps: int, **options):
    """pgjax's ``make_train`` at the matched configuration: (compile s, run, env steps).
    ``options``: further ``ppo.Config`` fields, e.g. ``shuffle="hash"`` or ``lean_metrics=True``."""
    config = ppo.Config(env_id="CartPole-v1", num_envs=num_envs, rollout_length=rollout,
                        total_steps=total_steps, epochs=MATCHED["epochs"],
                        minibatches=MATCHED["minibatches"], hidden_sizes=MATCHED["hidden"],
                        activation="tanh", anneal_lr=False, **options)
    hparams = ppo.Hparams(**{k: MATCHED[k] for k in ("learning_rate", "gamma", "gae_lambda",
                                                      "clip_eps", "ent_coef", "vf_coef",
                                                      "max_grad_norm")})
    train = pgjax.make_train(config)
    compile_seconds, run = timed_program(lambda key: train(key, hparams), jax.random.key(0))
    return compile_seconds, run, config.num_updates * config.steps_per_update


def _legacy_cartpole():
    """gymnax's CartPole-v1 behind gymnax's own adapter to the five-value step API rejax expects,
    made safe to deep-copy (rejax deep-copies its config; the adapter's ``__getattr__`` would
    recurse on a copy that has no ``_env`` yet)."""
    import gymnax
    from gymnax.wrappers.compat import LegacyStepAPIWrapper

    class CopyableLegacyStep(LegacyStepAPIWrapper):
        def __getattr__(self, name):
            if name == "_env":
                raise AttributeError(name)
            return getattr(self._env, name)

    env, params = gymnax.make("CartPole-v1")
    return CopyableLegacyStep(env), params


def rejax_ppo(num_envs: int, rollout: int, total_steps: int):
    """rejax's PPO at the matched configuration, its ``train_iteration`` scanned over the budget
    (no evaluation inside the timing): (compile s, run, env steps)."""
    import rejax
    env, env_params = _legacy_cartpole()
    algo = rejax.PPO.create(
        env=env, env_params=env_params, num_envs=num_envs, num_steps=rollout,
        num_epochs=MATCHED["epochs"], num_minibatches=MATCHED["minibatches"],
        learning_rate=MATCHED["learning_rate"], gamma=MATCHED["gamma"],
        gae_lambda=MATCHED["gae_lambda"], clip_eps=MATCHED["clip_eps"],
        ent_coef=MATCHED["ent_coef"], vf_coef=MATCHED["vf_coef"],
        max_grad_norm=MATCHED["max_grad_norm"], total_timesteps=total_steps,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": MATCHED["hidden"]})
    iterations = total_steps // (num_envs * rollout)

    def train(key):
        state = algo.init_state(key)
        return jax.lax.scan(lambda s, _: (algo.train_iteration(s), None), state, None,
                            length=iterations)[0]
    compile_seconds, run = timed_program(train, jax.random.key(0))
    return compile_seconds, run, iterations * num_envs * rollout


def sb3_ppo(num_envs: int, rollout: int, total_steps: int):
    """Stable-Baselines3's PPO on CPU torch with gymnasium's CartPole-v1: (0, run, env steps)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    torch.set_num_threads(os.cpu_count() or 1)
    env = make_vec_env("CartPole-v1", n_envs=num_envs)
    model = PPO("MlpPolicy", env, n_steps=rollout, batch_size=num_envs * rollout // MATCHED["minibatches"],
                n_epochs=MATCHED["epochs"], learning_rate=MATCHED["learning_rate"],
                gamma=MATCHED["gamma"], gae_lambda=MATCHED["gae_lambda"], clip_range=MATCHED["clip_eps"],
                ent_coef=MATCHED["ent_coef"], vf_coef=MATCHED["vf_coef"],
                max_grad_norm=MATCHED["max_grad_norm"], device="cpu", verbose=0,
                policy_kwargs={"net_arch": list(MATCHED["hidden"]), "activation_fn": torch.nn.Tanh})

    def run() -> float:
        start = time.perf_counter()
        model.learn(total_timesteps=total_steps, reset_num_timesteps=True)
        return time.perf_counter() - start
    return 0.0, run, total_steps


FRAMEWORKS = {"pgjax": (pgjax_ppo, None),
              "pgjax-hash": (lambda *shape: pgjax_ppo(*shape, shuffle="hash"), None),
              "pgjax-lean": (lambda *shape: pgjax_ppo(*shape, lean_metrics=True), None),
              "rejax": (rejax_ppo, "rejax"),
              "sb3": (sb3_ppo, "stable_baselines3")}


def available(name: str) -> str | None:
    """None when ``name`` can run here, else why not."""
    module = FRAMEWORKS[name][1]
    needed = [module] + (["torch"] if name == "sb3" else []) if module else []
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def version(name: str) -> str:
    package = "pgjax" if name.startswith("pgjax") else {"rejax": "rejax", "sb3": "stable_baselines3"}[name]
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def measure_shape(names: list[str], num_envs: int, rollout: int, total_steps: int, rounds: int):
    """One row per framework at (num_envs, rollout): compile s, best run s, steps/s."""
    prepared = {}
    for name in names:
        compile_seconds, run, steps = FRAMEWORKS[name][0](num_envs, rollout, total_steps)
        prepared[name] = {"compile_s": compile_seconds, "run": run, "env_steps": steps, "best_s": float("inf")}
    for _ in range(rounds):  # interleaved: every framework once per round
        for entry in prepared.values():
            entry["best_s"] = min(entry["best_s"], entry["run"]())
    return [{"framework": name, "version": version(name), "num_envs": num_envs, "rollout": rollout,
             "env_steps": e["env_steps"], "compile_s": e["compile_s"], "run_s": e["best_s"],
             "steps_per_s": e["env_steps"] / e["best_s"]} for name, e in prepared.items()]


def markdown(rows: list[dict], missing: dict, machine: str, rounds: int) -> str:
    lines = [f"PPO on CartPole-v1, one seed, best of {rounds} interleaved runs in one process "
             f"({machine}, jax {jax.__version__}). Ratio = pgjax steps/s ÷ the peer's.", "",
             "| num_envs × rollout | framework | version | env steps | compile s | steps/s | pgjax ÷ peer |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        same_shape = [x for x in rows if (x["num_envs"], x["rollout"]) == (r["num_envs"], r["rollout"])]
        ours = [x for x in same_shape if x["framework"].startswith("pgjax")]
        ratio = "—" if r["framework"].startswith("pgjax") else " / ".join(
            f"{x['steps_per_s'] / r['steps_per_s']:.2f}× ({x['framework']})" for x in ours)
        lines.append(f"| {r['num_envs']} × {r['rollout']} | {r['framework']} | {r['version']} | "
                     f"{r['env_steps']:,} | {r['compile_s']:.1f} | {r['steps_per_s']:,.0f} | {ratio} |")
    for name, why in missing.items():
        lines.append(f"\n{name}: not measured ({why}).")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4x128,64x128,2048x32")
    parser.add_argument("--total-steps", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frameworks", default="pgjax,pgjax-lean,pgjax-hash,rejax,sb3")
    args = parser.parse_args(argv)
    wanted = [n for n in args.frameworks.split(",") if n]
    missing = {n: available(n) for n in wanted if available(n)}
    names = [n for n in wanted if n not in missing]
    rows = []
    for shape in args.shapes.split(","):
        num_envs, rollout = (int(x) for x in shape.split("x"))
        total = max(args.total_steps, num_envs * rollout)
        rows += measure_shape(names, num_envs, rollout, total, args.rounds)
        for r in rows[-len(names):]:
            print(f"{num_envs} × {rollout} {r['framework']}: {r['steps_per_s']:,.0f} steps/s", flush=True)
    machine = machine_description()
    save_results(RESULTS, "peers", {"machine": machine, "rows": rows, "missing": missing},
                 markdown(rows, missing, machine, args.rounds))


if __name__ == "__main__":
    main()
