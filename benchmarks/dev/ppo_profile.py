"""Where a PPO update's time goes, and how close throughput is to this machine's limit.

    python -m benchmarks.dev.ppo_profile [--envs 1,4,16,64,256,1024] [--rollout 128] [--updates 20]

Part 1, breakdown at (4 envs × 128 steps, 4 epochs × 4 minibatches, 64×64 tanh MLPs): each piece
of ``ppo.update`` compiled alone and timed per update — the environments stepped with random
actions, the whole rollout (policy + environments + the critic on the final observations), GAE,
the minibatch shuffles, the epochs of gradient + Adam steps — next to the whole update.

Part 2, the curve: steps/s of the whole update (scanned ``--updates`` times in one program) as
``num_envs`` grows, against an estimate of the limit: FLOPs per env step of the networks (forward
in the rollout, forward + backward ≈ 3× forward in each epoch) over the measured matmul rate at the
minibatch's shape, plus the measured cost of stepping the environments. Writes
``benchmarks/results/ppo_profile_{sort,hash}.{json,md}`` (``--shuffle``: the minibatch orders'
method, :mod:`pgjax.shuffle`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp


from benchmarks.results_table import machine_description, save_results
from pgjax import _xla_cpu, estimators
from pgjax.algorithms import optimiser, score_function, setup, train_state, ppo
from pgjax.config import hparams_as_arrays

RESULTS = Path(__file__).resolve().parents[1] / "results"


def seconds_per_call(fn, *args, repeats: int = 5) -> float:
    """Best wall time of one call of the compiled ``fn(*args)`` (compiled and warmed first)."""
    compiled = _xla_cpu.compile(jax.jit(fn).lower(*args))
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - start)
    return best


def repeated(step, times: int):
    """``state -> state`` applying ``step`` ``times`` times in one ``lax.scan``."""
    return lambda state: jax.lax.scan(lambda s, _: (step(s), None), state, None, length=times)[0]


SHUFFLE = "sort"  # --shuffle: pgjax.shuffle's method for the minibatch orders


def make(num_envs: int, rollout: int):
    config = ppo.Config(env_id="CartPole-v1", num_envs=num_envs, rollout_length=rollout, epochs=4,
                        minibatches=4, total_steps=10 ** 9, anneal_lr=False, shuffle=SHUFFLE)
    return config, ppo.init(config, hparams_as_arrays(ppo.Hparams()), jax.random.key(0))


def env_steps(config, updates: int):
    """``(env_state, key) -> env_state``: ``updates`` rollouts' worth of environment steps with
    random actions (no policy): what stepping the environments alone costs."""
    venv, env_params = setup.make_env(config)

    def run(env_state, key):
        def step(env_state, k):
            actions = jax.random.randint(k, (config.num_envs,), 0, 2)
            return venv.step(k, env_state, actions, env_params)[1], None
        return jax.lax.scan(step, env_state, jax.random.split(key, config.rollout_length * updates))[0]
    return run


def breakdown(updates: int, num_envs: int = 4, rollout: int = 128) -> list[tuple[str, float]]:
    """(piece, milliseconds per update) at (num_envs, rollout)."""
    config, state = make(num_envs, rollout)
    per_update = lambda fn, *args: 1e3 * seconds_per_call(fn, *args) / updates
    env_only = env_steps(config, updates)

    _, traj = train_state.collect(config, state)
    advantages, targets = score_function.gae_and_targets(traj, 0.99, 0.95)
    batch = ppo.learning_batch(traj, advantages, targets)
    network = setup.make_network(config)

    def epochs(params, opt_state, key):
        def minibatch(carry, mb):
            params, opt_state = carry
            grads, _ = jax.grad(ppo._loss, has_aux=True)(params, network, mb, state.hparams, None,
                                                         True, True, ppo.clipped_surrogate)
            params, opt_state, _ = optimiser.apply_gradients(
                config, state.replace(params=params, opt_state=opt_state), grads)
            return (params, opt_state), None

        def epoch(carry, k):
            return jax.lax.scan(minibatch, carry, ppo.shuffled_minibatches(config, batch, k))[0], None
        return jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, config.epochs * updates))[0]

    def shuffles(key):
        return jax.lax.map(lambda k: ppo.shuffled_minibatches(config, batch, k),
                           jax.random.split(key, config.epochs * updates))

    def gaes(traj):
        return jax.lax.map(lambda r: estimators.gae(r, traj.values, traj.next_values,
                                                    traj.discounts(0.99), traj.dones(), 0.95),
                           jnp.broadcast_to(traj.rewards, (updates,) + traj.rewards.shape))

    key = jax.random.key(1)
    return [
        ("whole update", per_update(repeated(lambda s: ppo.update(config, s)[0], updates), state)),
        ("rollout: policy + env + critic on final obs", per_update(
            repeated(lambda s: train_state.collect(config, s)[0], updates), state)),
        ("  of which env steps (random actions)", per_update(env_only, state.env_state, key)),
        ("GAE", per_update(gaes, traj)),
        ("minibatch shuffles (4 epochs)", per_update(shuffles, key)),
        ("epochs: 16 minibatch gradient + Adam steps (shuffles included)",
         per_update(epochs, state.params, state.opt_state, key)),
    ]


def flops_per_env_step(config, obs_dim: int = 4, actions: int = 2) -> float:
    """Network FLOPs per environment step: actor + critic forward once in the rollout, forward +
    backward (≈ 3× forward) once per epoch; 2 FLOPs per multiply-add."""
    widths = (obs_dim, *config.hidden_sizes)
    torso = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    forward = 2 * (2 * torso + widths[-1] * actions + widths[-1] * 1)
    return forward * (1 + 3 * config.epochs)


def matmul_flops_per_second(rows: int, width: int = 64) -> float:
    """Measured rate of ``[rows, width] @ [width, width]`` + tanh, chained 1000 times in one program."""
    x, w = jnp.ones((rows, width)), jnp.eye(width) * 0.5
    chain = lambda x, w: jax.lax.scan(lambda x, _: (jnp.tanh(x @ w), None), x, None, length=1000)[0]
    return 2 * rows * width * width * 1000 / seconds_per_call(chain, x, w, repeats=3)


def curve(envs: list[int], rollout: int, updates: int) -> list[dict]:
    """Steps/s of the whole update per ``num_envs`` and the estimated limit: the networks' FLOPs at
    the measured matmul rate plus the measured cost of the environment steps alone."""
    rows = []
    for num_envs in envs:
        config, state = make(num_envs, rollout)
        seconds = seconds_per_call(repeated(lambda s: ppo.update(config, s)[0], updates), state, repeats=3)
        env_seconds = seconds_per_call(env_steps(config, updates), state.env_state,
                                       jax.random.key(1), repeats=3)
        steps = updates * config.steps_per_update
        rate = matmul_flops_per_second(config.steps_per_update // config.minibatches)
        limit = 1.0 / (flops_per_env_step(config) / rate + env_seconds / steps)
        rows.append({"num_envs": num_envs, "rollout": rollout, "steps_per_s": steps / seconds,
                     "env_only_steps_per_s": steps / env_seconds,
                     "flops_per_env_step": flops_per_env_step(config), "matmul_gflops": rate / 1e9,
                     "limit_steps_per_s": limit, "fraction_of_limit": steps / seconds / limit})
        print(rows[-1], flush=True)
    return rows


def markdown(pieces, rows, machine: str, shuffle: str) -> str:
    lines = [f"PPO update on CartPole-v1, shuffle={shuffle} ({machine}, jax {jax.__version__}).", "",
             "| piece (4 envs × 128 steps, 4 × 4 minibatches) | ms per update |", "|---|---:|"]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in pieces]
    lines += ["", "| num_envs × rollout | steps/s | env steps alone, steps/s | network FLOPs per env step | "
              "matmul GFLOP/s at the minibatch shape | estimated limit, steps/s | fraction of the limit |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['num_envs']} × {r['rollout']} | {r['steps_per_s']:,.0f} | {r['env_only_steps_per_s']:,.0f} | "
              f"{r['flops_per_env_step']:,.0f} | "
              f"{r['matmul_gflops']:.0f} | {r['limit_steps_per_s']:,.0f} | {r['fraction_of_limit']:.2f} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="1,4,16,64,256,1024")
    parser.add_argument("--rollout", type=int, default=128)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--shuffle", default="sort", choices=["sort", "hash"])
    args = parser.parse_args(argv)
    global SHUFFLE
    SHUFFLE = args.shuffle
    pieces = breakdown(args.updates)
    for name, ms in pieces:
        print(f"{name:65s} {ms:8.3f} ms/update", flush=True)
    rows = curve([int(n) for n in args.envs.split(",")], args.rollout, args.updates)
    machine = machine_description()
    save_results(RESULTS, f"ppo_profile_{args.shuffle}",
                 {"machine": machine, "shuffle": args.shuffle, "pieces": pieces, "curve": rows},
                 markdown(pieces, rows, machine, args.shuffle))


if __name__ == "__main__":
    main()
