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
import itertools
import signal
import sys
import time
import warnings
from pathlib import Path

from pgjax.config import ConfigError, apply_overrides, require


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


def build_run(algorithm: str, env_id: str | None, total_steps: int | None, assignments: list[str],
              base_config: dict | None = None, base_hparams: dict | None = None):
    """Resolve (algo module, config, hparams) from CLI inputs on top of a ``--config`` file's
    ``base_config``/``base_hparams`` (or the defaults); raises ConfigError/ValueError."""
    from pgjax import algorithms
    from pgjax.config import config_from_dict, validate_hparams
    algo = algorithms.get(algorithm)
    fields = dict(base_config or {})
    if env_id is not None or "env_id" not in fields:
        fields["env_id"] = env_id or "CartPole-v1"
    config = config_from_dict(algo.Config, fields)
    try:
        hparams = algo.Hparams(**(base_hparams or {}))
    except TypeError as error:  # an unknown field
        raise ConfigError(f"hparams: {error} (pgjax train {algorithm} --help lists them)") from None
    validate_hparams(hparams)
    # --total-steps is applied with the --set overrides, so it is checked against their sizes
    steps = [f"total_steps={total_steps}"] if total_steps is not None else []
    config, hparams = apply_overrides(config, hparams, steps + list(assignments))
    return algo, config, hparams


def sweep_settings(config, hparams, sweeps: list[str]) -> list:
    """The cartesian product of ``--sweep key=v1,v2`` values as a list of Hparams (hyperparameters
    only: a sweep is a batch of numbers in one program, not of programs)."""
    import dataclasses
    names = {f.name for f in dataclasses.fields(hparams)}
    axes = []
    for sweep in sweeps:
        if "=" not in sweep:
            raise ConfigError(f"--sweep {sweep!r} is not allowed: expected key=v1,v2,...")
        key, text = (part.strip() for part in sweep.split("=", 1))
        require(key in names, "--sweep", key, f"a hyperparameter: one of {sorted(names)}")
        values = [v for v in text.split(",") if v.strip()]
        require(len(values) >= 1, "--sweep", sweep, "at least one value")
        axes.append([f"{key}={v.strip()}" for v in values])
    settings = []
    for combination in itertools.product(*axes):
        _, hp = apply_overrides(config, hparams, list(combination))
        settings.append(hp)
    return settings or [hparams]


def _run_options(args, saved: dict | None = None, strict: bool = False):
    """RunOptions from the flags given; the rest from ``saved`` (a resumed run's own options,
    so it evaluates and checkpoints as it did before, or a --config file's: ``strict`` refuses
    names RunOptions does not have) or the defaults."""
    import dataclasses

    from pgjax.run.runner import RunOptions
    given = {"eval_episodes": args.eval_episodes, "num_evals": args.num_evals,
             "eval_every": args.eval_every,
             "greedy_eval": None if args.sample_eval is None else not args.sample_eval,
             "cache_episodes": args.cache_episodes, "checkpoint_every": args.checkpoint_every,
             "checkpoint_minutes": args.checkpoint_minutes, "keep_checkpoints": args.keep_checkpoints,
             "tensorboard": None if args.no_tensorboard is None else not args.no_tensorboard,
             "plots": None if args.no_plots is None else not args.no_plots,
             "wandb_project": args.wandb, "on_nonfinite": args.on_nonfinite,
             "chunk_seconds": args.chunk_seconds,
             "compile_cache": None if args.no_compile_cache is None else not args.no_compile_cache}
    known = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(saved or {}) - known)
    if strict and unknown:
        raise ConfigError(f"options {unknown} are not allowed: run options are {sorted(known)}")
    base = {k: v for k, v in (saved or {}).items() if k in known}
    options = RunOptions(**{**base, **{k: v for k, v in given.items() if v is not None}})
    options.validate()
    return options


def _seeds(args, from_file: list[int] | None) -> list[int]:
    """--seeds N / --seed-offset K (seeds K..K+N−1), else the file's seeds, else 0, 1, 2."""
    if from_file is not None and args.seeds is None and args.seed_offset is None:
        return list(from_file)
    count = 3 if args.seeds is None else args.seeds
    require(count >= 1, "--seeds", count, "must be a positive integer")
    offset = args.seed_offset or 0
    require(0 <= offset and offset + count <= 2 ** 32, "--seed-offset", offset,
            "an integer ≥ 0 (seeds are 32-bit unsigned integers)")
    return list(range(offset, offset + count))


def _fresh_run(args, file: dict | None):
    """(algo, config, settings, seeds, run_dir) of a new run: the ``--config`` file (if any), then
    the flags, --set and --sweep on top."""
    from pgjax.run import folder as run_folder
    file = file or {"algorithm": None, "config": {}, "hparams_settings": None, "seeds": None}
    algorithm = args.algorithm or file["algorithm"]
    if algorithm is None:
        raise ConfigError("algorithm is missing: pgjax train ALGO (or pgjax train --resume RUN_DIR, "
                          "or a --config file with algorithm = ...)")
    if file["algorithm"] and args.algorithm and args.algorithm != file["algorithm"]:
        raise ConfigError(f"algorithm={args.algorithm!r} is not allowed: the --config file is for "
                          f"{file['algorithm']!r}")
    seeds = _seeds(args, file["seeds"])
    if args.name is not None:
        run_folder.check_name(args.name)
    run_folder.check_writable_dir(Path(args.runs_dir), "--runs-dir")
    bases = file["hparams_settings"] or [None]
    if len(bases) > 1 and args.sweep:
        raise ConfigError("--sweep is not allowed with a --config file that already holds several "
                          "hyperparameter settings")
    settings = []
    for base in bases:
        algo, config, hparams = build_run(algorithm, args.env, args.total_steps, args.set,
                                          file["config"], base)
        settings += sweep_settings(config, hparams, args.sweep)
    name = args.name or f"{algo.NAME}-{config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    return algo, config, settings, seeds, Path(args.runs_dir) / name


def load_run(run_dir: Path):
    """(algo module, config, hparams settings, seeds) saved in ``run_dir/config.json``; a file that
    is empty, hand-edited to an unknown field or a bad value raises one :class:`ConfigError`."""
    from pgjax import algorithms
    from pgjax.config import config_from_dict, validate_hparams
    from pgjax.run.runner import read_config_json
    saved = read_config_json(run_dir)
    where = f"{Path(run_dir) / 'config.json'}: "
    try:
        algo = algorithms.get(saved["algorithm"])
        config = config_from_dict(algo.Config, saved["config"])
        settings = []
        for values in saved.get("hparams_settings", [saved.get("hparams")]):
            require(isinstance(values, dict), "hparams", values, "a JSON object of hyperparameters")
            settings.append(algo.Hparams(**values))
            validate_hparams(settings[-1])
    except TypeError as error:  # an unknown field in a dataclass constructor
        raise ConfigError(f"{where}{error} (fields: see pgjax train ALGO --help)") from None
    except ValueError as error:
        raise ConfigError(f"{where}{error}") from None
    return algo, config, settings, list(saved["seeds"])


def _resumed_run(args):
    """The saved run with any flag given applied on top of it; the runner then refuses the resume,
    naming each field, if anything differs from the saved run (:func:`pgjax.run.runner.check_resumable`)."""
    import dataclasses

    from pgjax import algorithms
    run_dir = Path(args.resume)
    algo, config, settings, seeds = load_run(run_dir)
    if args.algorithm is not None:
        algorithms.get(args.algorithm)  # an unknown name fails here, naming the known ones
    if args.sweep:
        raise ConfigError(f"cannot resume {run_dir} with --sweep: a resumed run keeps its saved "
                          "hyperparameter settings")
    requested = config if args.env is None else dataclasses.replace(config, env_id=args.env)
    assignments = ([f"total_steps={args.total_steps}"] if args.total_steps is not None else []) + args.set
    settings = [apply_overrides(requested, hp, assignments)[1] for hp in settings]
    requested = apply_overrides(requested, settings[0], assignments)[0]
    offset = seeds[0] if args.seed_offset is None else args.seed_offset
    count = len(seeds) if args.seeds is None else args.seeds
    if args.seeds is not None or args.seed_offset is not None:
        seeds = list(range(offset, offset + count))
    return args.algorithm or algo.NAME, requested, settings, seeds, run_dir


def _train(args) -> int:
    from pgjax.run.runner import read_config_json
    try:
        if args.resume:
            algo_name, config, settings, seeds, run_dir = _resumed_run(args)
            saved = read_config_json(run_dir).get("options")
            options = _run_options(args, saved if isinstance(saved, dict) else None)
        else:
            from pgjax.run import spec_file
            file = spec_file.load(args.config) if args.config else None
            options = _run_options(args, file and file["options"], strict=True)
            algo, config, settings, seeds, run_dir = _fresh_run(args, file)
            algo_name = algo.NAME
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run import runner
    try:  # the runner refuses a folder that holds a run, or is in use, before compiling anything
        result = runner.run(algo_name, config, settings, seeds, run_dir, options=options,
                            resume=bool(args.resume))
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
        algo, config, settings, seeds = load_run(Path(args.run_dir))
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run import runner
    try:
        text = runner.reevaluate(Path(args.run_dir), algo, config, settings, seeds,
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
        algo, config, _, _ = load_run(run_dir)
        path = episodes.render_gif(run_dir, config, Path(args.gif), step=args.step,
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(_algorithm_asking_for_help(argv)).parse_args(argv)
    commands = {"train": _train, "eval": _eval, "episodes": _episodes, "report": _report}
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning  # our warnings as one line each, no source excerpt
    try:
        return commands[args.command](args)
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
