"""Where a run's numbers go: sinks behind one small interface, fanned out by :class:`FanOut`
(Brax's ``progress_fn`` idea, made a fan-out). A new sink (a database, a dashboard) is one subclass
of :class:`Sink` overriding the events it cares about:

- ``chunk(record)``: the per-update metrics of a chunk (:class:`ChunkRecord`, ``[members, n]``);
- ``evaluation(rows, env_steps)``: one row per member of an evaluation;
- ``progress(snapshot)``: the live state after each chunk (:class:`Progress`);
- ``scalars(values, env_steps)``: run-level numbers (compile time, steps/s);
- ``close()``.

Non-finite numbers are written as JSON ``null``.

**Write failures.** Every sink writes in the caller's thread, and a failed write (disk full, file
too large, an I/O error, a folder turned read-only) raises :class:`WriteFailed` naming the file,
which stops the run (:mod:`pgjax.run.runner`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pgjax.run.records import ChunkRecord, Progress  # noqa: F401 - the sinks' events, re-exported
from pgjax.run.thinning import setting_statistics


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return to_jsonable(array.tolist()) if array.ndim else to_jsonable(array.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class WriteFailed(Exception):
    """A file of the run folder could not be written: ``cannot write PATH: [Errno N] reason``."""

    def __init__(self, path: Path, error: BaseException):
        self.path, self.error = Path(path), error
        super().__init__(f"cannot write {path}: {describe_error(error)}")


_TENSORSTORE_OS_ERROR = re.compile(r"([^:\[\]]+?) \[os_error_code='(\d+)'\]")


def describe_error(error: BaseException) -> str:
    """``[Errno 27] File too large`` for an OSError, and for the same error reported by
    tensorstore inside a ValueError; else the error's first line, without tensorstore's spec."""
    if isinstance(error, OSError) and error.errno is not None:
        return f"[Errno {error.errno}] {error.strerror or os.strerror(error.errno)}"
    text = str(error)
    found = _TENSORSTORE_OS_ERROR.search(text)
    if found:
        return f"[Errno {found.group(2)}] {os.strerror(int(found.group(2)))}"
    text = text.split(" [tensorstore_spec")[0].splitlines()[0] if text else type(error).__name__
    code = re.match(r"[A-Z_]+: ", text)
    if code and '": ' in text:  # tensorstore's "CODE: context: context: what went wrong"
        text = code.group(0) + text.rsplit('": ', 1)[1]
    return text if len(text) <= 300 else text[:300] + "…"


@contextlib.contextmanager
def writing(path: Path):
    """Turn an OSError raised inside the block into :class:`WriteFailed` naming ``path``."""
    try:
        yield
    except OSError as error:
        raise WriteFailed(path, error) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file and ``os.replace`` so a reader never sees half a
    file; :class:`WriteFailed` (and no temporary file left) when it cannot be written."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with writing(path):
            tmp.write_text(text)
            os.replace(tmp, path)
    except WriteFailed:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """``payload`` as JSON, through :func:`write_text_atomic`."""
    write_text_atomic(path, json.dumps(to_jsonable(payload), indent=2, sort_keys=True))


class Sink:
    """One destination of a run's numbers; every event is a no-op unless overridden."""

    def chunk(self, record: ChunkRecord) -> None:
        pass

    def evaluation(self, rows: list[dict], env_steps: int) -> None:
        pass

    def progress(self, snapshot: Progress) -> None:
        pass

    def scalars(self, values: dict[str, float], env_steps: int) -> None:
        pass

    def flush(self) -> None:
        """Write what is held back (before a checkpoint and at the end of the run)."""

    def close(self) -> None:
        pass


class FanOut(Sink):
    """Hands every event to each of its sinks, in order."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = list(sinks)

    def chunk(self, record):
        for sink in self.sinks:
            sink.chunk(record)

    def evaluation(self, rows, env_steps):
        for sink in self.sinks:
            sink.evaluation(rows, env_steps)

    def progress(self, snapshot):
        for sink in self.sinks:
            sink.progress(snapshot)

    def scalars(self, values, env_steps):
        for sink in self.sinks:
            sink.scalars(values, env_steps)

    def flush(self):
        for sink in self.sinks:
            sink.flush()

    def close(self):
        close_all(self.sinks)


def close_all(closables) -> None:
    """Close each of ``closables``, then raise the first :class:`WriteFailed`, if any."""
    failures = []
    for thing in closables:
        try:
            thing.close()
        except WriteFailed as failure:
            failures.append(failure)
    if failures:
        raise failures[0]


class JsonlFile(Sink):
    """Appends one JSON object per line (``write``), line-buffered so each line reaches the file
    (or fails) at once; the base of the three files below."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)

    def write(self, row: dict) -> None:
        self._append(json.dumps(to_jsonable(row), sort_keys=True) + "\n")

    def _append(self, text: str) -> None:
        with writing(self.path):
            self._file.write(text)

    def close(self):
        """Close the file; a line the failed write left in the buffer is given up (WriteFailed)."""
        with writing(self.path):
            self._file.close()


class MetricsFile(JsonlFile):
    """``metrics.jsonl``: a line per row and member, row-major, with the member's labels (seed,
    hyperparameters), ``update`` (1-based, the row's last), ``span`` (updates in the row, when more
    than one) and any marks (``diverged``). With ``stride`` > 1 only every stride-th row, and the
    latest one at a flush, is written (a large population; :mod:`pgjax.run.thinning`)."""

    def __init__(self, path: Path, stride: int = 1):
        super().__init__(path)
        self.stride, self.rows_seen, self.held = stride, 0, []

    def chunk(self, record: ChunkRecord) -> None:
        names = sorted(record.metrics)
        spans = record.spans()
        lines = []
        for k in range(record.live.shape[1]):
            self.rows_seen += 1
            extra = {"span": int(spans[k])} if spans[k] > 1 else {}
            row_lines = [json.dumps(to_jsonable({
                **label, "update": int(record.updates[k]), **extra, **record.marks.get((m, k), {}),
                **{name: record.metrics[name][m, k] for name in names}}), sort_keys=True)
                for m, label in enumerate(record.labels) if record.live[m, k]]
            if self.rows_seen % self.stride:
                self.held = row_lines  # written at the next flush unless a later row comes first
            else:
                lines += row_lines
                self.held = []
        self._write(lines)

    def flush(self) -> None:
        self._write(self.held)
        self.held = []

    def _write(self, lines: list[str]) -> None:
        if lines:
            self._append("\n".join(lines) + "\n")


class SettingsFile(JsonlFile):
    """``metrics_settings.jsonl``: a line per row and hyperparameter setting with every metric
    summarised over the setting's live seeds (``<metric>/mean``, ``/min``, ``/q25``, ``/median``,
    ``/q75``, ``/max``) and ``members``, how many seeds are live."""

    def __init__(self, path: Path, groups: list[list[int]], setting_labels: list[dict]):
        super().__init__(path)
        self.groups, self.setting_labels = groups, setting_labels

    def chunk(self, record: ChunkRecord) -> None:
        names = sorted(set(record.metrics) - {"env_steps"})
        hidden = record.hidden()
        stats = {name: setting_statistics(hidden[name], self.groups) for name in names}
        env_steps, spans = record.metrics["env_steps"], record.spans()
        for k in range(record.live.shape[1]):
            for g, (group, label) in enumerate(zip(self.groups, self.setting_labels)):
                live = int(record.live[group, k].sum())
                if not live:
                    continue
                row = {**label, "update": int(record.updates[k]), "span": int(spans[k]),
                       "env_steps": int(env_steps[group[0], k]), "members": live}
                row.update({f"{name}/{stat}": values[g, k] for name in names
                            for stat, values in stats[name].items()})
                self.write(row)


class EvalFile(JsonlFile):
    """``eval.jsonl``: a line per evaluation and member."""

    def evaluation(self, rows: list[dict], env_steps: int) -> None:
        for row in rows:
            self.write(row)


def _eval_scalars(row: dict) -> dict[str, float]:
    return {"eval/return_mean": row["eval_return_mean"], "eval/return_std": row["eval_return_std"],
            "eval/length_mean": row["eval_length_mean"]}


class EventFile:
    """One TensorBoard event file (tensorboardX's record format), written in the caller's thread so
    that a failed write raises :class:`WriteFailed` there. (tensorboardX's ``SummaryWriter`` hands
    events to a thread of its own: a write error ends that thread, and the next event then waits
    forever on its full queue, deaf to signals.) A ``purge_step`` tells TensorBoard to drop the
    events an earlier process logged after it (a resumed run)."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        self.path = Path(folder)
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            self._writer = EventsWriter(str(self.path / "events"))
        self.path = Path(getattr(self._writer, "_file_name", self.path))  # the file, for messages
        if purge_step is not None:
            self._write(Event(step=purge_step, file_version="brain.Event:2"))
            self._write(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar
        self._write(Event(wall_time=time.time(), step=int(step), summary=scalar(tag, float(value))))

    def hparams_start(self, values: dict, metric_tags: list[str]) -> None:
        """Make this folder an HParams session with these hyperparameter ``values`` (the
        experiment's description, naming them and ``metric_tags``, goes with it)."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import hparams
        experiment, start, _ = hparams(values, {tag: 0.0 for tag in metric_tags})
        for summary in (experiment, start):
            self._write(Event(wall_time=time.time(), summary=summary))

    def hparams_end(self) -> None:
        """Mark the HParams session of this folder as ended."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import hparams
        self._write(Event(wall_time=time.time(), summary=hparams({}, {})[2]))

    def _write(self, event) -> None:
        with writing(self.path):
            self._writer.write_event(event)

    def flush(self) -> None:
        with writing(self.path):
            self._writer.flush()

    def close(self) -> None:
        with writing(self.path):
            self._writer.close()


class TensorBoard(Sink):
    """TensorBoard event folders, scalars against environment steps, TensorFlow not needed.

    A population of at most ``max_writers`` members gets a folder per member: ``tb/seed<k>``, or
    ``tb/<setting>/seed<k>`` for a sweep, where ``<setting>`` names the swept values
    (``learning_rate=0.0003,clip_eps=0.2``). A larger one gets a folder per setting, ``tb/<setting>``,
    holding the mean, min and max over its seeds of every training and evaluation metric. Every
    folder is also an HParams session (its swept values, and the seed where a folder is one
    member; the metric is ``eval/return_mean``), so TensorBoard's HParams table and
    parallel-coordinates views compare the settings. Each event file is written synchronously
    (:class:`EventFile`) and flushed after every event of the run, so a chunk's numbers are on
    disk, or the write has failed, before the next chunk."""

    METRIC = "eval/return_mean"  # the HParams metric: the latest evaluation's mean return

    def __init__(self, root: Path, member_seeds: list[int], purge_step: int | None = None,
                 groups: list[list[int]] | None = None, max_writers: int = 64,
                 setting_names: list[str] | None = None, setting_values: list[dict] | None = None):
        groups = groups or [list(range(len(member_seeds)))]
        setting_names = setting_names or [f"setting{g}" for g in range(len(groups))]
        setting_values = setting_values or [{} for _ in groups]
        self.groups = groups if len(member_seeds) > max_writers else None
        if self.groups is None:
            setting_of = {m: g for g, group in enumerate(groups) for m in group}
            folders = [(f"{setting_names[setting_of[m]]}/" if len(groups) > 1 else "") + f"seed{seed}"
                       for m, seed in enumerate(member_seeds)]
            sessions = [{**setting_values[setting_of[m]], "seed": seed} for m, seed in enumerate(member_seeds)]
        else:
            folders, sessions = list(setting_names), [dict(v) for v in setting_values]
        self.writers = [EventFile(Path(root) / folder, purge_step) for folder in folders]
        for writer, values in zip(self.writers, sessions):
            writer.hparams_start(values or {"setting": 0}, [self.METRIC])
        self.flush()

    def _per_folder(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """``{suffix: [folders, ...]}``: each member's values, or each setting's mean/min/max."""
        if self.groups is None:
            return {"": values}
        stats = setting_statistics(values, self.groups)
        return {f"/{stat}" if stat != "mean" else "": stats[stat] for stat in ("mean", "min", "max")}

    def chunk(self, record: ChunkRecord) -> None:
        env_steps = record.metrics["env_steps"]
        if self.groups is not None:
            env_steps = env_steps[[group[0] for group in self.groups]]
        for name, values in record.hidden().items():
            if name == "env_steps":
                continue
            for suffix, folders in self._per_folder(values).items():
                for writer, row, steps in zip(self.writers, folders, env_steps):
                    for value, step in zip(row, steps):
                        if math.isfinite(value):
                            writer.scalar(f"train/{name}{suffix}", value, int(step))
        self.flush()

    def evaluation(self, rows: list[dict], env_steps: int) -> None:
        scalars = [_eval_scalars(row) for row in rows]
        for tag in scalars[0]:
            values = np.array([[np.nan if s[tag] is None else s[tag]] for s in scalars], np.float64)
            for suffix, folders in self._per_folder(values).items():
                for writer, (value,) in zip(self.writers, folders):
                    self._add(writer, {f"{tag}{suffix}": value}, env_steps)
        self.flush()

    def scalars(self, values: dict[str, float], env_steps: int) -> None:
        for writer in self.writers:
            self._add(writer, values, env_steps)
        self.flush()

    @staticmethod
    def _add(writer, values, env_steps):
        for name, value in values.items():
            if value is not None and math.isfinite(float(value)):
                writer.scalar(name, float(value), int(env_steps))

    def flush(self):
        for writer in self.writers:
            writer.flush()

    def close(self):
        for writer in self.writers:
            writer.hparams_end()
        close_all(self.writers)


def _wandb_id(text: str) -> str:
    """``text`` with what a W&B run id may not hold replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


class Wandb(Sink):
    """Weights & Biases (optional; ``pip install 'pgjax[wandb]'``): one W&B run per setting,
    grouped under the study (the run folder's name), its config holding the run's config and the
    setting's swept values; each logs the mean over its seeds of every training metric per update
    and its evaluation's mean, min and max over seeds. A run of one setting is one W&B run named
    as the folder, as before. Several runs in one process need wandb ≥ 0.19.10
    (``reinit="create_new"``)."""

    def __init__(self, project: str, name: str, config: dict, run_dir: Path, groups: list[list[int]],
                 setting_names: list[str], setting_values: list[dict], program: str | None = None):
        """``program``: the program's name when the run is one program of a study of several
        (:mod:`pgjax.run.programs`): its settings are W&B runs of the study, ``name``, named and
        identified by program and setting, so no two programs share a W&B run."""
        import wandb
        self.groups = groups
        one = len(groups) == 1 and program is None
        prefix = name if program is None else f"{name}-{_wandb_id(program)}"
        self.runs = [wandb.init(project=project, group=name, name=name if one else f"{name}/{label}",
                                id=name if one else f"{prefix}-setting{g}",
                                config=to_jsonable({**config, "setting": g, **values}),
                                dir=str(run_dir), resume="allow", reinit="create_new")
                     for g, (label, values) in enumerate(zip(setting_names, setting_values))]

    def _per_setting(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return setting_statistics(values, self.groups)

    def chunk(self, record: ChunkRecord) -> None:
        means = {n: self._per_setting(v)["mean"] for n, v in record.hidden().items() if n != "env_steps"}
        steps = record.metrics["env_steps"][[group[0] for group in self.groups]]
        for g, run in enumerate(self.runs):
            for k, step in enumerate(steps[g]):
                run.log({f"train/{n}": float(v[g, k]) for n, v in means.items() if math.isfinite(v[g, k])},
                        step=int(step))

    def evaluation(self, rows: list[dict], env_steps: int) -> None:
        scalars = [_eval_scalars(row) for row in rows]
        logged = [{} for _ in self.runs]
        for tag in scalars[0]:
            values = np.array([[np.nan if s[tag] is None else s[tag]] for s in scalars], np.float64)
            stats = self._per_setting(values)
            for g, entry in enumerate(logged):
                entry.update({f"{tag}{suffix}": float(stats[stat][g, 0])
                              for stat, suffix in (("mean", ""), ("min", "/min"), ("max", "/max"))
                              if math.isfinite(stats[stat][g, 0])})
        for run, entry in zip(self.runs, logged):
            run.log(entry, step=int(env_steps))

    def scalars(self, values: dict[str, float], env_steps: int) -> None:
        for run in self.runs:
            run.log({k: float(v) for k, v in values.items() if v is not None}, step=int(env_steps))

    def close(self):
        for run in self.runs:
            run.finish()


class ProgressDisplay(Sink):
    """The live line after each chunk: env steps, the latest return (per member, or per setting for
    a sweep), steps/s, ETA and the latest evaluation."""

    def __init__(self, out, groups: list[list[int]] | None = None, setting_names: list[str] | None = None):
        self.out, self.groups, self.setting_names = out, groups, setting_names

    def progress(self, snapshot: Progress) -> None:
        print(progress_line(snapshot, self.groups, self.setting_names), file=self.out, flush=True)


NO_VALUE = "—"  # shown where no episode has ended (or no evaluation has run) yet


def _number(value: float, width: int = 6) -> str:
    return f"{value:{width}.1f}" if np.isfinite(value) else NO_VALUE.rjust(width)


def _quiet_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _spread(values: np.ndarray, names: list[str] | None = None) -> str:
    """``best X (name) median Y worst Z`` of the finite ``values``; — when there are none."""
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return NO_VALUE
    best = finite[np.argmax(values[finite])]
    named = f" ({names[best]})" if names else ""
    return (f"best {values[best]:.1f}{named} median {np.median(values[finite]):.1f} "
            f"worst {values[finite].min():.1f}")


def progress_line(s: Progress, groups: list[list[int]] | None = None,
                  setting_names: list[str] | None = None) -> str:
    """One line of progress. With several settings (``groups``: each setting's members), each
    setting counts by the median over its seeds and the line shows the best, median and worst
    setting, for the training return and the evaluation; otherwise up to 8 members one by one."""
    returns = np.where([m in s.diverged for m in range(len(s.last_returns))], np.nan, s.last_returns)
    if groups is not None and len(groups) > 1:
        per_setting = np.array([_quiet_median(returns[g]) for g in groups])
        part = f"return/setting {_spread(per_setting, setting_names)} of {len(groups)}"
        evals = s.eval_returns
        eval_part = "" if evals is None else (
            " | eval/setting " + _spread(np.array([_quiet_median(evals[g]) for g in groups]), setting_names))
    else:
        if len(returns) <= 8:
            shown = " ".join("  div " if m in s.diverged else _number(r) for m, r in enumerate(s.last_returns))
            part = f"return/member [{shown}]"
        else:
            part = f"return over {len(returns)} members {_spread(returns)}"
        eval_part = "" if s.last_eval is None else f" | eval {_number(s.last_eval, 7)}"
    return (f"  steps {s.env_steps:>10,d}/{s.total_env_steps:,d} | {part} | "
            f"{s.steps_per_second:>9,.0f} steps/s | ETA {s.eta_seconds:6.1f}s{eval_part}")


def jsonl_lines(path: Path) -> tuple[list[tuple[str, dict]], list[int], bool]:
    """(the lines of a JSONL file that hold a JSON object, each with its row; the numbers, 1-based,
    of the other non-empty lines before the last one; whether the last one is cut short). A line
    cut short, by a process killed or a disk that filled while it was written, never parses: the
    prefix of an object is not JSON."""
    kept, damaged, last = [], [], 0
    for number, line in enumerate(Path(path).read_text(errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        last = number
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            kept.append((line, row))
        else:
            damaged.append(number)
    cut_short = bool(damaged) and damaged[-1] == last
    return kept, damaged[:-1] if cut_short else damaged, cut_short


def truncate_jsonl(path: Path, keep) -> None:
    """Atomically rewrite ``path`` keeping the rows for which ``keep(row)`` is true (a resumed run
    drops what was logged after its checkpoint). A last line cut short is dropped; a damaged line
    before it is dropped with a warning naming it."""
    path = Path(path)
    if not path.exists():
        return
    lines, damaged, _ = jsonl_lines(path)
    if damaged:
        warnings.warn(f"{path}: line(s) {damaged} are not JSON rows and were dropped", stacklevel=2)
    write_text_atomic(path, "".join(line + "\n" for line, row in lines if keep(row)))


def wandb_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("wandb") is not None
