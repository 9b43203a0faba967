"""The Python API: :func:`train` runs exactly what ``pgjax train`` runs.

``pgjax train`` and :func:`train` resolve a request the same way (:func:`resolve`: a run, or a
study of several programs, validated before anything is created or compiled), run it in the same
run folder layout with the same checkpoints and resume, and differ only in how the request is
written (flags, or keyword arguments) and what comes back (an exit status, or a
:class:`TrainResult`).

Callbacks are the run's sinks (:class:`pgjax.run.loggers.Sink`, exported as ``pgjax.Callback``):
subclass it and override any of ``chunk(record)`` (each chunk's metric rows: ``record.metrics[name]``
is ``[members, rows]``, ``record.labels`` the members), ``evaluation(rows, env_steps)`` (one dict per
member, as eval.jsonl), ``progress(snapshot)`` (what the live line shows) and ``close()``; they are
called on the host between chunks, like the run's own files.

:func:`pgjax.make_train` stays the other path: a whole run as one pure function to jit and vmap
yourself, with no folder, no checkpoints and no logs. Use :func:`train` for runs you want to keep,
resume, evaluate and report on; ``make_train`` inside your own jitted experiments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pgjax.config import ConfigError

DEFAULT_RUNS_DIR = "runs"


@dataclass
class TrainResult:
    """What :func:`train` returns. ``final_eval[s, k]`` is setting s's seed k mean final
    evaluation return (NaN where there is none); ``metrics[name]`` is ``[members, rows]`` against
    ``env_steps`` (members are settings × seeds, setting-major, as ``members`` labels them); a
    metric such as ``episode_return`` is NaN in a row where no episode ended (average it with
    ``np.nanmean``)."""
    run_dir: Path
    status: str
    settings: list[dict]
    seeds: list[int]
    final_eval: np.ndarray
    members: list[dict] = field(default_factory=list)
    env_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metrics: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    final_state: Any = None


def resolve(*, algorithm=None, file: dict | None = None, env=None, total_steps=None,
            assignments=(), sweeps=(), samples=None, sweep_seed=None, seed_count=None,
            seed_offset=None, given_options: dict | None = None, resume=None, runs_dir=None,
            name=None):
    """(run or study, its folder): a new run from the request (``file`` is a loaded settings
    file, :func:`pgjax.run.spec_file.load`), or the saved one of ``resume`` with the run options
    given on top (anything else that differs from it is refused)."""
    from pgjax.run import folder as run_folder
    from pgjax.run import programs, spec
    asked = dict(algorithm=algorithm, env=env, total_steps=total_steps,
                 assignments=list(assignments), sweeps=list(sweeps), samples=samples,
                 sweep_seed=sweep_seed, seed_count=seed_count, seed_offset=seed_offset,
                 given_options=given_options or {})
    if resume is not None and programs.is_study(resume):
        return _resumed_study(Path(resume), asked), Path(resume)
    if resume is not None:
        return spec.resumed(Path(resume), **asked), Path(resume)
    runs_dir = Path(runs_dir or DEFAULT_RUNS_DIR)
    if name is not None:
        run_folder.check_name(name, runs_dir)
    run_folder.check_writable_dir(runs_dir, "--runs-dir")
    run = programs.fresh(file=file, **asked)
    first = run.programs[0].spec if isinstance(run, programs.Study) else run
    name = name or f"{first.algorithm}-{first.config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run, runs_dir / name


def _resumed_study(run_dir: Path, asked: dict):
    """The study saved in ``run_dir`` with the run options given on top; anything that would
    change what it trains is refused (a study resumes with the settings it recorded)."""
    from pgjax.run import programs
    changing = [flag for flag, key in (("ALGO", "algorithm"), ("--env", "env"),
                                       ("--total-steps", "total_steps"), ("--set", "assignments"),
                                       ("--sweep", "sweeps"), ("--samples", "samples"),
                                       ("--sweep-seed", "sweep_seed"), ("--seeds", "seed_count"),
                                       ("--seed-offset", "seed_offset")) if asked[key] not in (None, [], ())]
    if changing:
        raise ConfigError(f"{changing[0]} is not allowed with --resume of the study {run_dir}: a "
                          "study resumes with the settings its study.json records (run options "
                          "may be given)")
    return programs.load(run_dir, asked["given_options"])


def execute(run, run_dir: Path, *, resume: bool = False, callbacks=(), out=None):
    """Run what :func:`resolve` returned: a :class:`pgjax.run.spec.RunSpec` or a study."""
    from pgjax.run import programs, runner
    if isinstance(run, programs.Study):
        return programs.run_study(run, run_dir, resume=resume, out=out, callbacks=callbacks)
    return runner.run_spec(run, run_dir, resume=resume, out=out, callbacks=callbacks)


def _sweep_texts(sweep) -> list[str]:
    """``{key: spec}`` (a spec text such as ``"log:1e-4:1e-2:3"``, or a list of values) or a list
    of ``KEY=SPEC`` texts, as ``--sweep`` takes them."""
    if sweep is None:
        return []
    if isinstance(sweep, dict):
        def values(spec):
            if isinstance(spec, str):
                return spec
            return ",".join(f"({','.join(map(str, v))})" if isinstance(v, (list, tuple)) else str(v)
                            for v in spec)
        return [f"{key}={values(spec)}" for key, spec in sweep.items()]
    return [str(text) for text in sweep]


def _file(algorithm, config, hparams) -> dict | None:
    """The settings-file form of ``config`` (a file's path, or a dict of config fields) and
    ``hparams`` (a dict, over the file's)."""
    from pgjax.run import spec_file
    if config is None and hparams is None:
        return None
    if isinstance(config, (str, Path)):
        file = spec_file.load(str(config))
    else:
        file = {"algorithm": algorithm, "config": dict(config or {}), "hparams_settings": None,
                "seeds": None, "options": None}
    if hparams is not None:
        file["hparams_settings"] = [{**base, **hparams} for base in (file["hparams_settings"] or [{}])]
    return file


def train(algorithm: str | None = None, *, env: str | None = None, seeds: int | None = None,
          seed_offset: int | None = None, total_steps: int | None = None, config=None,
          hparams: dict | None = None, sweep=None, samples: int | None = None,
          sweep_seed: int | None = None, runs_dir=DEFAULT_RUNS_DIR, name: str | None = None,
          resume=None, callbacks=(), out=None, **run_options) -> TrainResult:
    """Train as ``pgjax train`` does and return a :class:`TrainResult`.

    Args mirror the flags: ``algorithm`` (``ppo``, …), ``env``, ``seeds`` (count) and
    ``seed_offset``, ``total_steps``; ``config``: a settings file's path or a dict of config
    fields; ``hparams``: a dict of hyperparameters; ``sweep``: ``{key: "log:1e-4:1e-2:3"}``,
    ``{key: [v1, v2]}`` or ``["key=spec"]`` (static keys make a study of several programs);
    ``samples``/``sweep_seed`` for random search; ``runs_dir``/``name`` (the folder);
    ``resume=RUN_DIR`` continues a saved run; ``callbacks``: :class:`pgjax.Callback` objects;
    ``out``: where progress prints (default stdout); ``**run_options``: any
    :class:`pgjax.run.options.RunOptions` field (``eval_episodes=50``, ``prune="halving"``, …).
    Every bad value is a :class:`pgjax.config.ConfigError` raised before anything is compiled."""
    run, run_dir = resolve(algorithm=algorithm, file=_file(algorithm, config, hparams), env=env,
                           total_steps=total_steps, sweeps=_sweep_texts(sweep), samples=samples,
                           sweep_seed=sweep_seed, seed_count=seeds, seed_offset=seed_offset,
                           given_options=run_options, resume=resume, runs_dir=runs_dir, name=name)
    outcome = execute(run, run_dir, resume=resume is not None, callbacks=callbacks, out=out)
    return _result(run_dir, outcome)


def _result(run_dir: Path, outcome) -> TrainResult:
    from pgjax import report
    data = report.load_run(run_dir)
    groups = report.settings(data)
    seeds = sorted({label.get("seed") for label in data.members})
    final = np.full((len(groups), len(seeds)), np.nan)
    for s, group in enumerate(groups):
        values, _ = report.final_returns(data, group)
        for row, value in zip(group.rows, values):
            final[s, seeds.index(data.members[row].get("seed"))] = value
    settings = [{k[3:]: v for k, v in data.members[g.rows[0]].items() if k.startswith("hp_")}
                if g.rows else {} for g in groups]
    return TrainResult(Path(run_dir), outcome.status, settings, seeds, final, data.members,
                       data.env_steps, data.metrics, data.summary, outcome.final_state)


__all__ = ["TrainResult", "execute", "resolve", "train"]
