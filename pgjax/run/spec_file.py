"""Run settings from a file (host side): ``pgjax train --config FILE``.

A file holds what ``config.json`` of a run holds, in TOML, YAML or JSON (a previous run's
``config.json`` works as it is)::

    algorithm = "ppo"
    seeds = 3                      # a count (seeds 0..2) or a list [0, 5, 7]
    [config]                       # static config fields (pgjax train ppo --help lists them)
    env_id = "Pendulum-v1"
    num_envs = 16
    [config.env_overrides]         # EnvParams fields
    max_steps_in_episode = 200
    [hparams]                      # hyperparameters
    learning_rate = 1e-3
    [sweep]                        # a search space, as --sweep writes it (pgjax.study.space)
    learning_rate = "loguniform:1e-5:1e-2"
    clip_eps = [0.1, 0.2]          # a grid of values
    samples = 8                    # random draws (--samples), from sweep_seed (--sweep-seed)
    sweep_seed = 0
    [options]                      # run options (evaluation, checkpoints), as the flags name them
    eval_episodes = 100

Every section is optional except ``algorithm`` (or the ALGO argument). :func:`load` returns the
file's content normalised to that shape, refusing unknown keys with the allowed ones named.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pgjax.config_error import ConfigError

TOP_LEVEL = ("algorithm", "seeds", "config", "hparams", "hparams_settings", "sweep", "options")
SEED_BOUND = 2 ** 32  # seeds are 32-bit unsigned integers (jax.random.key)
MAX_SEEDS = 2 ** 20   # seeds of one run: each is a vmapped member, and all are listed in config.json
# written by the runner into config.json; read back as information only
RECORD_ONLY = ("members", "device", "num_updates", "steps_per_update", "max_chunk", "chunk",
               "study", "sweep_space")
SWEEP_OPTIONS = ("samples", "sweep_seed")  # the [sweep] table's keys that are not swept keys


def _parse(path: Path) -> Any:
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib
        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        import yaml
        return yaml.safe_load(text)
    if suffix == ".json":
        return json.loads(text)
    raise ConfigError(f"--config={str(path)!r} is not allowed: a .toml, .yaml/.yml or .json file")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_seed_list(seeds, where: str) -> None:
    """A run's seeds: a non-empty list of at most :data:`MAX_SEEDS` distinct integers in
    [0, 2^32); a ConfigError naming what is wrong (a repeated seed would train a member twice)."""
    allowed = f"a non-empty list of at most {MAX_SEEDS} distinct integers in [0, 2^32)"
    if not (isinstance(seeds, list) and 0 < len(seeds) <= MAX_SEEDS
            and all(_is_int(s) and 0 <= s < SEED_BOUND for s in seeds)):
        raise ConfigError(f"{where}={seeds!r} is not allowed: {allowed}")
    repeated = sorted(seed for seed, times in Counter(seeds).items() if times > 1)
    if repeated:
        raise ConfigError(f"{where}={seeds!r} is not allowed: seed {repeated[0]} appears more than "
                          f"once, so that member would train twice ({allowed})")


def load(path) -> dict:
    """``{"algorithm", "config", "hparams_settings", "seeds", "options"}`` from ``path`` (each may
    be None when the file leaves it out); ConfigError in one line for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config={str(path)!r} is not allowed: no such file")
    try:
        content = _parse(path)
    except ConfigError:
        raise
    except Exception as error:  # tomllib/yaml/json all raise their own error types
        raise ConfigError(f"--config={str(path)!r} is not allowed: cannot be parsed "
                          f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"--config={str(path)!r} is not allowed: the file must hold a table/mapping "
                          f"with keys among {list(TOP_LEVEL)}")
    unknown = sorted(set(content) - set(TOP_LEVEL) - set(RECORD_ONLY))
    if unknown:
        raise ConfigError(f"--config={str(path)!r} is not allowed: unknown key(s) {unknown}; "
                          f"allowed: {list(TOP_LEVEL)}")
    for key in ("config", "hparams", "options"):
        if content.get(key) is not None and not isinstance(content[key], dict):
            raise ConfigError(f"--config {path}: {key}={content[key]!r} is not allowed: a table of "
                              "field = value")
    settings = content.get("hparams_settings")
    if settings is None and content.get("hparams") is not None:
        settings = [content["hparams"]]
    if settings is not None and not (isinstance(settings, list) and all(isinstance(s, dict) for s in settings)):
        raise ConfigError(f"--config {path}: hparams_settings is not allowed: a list of tables")
    seeds = content.get("seeds")
    if _is_int(seeds):
        if not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"--config {path}: seeds={seeds!r} is not allowed: a count in "
                              f"[1, {MAX_SEEDS}] or a list of distinct integers in [0, 2^32)")
        seeds = list(range(seeds))
    if seeds is not None:
        check_seed_list(seeds, f"--config {path}: seeds")
    return {"algorithm": content.get("algorithm"), "config": dict(content.get("config") or {}),
            "hparams_settings": settings, "seeds": seeds, "options": content.get("options"),
            "sweep": _sweep_table(content.get("sweep"), path)}


def _sweep_table(table, path) -> dict | None:
    """A file's ``[sweep]`` table as ``--sweep`` texts: ``key = "SPEC"`` (any ``--sweep`` form:
    ``"log:1e-4:1e-2:5"``, ``"loguniform:1e-5:1e-2"``, …) or ``key = [v1, v2]`` (a grid), plus
    ``samples`` and ``sweep_seed``."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"--config {path}: sweep={table!r} is not allowed: a table of key = "
                          "\"SPEC\" or key = [values], with optional samples and sweep_seed")
    axes = []
    for key, value in table.items():
        if key in SWEEP_OPTIONS:
            continue
        if isinstance(value, list) and value and all(_is_scalar(v) for v in value):
            axes.append(f"{key}=" + ",".join(repr(v) if isinstance(v, float) else str(v) for v in value))
        elif isinstance(value, str):
            axes.append(f"{key}={value}")
        else:
            raise ConfigError(f"--config {path}: sweep.{key}={value!r} is not allowed: a --sweep "
                              "SPEC string (e.g. \"log:1e-4:1e-2:5\") or a non-empty list of values")
    for key in SWEEP_OPTIONS:
        value = table.get(key)
        if value is not None and not (_is_int(value) and value >= (1 if key == "samples" else 0)):
            raise ConfigError(f"--config {path}: sweep.{key}={value!r} is not allowed: "
                              + ("a positive integer" if key == "samples" else "an integer ≥ 0"))
    return {"axes": axes, "samples": table.get("samples"), "sweep_seed": table.get("sweep_seed")}


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)
