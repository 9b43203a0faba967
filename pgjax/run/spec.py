"""A run, resolved once: :class:`RunSpec`.

A spec is the algorithm, its static config, the hyperparameter settings (one per swept point),
the seeds and the run options, validated together. It is built in one of two ways, and only here:

- :func:`fresh` from what a user asks for (an algorithm or a ``--config`` file, then ``--env``,
  ``--total-steps``, ``--set``, ``--sweep``, seeds and option flags on top);
- :func:`load` from a run folder's ``config.json`` (which is a spec serialised by
  :meth:`RunSpec.record`), and :func:`resumed` = :func:`load` + the overrides a resume allows,
  refused field by field where they differ from the saved run.

``pgjax train``, ``pgjax train --resume``, ``pgjax eval`` and ``pgjax episodes`` all go through
these functions; every bad value is a :class:`pgjax.config.ConfigError` raised before anything is
created or compiled.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pgjax import algorithms
from pgjax.config import (ConfigError, apply_overrides, config_differences, config_from_dict,
                          config_to_dict, hparams_from_dict, hparams_to_dict, parse_setting,
                          require, settings_of)
from pgjax.run.saved import read_record  # noqa: F401 - the one config.json reader, re-exported
from pgjax.run.spec_file import MAX_SEEDS, SEED_BOUND

DEFAULT_ENV, DEFAULT_SEEDS = "CartPole-v1", 3


@dataclass(frozen=True)
class RunSpec:
    algorithm: str
    config: Any            # the algorithm's Config: static, shapes and program
    settings: tuple        # the algorithm's Hparams, one per hyperparameter setting
    seeds: tuple[int, ...]
    options: Any           # pgjax.run.options.RunOptions
    study: dict | None = None  # the search space the settings came from (pgjax.study.space.record)

    @property
    def algo(self):
        return algorithms.get(self.algorithm)

    def record(self) -> dict:
        """What ``config.json`` holds of the spec (the runner adds members, device, counts)."""
        return {"algorithm": self.algorithm, "config": config_to_dict(self.config),
                "hparams": hparams_to_dict(self.settings[0]),
                "hparams_settings": [hparams_to_dict(hp) for hp in self.settings],
                "seeds": list(self.seeds), "options": dataclasses.asdict(self.options),
                **({"study": self.study, "sweep_space": sweep_space(self.study)} if self.study else {})}

    def differences(self, other: "RunSpec") -> list[str]:
        """``field (saved X, requested Y)`` for every field of the run itself (not its options)
        where ``other`` differs: what a resume must not change."""
        if self.algorithm != other.algorithm:
            return [f"algorithm (saved {self.algorithm!r}, requested {other.algorithm!r})"]
        found = config_differences(self.config, other.config)
        mine, theirs = ([hparams_to_dict(hp) for hp in s.settings] for s in (self, other))
        if mine != theirs:
            found.append(f"hyperparameters (saved {mine}, requested {theirs})")
        if self.seeds != other.seeds:
            found.append(f"seeds (saved {list(self.seeds)}, requested {list(other.seeds)})")
        return found


def sweep_space(study: dict) -> dict[str, str]:
    """``{key: "log" | "linear"}``: how a report draws each swept key (log axes for log ranges)."""
    kinds = {"log": "log", "loguniform": "log", "lin": "linear", "uniform": "linear", "int": "linear"}
    return {axis["key"]: kinds[axis["kind"]] for axis in study.get("axes", []) if axis["kind"] in kinds}


# --------------------------------------------------------------------------- pieces

def options(given: dict, base: dict | None = None, strict: bool = False):
    """RunOptions from ``given`` (flags: None = not given) over ``base`` (a saved run's or a
    file's options; ``strict`` refuses names RunOptions does not have) over the defaults."""
    from pgjax.run.options import RunOptions
    known = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(base or {}) - known)
    if strict and unknown:
        raise ConfigError(f"options {unknown} are not allowed: run options are {sorted(known)}")
    kept = {k: v for k, v in (base or {}).items() if k in known}
    result = RunOptions(**{**kept, **{k: v for k, v in given.items() if v is not None}})
    result.validate()
    return result


def seeds(count: int | None, offset: int | None, default: list[int] | None = None) -> tuple[int, ...]:
    """``count`` seeds from ``offset`` (seeds K..K+N−1); when neither is given, ``default`` (a
    file's or a saved run's seeds) or 0, 1, 2."""
    if default is not None and count is None and offset is None:
        return tuple(default)
    count = DEFAULT_SEEDS if count is None else count
    offset = 0 if offset is None else offset
    require(isinstance(count, int) and 1 <= count <= MAX_SEEDS, "--seeds", count,
            f"the number of seeds, an integer in [1, {MAX_SEEDS}]")
    require(isinstance(offset, int) and 0 <= offset <= SEED_BOUND - count, "--seed-offset", offset,
            f"the first seed, an integer in [0, 2^32 − {count}] = [0, {SEED_BOUND - count}]: the "
            f"{count} seeds from it are 32-bit unsigned integers")
    return tuple(range(offset, offset + count))


def config_and_hparams(algorithm: str, env_id: str | None, total_steps: int | None,
                       assignments: list[str], base_config: dict | None = None,
                       base_hparams: dict | None = None):
    """(algo module, config, hparams): the defaults, or a file's/saved ``base_config`` and
    ``base_hparams``, then ``env_id``, ``total_steps`` and the ``key=value`` assignments."""
    algo = algorithms.get(algorithm)
    fields = dict(base_config or {})
    if env_id is not None or "env_id" not in fields:
        fields["env_id"] = env_id or DEFAULT_ENV
    config = config_from_dict(algo.Config, fields)
    hparams = hparams_from_dict(algo.Hparams, base_hparams or {})
    # total_steps goes in with the assignments, so it is checked against their sizes
    steps = [f"total_steps={total_steps}"] if total_steps is not None else []
    config, hparams = apply_overrides(config, hparams, steps + list(assignments))
    return algo, config, hparams


def sweep(config, hparams, sweeps: list[str], *, samples: int | None = None,
          sweep_seed: int = 0) -> tuple[list, dict | None]:
    """(settings, study record): the Hparams of every point of the search space ``sweeps``
    (``KEY=SPEC`` texts, :mod:`pgjax.study.space`: grids, log/linear ranges, and with ``samples``
    random draws from ``sweep_seed``) and what ``config.json`` records of the space (None without
    a sweep). Hyperparameters only: a sweep is a batch of numbers in one program, not of
    programs. A key swept twice, or a value given twice in one grid, is refused: either would
    train some setting twice (or drop values)."""
    from pgjax.study import space
    declared = settings_of(type(hparams))
    axes = space.parse(list(sweeps), samples)
    for axis in axes:
        require(axis.key in declared, "--sweep", axis.key,
                f"a hyperparameter (one of {sorted(declared)}), or a field of the static config or "
                "env.FIELD (swept as one program per value)")
        if not axis.is_random:
            _refuse_repeated_values(axis.key, f"{axis.key}=" + ",".join(axis.values), list(axis.values),
                                    declared[axis.key])
    points = space.expand(axes, samples, sweep_seed)
    settings = [apply_overrides(config, hparams, [f"{k}={v}" for k, v in p.items()])[1] for p in points]
    if not axes:
        return [hparams], None
    return _merge_repeated_draws(settings, samples), space.record(axes, samples, sweep_seed)


def _merge_repeated_draws(settings: list, samples: int | None) -> list:
    """Random draws may repeat a setting (``choice:`` or ``int:`` axes): keep the first of each,
    and say so (a grid never repeats: its repeated values are refused)."""
    if samples is None:
        return settings
    kept, seen = [], set()
    for hparams in settings:
        key = tuple(np.asarray(v, np.float32).tobytes() for v in hparams_to_dict(hparams).values())
        if key not in seen:
            seen.add(key)
            kept.append(hparams)
    if len(kept) < len(settings):
        warnings.warn(f"--samples: {len(settings) - len(kept)} of {len(settings)} drawn settings "
                      f"repeat an earlier one; training the {len(kept)} distinct settings", stacklevel=3)
    return kept


def _refuse_repeated_values(key: str, text: str, values: list[str], declared) -> None:
    """Two values of one sweep that are the same number in float32 (the train state's
    precision: ``0.9`` and ``0.90``) would train one setting twice."""
    seen: dict = {}
    for value in values:
        number = np.float32(parse_setting(key, value, declared))
        if number in seen:
            raise ConfigError(f"--sweep {text!r} is not allowed: {seen[number]} and {value} are "
                              f"the same value of {key} (as a float32, the train state's "
                              "precision), so that setting would train twice")
        seen[number] = value


def _refuse_repeated_settings(settings, where: str) -> None:
    """Two hyperparameter settings equal in float32 (the train state's precision) train alike."""
    seen: dict = {}
    for index, hparams in enumerate(settings):
        values = hparams_to_dict(hparams)
        key = tuple(np.asarray(v, np.float32).tobytes() for v in values.values())
        if key in seen:
            raise ConfigError(f"{where} is not allowed: settings {seen[key]} and {index} (from 0) "
                              f"are the same, {values}, so that setting would train twice")
        seen[key] = index


# --------------------------------------------------------------------------- the three ways

def fresh(*, algorithm: str | None = None, file: dict | None = None, env: str | None = None,
          total_steps: int | None = None, assignments: list[str] = (), sweeps: list[str] = (),
          samples: int | None = None, sweep_seed: int | None = None,
          seed_count: int | None = None, seed_offset: int | None = None,
          given_options: dict | None = None) -> RunSpec:
    """A new run: ``file`` (:func:`pgjax.run.spec_file.load`) if any, then everything else on top
    (a ``--sweep`` of a key the file's ``[sweep]`` table also sweeps replaces the file's)."""
    file = file or {"algorithm": None, "config": {}, "hparams_settings": None, "seeds": None,
                    "options": None}
    name = algorithm or file["algorithm"]
    if name is None:
        raise ConfigError("algorithm is missing: pgjax train ALGO (or pgjax train --resume RUN_DIR, "
                          "or a --config file with algorithm = ...)")
    if file["algorithm"] and algorithm and algorithm != file["algorithm"]:
        raise ConfigError(f"algorithm={algorithm!r} is not allowed: the --config file is for "
                          f"{file['algorithm']!r}")
    file_sweep = file.get("sweep") or {"axes": [], "samples": None, "sweep_seed": None}
    sweeps = _merged_axes(file_sweep["axes"], list(sweeps))
    samples = samples if samples is not None else file_sweep["samples"]
    sweep_seed = sweep_seed if sweep_seed is not None else (file_sweep["sweep_seed"] or 0)
    require(isinstance(sweep_seed, int) and not isinstance(sweep_seed, bool) and 0 <= sweep_seed < 2 ** 63,
            "--sweep-seed", sweep_seed, "an integer in [0, 2^63)")
    bases = file["hparams_settings"] or [None]
    if len(bases) > 1 and sweeps:
        raise ConfigError("--sweep is not allowed with a --config file that already holds several "
                          "hyperparameter settings")
    settings, study = [], None
    for base in bases:
        algo, config, hparams = config_and_hparams(name, env, total_steps, list(assignments),
                                                   file["config"], base)
        found, study = sweep(config, hparams, sweeps, samples=samples, sweep_seed=sweep_seed)
        settings += found
    _refuse_repeated_settings(settings, "hparams_settings")
    run_options = options(given_options or {}, file.get("options"), strict=True)
    return RunSpec(algo.NAME, config, tuple(settings), seeds(seed_count, seed_offset, file["seeds"]),
                   run_options, study)


def _merged_axes(from_file: list[str], from_flags: list[str]) -> list[str]:
    """The file's ``KEY=SPEC`` axes, each replaced by a flag's axis of the same key, then the
    flags' other axes (a key given twice among the flags is refused later, naming it)."""
    flag_keys = {text.split("=", 1)[0].strip() for text in from_flags}
    return [t for t in from_file if t.split("=", 1)[0].strip() not in flag_keys] + from_flags




def load(run_dir: Path, given_options: dict | None = None) -> RunSpec:
    """The spec saved in ``run_dir/config.json`` (its own options, with ``given_options`` on top);
    a file that is empty, hand-edited to an unknown field or a bad value is one ConfigError."""
    return from_record(read_record(run_dir), f"{Path(run_dir) / 'config.json'}: ", given_options)


def from_record(saved: dict, where: str, given_options: dict | None = None) -> RunSpec:
    """The spec a :meth:`RunSpec.record` holds (read from ``config.json``, or from a study's
    ``study.json``); ``where`` starts every error's message."""
    try:
        algo = algorithms.get(saved["algorithm"])
        config = config_from_dict(algo.Config, saved["config"])
        tables = saved.get("hparams_settings", [saved.get("hparams")])
        require(isinstance(tables, list) and len(tables) > 0, "hparams_settings", tables,
                "a non-empty list of JSON objects of hyperparameters")
        settings = [hparams_from_dict(algo.Hparams, values) for values in tables]
        _refuse_repeated_settings(settings, "hparams_settings")
        base = saved.get("options") if isinstance(saved.get("options"), dict) else None
        run_options = options(given_options or {}, base)
    except TypeError as error:  # an unknown field in a dataclass constructor
        raise ConfigError(f"{where}{error} (fields: see pgjax train ALGO --help)") from None
    except ValueError as error:
        raise ConfigError(f"{where}{error}") from None
    study = saved.get("study") if isinstance(saved.get("study"), dict) else None
    return RunSpec(algo.NAME, config, tuple(settings), tuple(saved["seeds"]), run_options, study)


def resumed(run_dir: Path, *, algorithm: str | None = None, env: str | None = None,
            total_steps: int | None = None, assignments: list[str] = (), sweeps: list[str] = (),
            samples: int | None = None, sweep_seed: int | None = None,
            seed_count: int | None = None, seed_offset: int | None = None,
            given_options: dict | None = None) -> RunSpec:
    """The saved spec of ``run_dir`` with its options updated by ``given_options``; anything else
    given must agree with the saved run, or the resume is refused naming every differing field."""
    saved = load(run_dir, given_options)
    if algorithm is not None:
        algorithms.get(algorithm)  # an unknown name fails here, naming the known ones
    if sweeps or samples is not None or sweep_seed is not None:
        flag = "--sweep" if sweeps else "--samples" if samples is not None else "--sweep-seed"
        raise ConfigError(f"cannot resume {run_dir} with {flag}: a resumed run keeps its saved "
                          "hyperparameter settings (config.json records the drawn values)")
    requested_config = saved.config if env is None else dataclasses.replace(saved.config, env_id=env)
    steps = [f"total_steps={total_steps}"] if total_steps is not None else []
    settings = tuple(apply_overrides(requested_config, hp, steps + list(assignments))[1]
                     for hp in saved.settings)
    requested_config = apply_overrides(requested_config, settings[0], steps + list(assignments))[0]
    offset = saved.seeds[0] if seed_offset is None else seed_offset
    count = len(saved.seeds) if seed_count is None else seed_count
    requested = RunSpec(algorithm or saved.algorithm, requested_config, settings,
                        seeds(count, offset) if (seed_count, seed_offset) != (None, None) else saved.seeds,
                        saved.options)
    check_resumable(saved, requested, run_dir)
    return saved


def check_resumable(saved: RunSpec, requested: RunSpec, run_dir: Path) -> None:
    found = saved.differences(requested)
    if found:
        raise ConfigError(f"cannot resume {run_dir}: the requested configuration differs in "
                          + "; ".join(found))
