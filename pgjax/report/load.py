"""Loading run folders: config, metrics, evaluations, summary and status, aligned per member
(a member is one seed of one hyperparameter setting), and grouped by setting."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgjax.config_error import ConfigError
from pgjax.run import saved
from pgjax.run.folder import read_status


# Row keys that say which member and which point a row is, rather than being a metric.
_LABEL_KEYS = frozenset({"seed", "member", "update", "env_steps", "greedy", "algorithm", "diverged"})


def _is_label_key(key: str) -> bool:
    return key in _LABEL_KEYS or key.startswith("hp_")


def _member_key(label: dict):
    """A population member's identity: its ``member`` index, or its seed where rows have no ``member`` field."""
    return label["member"] if "member" in label else label.get("seed")


def _member_label(row: dict) -> dict:
    """The part of a row that names its member: seed, member index, swept ``hp_*`` values."""
    return {k: v for k, v in row.items() if k in ("seed", "member") or k.startswith("hp_")}


@dataclass
class RunData:
    """One run directory, loaded. Curves are ``[num_members, num_points]`` with NaN for gaps;
    a member is one seed of one hyperparameter setting (where rows have no ``member`` field: one seed)."""

    name: str
    path: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # label of each array row: seed, member, hp_*
    env_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))        # [num_points]
    metrics: dict = field(default_factory=dict)                               # name -> [M, P]
    eval_env_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))   # [num_evals]
    eval: dict = field(default_factory=dict)                                  # name -> [M, E]
    skipped_lines: int = 0  # unreadable lines (e.g. a line cut short while the run was writing)
    status: dict = field(default_factory=dict)  # status.json (pgjax.run.folder.read_status)

    @property
    def state(self) -> str:
        """completed / interrupted / diverged / running / killed / failed; a folder without
        status.json counts as completed when it has summary.json."""
        return self.status.get("status") or ("completed" if self.summary else "unknown")

    @property
    def diverged_members(self) -> list[dict]:
        return list(self.summary.get("diverged") or self.status.get("diverged") or [])

    @property
    def seeds(self) -> list:
        return [label.get("seed") for label in self.members]

    @property
    def algorithm(self) -> str:
        return self.config.get("algorithm") or self.summary.get("algorithm") or "?"

    @property
    def env_id(self) -> str:
        return (self.config.get("config") or {}).get("env_id") or self.summary.get("env_id") or "?"


@dataclass(frozen=True)
class Setting:
    """The members of a run that share one hyperparameter setting (they differ only by seed)."""

    label: str              # "" when the run has one setting, else e.g. "learning_rate=0.001"
    rows: tuple[int, ...]   # their rows in the run's arrays


def settings(run: RunData) -> list[Setting]:
    """Group ``run``'s members by their swept hyperparameters (``hp_*``), in order of appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, label in enumerate(run.members):
        key = tuple(sorted((k[3:], v) for k, v in label.items() if k.startswith("hp_")))
        groups.setdefault(key, []).append(i)
    if not groups:
        return [Setting("", ())]
    return [Setting(", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                              for k, v in key), tuple(rows)) for key, rows in groups.items()]


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``, or ``{}`` when it is missing or unreadable."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _read_record(run_dir: Path) -> dict:
    """The run's ``config.json`` through :func:`pgjax.run.saved.read_record` (the one reader that
    ``--resume``, ``pgjax eval`` and ``pgjax episodes`` use too). A record that reader refuses
    (missing, cut short, lacking fields) is read leniently instead, ``{}`` at worst: a report
    still shows what a broken run logged."""
    try:
        return saved.read_record(run_dir)
    except ConfigError:
        return _read_json(Path(run_dir) / "config.json")


def _read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a JSON-lines file (``[]`` if missing) and how many lines could not be parsed."""
    try:
        text = Path(path).read_text()
    except OSError:
        return [], 0
    rows, skipped = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped += 1
    return rows, skipped


def _as_float(value) -> float:
    """A JSON scalar as float: ``null`` (and anything non-numeric) becomes NaN."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    return math.nan


def _is_number_or_null(value) -> bool:
    return value is None or isinstance(value, (bool, int, float))


def align_rows(rows: Sequence[dict], members: Sequence[dict] = (),
               steps_per_point: float | None = None
               ) -> tuple[list[dict], np.ndarray, dict[str, np.ndarray]]:
    """Arrange per-member rows into ``[num_members, num_points]`` arrays aligned on ``env_steps``.

    Rows belong to the member named by their ``member`` index (rows without one: their ``seed``);
    members come in the order of ``members`` (label dicts), then of first appearance. A point is
    keyed by ``(env_steps, update)`` when rows carry an ``update`` number, otherwise by
    ``(env_steps, k)`` where ``k`` counts the member's earlier rows with the same ``env_steps``
    (so updates that reuse a batch stay apart). A repeated key (a resumed run rewriting the
    updates after its checkpoint) keeps the last row. Rows without ``env_steps`` use their
    position within the member times ``steps_per_point`` (or 1). Numeric keys other than the
    labels (``seed``, ``member``, ``update``, ``env_steps``, ``greedy``, ``hp_*``) are metrics;
    missing or ``null`` values are NaN.

    Returns ``(members, env_steps [P], {name: [M, P]})``.
    """
    members = [dict(label) for label in members]
    row_of = {_member_key(label): i for i, label in enumerate(members)}
    for row in rows:
        if _member_key(row) not in row_of:
            row_of[_member_key(row)] = len(members)
            members.append(_member_label(row))
    position = dict.fromkeys(row_of, 0)
    repeats: dict = {}
    keyed: dict = {}
    for row in rows:
        member = _member_key(row)
        steps = row.get("env_steps")
        if not isinstance(steps, (int, float)) or isinstance(steps, bool):
            steps = (position[member] + 1) * (steps_per_point or 1)
        position[member] += 1
        if isinstance(row.get("update"), int):
            tie = row["update"]
        else:
            tie = repeats.get((member, steps), 0)
            repeats[(member, steps)] = tie + 1
        keyed[(member, (steps, tie))] = row
    points = sorted({point for _, point in keyed})
    column = {point: j for j, point in enumerate(points)}
    names = sorted({k for row in rows for k, v in row.items()
                    if not _is_label_key(k) and _is_number_or_null(v)})
    arrays = {name: np.full((len(members), len(points)), np.nan) for name in names}
    for (member, point), row in keyed.items():
        i, j = row_of[member], column[point]
        for name in names:
            arrays[name][i, j] = _as_float(row.get(name))
    env_steps = np.array([steps for steps, _ in points], dtype=np.float64)
    return members, env_steps, arrays


def _declared_members(config: dict, summary: dict) -> list[dict]:
    """Members named by ``config.json`` (``members``, in member order) or else its ``seeds``."""
    declared = config.get("members") or summary.get("members")
    if isinstance(declared, list) and declared and all(isinstance(m, dict) for m in declared):
        labels = [_member_label(m) for m in declared]
        return sorted(labels, key=lambda m: m.get("member", 0))
    return [{"seed": seed} for seed in (config.get("seeds") or summary.get("seeds") or [])]


def load_run(run_dir) -> RunData:
    """Load ``run_dir``: missing files give empty parts, ``null`` numbers NaN (see :func:`align_rows`).
    A study of several programs (:mod:`pgjax.run.programs`) loads as one run whose members are all
    its programs' members, each labelled with its static values (:func:`load_study`)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run directory {str(path)!r} does not exist")
    if (path / "study.json").is_file():
        return load_study(path)
    config = _read_record(path)
    summary = _read_json(path / "summary.json")
    train_rows, skipped_train = _read_jsonl(path / "metrics.jsonl")
    eval_rows, skipped_eval = _read_jsonl(path / "eval.jsonl")
    members, env_steps, metrics = align_rows(train_rows, _declared_members(config, summary),
                                             config.get("steps_per_update"))
    members, eval_steps, evals = align_rows(eval_rows, members)  # may add members seen only there
    metrics = {k: _pad_rows(v, len(members)) for k, v in metrics.items()}
    return RunData(name=path.resolve().name, path=path, config=config, summary=summary,
                   members=members, env_steps=env_steps, metrics=metrics,
                   eval_env_steps=eval_steps, eval=evals,
                   skipped_lines=skipped_train + skipped_eval, status=read_status(path))


def load_study(path: Path) -> RunData:
    """A study folder as one run: every program folder's metrics and evaluation rows, each member
    renumbered study-wide and labelled with its static values and swept hyperparameters (a
    halving study's setting continues from rung to rung: its rows from every rung it reached)."""
    study = saved.read_study_checked(path)
    folders, mapping = saved.study_member_mapping(path, study)
    labels = [_member_label(label) for label in saved.study_member_labels(study)]
    train_rows, eval_rows, skipped = [], [], 0
    for folder, members in zip(folders, mapping):
        for name, into in (("metrics.jsonl", train_rows), ("eval.jsonl", eval_rows)):
            rows, bad = _read_jsonl(folder / name)
            skipped += bad
            into += [{**{k: v for k, v in row.items() if not k.startswith("hp_")},
                      **labels[members[row["member"]]]} for row in rows
                     if isinstance(row.get("member"), int) and row["member"] < len(members)]
    members, env_steps, metrics = align_rows(train_rows, labels)
    members, eval_steps, evals = align_rows(eval_rows, members)
    first = study["programs"][0]["spec"]
    # the hyperparameters' spacing as recorded; a static key's is read from its values
    config = {**first, "members": labels, "study_kind": study["kind"]}
    return RunData(name=path.resolve().name, path=path, config=config,
                   summary=_read_json(path / "summary.json"), members=members, env_steps=env_steps,
                   metrics={k: _pad_rows(v, len(members)) for k, v in metrics.items()},
                   eval_env_steps=eval_steps, eval=evals, skipped_lines=skipped,
                   status=read_status(path))


def _pad_rows(array: np.ndarray, num_rows: int) -> np.ndarray:
    """Append NaN rows so ``array`` has ``num_rows`` rows."""
    missing = num_rows - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.full((missing, array.shape[1]), np.nan)], axis=0)



def run_labels(paths: Sequence) -> list[str]:
    """Each run's directory name; ``parent/name`` where two runs share a name."""
    names = [Path(p).resolve().name for p in paths]
    return [f"{Path(p).resolve().parent.name}/{n}" if names.count(n) > 1 else n
            for p, n in zip(paths, names)]


def report_entries(runs: Sequence[RunData], labels: Sequence[str]) -> list[tuple]:
    """``(label, run, setting)`` for every hyperparameter setting of every run; a run with several
    settings gets one entry per setting, labelled ``name [setting]``."""
    return [(f"{label} [{setting.label}]" if setting.label else label, run, setting)
            for run, label in zip(runs, labels) for setting in settings(run)]


