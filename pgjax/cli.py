"""Command line.

    pgjax train ALGO --env ENV [--seeds 3] [--total-steps N] [--set key=value ...] [--sweep key=v1,v2]
    pgjax train --resume RUN_DIR                 continue a stopped run where it stopped
    pgjax eval RUN_DIR [--episodes N] [--step S] [--best] [--greedy | --sample]
    pgjax episodes RUN_DIR [--step S] [--gif OUT.gif --member M --episode E]
    pgjax report RUN_DIR [RUN_DIR ...] [--out DIR]

Every configuration error is reported as one clear message naming the field and what is allowed,
before anything is created or compiled; the exit status is then 2. An interrupted run
(SIGINT/SIGTERM) exits with 128 + the signal number after saving a checkpoint; a run stopped by
non-finite values (every member diverged, or ``--on-nonfinite stop``) exits with 3. A run in which
only some members diverged completes (exit 0) with those members marked ``diverged``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from pathlib import Path

from pgjax.config import ConfigError, require


def _train_epilog(help_algorithm: str | None) -> str:
    from pgjax import algorithms
    from pgjax.run import field_docs
    if help_algorithm in algorithms.ALGORITHMS:
        return field_docs.help_text(algorithms.get(help_algorithm))
    return "pgjax train ALGO --help lists every setting of ALGO with its type, default and meaning."


def _parser(help_algorithm: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgjax", description="Policy-gradient RL in pure JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an algorithm on an environment",
                           epilog=_train_epilog(help_algorithm),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _what_to_train(train)
    _run_flags(train)
    _eval_parser(sub.add_parser("eval", help="re-evaluate a saved checkpoint of a run"))
    _episodes_parser(sub.add_parser("episodes", help="summarise a run's cache of evaluation episodes"))
    report = sub.add_parser("report", help="overlay runs: figures and a markdown table")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--out", default=None, help="output folder (default: report/ next to the "
                        "first run, or the run's plots/ for one run)")
    return parser


def _what_to_train(train) -> None:
    """``pgjax train`` flags that say what runs: algorithm, environment, seeds, settings, folder."""
    from pgjax import algorithms
    train.add_argument("algorithm", nargs="?", default=None,
                       help=f"one of: {', '.join(sorted(algorithms.ALGORITHMS))}")
    train.add_argument("--env", default=None, help="environment id (gymnax or envs/; default CartPole-v1)")
    train.add_argument("--seeds", type=int, default=None, help="number of seeds, vmapped (default 3)")
    train.add_argument("--seed-offset", type=int, default=None, help="first seed (default 0)")
    train.add_argument("--total-steps", type=int, default=None, help="env steps per seed")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config or hyperparameter override; env.FIELD for EnvParams")
    train.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="hyperparameter values to run side by side (vmapped; several --sweep "
                            "flags give their cartesian product)")
    train.add_argument("--name", default=None, help="run name (default ALGO-ENV-TIME)")
    train.add_argument("--runs-dir", default="runs", help="where run folders go (default runs/)")
    train.add_argument("--config", default=None, metavar="FILE",
                       help="start from a settings file (TOML, YAML or JSON; a run's config.json "
                            "too); flags, --set and --sweep apply on top")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest checkpoint")


def _run_flags(train) -> None:
    """``pgjax train`` flags of how it runs: evaluation, checkpoints, logging, divergence, chunks."""
    train.add_argument("--eval-episodes", type=int, default=None,
                       help="evaluation episodes per seed (default 200)")
    train.add_argument("--num-evals", type=int, default=None,
                       help="evaluations spread over the run, the last at the end (default 5)")
    train.add_argument("--eval-every", type=int, default=None,
                       help="env steps per seed between evaluations (overrides --num-evals)")
    train.add_argument("--sample-eval", action="store_true", default=None, help="evaluate with sampled actions "
                       "(default: greedy, the mode of the policy)")
    train.add_argument("--cache-episodes", type=int, default=None,
                       help="evaluation episodes per seed cached step by step in eval/ (default 20)")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="env steps per seed between checkpoints (default: at each evaluation)")
    train.add_argument("--checkpoint-minutes", type=float, default=None,
                       help="also checkpoint after this much wall time (default 10)")
    train.add_argument("--keep-checkpoints", type=int, default=None, help="latest checkpoints kept (default 3)")
    train.add_argument("--no-tensorboard", action="store_true", default=None, help="do not write TensorBoard events")
    train.add_argument("--no-plots", action="store_true", default=None, help="do not draw plots/ at the end")
    train.add_argument("--wandb", default=None, metavar="PROJECT",
                       help="also log to this Weights & Biases project (needs pgjax[wandb])")
    train.add_argument("--on-nonfinite", default=None, choices=["freeze", "stop"],
                       help="a member whose loss or parameters go non-finite is frozen at its last "
                            "finite state while the others go on (freeze, default), or the whole "
                            "run stops (stop)")
    train.add_argument("--chunk-seconds", type=float, default=None,
                       help="wall time of one chunk of updates between host-side checks (default 3): "
                            "signals, progress and wall-time checkpoints wait at most this long")
    train.add_argument("--devices", type=int, default=None,
                       help="split the population (seeds × settings) over this many local devices "
                            "(default: as many as divide it; it must divide the population)")
    train.add_argument("--log-every-seconds", type=float, default=None, metavar="S",
                       help="each metrics row is the mean over about S seconds of updates (default "
                            "1; 0 writes a row per update: full detail)")
    train.add_argument("--log-members", type=int, default=None, metavar="K",
                       help="a population larger than K writes member rows less often and "
                            "TensorBoard per setting, so logs grow like K members' (default 16); "
                            "metrics_settings.jsonl always has every setting's seed statistics")
    train.add_argument("--shard", default=None, choices=["members", "envs"],
                       help="what --devices splits: the population (members, default) or each "
                            "member's environment batch (envs: data parallelism, gradients and "
                            "batch statistics over the global batch)")
    train.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="multi-process run (jax.distributed): process 0's address; also "
                            "PGJAX_COORDINATOR, or detected inside a SLURM job step")
    train.add_argument("--num-processes", type=int, default=None, metavar="P",
                       help="multi-process run: how many processes (also PGJAX_NUM_PROCESSES)")
    train.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="multi-process run: this process's index, 0 … P-1; process 0 writes "
                            "the run folder (also PGJAX_PROCESS_ID)")
    train.add_argument("--no-compile-cache", action="store_true", default=None,
                       help="do not use the persistent compilation cache (also PGJAX_COMPILATION_CACHE=0)")


def _eval_parser(evaluate) -> None:
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=200, help="episodes per seed (default 200)")
    evaluate.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    evaluate.add_argument("--best", action="store_true", help="use the best-by-evaluation checkpoint")
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="greedy", action="store_true", default=True,
                      help="actions are the policy's mode (default)")
    mode.add_argument("--sample", dest="greedy", action="store_false", help="sample actions")


def _episodes_parser(show) -> None:
    show.add_argument("run_dir")
    show.add_argument("--step", type=int, default=None, help="cached evaluation (default: latest)")
    show.add_argument("--gif", default=None, metavar="OUT.gif", help="render one cached episode")
    show.add_argument("--member", type=int, default=0, help="population member of the episode")
    show.add_argument("--episode", type=int, default=0, help="which cached episode")
    show.add_argument("--fps", type=int, default=30)


def _given_options(args) -> dict:
    """The run-option flags as RunOptions fields (None: not given)."""
    return {"eval_episodes": args.eval_episodes, "num_evals": args.num_evals,
            "eval_every": args.eval_every,
            "greedy_eval": None if args.sample_eval is None else not args.sample_eval,
            "cache_episodes": args.cache_episodes, "checkpoint_every": args.checkpoint_every,
            "checkpoint_minutes": args.checkpoint_minutes, "keep_checkpoints": args.keep_checkpoints,
            "tensorboard": None if args.no_tensorboard is None else not args.no_tensorboard,
            "plots": None if args.no_plots is None else not args.no_plots,
            "wandb_project": args.wandb, "on_nonfinite": args.on_nonfinite,
            "chunk_seconds": args.chunk_seconds, "devices": args.devices, "shard": args.shard,
            "log_every_seconds": args.log_every_seconds, "log_members": args.log_members,
            "compile_cache": None if args.no_compile_cache is None else not args.no_compile_cache}


def resolve(args):
    """(RunSpec, run folder) of ``pgjax train`` from its arguments (:mod:`pgjax.run.spec`)."""
    from pgjax.run import folder as run_folder
    from pgjax.run import spec, spec_file
    asked = dict(algorithm=args.algorithm, env=args.env, total_steps=args.total_steps,
                 assignments=args.set, sweeps=args.sweep, seed_count=args.seeds,
                 seed_offset=args.seed_offset, given_options=_given_options(args))
    if args.resume:
        return spec.resumed(Path(args.resume), **asked), Path(args.resume)
    if args.name is not None:
        run_folder.check_name(args.name)
    run_folder.check_writable_dir(Path(args.runs_dir), "--runs-dir")
    file = spec_file.load(args.config) if args.config else None
    run = spec.fresh(file=file, **asked)
    name = args.name or f"{run.algorithm}-{run.config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run, Path(args.runs_dir) / name


def _train(args) -> int:
    import jax
    try:
        if jax.process_count() > 1:
            require(args.name is not None or args.resume is not None, "--name", None,
                    "a multi-process run needs --name (or --resume): every process must write "
                    "the same folder")
        run, run_dir = resolve(args)
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run import runner
    try:  # the runner refuses a folder that holds a run, or is in use, before compiling anything
        result = runner.run_spec(run, run_dir, resume=bool(args.resume))
    except ConfigError as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    if result.status == runner.INTERRUPTED:
        return 128 + int(signal.SIGINT if "SIGINT" in result.message else signal.SIGTERM)
    if result.status == runner.NON_FINITE:
        return 3
    return 0


def _eval(args) -> int:
    try:
        require(args.episodes >= 1, "--episodes", args.episodes, "must be a positive integer")
        from pgjax.run import spec
        run = spec.load(Path(args.run_dir))
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run import runner
    try:
        text = runner.reevaluate(Path(args.run_dir), run.algo, run.config, run.settings, run.seeds,
                                     episodes=args.episodes, step=args.step,
                                     which="best" if args.best else "latest", greedy=args.greedy)
    except (FileNotFoundError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _episodes(args) -> int:
    from pgjax.run import episodes
    run_dir = Path(args.run_dir)
    try:
        if args.gif is None:
            print(episodes.summary(run_dir))
            return 0
        from pgjax.run import spec
        path = episodes.render_gif(run_dir, spec.load(run_dir).config, Path(args.gif), step=args.step,
                                   member=args.member, episode=args.episode, fps=args.fps)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _report(args) -> int:
    from pgjax import report
    from pgjax.run import folder as run_folder
    run_dirs = [Path(d) for d in args.run_dirs]
    missing = [str(d) for d in run_dirs if not (d / "config.json").exists()]
    if missing:
        print(f"pgjax: error: not run folders (no config.json): {', '.join(missing)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (run_dirs[0] / "plots" if len(run_dirs) == 1
                                           else run_dirs[0].parent / "report")
    try:
        run_folder.check_writable_dir(out, "--out")
    except ConfigError as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    print(report.report(run_dirs, out))
    print(f"\nfigures and report.md in {out}")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"pgjax: warning: {message}", file=sys.stderr, flush=True)


def _algorithm_asking_for_help(argv: list[str]) -> str | None:
    """ALGO in ``pgjax train ALGO --help`` (so the help can list ALGO's settings)."""
    if len(argv) < 2 or argv[0] != "train" or not {"-h", "--help"} & set(argv):
        return None
    return next((a for a in argv[1:] if not a.startswith("-")), None)


def _join_processes(argv: list[str]) -> bool:
    """``jax.distributed.initialize`` from the multi-process flags of ``pgjax train`` (or the
    environment; :mod:`pgjax.run.distributed`); False for a single-process run."""
    from pgjax.run import distributed
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--coordinator", default=None)
    early.add_argument("--num-processes", type=int, default=None)
    early.add_argument("--process-id", type=int, default=None)
    flags, _ = early.parse_known_args(argv)
    return distributed.initialize(coordinator=flags.coordinator, num_processes=flags.num_processes,
                                  process_id=flags.process_id)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        try:  # before anything touches a device (building the parser does): join the processes
            _join_processes(argv)
        except ConfigError as error:
            print(f"pgjax: error: {error}", file=sys.stderr)
            return 2
    args = _parser(_algorithm_asking_for_help(argv)).parse_args(argv)
    commands = {"train": _train, "eval": _eval, "episodes": _episodes, "report": _report}
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning  # our warnings as one line each, no source excerpt
    try:
        return commands[args.command](args)
    finally:
        warnings.showwarning = shown


def entry(argv: list[str] | None = None) -> None:
    """The ``pgjax`` command: :func:`main`, then exit. A run stopped by a signal during set-up
    leaves its compilation thread inside XLA; letting the interpreter finalise around it can abort
    the process, so then the process ends at once (outputs flushed, files closed)."""
    import os
    import threading
    code = main(argv)
    if any(t.name.startswith("pgjax-") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
