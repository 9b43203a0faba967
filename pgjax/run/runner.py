"""The host loop: one compiled program runs chunks of updates for every population member at once,
with I/O between chunks.

The population is seeds × hyperparameter settings, vmapped in one program. A run folder holds

    config.json        algorithm, config, hyperparameters (per setting), seeds, members, device
    status.json        running / interrupted / diverged / completed, the update reached, the pid
    metrics.jsonl      one line per row (the mean over ~log_every_seconds of updates, or every
                       update) and per member: every metric the algorithm logs, plus fps
    metrics_settings.jsonl  per row and setting: each metric's mean and quantiles over its seeds
    eval.jsonl         one line per evaluation and per member
    pbt.jsonl          with PBT: every round's exploit and explore (:mod:`pgjax.run.pbt_rounds`)
    tb/<member>/       TensorBoard event files (tensorboardX; per setting for a large population)
    eval/step_*.npz    the cache of evaluation episodes (:mod:`pgjax.run.episodes`)
    checkpoints/       orbax: the latest N and the best by evaluation return (:mod:`pgjax.run.checkpoints`)
    summary.json       final evaluation, steps/s, compile and wall time, device, diverged members
    plots/             learning curves with bootstrap confidence intervals (:mod:`pgjax.report`)

**Chunks.** One program (:mod:`pgjax.run.chunks`) takes the number of updates to run as an argument;
the host sizes each chunk to a few seconds of wall time (``chunk_seconds``) and ends chunks at
scheduled evaluations and checkpoints. Env-step and update counters are Python integers on the
host, so they never wrap.

**Interruptions.** SIGINT/SIGTERM during set-up or compilation stop at once (the folder resumes
from its checkpoint, or from step 0); during training they finish the current chunk, save and
stop; a repeated signal only repeats that message. ``resume=True`` continues from the latest
checkpoint, so on CPU the result is bit-identical to an uninterrupted run.

**Devices and processes.** The state lives on the mesh of :mod:`pgjax.run.devices` (the
population or each member's env batch split over it); in a multi-process run
(:mod:`pgjax.run.distributed`) process 0 alone writes the folder and the processes agree on each
chunk's size, on stopping and on wall-time checkpoints.

**Divergence.** A member whose loss, gradient norm or parameters go non-finite is frozen at its
last finite state inside the program and marked ``diverged`` in the logs, the summary and the
report; the others train on (``on_nonfinite="stop"`` stops the whole run instead). When every
member has diverged the run stops.

**Write failures.** A file of the folder that cannot be written (a log line, an event file, the
episode cache, a checkpoint, status.json: disk full, file too large, I/O error, a folder turned
read-only) raises :class:`pgjax.run.loggers.WriteFailed` where it is written; the chunk loop stops
on it at once, status.json says ``failed`` (when it can still be written) and the error goes up in
one line. What was written stays resumable: a log line cut short and the rows after the latest
checkpoint are dropped on resume, and an unfinished checkpoint is a temporary folder the resume
removes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import signal
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pgjax import _xla_cpu, algorithms
from pgjax.config import ConfigError, require, validate_hparams
from pgjax.run import chunks, compilation_cache, devices as run_devices, distributed, episodes
from pgjax.run import executables, memory
from pgjax.run import thinning
from pgjax.run import folder as run_folder
from pgjax.run import pbt_rounds
from pgjax.run import spec as run_specs
from pgjax.run.background import Background, StopSignals, StoppedBeforeTraining, while_listening
from pgjax.run.checkpoints import Checkpoints
from pgjax.run.divergence import divergence_message, divergences, live_rows
from pgjax.run.evaluation import EvalProgram, eval_rows, make_eval_fn
from pgjax.run.loggers import (ChunkRecord, FanOut, JsonlFile, Progress, WriteFailed, truncate_jsonl,
                               write_json_atomic, write_text_atomic)
from pgjax.run.options import RunOptions
from pgjax.run.population import Population
from pgjax.run.schedule import Events
from pgjax.run.spec import RunSpec
from pgjax.run.run_sinks import open_sinks
from pgjax.run.summary import RunResult, write_summary

COMPLETED, INTERRUPTED, NON_FINITE = run_folder.COMPLETED, run_folder.INTERRUPTED, run_folder.DIVERGED
PAUSED = run_folder.PAUSED
__all__ = ["COMPLETED", "INTERRUPTED", "NON_FINITE", "PAUSED", "EvalProgram", "Population", "RunOptions",
           "RunResult", "check_spec", "init_program", "precompile", "reevaluation", "record_reevaluation", "run",
           "run_spec", "warn_unusual"]


@functools.lru_cache(maxsize=64)
def init_program(config):
    """``init(keys [M], hparams [M]) -> states [M]``, jitted once per config (a process that runs,
    resumes or re-evaluates the same config reuses it)."""
    algo = algorithms.for_config(config)
    return jax.jit(jax.vmap(lambda key, hparams: algo.init(config, hparams, key)))


def initial_state(config, keys, hparams):
    """The member-stacked train state :func:`init_program` makes, its program loaded from the
    program store (:mod:`pgjax.run.executables`) when a process before this one compiled it; it
    runs once, so on CPU it is compiled for compile speed (:func:`pgjax._xla_cpu.compile_once`)."""
    args = (keys, hparams)
    compiled = executables.load_or_compile(
        ("init", config, executables.describe(args)), init_program(config), args,
        _xla_cpu.compile_once, store=executables.storable(config))
    return compiled(keys, hparams)


def warn_unusual(config, settings) -> None:
    """Warnings (not refusals) for settings that are allowed but probably not meant."""
    for hp in settings:
        rates = np.atleast_1d(np.asarray(hp.learning_rate, np.float64))
        odd = [float(r) for r in rates if r > 1.0 or r < 1e-7]
        if odd:
            warnings.warn(f"learning_rate={odd[0]:g} is far outside the usual range [1e-7, 1]; "
                          "training will probably diverge or not move", stacklevel=3)
    default_steps = next(f.default for f in dataclasses.fields(config) if f.name == "total_steps")
    # an algorithm's default budget rounds down quietly (its help says so); a chosen one warns
    if config.total_steps % config.steps_per_update and config.total_steps != default_steps:
        warnings.warn(f"total_steps={config.total_steps} is not a multiple of "
                      f"num_envs*rollout_length={config.steps_per_update}: the run trains "
                      f"{config.num_updates} updates = {config.num_updates * config.steps_per_update} "
                      "env steps per member", stacklevel=3)


def run(algo_name: str, config, hparams, seeds: list[int], run_dir: Path, *,
        options: RunOptions | None = None, resume: bool = False, out=None) -> RunResult:
    """Train every member of seeds × ``hparams`` (one Hparams or a list of them) of ``algo_name``
    in one vmapped program: :func:`run_spec` of that :class:`pgjax.run.spec.RunSpec`."""
    settings = tuple(hparams) if isinstance(hparams, (list, tuple)) else (hparams,)
    return run_spec(RunSpec(algo_name, config, settings, tuple(seeds), options or RunOptions()),
                    run_dir, resume=resume, out=out)


def run_spec(spec: RunSpec, run_dir: Path, *, resume: bool = False, out=None,
             until: int | None = None, callbacks=()) -> RunResult:
    """Run ``spec`` in ``run_dir``, evaluating, logging and checkpointing between chunks; with
    ``until``, stop after that many updates (evaluated and saved there, status ``paused``: a
    rung of :mod:`pgjax.run.programs`), the schedules staying those of the whole run.
    ``callbacks`` (:class:`pgjax.run.loggers.Sink` objects) get every event the run's own sinks
    get (:mod:`pgjax.api`).

    Bad input raises :class:`ConfigError` before anything is created or compiled; a folder that
    holds a trained run is never started afresh, one in use by another process is refused, and a
    resume must match the saved run field by field."""
    check_spec(spec)
    require(until is None or (isinstance(until, int) and 0 < until <= spec.config.num_updates),
            "until", until, f"an update count in [1, {spec.config.num_updates}]")
    run_dir = Path(run_dir)
    run_folder.check_writable_dir(run_dir, "run_dir")
    if resume:
        run_specs.check_resumable(run_specs.load(run_dir), spec, run_dir)
        check_checkpoint_matches(spec, run_dir)
    else:
        run_folder.check_fresh_start(run_dir)
    warn_unusual(spec.config, spec.settings)
    distributed.barrier("pgjax-folder-checked")  # every process checked before process 0 writes
    if not distributed.is_primary():
        return _Run(spec, run_dir, out or sys.stdout, until).execute(resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_folder.RunLock(run_dir):
        if not resume:
            run_folder.check_fresh_start(run_dir)  # again, now that no other process can write
        return _Run(spec, run_dir, out or sys.stdout, until, callbacks).execute(resume)


def check_spec(spec: RunSpec) -> None:
    """Refuse (ConfigError) what ``spec`` cannot run: its options, hyperparameters, seeds, device
    split, memory and PBT search space, from values and shapes alone (nothing is compiled)."""
    spec.options.validate()
    for hp in spec.settings:
        validate_hparams(hp)
    require(len(spec.seeds) > 0 and all(isinstance(s, int) and 0 <= s < 2 ** 32 for s in spec.seeds),
            "seeds", list(spec.seeds), "non-empty, each an integer in [0, 2^32)")
    count = run_devices.device_count(spec.options.devices, len(spec.seeds) * len(spec.settings),
                                     spec.config.num_envs, spec.options.shard)
    check_memory(spec, memory.Placement.of_run(count))
    pbt_rounds.check_options(spec)


def precompile(spec: RunSpec) -> bool:
    """Compile ``spec``'s training program into this process's program store
    (:func:`pgjax.run.chunks.compile_chunk`), so that a run of it started later finds it ready: a
    study (:mod:`pgjax.run.programs`) compiles its next program while the current one trains.
    Only for a run on one device (False otherwise, and nothing is compiled)."""
    import io
    run = _Run(spec, Path("."), io.StringIO())
    if run.layout.mesh is not None:
        return False
    shapes = memory.state_shapes(spec.config, run.population.size)
    chunks.compile_chunk(spec.config, run_devices.abstract(shapes, None), run.max_chunk, None)
    return True


def check_memory(spec: RunSpec, placement) -> None:
    """Refuse (ConfigError) a run whose training or evaluation program cannot fit the device's
    memory, from shapes alone (:mod:`pgjax.run.memory`): before anything is created or compiled."""
    seeds, settings = len(spec.seeds), len(spec.settings)
    memory.check_training(spec.config, seeds, settings, placement)
    memory.check_evaluation(spec.config, seeds * settings, spec.options.eval_episodes,
                            spec.options.cache_episodes,
                            memory.evaluation_culprit(spec.options, seeds, settings),
                            placement=placement)


def check_checkpoint_matches(spec: RunSpec, run_dir: Path) -> None:
    """Refuse to resume a run whose configuration builds a train state its checkpoint does not
    hold (a hand-edited ``config.json``), naming the first leaf that differs: from the shapes
    stored with the checkpoint, before anything is created or compiled."""
    if not run_folder.has_checkpoint(run_dir):
        return
    population = Population(spec.seeds, spec.settings)
    like = jax.eval_shape(init_program(spec.config), population.keys(), population.hparams())
    checkpoints = Checkpoints(run_dir, read_only=True)
    try:
        checkpoints.check_matches(like)
    finally:
        checkpoints.close()


def _state_shardings(layout, config, population, shapes):
    """The sharding of every leaf of the train state on the run's mesh (None: one device)."""
    if layout.mesh is None:
        return None
    env_leaves = run_devices.per_env_leaves(
        lambda c: jax.eval_shape(init_program(c), population.keys(), population.hparams()), config)
    return layout.state(shapes, env_leaves)


def _resume_line(run_dir: Path, meta: dict, steps_per_update: int, has_checkpoint: bool) -> str:
    if not has_checkpoint:
        return (f"resuming {run_dir}: no checkpoint was saved yet, so training starts at step 0 "
                "with the saved configuration")
    return (f"resuming {run_dir} from update {meta['update']} "
            f"({meta['update'] * steps_per_update:,d} env steps per member)")


def _chunk_record(metrics_np, labels, done, n, steps_per_update, chunk_seconds, live, found) -> ChunkRecord:
    """The chunk's ``[M, n]`` metrics with host-counted env steps and fps added, the live rows
    (:func:`live_rows`) and a ``diverged`` mark on each member's diverging update."""
    size = len(labels)
    env_steps = (done + 1 + np.arange(n, dtype=np.int64)) * steps_per_update
    metrics_np["env_steps"] = np.broadcast_to(env_steps, (size, n))
    metrics_np["fps"] = np.full((size, n), n * steps_per_update * size / max(chunk_seconds, 1e-9))
    marks = {(m, k): {"diverged": True} for m, (k, _) in found.items()}
    return ChunkRecord(metrics_np, labels, np.arange(done + 1, done + n + 1), live, marks)


class _Run:
    """One training run's host state (kept out of the jitted code): its population, devices,
    schedule and folder. :meth:`execute` starts it (a fresh state or a restored checkpoint, while
    the training program compiles) and hands it to the chunk loop (:class:`_Loop`);
    :meth:`finish` records how it ended."""

    def __init__(self, spec: RunSpec, run_dir: Path, out, until: int | None = None, callbacks=()):
        self.spec, self.algo, self.algo_name, self.config = spec, spec.algo, spec.algorithm, spec.config
        self.population = population = Population(spec.seeds, spec.settings)
        self.run_dir, self.options, self.out = run_dir, spec.options, out
        options, config = spec.options, spec.config
        self.labels = [{**label, "algorithm": spec.algorithm} for label in population.labels()]
        self.num_updates = config.num_updates
        self.stop_update = until or self.num_updates  # where this call stops (a rung's end)
        self.callbacks = list(callbacks)
        self.primary = distributed.is_primary()
        self.layout = run_devices.Layout(run_devices.device_count(
            options.devices, population.size, config.num_envs, options.shard), options.shard)
        self.device = self.layout.describe(str(jax.devices()[0]))
        self.max_chunk = (min(options.chunk_updates, self.num_updates) if options.chunk_updates
                          else chunks.default_max_updates(self.num_updates, population.size))
        self.events = Events.for_run(self.num_updates, config.steps_per_update, options,
                                     stops=(self.stop_update,) if until else ())
        self.diverged: dict[int, dict] = {}  # member -> {"update", "metric"}
        self.cache_hit: bool | None = None    # the train program came from the persistent cache
        self.compile_notice = chunks.CompileNotice(
            "the training program", chunks.training_notice_detail(population.size, config,
                                                                  self.max_chunk),
            out if self.primary else None)
        self.eval_compile_seconds: float | None = None
        self.eval_program: EvalProgram | None = None  # compiling from the end of set-up on

    # ---------------------------------------------------------------- set-up
    def _config_record(self) -> dict:
        return {**self.spec.record(), "members": self.labels, "device": self.device,
                "num_updates": self.num_updates, "steps_per_update": self.config.steps_per_update,
                "max_chunk": self.max_chunk}

    def _init_state(self):
        return initial_state(self.config, self.population.keys(), self.population.hparams())

    def _print(self, text: str) -> None:
        if self.primary:
            print(text, file=self.out, flush=True)

    def _status(self, status: str, update: int, message: str = "") -> None:
        if self.primary:
            run_folder.write_status(self.run_dir, status, update, message,
                                    diverged=self._diverged_list())

    def _status_if_writable(self, status: str, update: int, message: str) -> None:
        """Record a failure in status.json unless status.json itself cannot be written (the
        failure in flight is the one to report)."""
        try:
            self._status(status, update, message)
        except WriteFailed:
            pass

    def _diverged_list(self) -> list[dict]:
        return [{**self.labels[m], **info} for m, info in sorted(self.diverged.items())]

    def _startup(self, checkpoints: Checkpoints, resume: bool):
        """(state, meta, compiled chunk): restored from the latest checkpoint when resuming (a run
        stopped before its first checkpoint starts again at step 0), else initialised."""
        meta = {"update": 0, "train_seconds": 0.0, "last_eval": None, "diverged": {}}
        shapes = memory.state_shapes(self.config, self.population.size)  # as traced for the check
        shardings = _state_shardings(self.layout, self.config, self.population, shapes)
        abstract = run_devices.abstract(shapes, shardings)
        # the training program compiles from the state's shapes while init (or a restore) runs:
        # two programs compiling at once on two cores
        placement = None if shardings is None else (shardings, self.layout.members(),
                                                    self.layout.replicated())
        compiling = Background("pgjax-chunk-compile", self._compile, abstract, placement)
        if resume and checkpoints.steps():
            state, saved = checkpoints.restore(abstract)
            meta.update(saved)
        else:
            state = self._init_state()
        state = run_devices.place(state, shardings)
        if meta["update"] < self.stop_update:
            # the evaluation program compiles beside the training program's XLA compile (the
            # core the initialisation used is free by now), not after the first chunk
            self.eval_program = EvalProgram(self.config, self.options, state,
                                            self.out if self.primary else None)
        try:
            return state, meta, compiling.result()
        except BaseException:  # a refused training program: no compile left running behind it
            if self.eval_program is not None:
                self.eval_program.wait()
            raise

    def _compile(self, abstract, placement):
        """The chunk program (:func:`pgjax.run.chunks.compile_chunk`), announced while it compiles
        and refused (ConfigError) before it runs when XLA's account of it cannot fit the device."""
        compile_ = functools.partial(chunks.compile_chunk, self.config, abstract, self.max_chunk,
                                     placement)
        if chunks.compiled_already(self.config, abstract, self.max_chunk, placement):
            compiled = compile_()  # reused from this process: nothing to announce
        else:
            compiled = self.compile_notice.run(compile_)
        field, value = memory.training_culprit(self.config, len(self.spec.seeds),
                                               len(self.spec.settings))
        memory.check_compiled(compiled, "the training program", field, value, memory.TRAIN_ADVICE,
                              memory.Placement.of_run(self.layout.count))
        return compiled

    # ---------------------------------------------------------------- main loop
    def execute(self, resume: bool) -> RunResult:
        """Write the folder's records, train, and leave status.json saying how it ended (a
        refused resume leaves the folder as it was)."""
        if self.options.compile_cache:
            compilation_cache.enable()
        records = [self.run_dir / name for name in ("config.json", run_folder.STATUS_NAME)]
        previous = {path: path.read_text() for path in records if resume and path.is_file()}
        if self.primary:
            if not resume or not (self.run_dir / "config.json").exists():
                run_folder.clear_outputs(self.run_dir)
            write_json_atomic(self.run_dir / "config.json", self._config_record())
            self._status(run_folder.RUNNING, 0)
        distributed.barrier("pgjax-folder-ready")
        checkpoints = Checkpoints(self.run_dir, keep=self.options.keep_checkpoints)
        try:
            with StopSignals() as stop:
                return self._execute(checkpoints, resume, stop)
        except WriteFailed as error:
            saved = checkpoints.steps()
            self._status_if_writable("failed", saved[-1] // self.config.steps_per_update if saved else 0,
                                     f"{error}; pgjax train --resume {self.run_dir} continues from "
                                     f"the latest checkpoint once it can be written")
            raise
        except ConfigError as error:
            if previous:  # a refused resume: the folder says what it said before
                for path, text in previous.items() if self.primary else ():
                    write_text_atomic(path, text)
            else:
                self._status_if_writable("failed", 0, f"{type(error).__name__}: {error}")
            raise
        except BaseException as error:
            if not isinstance(error, StoppedBeforeTraining):
                self._status_if_writable("failed", 0, f"{type(error).__name__}: {error}")
            raise
        finally:
            checkpoints.close()

    def _execute(self, checkpoints: Checkpoints, resume: bool, stop: StopSignals) -> RunResult:
        run_dir, config = self.run_dir, self.config
        t0 = time.perf_counter()
        cached_before = compilation_cache.entries()
        try:
            state, meta, compiled = while_listening(stop, self._startup, checkpoints, resume)
        except StoppedBeforeTraining as stopped:
            return self._stopped_before_training(stopped.signum, checkpoints, t0)
        compile_seconds = time.perf_counter() - t0
        self.cache_hit = None if cached_before is None else compilation_cache.entries() == cached_before
        self.diverged = {int(m): info for m, info in meta.get("diverged", {}).items()}
        if resume:
            self._print(_resume_line(run_dir, meta, config.steps_per_update, bool(checkpoints.steps())))
            if meta["update"] >= self.stop_update:
                return self._already_complete(state)
            for name in ("metrics.jsonl", "metrics_settings.jsonl", "eval.jsonl",
                         "pbt.jsonl") if self.primary else ():
                truncate_jsonl(run_dir / name, lambda row: row.get("update", 0) <= meta["update"])
        self._print(f"{self.algo_name} on {config.env_id}: {self.population.size} member(s) "
                    f"(seeds {list(self.population.seeds)} × {len(self.population.settings)} setting(s)), "
                    f"{self.num_updates} updates of {config.steps_per_update} steps, chunks of up to "
                    f"{self.max_chunk}; compiled in {compile_seconds:.1f}s on {self.device}")
        return _Loop(self, checkpoints, stop, state, meta, compiled, compile_seconds, t0, resume).run()

    # ---------------------------------------------------------------- endings
    def meta(self, done, train_seconds, last_eval) -> dict:
        return {"update": int(done), "train_seconds": float(train_seconds), "last_eval": last_eval,
                "diverged": {str(m): info for m, info in self.diverged.items()}}

    def finish(self, status, message, final_eval, done, train_seconds, compile_seconds, wall,
               metrics_np, state, meta) -> RunResult:
        """status.json, the result and, for a completed run, summary.json, its table and plots."""
        trained_steps = (done - meta["update"]) * self.config.steps_per_update * self.population.size
        sps = trained_steps / max(train_seconds - meta["train_seconds"], 1e-9)
        eval_returns = (final_eval["returns"].mean(axis=1) if final_eval is not None
                        else np.full(self.population.size, np.nan))
        if message:
            print(f"pgjax: {message}", file=sys.stderr if status == NON_FINITE else self.out, flush=True)
        last = {k: v[:, -1] for k, v in metrics_np.items()} if metrics_np else {}
        self._status(status, done, message)
        if status == COMPLETED and self.primary:
            write_summary(self.run_dir, self._summary_fields(), final_eval, out=self.out,
                          plots=self.options.plots, steps_per_second=sps,
                          compile_seconds=compile_seconds,
                          compile_seconds_eval=self.eval_compile_seconds, wall_seconds=wall)
        return RunResult(self.run_dir, status, eval_returns, sps, compile_seconds, wall, message,
                         last, state, dict(self.diverged))

    def _summary_fields(self) -> dict:
        """What summary.json says of the run besides its final evaluation and timings."""
        return {"algorithm": self.algo_name, "env_id": self.config.env_id, "status": COMPLETED,
                "seeds": list(self.population.seeds), "members": self.labels,
                "eval_episodes": self.options.eval_episodes, "eval_greedy": self.options.greedy_eval,
                "device": self.device,
                "env_steps_per_seed": self.num_updates * self.config.steps_per_update,
                "compile_cache_dir": compilation_cache.directory(),
                "compile_cache_hit": self.cache_hit, "diverged": self._diverged_list()}

    def _stopped_before_training(self, signum, checkpoints, t0) -> RunResult:
        self.compile_notice.close()  # the compilations go on in their threads, unannounced
        saved = checkpoints.steps()
        update = saved[-1] // self.config.steps_per_update if saved else 0
        message = (f"received {signal.Signals(signum).name} before training started (during set-up "
                   f"or compilation); nothing was lost: pgjax train --resume {self.run_dir} starts "
                   f"from {'its latest checkpoint' if update else 'step 0'}")
        self._status(INTERRUPTED, update, message)
        self._print(f"pgjax: {message}")
        return RunResult(self.run_dir, INTERRUPTED, np.full(self.population.size, np.nan), math.nan,
                         math.nan, time.perf_counter() - t0, message)

    def _already_complete(self, state) -> RunResult:
        status = COMPLETED if self.stop_update == self.num_updates else PAUSED
        summary_path = self.run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        self._print(f"{self.run_dir} has already run all {self.num_updates} updates; nothing to do"
                    if status == COMPLETED else f"{self.run_dir} has already run {self.stop_update} "
                    f"of its {self.num_updates} updates, as far as asked; nothing to do")
        self._status(status, self.stop_update, "already complete")
        returns = np.asarray(summary.get("eval_return_per_seed", [np.nan] * self.population.size), float)
        return RunResult(self.run_dir, status, returns, summary.get("steps_per_second", math.nan),
                         summary.get("compile_seconds", math.nan), 0.0, "already complete",
                         final_state=state, diverged=dict(self.diverged))


class _Loop:
    """The chunk loop of one run: train a chunk and log it (:meth:`_chunk`), then evaluate, show
    progress and checkpoint when due (:meth:`_between_chunks`); stop at the end of a chunk when a
    signal arrived or every member diverged."""

    def __init__(self, run: _Run, checkpoints, stop, state, meta, compiled, compile_seconds, t0, resume):
        self.r, self.checkpoints, self.stop = run, checkpoints, stop
        self.stopping = False  # a signal reached this or (multi-process) another process
        self.state, self.meta, self.compile_seconds, self.t0 = state, meta, compile_seconds, t0
        self.compiled, self.resume = compiled, resume
        self.done, self.train_seconds = meta["update"], meta["train_seconds"]
        self.last_eval, self.final_eval, self.metrics_np = meta["last_eval"], None, {}
        self.saved_update = self.done if resume and checkpoints.steps() else None
        self.last_save_time = time.monotonic()
        self.frozen = np.zeros(run.population.size, bool)
        self.frozen[list(run.diverged)] = True
        self.last_returns = np.full(run.population.size, np.nan)
        self.planner = chunks.ChunkPlanner(run.max_chunk, run.options.chunk_seconds,
                                           run.options.chunk_updates)
        self.eval_fn = run.eval_program
        self.thinner = thinning.Thinner(run.options.log_every_seconds)
        self.sinks: FanOut | None = None
        self.pbt_bounds = pbt_rounds.check_options(run.spec)

    def run(self) -> RunResult:
        """Train to the end (or a stop); a write that fails (:class:`WriteFailed`, from any sink,
        the episode cache, a checkpoint or status.json) stops the loop at once and is raised."""
        r = self.r
        sinks = self.sinks = open_sinks(r.spec, r.population, r.run_dir, r.out, r._config_record(),
                                        done_steps=self.done * r.config.steps_per_update,
                                        resume=self.resume, primary=r.primary, callbacks=r.callbacks)
        sinks.scalars({"perf/compile_seconds": self.compile_seconds},
                      self.done * r.config.steps_per_update)
        try:
            status, message = self._train(sinks)
            self._flush_rows()
        except BaseException:
            try:
                sinks.close()
            except WriteFailed:
                pass  # the error in flight is the one to report
            raise
        else:
            sinks.close()
        finally:
            self.eval_fn.wait()
        r.eval_compile_seconds = self.eval_fn.seconds
        return r.finish(status, message, self.final_eval, self.done, self.train_seconds,
                        self.compile_seconds, time.perf_counter() - self.t0, self.metrics_np,
                        self.state, self.meta)

    def _train(self, sinks) -> tuple[str, str]:
        r = self.r
        while self.done < r.stop_update:
            stopped = self._chunk(sinks)
            if stopped is not None:
                return NON_FINITE, stopped
            self._between_chunks(sinks)
            if self.stopping and self.done < r.stop_update:
                return INTERRUPTED, (
                    f"received {_signal_name(self.stop.received)} at update {self.done}: "
                    f"checkpoint saved at step {self.done * r.config.steps_per_update:,d}; continue "
                    f"with pgjax train --resume {r.run_dir}")
        if r.stop_update < r.num_updates:
            return PAUSED, f"stopped at update {r.stop_update} of {r.num_updates} as asked"
        return COMPLETED, ""

    # ---------------------------------------------------------------- a chunk
    def _chunk(self, sinks) -> str | None:
        """Train one chunk (sized by :class:`pgjax.run.chunks.ChunkPlanner`, ending at the next
        scheduled event), log it and handle members that diverged in it. Returns the message when
        the run must stop (every member diverged, or ``on_nonfinite="stop"``), else None."""
        r, done = self.r, self.done
        # every process runs the chunk size process 0 chose from its timing
        n = int(distributed.agree([self.planner.next_size(
            min(r.events.updates_to_next(done), r.stop_update - done))])[0, 0])
        self.planner.last_size = n
        layout = r.layout
        (state, frozen, metrics, healthy), seconds = chunks.timed(
            self.compiled, self.state, run_devices.place(jnp.asarray(self.frozen), layout.members()),
            run_devices.place(jnp.asarray(n, jnp.int32), layout.replicated()))
        self.planner.observe(n, seconds)
        metrics, healthy, frozen = run_devices.to_host((metrics, healthy, frozen))
        self.metrics_np = {name: value[:, :n] for name, value in metrics.items()}
        healthy = healthy[:, :n]
        self.train_seconds += seconds
        found = divergences(self.metrics_np, healthy, self.frozen)
        record = _chunk_record(self.metrics_np, r.labels, done, n, r.config.steps_per_update,
                               seconds, live_rows(healthy, self.frozen, found), found)
        rows = self.thinner.rows(record, seconds)
        if rows is not None:
            sinks.chunk(rows)
        if found:
            stopped = self._diverged(found, seconds, frozen)
            if stopped is not None:
                return stopped
        self.state, self.frozen, self.done = state, np.asarray(frozen), done + n
        _update_last_returns(self.metrics_np["episode_return"], self.last_returns)
        return None

    def _diverged(self, found, chunk_seconds, frozen_after) -> str | None:
        """Record the members that went non-finite in the chunk just run; stop (saving the state
        before the chunk) when every member has, or with ``on_nonfinite="stop"``."""
        r, done = self.r, self.done
        before = r.meta(done, self.train_seconds - chunk_seconds, self.last_eval)
        text = divergence_message(r.labels, found, done)
        for member, (k, metric) in found.items():
            r.diverged[member] = {"update": done + k + 1, "metric": metric}
        everyone = bool(np.asarray(frozen_after).all())
        if r.options.on_nonfinite != "stop" and not everyone:
            print(f"pgjax: warning: {text}: frozen at its last finite state and marked diverged; the "
                  "other members go on", file=sys.stderr, flush=True)
            return None
        if self.saved_update != done:
            self.save(done, self.state, before)
        why = "every member has diverged" if everyone else "--on-nonfinite stop"
        return (f"non-finite values: {text}; training stopped ({why}). The last good checkpoint is "
                f"step {self.saved_update * r.config.steps_per_update:,d} in "
                f"{r.run_dir / 'checkpoints' / 'latest'}")

    # ---------------------------------------------------------------- between chunks
    def _between_chunks(self, sinks) -> None:
        """Evaluate, show progress and checkpoint, each when due after the chunk that just ended."""
        r, done, n = self.r, self.done, self.planner.last_size
        self.eval_fn.check()  # an evaluation program that cannot fit stops the run at once
        steps_per_update, total = r.config.steps_per_update, r.num_updates * r.config.steps_per_update
        steps = done * steps_per_update
        sps = (done - self.meta["update"]) * steps_per_update * r.population.size \
            / max(self.train_seconds - self.meta["train_seconds"], 1e-9)
        if r.events.evaluation_due(done, n):
            self._evaluate(sinks)
        eta = (total - steps) * r.population.size / max(sps, 1e-9)
        evals = None if self.final_eval is None else self.final_eval["returns"].mean(axis=1)
        sinks.progress(Progress(steps, total, self.last_returns.copy(), sps, eta, self.last_eval,
                                frozenset(r.diverged), evals))
        sinks.scalars({"perf/steps_per_second": sps,
                       "perf/wall_seconds": time.perf_counter() - self.t0}, steps)
        # stop when a signal reached any process; the wall-time checkpoint follows process 0's clock
        agreed = distributed.agree([self.stop.received is not None,
                                    time.monotonic() - self.last_save_time])
        self.stopping, since_save = bool(agreed[:, 0].any()), float(agreed[0, 1])
        if r.events.checkpoint_due(done, n, since_save, self.stopping):
            self.save(done, self.state, r.meta(done, self.train_seconds, self.last_eval))

    def _evaluate(self, sinks) -> None:
        """Evaluate every member with the fixed keys, cache the episodes, hand the rows to the
        sinks, offer the state as the best checkpoint, and run a PBT round when one is due."""
        r, done = self.r, self.done
        steps = done * r.config.steps_per_update
        result = self.final_eval = run_devices.to_host(self.eval_fn(self.state.params,
                                                                    self.state.env_state))
        sinks.evaluation(eval_rows(result, r.labels, done, steps, r.options.greedy_eval,
                                   r.diverged), steps)
        if r.primary:
            episodes.save(r.run_dir, steps, result, [label["seed"] for label in r.labels],
                          r.options.greedy_eval)
        member_returns = result["returns"].mean(axis=1)
        healthy = member_returns[~self.frozen] if (~self.frozen).any() else member_returns
        self.last_eval = float(healthy.mean())
        self.checkpoints.offer_best(steps, self.state, r.meta(done, self.train_seconds,
                                                             self.last_eval), self.last_eval)
        if self.pbt_bounds is not None and done < r.num_updates:
            self._pbt_round(member_returns, done)

    def _pbt_round(self, member_returns, done) -> None:
        """Exploit and explore after the evaluation at ``done`` (:mod:`pgjax.run.pbt_rounds`); a
        diverged member scores NaN (ranked last) and is revived by the copy it receives."""
        scores = np.where(self.frozen, np.nan, member_returns)
        self.state, rows, copied = pbt_rounds.pbt_round(self.state, scores, done, self.r.spec,
                                                        self.pbt_bounds)
        self.frozen = np.array(self.frozen)  # the chunk's frozen flags come back read-only
        self.frozen[copied] = False
        if self.r.primary:
            log = JsonlFile(pbt_rounds.rows_path(self.r.run_dir))
            for row in rows:
                log.write(row)
            log.close()

    def _flush_rows(self) -> None:
        """Hand the unfinished metric row to the sinks (before a checkpoint, at the end)."""
        if self.sinks is None:
            return
        rows = self.thinner.flush()
        if rows is not None:
            self.sinks.chunk(rows)
        self.sinks.flush()

    def save(self, update, state, meta) -> None:
        self._flush_rows()
        self.checkpoints.save(update * self.r.config.steps_per_update, state, meta)
        self.saved_update, self.last_save_time = update, time.monotonic()
        self.r._status(run_folder.RUNNING, update)


def _signal_name(signum) -> str:
    return signal.Signals(signum).name if signum is not None else "a signal in another process"


def _update_last_returns(chunk_returns, last_returns) -> None:
    for m in range(len(last_returns)):
        finite = chunk_returns[m][np.isfinite(chunk_returns[m])]
        if finite.size:
            last_returns[m] = finite[-1]


def reevaluation(run_dir: Path, algo, config, settings, seeds, *, episodes: int = 200,
                 step: int | None = None, which: str = "latest", greedy: bool = True,
                 members: list[int] | None = None) -> tuple[str, list[dict]]:
    """(markdown table, a row per member) of evaluating the saved checkpoint ``step`` (default: the
    newest intact one of ``which``) of every member (or only ``members``) with the fixed
    evaluation keys; a sweep's table ends with each setting's mean ± std over its seeds. The run
    folder is only read (read-only checkpoints): a run that is training there is left alone."""
    population = Population(tuple(seeds), tuple(settings))
    if not run_folder.has_checkpoint(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no checkpoint (checkpoints/ is missing or empty): "
                                "nothing to evaluate; resume or rerun the training first")
    like = jax.eval_shape(init_program(config), population.keys(), population.hparams())
    checkpoints = Checkpoints(run_dir, read_only=True)
    try:
        state, meta = checkpoints.restore(like, step=step, which=which)
        step = checkpoints.restored_step
    finally:
        checkpoints.close()
    result = jax.tree.map(np.asarray, make_eval_fn(config, episodes, greedy, 0)(state.params, state.env_state))
    rows = [{**row, "checkpoint": which}
            for row in eval_rows(result, population.labels(), meta["update"], step, greedy)]
    chosen = set(range(population.size) if members is None else members)
    rows = [row for row in rows if row["member"] in chosen]
    names = population.setting_names()
    setting_of = {m: g for g, group in enumerate(population.groups()) for m in group}
    lines = [f"{which} checkpoint at step {step:,d} of {run_dir}: {episodes} "
             f"{'greedy' if greedy else 'sampled'} episodes per member", "",
             "| member | setting | seed | return mean | std | median | length mean |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['member']} | {names[setting_of[r['member']]]} | {r['seed']} | "
              f"{r['eval_return_mean']:.2f} | {r['eval_return_std']:.2f} | "
              f"{r['eval_return_median']:.2f} | {r['eval_length_mean']:.1f} |" for r in rows]
    for g in sorted({setting_of[r["member"]] for r in rows}):
        means = np.asarray([r["eval_return_mean"] for r in rows if setting_of[r["member"]] == g])
        lines.append(f"\n{names[g]}: {means.mean():.2f} ± {means.std():.2f} over {means.size} seed(s)")
    return "\n".join(lines), rows


def record_reevaluation(path: Path, rows: list[dict]) -> Path:
    """Append :func:`reevaluation`'s rows to the JSONL file ``path`` (``pgjax eval --out``;
    :class:`WriteFailed` when it cannot be written); returns the file."""
    log = JsonlFile(Path(path))
    try:
        for row in rows:
            log.write(row)
    finally:
        try:
            log.close()
        except WriteFailed:
            pass  # the write that failed first is the one raised
    return log.path
