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
    [options]                      # run options (evaluation, checkpoints), as the flags name them
    eval_episodes = 100

Every section is optional except ``algorithm`` (or the ALGO argument). :func:`load` returns the
file's content normalised to that shape, refusing unknown keys with the allowed ones named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgjax.config import ConfigError

TOP_LEVEL = ("algorithm", "seeds", "config", "hparams", "hparams_settings", "options")
# written by the runner into config.json; read back as information only
RECORD_ONLY = ("members", "device", "num_updates", "steps_per_update", "max_chunk", "chunk")


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
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds)) if seeds > 0 else seeds
    if seeds is not None and not (isinstance(seeds, list) and seeds
                                  and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise ConfigError(f"--config {path}: seeds={content.get('seeds')!r} is not allowed: a "
                          "positive count or a non-empty list of integers ≥ 0")
    return {"algorithm": content.get("algorithm"), "config": dict(content.get("config") or {}),
            "hparams_settings": settings, "seeds": seeds, "options": content.get("options")}
