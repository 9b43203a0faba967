"""Command line.

    pgjax train ALGO --env ENV [--seeds 3] [--total-steps N] [--set key=value ...] [--sweep key=SPEC]
                 [--samples N --sweep-seed S]
    pgjax train --resume RUN_DIR                 continue a stopped run where it stopped
    pgjax eval RUN_DIR [--episodes N] [--step S] [--best] [--greedy | --sample]
    pgjax episodes RUN_DIR [--step S] [--gif OUT.gif --member M --episode E]
    pgjax report RUN_DIR [RUN_DIR ...] [--out DIR] [--top K] [--per-seed] [--best-config FILE]

Every configuration error is reported as one clear message naming the field and what is allowed,
before anything is created or compiled; the exit status is then 2. An interrupted run
(SIGINT/SIGTERM) exits with 128 + the signal number after saving a checkpoint; a run stopped by
non-finite values (every member diverged, or ``--on-nonfinite stop``) exits with 3. A run in which
only some members diverged completes (exit 0) with those members marked ``diverged``. A run that
cannot write its folder (disk full, file too large, I/O error, a read-only folder) stops at once
with one line naming the file and the error, marks ``failed`` in status.json when it still can,
and exits with 4; ``pgjax train --resume`` continues it from its latest checkpoint once the folder
can be written again. ``pgjax eval`` stopped by SIGINT/SIGTERM exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import signal
import sys
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
    _parallel_flags(train)
    _study_flags(train)
    _eval_parser(sub.add_parser("eval", help="re-evaluate a saved checkpoint of a run"))
    _episodes_parser(sub.add_parser("episodes", help="summarise a run's cache of evaluation episodes"))
    _export_parser(sub.add_parser("export", help="write one trained policy as a jax.export "
                                  "program that needs only jax to run"))
    report = sub.add_parser("report", help="overlay runs: figures and a markdown table")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--out", default=None, help="output folder (default: reports/<run names> in "
                        "the working folder; nothing is written into the run folders)")
    report.add_argument("--top", type=integer, default=3, metavar="K",
                        help="learning curves of a sweep: its K best settings by final evaluation "
                             "return (default 3)")
    report.add_argument("--per-seed", action="store_true",
                        help="the ranking tables of a sweep also list every seed's score")
    report.add_argument("--best-config", default=None, metavar="FILE",
                        help="write the best setting of the (one) run as a .toml or .json settings "
                             "file: pgjax train --config FILE reruns it")
    return parser


REFERENCE_COMMAND = ("python -c \"from pgjax import cli; print(cli.reference_markdown(), end='')\" "
                     "> docs/cli.md")


def reference_markdown() -> str:
    """The CLI reference page (``docs/cli.md``): every command's ``--help`` and every algorithm's
    settings, read from the same parser and field declarations as the help itself
    (:mod:`pgjax.run.field_docs`); the suite checks the page equals this."""
    import os
    from pgjax import algorithms
    from pgjax.run import field_docs
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: a fixed width for the page
    try:
        parser = _parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["# Command-line reference", "",
                 f"Generated from pgjax's own parser and setting declarations (`{REFERENCE_COMMAND}`);",
                 "the test suite fails when this page and `pgjax … --help` disagree.", ""]
        for name, sub in commands.choices.items():
            parts += [f"## pgjax {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
        parts += ["## Settings of each algorithm", "",
                  "`--set NAME=VALUE` sets one; a hyperparameter (traced, a number in the train "
                  "state) can be swept inside one program, a config field (static: shapes and code) "
                  "is swept as one program per value.", ""]
        for algorithm in sorted(algorithms.ALGORITHMS):
            parts += [f"### {algorithm}", "", "| setting | kind | type | default | allowed | meaning |",
                      "|---|---|---|---|---|---|"]
            parts += [f"| `{d.name}` | {d.kind} | {d.type} | `{d.default}` | {d.allowed} | {d.help} |"
                      .replace("\n", " ") for d in field_docs.describe_algorithm(algorithms.get(algorithm))]
            parts.append("")
        return "\n".join(parts)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def integer(text: str) -> int:
    """An argparse type for counts: an integer, also written as an integral float (``1e5``,
    ``2.5e6``), as ``--set`` reads integer fields; ``1.5``, ``inf`` or a word is refused."""
    if text.strip().lstrip("+-").isdigit():
        return int(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number.is_integer()):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: an integer (1e5 and 2.5e6 "
                                         "are fine, 1.5 is not)")
    return int(number)


def _what_to_train(train) -> None:
    """``pgjax train`` flags that say what runs: algorithm, environment, seeds, settings, folder."""
    from pgjax import algorithms
    train.add_argument("algorithm", nargs="?", default=None,
                       help=f"one of: {', '.join(sorted(algorithms.ALGORITHMS))}")
    train.add_argument("--env", default=None, help="environment id (gymnax or envs/; default CartPole-v1)")
    train.add_argument("--seeds", type=integer, default=None, help="number of seeds, vmapped (default 3)")
    train.add_argument("--seed-offset", type=integer, default=None, help="first seed (default 0)")
    train.add_argument("--total-steps", type=integer, default=None,
                       help="env steps per seed (1e6 is fine)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config or hyperparameter override; env.FIELD for EnvParams")
    train.add_argument("--sweep", action="append", default=[], metavar="KEY=SPEC",
                       help="values to sweep: hyperparameters side by side in one vmapped program, "
                            "static config fields as one program per value (a study); "
                            "SPEC is V1,V2,... or log:LO:HI:N or lin:LO:HI:N (grids), or "
                            "loguniform:LO:HI, uniform:LO:HI, int:LO:HI, choice:A,B (random, with "
                            "--samples); several --sweep flags give their cartesian product")
    train.add_argument("--samples", type=integer, default=None, metavar="N",
                       help="random search: draw N settings of the random --sweep axes (times the grid)")
    train.add_argument("--sweep-seed", type=integer, default=None, metavar="S",
                       help="seed of the random draws (default 0; recorded in config.json)")
    train.add_argument("--name", default=None, help="run name (default ALGO-ENV-TIME)")
    train.add_argument("--runs-dir", default=None, help="where run folders go (default runs/)")
    train.add_argument("--config", default=None, metavar="FILE",
                       help="start from a settings file (TOML, YAML or JSON; a run's config.json "
                            "too); flags, --set and --sweep apply on top")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest checkpoint")


def _run_flags(train) -> None:
    """``pgjax train`` flags of how it runs: evaluation, checkpoints, logging, divergence, chunks."""
    train.add_argument("--eval-episodes", type=integer, default=None,
                       help="evaluation episodes per seed (default 200)")
    train.add_argument("--num-evals", type=integer, default=None,
                       help="evaluations spread over the run, the last at the end (default 10)")
    train.add_argument("--eval-every", type=integer, default=None,
                       help="env steps per seed between evaluations (overrides --num-evals)")
    train.add_argument("--sample-eval", action="store_false", default=None, dest="greedy_eval",
                       help="evaluate with sampled actions "
                       "(default: greedy, the mode of the policy)")
    train.add_argument("--cache-episodes", type=integer, default=None,
                       help="evaluation episodes per seed cached step by step in eval/ (default 20)")
    train.add_argument("--checkpoint-every", type=integer, default=None,
                       help="env steps per seed between checkpoints (default: by wall time, "
                       "--checkpoint-minutes)")
    train.add_argument("--checkpoint-minutes", type=float, default=None,
                       help="checkpoint after this much wall time since the last one (default 5); "
                       "a run also checkpoints at its end and when stopped")
    train.add_argument("--keep-checkpoints", type=integer, default=None, help="latest checkpoints kept (default 3)")
    train.add_argument("--no-tensorboard", action="store_false", default=None, dest="tensorboard",
                       help="do not write TensorBoard events")
    train.add_argument("--no-plots", action="store_false", default=None, dest="plots",
                       help="do not draw plots/ at the end")
    train.add_argument("--wandb", default=None, metavar="PROJECT", dest="wandb_project",
                       help="also log to this Weights & Biases project (needs pgjax[wandb])")
    train.add_argument("--on-nonfinite", default=None, choices=["freeze", "stop"],
                       help="a member whose loss or parameters go non-finite is frozen at its last "
                            "finite state while the others go on (freeze, default), or the whole "
                            "run stops (stop)")
    train.add_argument("--chunk-seconds", type=float, default=None,
                       help="wall time of one chunk of updates between host-side checks (default 3): "
                            "signals, progress and wall-time checkpoints wait at most this long")
    train.add_argument("--log-every-seconds", type=float, default=None, metavar="S",
                       help="each metrics row is the mean over about S seconds of updates (default "
                            "1; 0 writes a row per update: full detail)")
    train.add_argument("--log-members", type=integer, default=None, metavar="K",
                       help="a population larger than K writes member rows less often and "
                            "TensorBoard per setting, so logs grow like K members' (default 16); "
                            "metrics_settings.jsonl always has every setting's seed statistics")
    train.add_argument("--no-compile-cache", action="store_false", default=None, dest="compile_cache",
                       help="do not use the persistent compilation cache (also PGJAX_COMPILATION_CACHE=0)")


def _parallel_flags(train) -> None:
    """``pgjax train`` flags that split a run over devices and processes."""
    train.add_argument("--devices", type=integer, default=None,
                       help="split the population (seeds × settings) over this many local devices "
                            "(default: as many as divide it; it must divide the population, or num_envs "
                            "with --shard envs)")
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


def _study_flags(train) -> None:
    """``pgjax train`` flags that spend a sweep's compute: PBT and successive halving."""
    train.add_argument("--pbt", action="store_true", default=None,
                       help="population-based training of the --sweep population (Jaderberg et al. "
                            "2017): after every evaluation but the last, the bottom --pbt-fraction "
                            "copy a top member and perturb its swept hyperparameters")
    train.add_argument("--pbt-fraction", type=float, default=None, metavar="Q",
                       help="PBT: the quantile that is replaced and the one copied (default 0.25)")
    train.add_argument("--pbt-resample", type=float, default=None, metavar="P",
                       help="PBT: probability of resampling a value instead of perturbing it (0.25)")
    train.add_argument("--prune", default=None, choices=["halving"],
                       help="successive halving of the --sweep settings (Jamieson & Talwalkar 2016): "
                            "at the end of each rung only the top 1/η by evaluation go on, in a "
                            "smaller program")
    train.add_argument("--prune-eta", type=integer, default=None, metavar="η",
                       help="halving: keep the top 1/η of the settings at each rung (default 3)")
    train.add_argument("--prune-rungs", type=integer, default=None, metavar="R",
                       help="halving: number of rungs, ending at the full budget (default: until "
                            "one setting is left)")


def _eval_parser(evaluate) -> None:
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=200, help="episodes per seed (default 200)")
    evaluate.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    evaluate.add_argument("--best", action="store_true", help="use the best-by-evaluation checkpoint")
    evaluate.add_argument("--setting", default=None, metavar="K|KEY=V,...",
                      help="only the members of this setting of a sweep: its index or its swept values")
    evaluate.add_argument("--seed", type=integer, default=None, help="only the members of this seed")
    evaluate.add_argument("--out", default=None, metavar="FILE.jsonl",
                          help="also append a row per member to this JSONL file (the run folder "
                               "itself is only read)")
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="greedy", action="store_true", default=True,
                      help="actions are the policy's mode (default)")
    mode.add_argument("--sample", dest="greedy", action="store_false", help="sample actions")


def _episodes_parser(show) -> None:
    show.add_argument("run_dir")
    show.add_argument("--step", type=int, default=None,
                      help="one cached evaluation, by env steps (default: all, and the latest for --gif)")
    show.add_argument("--gif", default=None, metavar="OUT.gif", help="render one cached episode")
    show.add_argument("--member", type=int, default=None,
                      help="with --gif: population member of the episode (default 0; or choose it "
                           "by --setting and --seed)")
    show.add_argument("--setting", default=None, metavar="K|KEY=V,...",
                      help="only the members of this setting of a sweep: its index or its swept values")
    show.add_argument("--seed", type=integer, default=None, help="only the members of this seed")
    show.add_argument("--episode", type=int, default=None, help="with --gif: which cached episode "
                      "(default 0)")
    show.add_argument("--fps", type=int, default=None, help="with --gif: frames per second (default 30)")


def _export_parser(export) -> None:
    export.add_argument("run_dir")
    export.add_argument("out_dir", help="folder for act_greedy.jaxexport, act_sampled.jaxexport, policy.json")
    export.add_argument("--setting", default=None, metavar="K|KEY=V,...",
                        help="the setting of a sweep: its index or its swept values")
    export.add_argument("--seed", type=integer, default=None, help="the member's seed")
    export.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    export.add_argument("--best", action="store_true", help="the best-by-evaluation checkpoint")


def _export(args) -> int:
    """Write the chosen member's policy (the run folder is only read)."""
    from pgjax import policy
    from pgjax.run import folder as run_folder
    try:
        run_folder.check_writable_dir(Path(args.out_dir), "out_dir")
        loaded = policy.load_policy(Path(args.run_dir), setting=args.setting, seed=args.seed,
                                    step=args.step, best=args.best)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    out = policy.export(loaded, Path(args.out_dir))
    print(f"wrote {out}: member {loaded.info['member']} (seed {loaded.info['seed']}"
          + (f", {loaded.info['setting']}" if loaded.info["setting"] else "")
          + f") of {loaded.info['run_dir']} at step {loaded.info['step']:,d}")
    return 0


def _given_options(args) -> dict:
    """The run-option flags as RunOptions fields (None: not given). A flag's ``dest`` is its
    :class:`pgjax.run.options.RunOptions` field's name, so a new run option is its field and its
    flag (a field without a flag, such as ``chunk_updates``, is set from settings files only)."""
    from pgjax.run.options import RunOptions
    return {field.name: getattr(args, field.name, None) for field in dataclasses.fields(RunOptions)}


def check_resume_flags(args) -> None:
    """``--name``, ``--runs-dir`` and ``--config`` say where a new run goes and what it is; with
    ``--resume`` each is refused in one line unless it names what the resumed run already has (its
    folder, and the settings saved in its config.json)."""
    if not args.resume:
        return
    resumed = Path(args.resume)
    if args.name is not None and args.name != resumed.name:
        raise ConfigError(f"--name={args.name!r} is not allowed with --resume: the resumed run keeps "
                          f"its folder {str(resumed)!r}; leave --name out")
    if args.runs_dir is not None and Path(args.runs_dir).absolute().resolve() != \
            resumed.absolute().parent.resolve():
        raise ConfigError(f"--runs-dir={args.runs_dir!r} is not allowed with --resume: the resumed "
                          f"run keeps its folder {str(resumed)!r}; leave --runs-dir out")
    if args.config is not None:
        from pgjax.run import spec, spec_file
        saved, given = spec.load(resumed), spec.fresh(file=spec_file.load(args.config))
        found = saved.differences(given) + [
            f"option {name} (saved {value!r}, file {getattr(given.options, name)!r})"
            for name, value in vars(saved.options).items() if getattr(given.options, name) != value]
        if found:
            raise ConfigError(f"--config={args.config!r} is not allowed with --resume: the resumed "
                              f"run keeps the settings saved in {resumed / 'config.json'}, and the "
                              f"file differs in {found[0]}; leave --config out")


def resolve(args):
    """(run or study, run folder) of ``pgjax train`` from its arguments (:func:`pgjax.api.resolve`,
    which ``pgjax.train`` uses too)."""
    from pgjax import api
    from pgjax.run import spec_file
    return api.resolve(algorithm=args.algorithm, env=args.env, total_steps=args.total_steps,
                       assignments=args.set, sweeps=args.sweep, samples=args.samples,
                       sweep_seed=args.sweep_seed, seed_count=args.seeds,
                       seed_offset=args.seed_offset, given_options=_given_options(args),
                       file=spec_file.load(args.config) if args.config and not args.resume else None,
                       resume=args.resume, runs_dir=args.runs_dir, name=args.name)


def _train(args) -> int:
    import jax
    try:
        if jax.process_count() > 1:
            require(args.name is not None or args.resume is not None, "--name", None,
                    "a multi-process run needs --name (or --resume): every process must write "
                    "the same folder")
        check_resume_flags(args)
        run, run_dir = resolve(args)
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run import runner
    from pgjax.run.loggers import WriteFailed
    from pgjax import api
    try:  # the runner refuses a folder that holds a run, or is in use, before compiling anything
        result = api.execute(run, run_dir, resume=bool(args.resume))
    except ConfigError as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    except WriteFailed as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return WRITE_FAILED
    if result.status == runner.INTERRUPTED:
        return 128 + int(signal.SIGINT if "SIGINT" in result.message else signal.SIGTERM)
    if result.status == runner.NON_FINITE:
        return 3
    return 0


WRITE_FAILED = 4  # exit status of a run that could not write its folder


def _eval(args) -> int:
    """Evaluate a checkpoint (the folder is only read), print the table, then, with ``--out``,
    append its rows to that file, or warn in one line that they could not be recorded. A signal
    stops it at once."""
    from pgjax.run.background import StoppedBeforeTraining, StopSignals, while_listening
    from pgjax.run.loggers import WriteFailed
    try:
        _in_study(args)
        run_dir = Path(args.run_dir)
        require(args.episodes >= 1, "--episodes", args.episodes, "must be a positive integer")
        from pgjax.run import memory, spec
        run = spec.load(run_dir)
        memory.check_evaluation(run.config, len(run.seeds) * len(run.settings), args.episodes, 0,
                                ("--episodes", args.episodes), "lower --episodes")  # reads nothing
        members = _chosen_members(args)
    except (ConfigError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run import runner
    try:  # in a worker thread, so that SIGINT/SIGTERM end it at once, even inside XLA
        with StopSignals() as stop:
            text, rows = while_listening(
                stop, functools.partial(runner.reevaluation, episodes=args.episodes, step=args.step,
                                        which="best" if args.best else "latest", greedy=args.greedy,
                                        members=members),
                run_dir, run.algo, run.config, run.settings, run.seeds)
    except StoppedBeforeTraining as stopped:
        print(f"pgjax: received {signal.Signals(stopped.signum).name} during the evaluation: "
              "stopped, nothing recorded", file=sys.stderr, flush=True)
        return 128 + int(stopped.signum)
    except (FileNotFoundError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    print(text, flush=True)
    if args.out is None:
        return 0
    try:
        runner.record_reevaluation(Path(args.out), rows)
    except WriteFailed as error:
        print(f"pgjax: warning: the result above was not recorded ({error})", file=sys.stderr)
    return 0


def _in_study(args) -> None:
    """``pgjax eval``/``episodes`` of a study folder: ``args.run_dir`` becomes the program folder
    that holds ``--setting`` and ``args.setting`` that setting's index there (ConfigError when no
    setting, or no single one, is chosen)."""
    from pgjax.run import programs
    if programs.is_study(args.run_dir):
        folder, index = programs.locate(Path(args.run_dir), args.setting)
        print(f"setting {args.setting} of the study trained last in {folder}", file=sys.stderr)
        args.run_dir, args.setting = str(folder), str(index)


def _chosen_members(args) -> list[int] | None:
    """The members ``--setting`` and ``--seed`` choose (None: every member)."""
    if args.setting is None and args.seed is None:
        return None
    from pgjax.run import spec
    from pgjax.run.population import Population
    run = spec.load(Path(args.run_dir))
    return Population(run.seeds, run.settings).select(args.setting, args.seed)


def _episodes(args) -> int:
    """Summarise the episode cache (all evaluations, or the one at ``--step``), or render one
    cached episode with ``--gif``; flags that only a GIF uses are refused without it."""
    from pgjax.run import episodes
    from pgjax.run.loggers import WriteFailed
    try:
        _in_study(args)
        run_dir = Path(args.run_dir)
        if args.gif is None:
            given = [flag for flag, value in (("--member", args.member), ("--episode", args.episode),
                                              ("--fps", args.fps)) if value is not None]
            if given:
                raise ConfigError(f"{given[0]} is not allowed without --gif: it only applies to the "
                                  "GIF (the summary covers every member and episode)")
            print(episodes.summary(run_dir, step=args.step, members=_chosen_members(args)))
            return 0
        episodes.check_gif_path(Path(args.gif))
        from pgjax.run import spec
        member = args.member or 0
        if args.setting is not None or args.seed is not None:
            require(args.member is None, "--member", args.member, "not together with --setting/--seed "
                    "(they choose the member)")
            member = _chosen_members(args)[0]
        path = episodes.render_gif(run_dir, spec.load(run_dir).config, Path(args.gif), step=args.step,
                                   member=member, episode=args.episode or 0,
                                   fps=30 if args.fps is None else args.fps)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    except WriteFailed as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return WRITE_FAILED
    print(f"wrote {path}")
    return 0


def default_report_folder(run_dirs: list[Path]) -> Path:
    """``reports/<name>`` (one run) or ``reports/<name1>+<name2>…`` in the working folder: outside
    the run folders, which a reader never modifies (a name longer than a file name allows is cut
    and ends in a short hash of the whole)."""
    import hashlib
    name = "+".join(d.resolve().name for d in run_dirs)
    if len(name) > 120:
        name = name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:12]
    return Path("reports") / name


def _report(args) -> int:
    from pgjax import report
    from pgjax.report import best_config
    from pgjax.run import folder as run_folder
    run_dirs = [Path(d) for d in args.run_dirs]
    missing = [str(d) for d in run_dirs if not ((d / "config.json").exists() or (d / "study.json").exists())]
    if missing:
        print(f"pgjax: error: not run folders (no config.json or study.json): {', '.join(missing)}",
              file=sys.stderr)
        return 2
    try:  # the report's own arguments, refused before anything is written
        require(args.top >= 1, "--top", args.top, "a positive integer (settings of a sweep whose "
                "learning curves are drawn)")
        best = _best_setting(args.best_config, run_dirs) if args.best_config else None
    except ConfigError as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_report_folder(run_dirs)
    try:
        run_folder.check_writable_dir(out, "--out")
    except ConfigError as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    from pgjax.run.loggers import WriteFailed, writing
    try:
        with writing(out):
            text = report.report(run_dirs, out, top=args.top, per_seed=args.per_seed)
        if best is not None:
            with writing(best[0]):
                best_config.write_record(*best)
    except ConfigError as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return 2
    except WriteFailed as error:
        print(f"pgjax: error: {error}", file=sys.stderr)
        return WRITE_FAILED
    print(text)
    print(f"\nfigures and report.md in {out}")
    if best is not None:
        print(f"wrote the {best[2]} to {best[0]} (pgjax train --config {best[0]} reruns it)")
    return 0


def _best_setting(path: str, run_dirs: list[Path]) -> tuple:
    """``(path, record, what)`` for ``pgjax report --best-config``: the checked path and the
    best setting of the one run, chosen before anything is written (ConfigError otherwise)."""
    from pgjax import report
    from pgjax.report import best_config
    require(len(run_dirs) == 1, "--best-config", path,
            f"with exactly one run folder (got {len(run_dirs)}): the best setting of that run")
    checked = best_config.check_path(path)
    run = report.load_run(run_dirs[0])
    record, label = best_config.best_record(run)
    return checked, record, f"best setting of run {run.name}" + (f" ({label})" if label else "")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"pgjax: warning: {message}", file=sys.stderr, flush=True)


def _algorithm_asking_for_help(argv: list[str]) -> str | None:
    """ALGO in ``pgjax train ALGO --help`` (so the help can list ALGO's settings)."""
    if len(argv) < 2 or argv[0] != "train" or not {"-h", "--help"} & set(argv):
        return None
    return next((a for a in argv[1:] if not a.startswith("-")), None)


def _join_processes(argv: list[str]) -> bool:
    """``jax.distributed.initialize`` from the multi-process flags of ``pgjax train`` (or the
    environment; :mod:`pgjax.run.distributed`); False for a single-process run. A process that
    cannot join within ``PGJAX_COORDINATOR_TIMEOUT`` seconds (default 120) exits with one line."""
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
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning  # our warnings as one line each, no source excerpt
    try:
        if argv[:1] == ["train"]:
            try:  # before anything touches a device (building the parser does): join the processes
                _join_processes(argv)
            except ConfigError as error:
                print(f"pgjax: error: {error}", file=sys.stderr)
                return 2
        args = _parser(_algorithm_asking_for_help(argv)).parse_args(argv)
        commands = {"train": _train, "eval": _eval, "episodes": _episodes, "report": _report,
                    "export": _export}
        return commands[args.command](args)
    finally:
        warnings.showwarning = shown


def entry(argv: list[str] | None = None) -> None:
    """The ``pgjax`` command: :func:`main`, then exit without finalising the interpreter.

    Every file pgjax writes is closed by then; the exit handlers (``atexit``: logging, JAX's,
    orbax's) run, and the outputs are flushed. What is skipped is the interpreter's teardown of
    its modules and of XLA's client, a noticeable part of a tiny run
    (``python -m benchmarks.startup --whole`` measures it). A process of a multi-process run exits the usual way, so that
    its peers see it leave in order. A run stopped by a signal during set-up leaves its
    compilation thread inside XLA, where even the exit handlers could abort the process: then
    they are skipped too."""
    import atexit
    import os
    import threading
    code = main(argv)
    compiling = any(t.name.startswith("pgjax-") and t.is_alive() for t in threading.enumerate())
    if not compiling and "jax" in sys.modules and sys.modules["jax"].distributed.is_initialized():
        sys.exit(code)
    if not compiling:
        atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
