"""Command line: ``pgjax train ALGO --env ENV [--seeds 3] [--total-steps N] [--set key=value ...]``.

Every configuration error is reported as one clear message naming the field and what is allowed,
before anything is compiled; the exit status is then 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pgjax.config import ConfigError, apply_overrides


def _parser() -> argparse.ArgumentParser:
    from pgjax import algorithms
    parser = argparse.ArgumentParser(prog="pgjax", description="Policy-gradient RL in pure JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an algorithm on an environment")
    train.add_argument("algorithm", help=f"one of: {', '.join(sorted(algorithms.ALGORITHMS))}")
    train.add_argument("--env", default="CartPole-v1", help="environment id (gymnax or envs/)")
    train.add_argument("--seeds", type=int, default=3, help="number of seeds, vmapped (default 3)")
    train.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    train.add_argument("--total-steps", type=int, default=None, help="env steps per seed")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config or hyperparameter override; env.FIELD for EnvParams")
    train.add_argument("--name", default=None, help="run name (default ALGO-ENV-TIME)")
    train.add_argument("--runs-dir", default="runs", help="where run folders go (default runs/)")
    train.add_argument("--eval-episodes", type=int, default=200,
                       help="evaluation episodes per seed at the end (default 200)")
    return parser


def build_run(algorithm: str, env_id: str, total_steps: int | None, assignments: list[str]):
    """Resolve (algo module, config, hparams) from CLI inputs; raises ConfigError/ValueError."""
    from pgjax import algorithms
    algo = algorithms.get(algorithm)
    config = algo.Config(env_id=env_id)
    # --total-steps is applied with the --set overrides, so it is checked against their sizes
    steps = [f"total_steps={total_steps}"] if total_steps is not None else []
    config, hparams = apply_overrides(config, algo.Hparams(), steps + list(assignments))
    return algo, config, hparams


def _train(args) -> int:
    try:
        if args.seeds < 1:
            raise ConfigError(f"--seeds={args.seeds} is not allowed: must be a positive integer")
        if args.eval_episodes < 1:
            raise ConfigError(f"--eval-episodes={args.eval_episodes} is not allowed: must be a positive integer")
        algo, config, hparams = build_run(args.algorithm, args.env, args.total_steps, args.set)
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax import runner
    name = args.name or f"{algo.NAME}-{config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    runner.run(algo.NAME, config, hparams, seeds, Path(args.runs_dir) / name,
               eval_episodes=args.eval_episodes)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        return _train(args)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
