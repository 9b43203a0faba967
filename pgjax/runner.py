"""The host loop: jitted chunks of updates for every population member at once, with I/O between
chunks (shared/DESIGN.md, "Host side").

The population is seeds × hyperparameter settings, vmapped in one program. A run folder holds

    config.json        algorithm, config, hyperparameters (per setting), seeds, members, device
    metrics.jsonl      one line per update and per member (every metric of DESIGN.md, plus fps)
    eval.jsonl         one line per evaluation and per member
    tb/<member>/       TensorBoard event files (tensorboardX)
    eval/step_*.npz    the cache of evaluation episodes (:mod:`pgjax.episodes`)
    checkpoints/       orbax: the latest N and the best by evaluation return (:mod:`pgjax.checkpoint`)
    summary.json       final evaluation, steps/s, compile and wall time, device
    plots/             learning curves with bootstrap confidence intervals (:mod:`pgjax.report`)

Evaluation runs a handful of times per run and at the end, with fixed keys (:mod:`pgjax.evaluation`).
Checkpoints are written every ``checkpoint_every`` env steps and every ``checkpoint_minutes``;
SIGINT/SIGTERM finish the current chunk, save and stop; a non-finite loss or parameter stops the
run before that state is saved. ``resume=True`` continues from the latest checkpoint with the
same chunk schedule, so on CPU the result is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pgjax import algorithms, episodes, evaluation
from pgjax.checkpoint import Checkpoints
from pgjax.config import (ConfigError, config_to_dict, hparams_as_arrays, hparams_to_dict, require,
                          validate_hparams)
from pgjax.train import scan_updates
from pgjax.writers import (JsonlWriter, TensorBoardWriter, WandbWriter, truncate_jsonl,
                           wandb_available, write_json_atomic)

COMPLETED, INTERRUPTED, NON_FINITE = "completed", "interrupted", "non_finite"


@dataclass(frozen=True)
class RunOptions:
    """Host-side choices; none of them changes the compiled update."""
    eval_episodes: int = 200
    num_evals: int = 5                   # evaluations spread over the run, the last at the end
    eval_every: int | None = None        # env steps per member between evaluations (overrides num_evals)
    greedy_eval: bool = True
    cache_episodes: int = 20             # episodes per member kept step by step in eval/ (0: returns only)
    checkpoint_every: int | None = None  # env steps per member (default: at every evaluation)
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 3
    target_chunks: int = 20
    tensorboard: bool = True
    wandb_project: str | None = None
    plots: bool = True

    def validate(self) -> None:
        for name in ("eval_episodes", "num_evals", "keep_checkpoints", "target_chunks"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, name, value, "must be a positive integer")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value > 0), name, value,
                    "must be a positive number of env steps")
        require(isinstance(self.cache_episodes, int) and 0 <= self.cache_episodes, "cache_episodes",
                self.cache_episodes, "must be an integer ≥ 0")
        require(self.checkpoint_minutes > 0, "checkpoint_minutes", self.checkpoint_minutes,
                "must be a positive number of minutes")
        if self.wandb_project is not None and not wandb_available():
            raise ConfigError(f"wandb={self.wandb_project!r} is not allowed: Weights & Biases is not "
                              "installed (pip install 'pgjax[wandb]')")


@dataclass
class RunResult:
    run_dir: Path
    status: str                      # completed | interrupted | non_finite
    eval_returns: np.ndarray         # [num_members] mean final evaluation return (NaN if none)
    steps_per_second: float
    compile_seconds: float
    wall_seconds: float
    message: str = ""
    metrics_last: dict = field(default_factory=dict)
    final_state: object = None


@dataclass(frozen=True)
class Population:
    """Members = hyperparameter settings × seeds, in that order (setting-major)."""
    seeds: tuple[int, ...]
    settings: tuple  # Hparams, one per setting

    @property
    def size(self) -> int:
        return len(self.seeds) * len(self.settings)

    def labels(self) -> list[dict]:
        swept = _swept_fields(self.settings)
        return [{"seed": seed, "member": i, **{f"hp_{k}": hparams_to_dict(hp)[k] for k in swept}}
                for i, (hp, seed) in enumerate((hp, s) for hp in self.settings for s in self.seeds)]

    def names(self) -> list[str]:
        return ["_".join(f"{k[3:]}={v:g}" if k.startswith("hp_") else f"{k}{v}"
                         for k, v in label.items() if k != "member") for label in self.labels()]

    def keys(self):
        seeds = jnp.asarray([s for _ in self.settings for s in self.seeds], jnp.uint32)
        return jax.vmap(jax.random.key)(seeds)

    def hparams(self):
        """The member-stacked hyperparameter pytree (leaves ``[M]``)."""
        per_member = [hparams_as_arrays(hp) for hp in self.settings for _ in self.seeds]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *per_member)


def _swept_fields(settings) -> list[str]:
    if len(settings) < 2:
        return []
    dicts = [hparams_to_dict(hp) for hp in settings]
    return [k for k in dicts[0] if any(d[k] != dicts[0][k] for d in dicts[1:])]


def choose_chunk(num_updates: int, target_chunks: int = 20) -> int:
    """Updates per jitted chunk: a divisor of ``num_updates`` near ``num_updates/target_chunks`` so
    one compiled program covers the run."""
    target = max(1, num_updates // target_chunks)
    for k in range(target, 0, -1):
        if num_updates % k == 0 and k >= target // 2:
            return k
    return target


def schedule(num_updates: int, steps_per_update: int, every_steps: int | None, count: int) -> list[int]:
    """Update counts after which an event (evaluation, checkpoint) is due, ending at the last update."""
    if every_steps is not None:
        every = max(1, math.ceil(every_steps / steps_per_update))
        points = list(range(every, num_updates, every))
    else:
        points = [round(num_updates * i / count) for i in range(1, count)]
    return sorted({p for p in points if 0 < p < num_updates} | {num_updates})


_COMPILED_CHUNKS: dict = {}


def _compile_chunk(config, state, num_updates: int):
    """AOT-compile ``num_updates`` vmapped updates (so compile time is measured apart). Programs
    are kept per (config, chunk length, state shapes): runs in the same process (a notebook, a
    test session, a resumed run) reuse them. An update chunk has no blocking custom calls, so on
    CPU it gets XLA's faster concurrency-optimised scheduler (:func:`pgjax.compile_program`)."""
    from pgjax import compile_program
    shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype)), state)
    cache_key = (config, num_updates, jax.tree.structure(state), tuple(jax.tree.leaves(shapes)))
    if cache_key not in _COMPILED_CHUNKS:
        _COMPILED_CHUNKS[cache_key] = compile_program(jax.jit(jax.vmap(
            lambda s: scan_updates(config, s, num_updates))).lower(state))
    return _COMPILED_CHUNKS[cache_key]


@functools.lru_cache(maxsize=16)
def make_eval_fn(config, num_episodes: int, greedy: bool, cache_episodes: int):
    """Evaluation of every member with the fixed evaluation key, recording ``cache_episodes``."""
    return jax.jit(jax.vmap(lambda params, env_state: evaluation.evaluate(
        config, params, env_state, evaluation.eval_key(), num_episodes=num_episodes, greedy=greedy,
        record=cache_episodes)))


def eval_rows(result: dict, labels: list[dict], update: int, env_steps: int, greedy: bool) -> list[dict]:
    returns, lengths = np.asarray(result["returns"]), np.asarray(result["lengths"])
    return [{**label, "update": update, "env_steps": env_steps, "greedy": greedy,
             "eval_episodes": returns.shape[1], "eval_return_mean": float(returns[m].mean()),
             "eval_return_std": float(returns[m].std()),
             "eval_return_median": float(np.median(returns[m])),
             "eval_length_mean": float(lengths[m].mean())}
            for m, label in enumerate(labels)]


def first_non_finite(metrics: dict[str, np.ndarray], params) -> tuple[str, int, int] | None:
    """(metric, chunk index, member) of the first non-finite loss or gradient norm in a chunk, or
    ("parameters", last index, member) when the parameters themselves are not finite."""
    watched = sorted(n for n in metrics if "loss" in n or n == "grad_norm")
    first = None
    for name in watched:
        bad = ~np.isfinite(np.asarray(metrics[name], np.float64))   # [M, K]
        if bad.any():
            members, updates = np.nonzero(bad)
            k = int(updates.min())
            candidate = (name, k, int(members[updates == k][0]))
            if first is None or k < first[1]:
                first = candidate
    if first is not None:
        return first
    # reduced on the device: only one flag per member and leaf comes back to the host
    finite = [jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(axis=1) for leaf in jax.tree.leaves(params)]
    members_ok = np.asarray(jnp.all(jnp.stack(finite), axis=0))
    if not members_ok.all():
        return "parameters", next(iter(metrics.values())).shape[1] - 1, int(np.argmin(members_ok))
    return None


class _StopSignals:
    """SIGINT/SIGTERM set a flag that the loop checks between chunks (a second signal aborts)."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _progress_line(done_steps, total_steps, returns, sps, eta, last_eval):
    shown = returns if len(returns) <= 8 else returns[:8]
    per_member = " ".join("  nan " if not np.isfinite(r) else f"{r:6.1f}" for r in shown)
    if len(returns) > 8:
        per_member += f" … (mean {np.nanmean(returns):.1f} over {len(returns)})"
    eval_part = f" | eval {last_eval:7.1f}" if last_eval is not None else ""
    return (f"  steps {done_steps:>10,d}/{total_steps:,d} | return/member [{per_member}] | "
            f"{sps:>9,.0f} steps/s | ETA {eta:6.1f}s{eval_part}")


def run(algo_name: str, config, hparams, seeds: list[int], run_dir: Path, *,
        options: RunOptions | None = None, resume: bool = False, out=None) -> RunResult:
    """Train every member of seeds × ``hparams`` (one Hparams or a list of them) of ``algo_name``
    in one vmapped program, evaluating, logging and checkpointing between chunks."""
    options = options or RunOptions()
    options.validate()
    out = out or sys.stdout  # looked up per call (a default bound at import goes stale under capture)
    settings = tuple(hparams) if isinstance(hparams, (list, tuple)) else (hparams,)
    for hp in settings:
        validate_hparams(hp)
    population = Population(tuple(seeds), settings)
    if not resume and (Path(run_dir) / "checkpoints").exists():
        raise ConfigError(f"run_dir={str(run_dir)!r} is not allowed: it already holds a run with "
                          "checkpoints; resume it (resume=True, pgjax train --resume) or use a new folder")
    if resume:
        check_resumable(Path(run_dir), algo_name, config, population)
    return _Run(algorithms.get(algo_name), algo_name, config, population, Path(run_dir), options,
                out).execute(resume)


def check_resumable(run_dir: Path, algo_name: str, config, population: Population) -> None:
    """Refuse to resume ``run_dir`` with another algorithm, config, hyperparameters or seeds,
    naming every differing field."""
    import json

    from pgjax.config import config_differences, config_from_dict
    path = run_dir / "config.json"
    if not path.exists():
        raise ConfigError(f"run_dir={str(run_dir)!r} is not allowed: no config.json there (not a run folder)")
    saved = json.loads(path.read_text())
    if saved["algorithm"] != algo_name:
        raise ConfigError(f"cannot resume {run_dir}: algorithm (saved {saved['algorithm']!r}, "
                          f"requested {algo_name!r})")
    differences = config_differences(config_from_dict(type(config), saved["config"]), config)
    requested = [hparams_to_dict(hp) for hp in population.settings]
    if saved.get("hparams_settings", [saved["hparams"]]) != requested:
        differences.append(f"hyperparameters (saved {saved.get('hparams_settings')}, requested {requested})")
    if list(saved["seeds"]) != list(population.seeds):
        differences.append(f"seeds (saved {saved['seeds']}, requested {list(population.seeds)})")
    if differences:
        raise ConfigError(f"cannot resume {run_dir}: the requested configuration differs in "
                          + "; ".join(differences))


class _Run:
    """One training run's host state (kept out of the jitted code)."""

    def __init__(self, algo, algo_name, config, population, run_dir, options, out):
        self.algo, self.algo_name, self.config = algo, algo_name, config
        self.population, self.run_dir, self.options, self.out = population, run_dir, options, out
        self.labels = [{**label, "algorithm": algo_name} for label in population.labels()]
        self.device = str(jax.devices()[0])
        self.num_updates = config.num_updates
        self.chunk = choose_chunk(self.num_updates, options.target_chunks)
        self.eval_points = schedule(self.num_updates, config.steps_per_update, options.eval_every,
                                    options.num_evals)
        self.ckpt_points = (self.eval_points if options.checkpoint_every is None else schedule(
            self.num_updates, config.steps_per_update, options.checkpoint_every, 1))

    # ---------------------------------------------------------------- set-up
    def _config_record(self) -> dict:
        return {"algorithm": self.algo_name, "config": config_to_dict(self.config),
                "hparams": hparams_to_dict(self.population.settings[0]),
                "hparams_settings": [hparams_to_dict(hp) for hp in self.population.settings],
                "seeds": list(self.population.seeds), "members": self.labels,
                "device": self.device, "num_updates": self.num_updates,
                "steps_per_update": self.config.steps_per_update, "chunk": self.chunk,
                "options": dataclasses.asdict(self.options)}

    def _init_state(self):
        keys, hp = self.population.keys(), self.population.hparams()
        return jax.jit(jax.vmap(lambda key, h: self.algo.init(self.config, h, key)))(keys, hp)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # ---------------------------------------------------------------- main loop
    def execute(self, resume: bool) -> RunResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoints = Checkpoints(self.run_dir, keep=self.options.keep_checkpoints)
        try:
            return self._execute(checkpoints, resume)
        finally:
            checkpoints.close()

    def _execute(self, checkpoints: Checkpoints, resume: bool) -> RunResult:
        run_dir, config, options = self.run_dir, self.config, self.options
        t0 = time.perf_counter()
        meta = {"update": 0, "train_seconds": 0.0, "last_eval": None}
        if resume:
            state, meta = checkpoints.restore(jax.eval_shape(self._init_state))
            self._print(f"resuming {run_dir} from update {meta['update']} "
                        f"({meta['update'] * config.steps_per_update:,d} env steps per member)")
            done_steps = meta["update"] * config.steps_per_update
            if meta["update"] >= self.num_updates:
                return self._already_complete(state)
            truncate_jsonl(run_dir / "metrics.jsonl", lambda row: row.get("update", 0) <= meta["update"])
            truncate_jsonl(run_dir / "eval.jsonl", lambda row: row.get("update", 0) <= meta["update"])
        else:
            state = self._init_state()
            done_steps = 0
            for name in ("metrics.jsonl", "eval.jsonl"):
                (run_dir / name).unlink(missing_ok=True)
        write_json_atomic(run_dir / "config.json", self._config_record())
        compiled = {self.chunk: _compile_chunk(config, state, self.chunk)}
        eval_fn = make_eval_fn(config, options.eval_episodes, options.greedy_eval, options.cache_episodes)
        compile_seconds = time.perf_counter() - t0
        self._print(f"{self.algo_name} on {config.env_id}: {self.population.size} member(s) "
                    f"(seeds {list(self.population.seeds)} × {len(self.population.settings)} setting(s)), "
                    f"{self.num_updates} updates of {config.steps_per_update} steps, chunks of "
                    f"{self.chunk}; compiled in {compile_seconds:.1f}s on {self.device}")

        writer = JsonlWriter(run_dir / "metrics.jsonl")
        eval_writer = JsonlWriter(run_dir / "eval.jsonl")
        loggers = []
        if options.tensorboard:
            loggers.append(TensorBoardWriter(run_dir / "tb", self.population.names(),
                                             purge_step=done_steps + 1 if resume else None))
        if options.wandb_project:
            loggers.append(WandbWriter(options.wandb_project, run_dir.name, self._config_record(), run_dir,
                                       self.population.names()))
        for logger in loggers:
            logger.write_scalars({"perf/compile_seconds": compile_seconds}, done_steps)

        done, train_seconds = meta["update"], meta["train_seconds"]
        last_returns = np.full(self.population.size, np.nan)
        last_eval = meta["last_eval"]
        final_eval = None
        metrics_np: dict = {}
        status, message = COMPLETED, ""
        last_save_time = time.monotonic()
        saved_update = done if resume else None
        with _StopSignals() as stop:
            while done < self.num_updates:
                n = min(self.chunk, self.num_updates - done)
                if n not in compiled:
                    compiled[n] = _compile_chunk(config, state, n)
                t = time.perf_counter()
                new_state, metrics = compiled[n](state)
                metrics_np = jax.tree.map(np.asarray, metrics)
                chunk_seconds = time.perf_counter() - t
                train_seconds += chunk_seconds
                self._log_chunk(metrics_np, done, n, chunk_seconds, writer, loggers)
                bad = first_non_finite(metrics_np, new_state.params)
                if bad is not None:
                    name, k, member = bad
                    if saved_update != done:
                        checkpoints.save(done * config.steps_per_update, state, self._meta(
                            done, train_seconds - chunk_seconds, last_eval))
                    status = NON_FINITE
                    message = (f"non-finite {name} at update {done + k + 1} "
                               f"(member {member}, seed {self.labels[member]['seed']}); training "
                               f"stopped. The last good checkpoint is step "
                               f"{done * config.steps_per_update:,d} in {run_dir / 'checkpoints' / 'latest'}")
                    break
                state = new_state
                done += n
                self._update_last_returns(metrics_np["episode_return"], last_returns)
                steps = done * config.steps_per_update
                sps = (steps - meta["update"] * config.steps_per_update) * self.population.size \
                    / max(train_seconds - meta["train_seconds"], 1e-9)
                if done >= self._next(self.eval_points, done - n):
                    final_eval = self._evaluate(eval_fn, state, done, eval_writer, loggers)
                    last_eval = float(final_eval["returns"].mean())
                    checkpoints.save_best(steps, state, self._meta(done, train_seconds, last_eval),
                                          last_eval)
                eta = (self.num_updates - done) * config.steps_per_update * self.population.size \
                    / max(sps, 1e-9)
                self._print(_progress_line(steps, self.num_updates * config.steps_per_update,
                                           last_returns, sps, eta, last_eval))
                for logger in loggers:
                    logger.write_scalars({"perf/steps_per_second": sps,
                                          "perf/wall_seconds": time.perf_counter() - t0}, steps)
                due = (done >= self._next(self.ckpt_points, done - n) or done == self.num_updates
                       or time.monotonic() - last_save_time > 60 * options.checkpoint_minutes
                       or stop.received is not None)
                if due:
                    checkpoints.save(steps, state, self._meta(done, train_seconds, last_eval))
                    saved_update, last_save_time = done, time.monotonic()
                if stop.received is not None and done < self.num_updates:
                    status = INTERRUPTED
                    message = (f"received {signal.Signals(stop.received).name} at update {done}: "
                               f"checkpoint saved at step {steps:,d}; continue with "
                               f"pgjax train --resume {run_dir}")
                    break
        writer.close()
        eval_writer.close()
        for logger in loggers:
            logger.close()
        return self._finish(status, message, final_eval, done, train_seconds, compile_seconds,
                            time.perf_counter() - t0, metrics_np, state, meta)

    # ---------------------------------------------------------------- pieces
    @staticmethod
    def _next(points: list[int], after: int) -> int:
        """The first scheduled update count strictly after ``after``."""
        return next((p for p in points if p > after), points[-1])

    def _meta(self, done, train_seconds, last_eval) -> dict:
        return {"update": int(done), "train_seconds": float(train_seconds), "last_eval": last_eval}

    def _log_chunk(self, metrics_np, done, n, chunk_seconds, writer, loggers) -> None:
        """Add fps to the chunk's ``[M, n]`` metrics and write them to every logger."""
        size, steps_per_update = self.population.size, self.config.steps_per_update
        fps = n * steps_per_update * size / max(chunk_seconds, 1e-9)
        metrics_np["fps"] = np.full((size, n), fps)
        writer.write_chunk(metrics_np, self.labels, first_update=done + 1)
        env_steps = np.broadcast_to((done + 1 + np.arange(n)) * steps_per_update, (size, n))
        for logger in loggers:
            logger.write_chunk(metrics_np, env_steps)

    @staticmethod
    def _update_last_returns(chunk_returns, last_returns) -> None:
        for m in range(len(last_returns)):
            finite = chunk_returns[m][np.isfinite(chunk_returns[m])]
            if finite.size:
                last_returns[m] = finite[-1]

    def _evaluate(self, eval_fn, state, done, eval_writer, loggers) -> dict:
        config, options = self.config, self.options
        steps = done * config.steps_per_update
        result = jax.tree.map(np.asarray, eval_fn(state.params, state.env_state))
        rows = eval_rows(result, self.labels, done, steps, options.greedy_eval)
        for row in rows:
            eval_writer.write(row)
        for logger in loggers:
            for m, row in enumerate(rows):
                logger.write_scalars({"eval/return_mean": row["eval_return_mean"],
                                      "eval/return_std": row["eval_return_std"],
                                      "eval/length_mean": row["eval_length_mean"]}, steps, member=m)
        episodes.save(self.run_dir, steps, result, [label["seed"] for label in self.labels],
                      options.greedy_eval)
        return result

    def _finish(self, status, message, final_eval, done, train_seconds, compile_seconds, wall,
                metrics_np, state, meta) -> RunResult:
        config = self.config
        trained_steps = (done - meta["update"]) * config.steps_per_update * self.population.size
        sps = trained_steps / max(train_seconds - meta["train_seconds"], 1e-9)
        if final_eval is not None:
            eval_returns = final_eval["returns"].mean(axis=1)
        else:
            eval_returns = np.full(self.population.size, np.nan)
        if message:
            print(f"pgjax: {message}", file=sys.stderr if status == NON_FINITE else self.out, flush=True)
        last = {k: v[:, -1] for k, v in metrics_np.items()} if metrics_np else {}
        if status != COMPLETED:
            return RunResult(self.run_dir, status, eval_returns, sps, compile_seconds, wall, message,
                             last, state)
        summary = {
            "algorithm": self.algo_name, "env_id": config.env_id,
            "seeds": list(self.population.seeds), "members": self.labels,
            "eval_episodes": self.options.eval_episodes, "eval_greedy": self.options.greedy_eval,
            "eval_return_per_seed": eval_returns,
            "eval_episode_returns": final_eval["returns"] if final_eval is not None else None, "eval_return_mean": float(eval_returns.mean()),
            "eval_return_std": float(eval_returns.std()), "steps_per_second": sps,
            "compile_seconds": compile_seconds, "wall_seconds": wall, "device": self.device,
            "env_steps_per_seed": self.num_updates * config.steps_per_update,
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        self._print(summary_table(summary))
        if self.options.plots:
            self._plots()
        return RunResult(self.run_dir, status, eval_returns, sps, compile_seconds, wall, message,
                         last, state)

    def _already_complete(self, state) -> RunResult:
        import json
        summary_path = self.run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        self._print(f"{self.run_dir} has already run all {self.num_updates} updates; nothing to do")
        returns = np.asarray(summary.get("eval_return_per_seed", [np.nan] * self.population.size), float)
        return RunResult(self.run_dir, COMPLETED, returns, summary.get("steps_per_second", math.nan),
                         summary.get("compile_seconds", math.nan), 0.0, "already complete",
                         final_state=state)

    def _plots(self) -> None:
        from pgjax import report
        report.plot_run(self.run_dir)


def summary_table(summary: dict) -> str:
    per_seed = ", ".join(f"{r:.1f}" for r in summary["eval_return_per_seed"])
    rows = [
        ("algorithm", summary["algorithm"]), ("env", summary["env_id"]),
        ("seeds", str(summary["seeds"])),
        (f"eval return ({summary['eval_episodes']} episodes/seed)",
         f"{summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f}  [{per_seed}]"),
        ("env steps per seed", f"{summary['env_steps_per_seed']:,d}"),
        ("steps/s (all seeds, after compile)", f"{summary['steps_per_second']:,.0f}"),
        ("compile time", f"{summary['compile_seconds']:.1f} s"),
        ("wall time", f"{summary['wall_seconds']:.1f} s"),
        ("device", summary["device"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "| " + "metric".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def reevaluate(run_dir: Path, algo, config, settings, seeds, *, episodes: int = 200,
               step: int | None = None, which: str = "latest", greedy: bool = True) -> str:
    """Evaluate the saved checkpoint ``step`` (default: the newest of ``which``) of every member
    with the fixed evaluation keys; appends to ``reeval.jsonl`` and returns a markdown table."""
    population = Population(tuple(seeds), tuple(settings))
    like = jax.eval_shape(lambda: jax.vmap(lambda key, h: algo.init(config, h, key))(
        population.keys(), population.hparams()))
    checkpoints = Checkpoints(run_dir)
    try:
        state, meta = checkpoints.restore(like, step=step, which=which)
        saved_steps = checkpoints.steps(which)
    finally:
        checkpoints.close()
    step = saved_steps[-1] if step is None else step
    result = jax.tree.map(np.asarray, make_eval_fn(config, episodes, greedy, 0)(state.params, state.env_state))
    rows = eval_rows(result, population.labels(), meta["update"], step, greedy)
    writer = JsonlWriter(Path(run_dir) / "reeval.jsonl")
    for row in rows:
        writer.write({**row, "checkpoint": which})
    writer.close()
    lines = [f"{which} checkpoint at step {step:,d} of {run_dir}: {episodes} "
             f"{'greedy' if greedy else 'sampled'} episodes per member", "",
             "| member | seed | return mean | std | median | length mean |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['member']} | {r['seed']} | {r['eval_return_mean']:.2f} | {r['eval_return_std']:.2f} | "
              f"{r['eval_return_median']:.2f} | {r['eval_length_mean']:.1f} |" for r in rows]
    means = np.asarray([r["eval_return_mean"] for r in rows])
    lines.append(f"\nmean over members: {means.mean():.2f} ± {means.std():.2f}")
    return "\n".join(lines)
