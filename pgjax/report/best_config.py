"""The best setting of a sweep as a settings file that reruns it: ``pgjax report RUN
--best-config FILE``, then ``pgjax train --config FILE``.

The file has the shape :mod:`pgjax.run.spec_file` reads (``algorithm``, ``seeds``, ``[config]``,
``[hparams]``, ``[options]``): the run's algorithm, static config, seeds and run options, and the
full hyperparameter table of the best setting by final evaluation return
(:func:`pgjax.report.sweep.rank`). TOML or JSON by the file's suffix; TOML is written here for
these flat tables (no library), leaving out the ``null`` values TOML cannot hold, which are the
run options' defaults.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from pgjax.report.load import RunData, settings
from pgjax.report.sweep import rank, score_settings

SUFFIXES = (".toml", ".json")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _refuse(message: str) -> None:
    from pgjax.config_error import ConfigError
    raise ConfigError(message)


def check_path(path) -> Path:
    """``path`` as a place to write the best setting: a ``.toml`` or ``.json`` file in an existing
    folder; ConfigError otherwise (before anything is written)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        _refuse(f"--best-config={str(path)!r} is not allowed: a .toml or .json file")
    if path.is_dir():
        _refuse(f"--best-config={str(path)!r} is not allowed: a file (this is a directory)")
    if not path.parent.is_dir():
        _refuse(f"--best-config={str(path)!r} is not allowed: its folder {str(path.parent)!r} "
                "does not exist")
    return path


def best_record(run: RunData) -> tuple[dict, str]:
    """``(settings file content, label of the setting)`` of ``run``'s best setting by final
    evaluation return (its only setting when it swept nothing)."""
    config = run.config
    missing = [k for k in ("algorithm", "config", "seeds") if k not in config]
    tables = config.get("hparams_settings") or ([config["hparams"]] if config.get("hparams") else [])
    if missing or not tables:
        _refuse(f"{run.path / 'config.json'} is not allowed: it lacks "
                f"{missing or ['hparams_settings']}, so the best setting cannot be rerun from it")
    groups = settings(run)
    if len(groups) == 1:
        return _record(config, tables[0]), groups[0].label
    best = rank(score_settings(run), "final")[0]
    if not best.estimate.n:
        _refuse(f"--best-config: no setting of {run.name} has a final evaluation yet, so none "
                "is best")
    values = best.score.values
    if config.get("study_kind"):  # a study: the best setting's program holds its config
        config, values = _program_of(run, values)
        tables = config["hparams_settings"]
    matching = [t for t in tables if _matches(t, values)]
    if len(matching) != 1:
        _refuse(f"{run.path / 'config.json'}: {len(matching)} entries of hparams_settings match "
                f"the best setting {best.score.label}; expected one")
    return _record(config, matching[0]), best.score.label


def _matches(table: dict, values: dict) -> bool:
    """Whether ``table`` has the swept ``values`` (float32 round trips allowed for)."""
    return all(isinstance(table.get(k), (int, float)) and math.isclose(table[k], v, rel_tol=1e-6)
               for k, v in values.items())


def _program_of(run: RunData, values: dict) -> tuple[dict, dict]:
    """(config.json record of the program where the study's setting ``values`` trained last, the
    swept hyperparameters among ``values``): a static value is part of that program's config."""
    from pgjax.run import programs  # the study's own reading of --setting
    from pgjax.run.saved import read_record
    folder, _ = programs.locate(run.path, ",".join(f"{k}={v}" for k, v in values.items()))
    static = (read_record(folder).get("study") or {}).get("static") or {}
    return read_record(folder), {k: v for k, v in values.items() if k not in static}


# Options that act on a whole study, not on the rerun of one setting.
_STUDY_OPTIONS = ("prune", "prune_eta", "prune_rungs", "pbt", "pbt_fraction", "pbt_resample")


def _record(config: dict, hparams: dict) -> dict:
    options = {k: v for k, v in (config.get("options") or {}).items()
               if v is not None and k not in _STUDY_OPTIONS}
    return {"algorithm": config["algorithm"], "seeds": list(config["seeds"]),
            "config": config["config"], "hparams": dict(hparams), "options": options}


def write_best_config(run: RunData, path) -> tuple[Path, str]:
    """Write ``run``'s best setting to ``path`` (:func:`check_path`); returns the path and the
    setting's label."""
    path = check_path(path)
    record, label = best_record(run)
    write_record(path, record, f"best setting of run {run.name}" + (f" ({label})" if label else ""))
    return path, label


def write_record(path: Path, record: dict, what: str) -> None:
    """``record`` as JSON or TOML by ``path``'s suffix (TOML with a comment saying ``what``)."""
    if path.suffix.lower() == ".json":
        text = json.dumps(record, indent=2) + "\n"
    else:
        text = f"# The {what}: pgjax train --config {path.name}\n" + to_toml(record)
    path.write_text(text)


# --------------------------------------------------------------------------- TOML

def to_toml(table: dict) -> str:
    """``table`` as TOML 1.0: values (strings, booleans, integers, floats, arrays of them) first,
    then each sub-table under its ``[dotted.header]``. ``None`` (TOML has no null) is left out of
    a table and refused inside an array."""
    return "".join(_table_lines(table, ()))


def _table_lines(table: dict, path: tuple) -> list[str]:
    lines = [f"[{'.'.join(_key(p) for p in path)}]\n"] if path else []
    nested = []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((key, value))
        elif value is not None:
            lines.append(f"{_key(key)} = {_value(value, path + (key,))}\n")
    for key, value in nested:
        lines += ["\n"] + _table_lines(value, path + (key,))
    return lines


def _key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML basic-string escapes; DEL must be escaped in TOML, not in JSON
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")


def _value(value, where: tuple) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    _refuse(f"--best-config: {'.'.join(map(str, where))}={value!r} cannot be written as TOML; "
            "use a .json file")
    return ""  # unreachable
