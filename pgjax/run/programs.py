"""A study of several compiled programs in one run folder (host side).

A run is one compiled program: settings × seeds vmapped together. Two kinds of study need more
than one program, and run them one after another in one folder:

- **A static sweep.** A ``--sweep`` of a key of the algorithm's static config (``num_envs``,
  ``rollout_length``, ``minibatches``, ``hidden_sizes``, ``activation``, ``torso``, ``env_id``,
  an ``env.FIELD``, …) changes shapes or code, so each combination of static values is its own
  program, in its own run folder ``programs/<values>/``, with the hyperparameter search space
  inside it (the same settings and draws in every program, so static values compare paired).
- **Successive halving** (``prune="halving"``; Jamieson & Talwalkar 2016, with the geometric rung
  schedule of Li et al. 2018, "Hyperband"). Rung r trains the settings still in the study up to
  :func:`pgjax.study.halving.rung_updates`'s r-th end; then only the top ⌈S_r/η⌉ settings by the
  mean over seeds of the evaluation at that point go on. Their members are sliced out of the
  rung's checkpoint into the next rung's folder and train on in a smaller program, so a pruned
  setting costs nothing after its rung. Every rung uses the whole run's schedules (learning-rate
  annealing, evaluation points), so a surviving setting trains exactly as in the full grid.

The study folder::

    study.json        the kind, each program's spec record, the rung ends and each rung's settings
    status.json       running / interrupted / diverged / completed (of the study)
    programs/<name>/  one run folder per program (``pgjax eval``, ``episodes`` work on each)
    summary.json      every setting's final evaluation, labelled with its static values

``pgjax train --resume STUDY`` skips the completed programs and resumes the one that stopped, from
its latest checkpoint; halving recomputes each rung's survivors from that rung's evaluation rows
(fixed evaluation keys), so a resumed study continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgjax import algorithms
from pgjax.config import ConfigError, parse_setting, settings_of
from pgjax.run import folder as run_folder
from pgjax.run import saved as saved_records
from pgjax.run import spec as run_specs
from pgjax.run.loggers import write_json_atomic
from pgjax.run.spec import RunSpec
from pgjax.run.saved import HALVING, PROGRAMS_DIR, STATIC, STUDY_FILE
from pgjax.run.summary import RunResult, summary_table


@dataclass(frozen=True)
class Program:
    """One compiled program of a study: its folder name, the static values it fixes, its spec."""
    name: str
    static: dict   # {key: value text}
    spec: RunSpec


@dataclass(frozen=True)
class Study:
    """The programs of a study (halving: the first rung's, every setting) and, for halving, the
    updates at the end of each rung."""
    kind: str
    programs: tuple[Program, ...]
    rungs: tuple[int, ...] = ()

    def record(self) -> dict:
        return {"kind": self.kind, "rung_ends": list(self.rungs),
                "programs": [{"name": p.name, "static": p.static, "spec": p.spec.record()}
                             for p in self.programs]}


def is_study(run_dir) -> bool:
    return (Path(run_dir) / STUDY_FILE).is_file()


# --------------------------------------------------------------------------- building

def static_keys(algorithm: str) -> set[str]:
    """The fields of ``algorithm``'s static config that are not hyperparameters."""
    algo = algorithms.get(algorithm)
    return set(settings_of(algo.Config)) - set(settings_of(algo.Hparams))


def _is_static(key: str, statics: set[str]) -> bool:
    return key in statics or key.startswith("env.")


def _key(text: str) -> str:
    return text.split("=", 1)[0].strip()


def fresh(*, algorithm: str | None = None, file: dict | None = None, sweeps=(), **asked):
    """What ``pgjax train`` asked for: a :class:`RunSpec` (one program) or a :class:`Study` (a
    static sweep, or halving). Everything is refused (ConfigError) before anything is compiled."""
    name = algorithm or (file or {}).get("algorithm")
    if name is None:
        return run_specs.fresh(algorithm=algorithm, file=file, sweeps=list(sweeps), **asked)
    algorithms.get(name)
    statics = static_keys(name)
    file_sweep = (file or {}).get("sweep") or {"axes": [], "samples": None, "sweep_seed": None}
    axes = run_specs._merged_axes(file_sweep["axes"], list(sweeps))
    static_texts = [t for t in axes if _is_static(_key(t), statics)]
    hparam_flags = [t for t in sweeps if not _is_static(_key(t), statics)]
    if file is not None:
        file = {**file, "sweep": {**file_sweep, "axes": [t for t in file_sweep["axes"]
                                                       if not _is_static(_key(t), statics)]}}
    build = lambda extra: run_specs.fresh(algorithm=algorithm, file=file, sweeps=hparam_flags,
                                          **{**asked, "assignments": list(asked.get("assignments") or []) + extra})
    if not static_texts:
        spec = build([])
        return halving_study(spec) if spec.options.prune else spec
    combos = static_combinations(name, static_texts)
    programs = tuple(Program(program_name(c), c, _with_static(build([f"{k}={v}" for k, v in c.items()]), c))
                     for c in combos)
    if programs[0].spec.options.prune:
        raise ConfigError("prune='halving' is not allowed with a static sweep (yet): halving "
                          "ranks the settings of one program; sweep the static field without "
                          "--prune, or run one halving study per static value")
    import jax
    if jax.process_count() > 1:
        raise ConfigError(f"--sweep {static_texts[0]!r} is not allowed in a multi-process run "
                          "(yet): a static sweep runs its programs in one process")
    return Study(STATIC, programs)


def _with_static(spec: RunSpec, static: dict) -> RunSpec:
    """``spec`` with its program's static values in its study record (its loggers label each
    setting with them: TensorBoard's HParams, W&B's config)."""
    values = {k: saved_records.static_value(v) for k, v in static.items()}
    return dataclasses.replace(spec, study={**(spec.study or {}), "static": values})


def static_combinations(algorithm: str, texts: list[str]) -> list[dict]:
    """``{key: value text}`` of every combination of the static axes ``texts`` (a grid: the
    last varying fastest); a random form, a key given twice or a value given twice is refused."""
    from pgjax.study import space
    for text in texts:
        axis = space.parse_axis(text)
        if axis.is_random:
            raise ConfigError(f"--sweep {text!r} is not allowed: {axis.key} is a static field (it "
                              "changes the compiled program), swept as a grid of programs: "
                              "V1,V2,… or log:LO:HI:N or lin:LO:HI:N, not a random draw")
    axes = space.parse(texts)
    declared = settings_of(algorithms.get(algorithm).Config)
    for axis in axes:
        seen = {}
        for value in axis.values:
            parsed = parse_setting(axis.key, value, declared[axis.key]) if axis.key in declared else value
            if parsed in seen:
                raise ConfigError(f"--sweep {axis.key}={','.join(axis.values)!r} is not allowed: "
                                  f"{seen[parsed]} and {value} are the same value of {axis.key}, "
                                  "so that program would train twice")
            seen[parsed] = value
    return [dict(combo) for combo in itertools.product(
        *[[(axis.key, value) for value in axis.values] for axis in axes])]


def program_name(static: dict) -> str:
    """A folder name from the static values: ``num_envs=8,hidden_sizes=64x64``."""
    def text(value: str) -> str:
        return value.replace("(", "").replace(")", "").replace(" ", "").replace(",", "x")
    name = ",".join(f"{k}={text(v)}" for k, v in static.items())
    return "".join(c if c.isalnum() or c in "=,._-+x" else "_" for c in name)


def halving_study(spec: RunSpec) -> Study:
    """Successive halving of ``spec``'s settings (refused with fewer than two settings)."""
    from pgjax.study import halving
    if len(spec.settings) < 2:
        raise ConfigError(f"prune={spec.options.prune!r} is not allowed with {len(spec.settings)} "
                          "setting: successive halving ranks the settings of a --sweep (give at "
                          "least two)")
    import jax
    if jax.process_count() > 1:
        raise ConfigError("prune='halving' is not allowed in a multi-process run (yet)")
    rungs = halving.rung_updates(spec.config.num_updates, len(spec.settings), spec.options.prune_eta,
                                 spec.options.prune_rungs)
    return Study(HALVING, (Program("rung0", {}, spec),), tuple(rungs))


def load(run_dir: Path, given_options: dict | None = None) -> Study:
    """The study saved in ``run_dir/study.json`` (each program's options with ``given_options``
    on top)."""
    path = Path(run_dir) / STUDY_FILE
    try:
        saved = json.loads(path.read_text())
        programs = tuple(Program(p["name"], dict(p["static"]),
                                 run_specs.from_record(p["spec"], f"{path}: ", given_options))
                         for p in saved["programs"])
        return Study(saved["kind"], programs, tuple(saved.get("rung_ends") or ()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path} is not allowed: not the study.json a study wrote ({error})") from None


def read_record(run_dir: Path) -> dict:
    """``study.json`` as written (with the rungs run so far), ``{}`` when unreadable."""
    return saved_records.read_study(run_dir)


# --------------------------------------------------------------------------- running

def run_study(study: Study, run_dir: Path, *, resume: bool = False, out=None, callbacks=()) -> RunResult:
    """Run (or resume) every program of ``study`` in ``run_dir``; a program that stops (a signal,
    divergence of all members) stops the study, which ``resume=True`` continues."""
    from pgjax.run import runner
    out = out or sys.stdout
    run_dir = Path(run_dir)
    for program in study.programs:
        runner.check_spec(program.spec)
    run_folder.check_writable_dir(run_dir, "run_dir")
    if resume:
        _check_resumable(run_dir, study)
    else:
        run_folder.check_fresh_start(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_folder.RunLock(run_dir):
        if not resume:
            run_folder.check_fresh_start(run_dir)
            write_json_atomic(run_dir / STUDY_FILE, study.record())
        run_folder.write_status(run_dir, run_folder.RUNNING, 0)
        started = time.perf_counter()
        run = _run_halving if study.kind == HALVING else _run_static
        result, mapping = run(study, run_dir, out, list(callbacks))
        if result.status == runner.COMPLETED:
            summary = study_summary(study, run_dir, mapping, time.perf_counter() - started)
            write_json_atomic(run_dir / "summary.json", summary)
            print(summary_table(summary), file=out, flush=True)
            print(study_lines(summary), file=out, flush=True)
            message = ""
        else:
            message = (f"program {result.run_dir.name} stopped ({result.status}: {result.message}); "
                       f"continue the study with pgjax train --resume {run_dir}")
            print(f"pgjax: {message}", file=out, flush=True)
        run_folder.write_status(run_dir, result.status, 0, message, program=result.run_dir.name)
    return dataclasses.replace(result, run_dir=run_dir, message=message or result.message)


def _check_resumable(run_dir: Path, study: Study) -> None:
    saved = read_record(run_dir)
    if saved.get("kind") != study.kind or [p["name"] for p in saved.get("programs", [])] != \
            [p.name for p in study.programs]:
        raise ConfigError(f"cannot resume {run_dir}: its study.json holds another study")


def _run_program(spec: RunSpec, folder: Path, out, until: int | None = None, callbacks=()) -> RunResult:
    """Start ``folder`` afresh, or resume it when it holds a run (a completed one returns at once)."""
    from pgjax.run import runner
    resume = (folder / "config.json").is_file()
    return runner.run_spec(spec, folder, resume=resume, out=out, until=until, callbacks=callbacks)


def _run_static(study: Study, run_dir: Path, out, callbacks=()) -> tuple[RunResult, list]:
    """Each program in turn; ``mapping[p]`` is the global member index of program p's members."""
    from pgjax.run import runner
    mapping, offset, ahead = [], 0, None
    for k, program in enumerate(study.programs):
        print(f"pgjax: program {k + 1} of {len(study.programs)}: {program.name}", file=out, flush=True)
        _wait(ahead)  # a program compiled ahead is ready before its run looks for it
        following = study.programs[k + 1].spec if k + 1 < len(study.programs) else None
        ahead = _compile_ahead(following, run_dir / PROGRAMS_DIR / study.programs[k + 1].name
                               if following else None)
        result = _run_program(program.spec, run_dir / PROGRAMS_DIR / program.name, out, None, callbacks)
        size = len(program.spec.seeds) * len(program.spec.settings)
        mapping.append(list(range(offset, offset + size)))
        offset += size
        if result.status != runner.COMPLETED:
            return result, mapping
    return result, mapping


def _compile_ahead(spec: RunSpec | None, folder: Path | None):
    """Compile the next program's training program in a background thread while the current one
    trains (None when there is none, or it has finished already: its folder is complete)."""
    from pgjax.run import runner
    from pgjax.run.background import Background
    if spec is None or run_folder.read_status(folder).get("status") == run_folder.COMPLETED:
        return None
    return Background("pgjax-compile-ahead", runner.precompile, spec)


def _wait(ahead) -> None:
    """Wait for a compilation ahead; a failure there is the program's own to raise, when it runs."""
    if ahead is not None:
        try:
            ahead.result()
        except Exception:  # noqa: BLE001 - the run compiles it again and reports the error
            pass


def _run_halving(study: Study, run_dir: Path, out, callbacks=()) -> tuple[RunResult, list]:
    """Rung by rung: train the survivors to the rung's end, rank the settings, seed the next
    rung's folder with the survivors' members; ``mapping[r]`` is the global member index of rung
    r's members (a setting's members are its seeds, setting-major)."""
    from pgjax.run import runner
    from pgjax.study import halving
    base = study.programs[0].spec
    seeds, eta = len(base.seeds), base.options.prune_eta
    alive, mapping, rungs_run = list(range(len(base.settings))), [], []
    previous = ahead = None
    for r, end in enumerate(study.rungs):
        last = r == len(study.rungs) - 1
        spec = dataclasses.replace(base, settings=tuple(base.settings[g] for g in alive))
        folder = run_dir / PROGRAMS_DIR / f"rung{r}"
        if previous is not None and not (folder / "config.json").is_file():
            seed_rung(*previous, folder, spec)
        print(f"pgjax: rung {r + 1} of {len(study.rungs)}: {len(alive)} setting(s) to update {end}",
              file=out, flush=True)
        _wait(ahead)
        # the next rung's program has the same shapes whichever settings survive: compile it now
        size = math.ceil(len(alive) / eta)
        ahead = None if last else _compile_ahead(
            dataclasses.replace(base, settings=base.settings[:size]), run_dir / PROGRAMS_DIR / f"rung{r + 1}")
        result = _run_program(spec, folder, out, None if last else end, callbacks)
        mapping.append([g * seeds + s for g in alive for s in range(seeds)])
        if result.status not in (runner.PAUSED, runner.COMPLETED):
            return result, mapping
        scores = rung_scores(folder, end, len(alive), seeds)
        rungs_run.append({"rung": r, "end_update": end, "settings": alive,
                          "scores": [None if not math.isfinite(s) else float(s) for s in scores]})
        write_json_atomic(run_dir / STUDY_FILE, {**read_record(run_dir), "rungs": rungs_run})
        if last:
            return result, mapping
        keep = halving.survivors(scores, eta)
        previous = (folder, spec, keep, end)
        alive = [alive[i] for i in keep]
    return result, mapping


def rung_scores(folder: Path, update: int, num_settings: int, seeds: int) -> np.ndarray:
    """Each setting's score at the end of a rung: the mean over its seeds of ``eval_return_mean``
    in the rung's ``eval.jsonl`` rows at ``update``; a diverged member does not count, a setting
    whose members all diverged scores NaN (ranked last)."""
    values = np.full((num_settings, seeds), np.nan)
    for line in (folder / "eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("update") == update and not row.get("diverged"):
            values[row["member"] // seeds, row["member"] % seeds] = row["eval_return_mean"]
    with np.errstate(all="ignore"):
        counts = np.isfinite(values).sum(axis=1)
        return np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)


def seed_rung(previous: Path, previous_spec: RunSpec, keep, end: int, folder: Path, spec: RunSpec) -> None:
    """Make ``folder`` a run of ``spec`` (the survivors) that resumes at update ``end`` from the
    survivors' members of ``previous``'s checkpoint there: the checkpoint first, ``config.json``
    last (a folder without it is a seeding cut short, redone from scratch)."""
    import jax
    from pgjax.run import runner
    from pgjax.run.checkpoints import Checkpoints
    from pgjax.run.population import Population
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    population = Population(previous_spec.seeds, previous_spec.settings)
    like = jax.eval_shape(runner.init_program(previous_spec.config), population.keys(),
                          population.hparams())
    reader = Checkpoints(previous, read_only=True)
    try:
        state, meta = reader.restore(like, step=end * previous_spec.config.steps_per_update)
    finally:
        reader.close()
    seeds = len(previous_spec.seeds)
    members = [g * seeds + s for g in keep for s in range(seeds)]
    state = jax.tree.map(lambda leaf: leaf[np.asarray(members)], state)
    diverged = {str(new): meta["diverged"][str(old)] for new, old in enumerate(members)
                if str(old) in meta.get("diverged", {})}
    writer = Checkpoints(folder, keep=spec.options.keep_checkpoints)
    try:
        writer.save(end * spec.config.steps_per_update, state,
                    {"update": end, "train_seconds": 0.0, "last_eval": meta.get("last_eval"),
                     "diverged": diverged})
    finally:
        writer.close()
    write_json_atomic(folder / "config.json", spec.record())


# --------------------------------------------------------------------------- the study's summary

def study_summary(study: Study, run_dir: Path, mapping: list, wall_seconds: float) -> dict:
    """``summary.json`` of the study: every member of every setting (static values as ``hp_*``
    labels), its final evaluation (NaN for a setting that halving pruned), and the programs."""
    folders = _program_folders(study, run_dir)
    summaries = [json.loads((f / "summary.json").read_text()) if (f / "summary.json").is_file() else {}
                 for f in folders]
    labels = member_labels(study)
    returns = np.full(len(labels), np.nan)
    diverged = []
    for program, summary, members in zip(folders, summaries, mapping):
        if summary:
            returns[members] = summary["eval_return_per_seed"]
        for d in _diverged_rows(program):
            member = members[d["member"]]
            if all(seen["member"] != member for seen in diverged):  # a rung carries it on
                diverged.append({**d, "member": member, **{
                    k: v for k, v in labels[member].items() if k.startswith("hp_")}})
    last = next(s for s in reversed(summaries) if s)
    finished = [s for s in summaries if s]
    finite = returns[np.isfinite(returns)]
    steps = _env_steps(study, run_dir, mapping)
    base = study.programs[0].spec
    return {
        "kind": study.kind, "algorithm": base.algorithm,
        "env_id": ",".join(dict.fromkeys(p.spec.config.env_id for p in study.programs)),
        "status": "completed", "seeds": list(base.seeds), "members": labels,
        "eval_episodes": base.options.eval_episodes, "eval_greedy": base.options.greedy_eval,
        "device": last.get("device"), "env_steps_per_seed": max(s["env_steps_per_seed"] for s in finished),
        "eval_return_per_seed": returns,
        "eval_return_mean": float(finite.mean()) if finite.size else math.nan,
        "eval_return_std": float(finite.std()) if finite.size else math.nan,
        "steps_per_second": steps["ran"] / max(sum(_train_seconds(s) for s in finished), 1e-9),
        "compile_seconds": sum(s.get("compile_seconds") or 0.0 for s in finished),
        "compile_seconds_eval": sum(s.get("compile_seconds_eval") or 0.0 for s in finished),
        "wall_seconds": wall_seconds, "diverged": diverged,
        "env_steps_run": steps["ran"], "env_steps_full_grid": steps["full"],
        "programs": [{"name": f.name, "folder": str(f.relative_to(run_dir)),
                      "wall_seconds": s.get("wall_seconds"), "steps_per_second": s.get("steps_per_second")}
                     for f, s in zip(folders, summaries)],
        **({"rungs": read_record(run_dir).get("rungs", [])} if study.kind == HALVING else {}),
    }


def _train_seconds(summary: dict) -> float:
    """Seconds a program trained: its env steps over its steps/s."""
    members = len(summary.get("members") or [])
    return summary["env_steps_per_seed"] * members / max(summary.get("steps_per_second") or 1e-9, 1e-9)


def _env_steps(study: Study, run_dir: Path, mapping: list) -> dict:
    """Env steps the study ran (all members, all programs) and what the full grid would have."""
    if study.kind == STATIC:
        total = sum(len(m) * p.spec.config.num_updates * p.spec.config.steps_per_update
                    for p, m in zip(study.programs, mapping))
        return {"ran": total, "full": total}
    from pgjax.study import halving
    spec = study.programs[0].spec
    counts = [len(r["settings"]) for r in read_record(run_dir).get("rungs", [])]
    ran, full = halving.steps_saved(list(study.rungs[:len(counts)]), counts,
                                    spec.config.steps_per_update, len(spec.seeds))
    return {"ran": ran, "full": full}


def _diverged_rows(folder: Path) -> list[dict]:
    summary = folder / "summary.json"
    status = run_folder.read_status(folder)
    found = json.loads(summary.read_text()).get("diverged") if summary.is_file() else None
    return list(found or status.get("diverged") or [])


def _program_folders(study: Study, run_dir: Path) -> list[Path]:
    """The study's program folders as far as it ran (the rungs reached, from study.json)."""
    rungs = read_record(run_dir).get("rungs") or []
    return saved_records.study_folders(run_dir, {**study.record(), "rungs": rungs})


def member_labels(study: Study) -> list[dict]:
    """Every member of the study, numbered study-wide (:func:`pgjax.run.saved.study_member_labels`)."""
    return saved_records.study_member_labels(study.record())


def study_lines(summary: dict) -> str:
    """What the summary table does not say of a study: its programs, or its rungs and the env
    steps halving saved against the full grid."""
    lines = [""]
    if summary["kind"] == STATIC:
        lines.append(f"{len(summary['programs'])} programs (one per static combination), one after another:")
        lines += [f"  {p['name']}: {p['wall_seconds']:.1f} s, {p['steps_per_second']:,.0f} steps/s"
                  for p in summary["programs"]]
        return "\n".join(lines)
    seeds = len(summary["seeds"])
    name = lambda g: ",".join(f"{k[3:]}={v:g}" if isinstance(v, float) else f"{k[3:]}={v}"
                              for k, v in summary["members"][g * seeds].items() if k.startswith("hp_"))
    rungs = summary["rungs"]
    for r, rung in enumerate(rungs):
        best = max((s for s in rung["scores"] if s is not None), default=math.nan)
        lines.append(f"  rung {rung['rung']}: {len(rung['settings'])} setting(s) to update "
                     f"{rung['end_update']}, best mean evaluation {best:.1f}")
        going_on = set(rungs[r + 1]["settings"]) if r + 1 < len(rungs) else set(rung["settings"])
        pruned = [(score, g) for g, score in zip(rung["settings"], rung["scores"]) if g not in going_on]
        lines += [f"    pruned: {name(g)} ({'—' if score is None else f'{score:.1f}'})"
                  for score, g in sorted(pruned, key=lambda x: math.inf if x[0] is None else -x[0])]
    ran, full = summary["env_steps_run"], summary["env_steps_full_grid"]
    lines.append(f"successive halving ran {ran:,d} env steps, {ran / full:.0%} of the full grid's "
                 f"{full:,d}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- readers

def setting_values(study: Study) -> list[dict]:
    """Each setting of the study (study-wide order) as ``{key: value}`` of its static values and
    swept hyperparameters."""
    labels, seeds = member_labels(study), len(study.programs[0].spec.seeds)
    return [{k[3:]: v for k, v in labels[g * seeds].items() if k.startswith("hp_")}
            for g in range(len(labels) // seeds)]


def locate(run_dir: Path, setting: str | None) -> tuple[Path, int]:
    """(program folder, the setting's index there) of setting ``setting`` of the study in
    ``run_dir`` (an index, or ``key=value,…`` of its static and swept values): the folder where it
    trained last (for halving, the last rung it reached). A ConfigError names what is there."""
    from pgjax.study.space import _split_values
    study = load(run_dir)
    values = setting_values(study)
    names = [",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in v_.items())
             for v_ in values]
    allowed = f"an index 0..{len(names) - 1} or the values, one of {names}"
    text = "" if setting is None else str(setting).strip()
    if not text:
        raise ConfigError(f"{run_dir} is a study of {len(study.programs)} program(s): choose a "
                          f"setting with --setting ({allowed}), or name a folder under "
                          f"{Path(run_dir) / PROGRAMS_DIR}")
    if text.isdigit():
        found = [int(text)] if int(text) < len(names) else []
    else:
        pairs = [pair.split("=", 1) for pair in _split_values(text) if "=" in pair]
        found = [g for g, v_ in enumerate(values)
                 if pairs and all(k.strip() in v_ and _same(v_[k.strip()], w.strip()) for k, w in pairs)]
    if len(found) != 1:
        why = "it matches no setting" if not found else f"it matches settings {found}"
        raise ConfigError(f"--setting={text!r} is not allowed: {why}; {allowed}")
    g = found[0]
    if study.kind == STATIC:
        per_program = len(study.programs[0].spec.settings)
        return Path(run_dir) / PROGRAMS_DIR / study.programs[g // per_program].name, g % per_program
    rungs = read_record(run_dir).get("rungs") or [{"rung": 0, "settings": list(range(len(names)))}]
    reached = [r for r in rungs if g in r["settings"]][-1]
    return Path(run_dir) / PROGRAMS_DIR / f"rung{reached['rung']}", reached["settings"].index(g)


def _same(value, text: str) -> bool:
    """A setting's value equals the text a user gave: numbers as float32 (the train state's
    precision), anything else as written."""
    try:
        number, given = float(value), float(text)
        return np.float32(number) == np.float32(given) or f"{number:g}" == f"{given:g}"
    except (TypeError, ValueError):
        return str(value).replace(" ", "") == text.replace(" ", "")
