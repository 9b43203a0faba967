"""What a run or study folder saved, read back with the standard library alone (no JAX, no flax):
the one reader of ``config.json`` and ``study.json`` that the host side (resume, ``pgjax eval``,
``pgjax episodes``, studies) and the report share, and the member labels both derive from them.

    config.json   {"algorithm", "config", "seeds", "hparams" or "hparams_settings", "options", …}
    study.json    {"kind": "static" | "halving", "programs": [{"name", "static", "spec"}],
                   "rung_ends", "rungs": [{"settings", …}] (halving, as far as it ran)}
"""

from __future__ import annotations

import json
from pathlib import Path

from pgjax.config_error import ConfigError, require
from pgjax.run.spec_file import check_seed_list

REQUIRED_KEYS = ("algorithm", "config", "seeds")
STUDY_FILE, PROGRAMS_DIR = "study.json", "programs"
STATIC, HALVING = "static", "halving"


def read_record(run_dir: Path) -> dict:
    """A run folder's ``config.json``, checked enough to be used: ConfigError (one line) when it is
    missing, empty, not JSON or lacks what every run writes."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"run_dir={str(run_dir)!r} is not allowed: no config.json there (not a run folder)")
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path} is not allowed: not readable JSON ({error}); it must be the "
                          "config.json a run wrote") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing or ("hparams" not in saved and "hparams_settings" not in saved):
        raise ConfigError(f"{path} is not allowed: it lacks {missing or ['hparams']}; it must be "
                          "the config.json a run wrote")
    check_seed_list(saved["seeds"], f"{path}: seeds")
    require(isinstance(saved["config"], dict), f"{path}: config", saved["config"], "a JSON object")
    return saved


def settings_of(record: dict) -> list[dict]:
    """The hyperparameter settings of a run's record, ``{name: value}`` each."""
    return list(record.get("hparams_settings") or [record.get("hparams") or {}])


def swept_fields(settings: list[dict]) -> list[str]:
    """The hyperparameters whose value differs between settings, in declaration order."""
    if len(settings) < 2:
        return []
    return [k for k in settings[0] if any(s.get(k) != settings[0][k] for s in settings[1:])]


def member_labels(seeds, settings: list[dict]) -> list[dict]:
    """Members = settings × seeds, setting-major: ``{"seed", "member", "hp_<name>": value}`` for
    every swept hyperparameter."""
    swept = swept_fields(settings)
    return [{"seed": seed, "member": i, **{f"hp_{k}": values[k] for k in swept}}
            for i, (values, seed) in enumerate((v, s) for v in settings for s in seeds)]


def read_study(run_dir: Path) -> dict:
    """``study.json`` as written (with the rungs run so far), ``{}`` when unreadable."""
    try:
        return json.loads((Path(run_dir) / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return {}


def read_study_checked(run_dir: Path) -> dict:
    """:func:`read_study`, refused (ConfigError, one line) unless it holds a study's kind and
    programs."""
    study = read_study(run_dir)
    programs = study.get("programs") if isinstance(study, dict) else None
    if not (study.get("kind") in (STATIC, HALVING) and isinstance(programs, list) and programs
            and all(isinstance(p, dict) and {"name", "static", "spec"} <= set(p) for p in programs)):
        raise ConfigError(f"{Path(run_dir) / STUDY_FILE} is not allowed: not the study.json a study wrote")
    return study


def static_value(text: str):
    """A static value as the labels hold it: a number when it is one, else the text."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def study_member_labels(study: dict) -> list[dict]:
    """Every member of a study record, numbered study-wide: seed, member, the swept
    hyperparameters and static values (``hp_*``), its algorithm and (static sweeps) program."""
    programs = study["programs"]
    if study["kind"] == HALVING:
        spec = programs[0]["spec"]
        return [{**label, "algorithm": spec["algorithm"]}
                for label in member_labels(spec["seeds"], settings_of(spec))]
    labels = []
    for program in programs:
        spec = program["spec"]
        for label in member_labels(spec["seeds"], settings_of(spec)):
            labels.append({"seed": label["seed"], "member": len(labels),
                           **{f"hp_{k}": static_value(v) for k, v in program["static"].items()},
                           **{k: v for k, v in label.items() if k.startswith("hp_")},
                           "algorithm": spec["algorithm"], "program": program["name"]})
    return labels


def study_folders(run_dir: Path, study: dict) -> list[Path]:
    """The program folders of a study as far as it ran (halving: one per rung reached)."""
    if study["kind"] == HALVING:
        return [Path(run_dir) / PROGRAMS_DIR / f"rung{r}" for r in range(max(len(study.get("rungs") or []), 1))]
    return [Path(run_dir) / PROGRAMS_DIR / p["name"] for p in study["programs"]]


def study_member_mapping(run_dir: Path, study: dict) -> tuple[list[Path], list[list[int]]]:
    """(program folders, the study-wide member index of each folder's members) of a study as far
    as it ran: what a reader needs to put the folders' rows together."""
    folders = study_folders(run_dir, study)
    programs = study["programs"]
    if study["kind"] == STATIC:
        mapping, start = [], 0
        for program in programs:
            size = len(program["spec"]["seeds"]) * len(settings_of(program["spec"]))
            mapping.append(list(range(start, start + size)))
            start += size
        return folders, mapping
    seeds = len(programs[0]["spec"]["seeds"])
    rungs = study.get("rungs") or [{"settings": list(range(len(settings_of(programs[0]["spec"]))))}]
    return folders, [[g * seeds + s for g in r["settings"] for s in range(seeds)] for r in rungs]
