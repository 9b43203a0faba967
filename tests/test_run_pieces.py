"""The host loop's small pieces, each on its own: the evaluation/checkpoint schedule and the
checkpoint policy, divergence bookkeeping, the population's members, the summary, and the
signal flag. (The chunk program and the sinks are tested through test_runner and test_faults,
the whole loop through test_all_paths.)"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from pgjax.algorithms import ppo
from pgjax.run.background import StopSignals, StoppedBeforeTraining, while_listening
from pgjax.run.divergence import divergence_message, divergences, live_rows
from pgjax.run.options import RunOptions
from pgjax.run.population import Population
from pgjax.run.schedule import Events, next_point, schedule
from pgjax.run.summary import summary_record, summary_table


# --------------------------------------------------------------------------- schedule

@pytest.mark.parametrize("num_updates, steps, every, count, expected", [
    (10, 100, None, 5, [2, 4, 6, 8, 10]),         # evenly spread, the last at the end
    (10, 100, None, 3, [3, 7, 10]),               # round(10/3)=3, round(20/3)=7
    (10, 100, 250, 1, [3, 6, 9, 10]),             # every ceil(250/100)=3 updates, plus the end
    (10, 100, 50, 1, list(range(1, 11))),         # finer than an update: every update
    (5, 100, None, 1, [5]),                       # one event: at the end
    (3, 100, None, 10, [1, 2, 3]),                # more events than updates: each update once
])
def test_schedule_points(num_updates, steps, every, count, expected):
    assert schedule(num_updates, steps, every, count) == expected


def test_next_point_is_strictly_after():
    assert next_point((3, 6, 10), 0) == 3
    assert next_point((3, 6, 10), 3) == 6
    assert next_point((3, 6, 10), 10) == 10  # nothing after the end: the end


def test_events_chunks_end_at_the_next_evaluation_or_checkpoint():
    events = Events.for_run(12, 100, RunOptions(num_evals=3, checkpoint_every=500))
    assert events.eval_points == (4, 8, 12) and events.checkpoint_points == (5, 10, 12)
    assert [events.updates_to_next(d) for d in (0, 4, 5, 8, 10)] == [4, 1, 3, 2, 2]
    assert events.evaluation_due(4, 4) and not events.evaluation_due(3, 3)
    assert events.evaluation_due(9, 2)  # a chunk 7 -> 9 passed 8
    # by default checkpoints follow wall time, not the evaluations: the end is the only point,
    # and chunks end at evaluations alone
    default = Events.for_run(12, 100, RunOptions(num_evals=3))
    assert default.checkpoint_points == (12,) and default.eval_points == (4, 8, 12)
    assert [default.updates_to_next(d) for d in (0, 4, 9)] == [4, 4, 3]


def test_checkpoint_policy():
    events = Events.for_run(12, 100, RunOptions(num_evals=3, checkpoint_minutes=2.0))
    assert events.checkpoint_seconds == 120.0
    assert RunOptions().checkpoint_minutes == 5.0
    due = lambda done, chunk, seconds=0.0, stopping=False: events.checkpoint_due(done, chunk, seconds, stopping)
    assert not due(4, 4)                   # an evaluation is no checkpoint by itself
    assert not due(3, 3)                   # nothing due
    every = Events.for_run(12, 100, RunOptions(num_evals=3, checkpoint_every=400))
    assert every.checkpoint_due(4, 4, 0.0, False)  # a scheduled point (--checkpoint-every)
    assert due(3, 3, seconds=121.0)        # wall time since the last save
    assert not due(3, 3, seconds=119.0)
    assert due(3, 3, stopping=True)        # a signal arrived: save before stopping
    assert due(12, 1)                      # the end of the run


# --------------------------------------------------------------------------- divergence

def test_divergences_and_live_rows():
    healthy = np.array([[True, True, True], [True, False, False], [True, True, True]])
    frozen = np.array([False, False, True])
    metrics = {"loss": np.array([[1., 1., 1.], [1., np.nan, np.nan], [np.nan] * 3]),
               "grad_norm": np.ones((3, 3)), "episode_return": np.full((3, 3), np.nan)}
    found = divergences(metrics, healthy, frozen)
    assert found == {1: (1, "loss")}  # member 2 was frozen before the chunk: not new
    live = live_rows(healthy, frozen, found)
    np.testing.assert_array_equal(live, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    # parameters went non-finite while every watched metric stayed finite
    finite = {"loss": np.ones((3, 3)), "grad_norm": np.ones((3, 3))}
    assert divergences(finite, healthy, frozen) == {1: (1, "parameters")}


def test_divergence_message_names_member_seed_setting_and_update():
    labels = [{"seed": 0, "member": 0, "hp_learning_rate": 0.1},
              {"seed": 1, "member": 1, "hp_learning_rate": 10.0}]
    text = divergence_message(labels, {1: (2, "loss")}, done=40)
    assert text == "member 1 (seed 1, learning_rate=10) went non-finite (loss) at update 43"


# --------------------------------------------------------------------------- population

def test_population_members_are_setting_major():
    settings = (ppo.Hparams(learning_rate=1e-3), ppo.Hparams(learning_rate=3e-3))
    population = Population((7, 8), settings)
    assert population.size == 4
    assert [(l["hp_learning_rate"], l["seed"]) for l in population.labels()] == [
        (1e-3, 7), (1e-3, 8), (3e-3, 7), (3e-3, 8)]
    assert population.setting_names() == ["learning_rate=0.001", "learning_rate=0.003"]
    assert population.setting_values() == [{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]
    assert Population((0,), settings[:1]).setting_names() == ["setting0"]
    np.testing.assert_allclose(np.asarray(population.hparams().learning_rate), [1e-3, 1e-3, 3e-3, 3e-3])
    assert Population((0,), settings[:1]).labels() == [{"seed": 0, "member": 0}]  # nothing swept


# --------------------------------------------------------------------------- summary

def test_summary_record_and_table():
    run = {"algorithm": "ppo", "env_id": "CartPole-v1", "status": "completed", "seeds": [0, 1],
           "members": [{"seed": 0}, {"seed": 1}], "eval_episodes": 3, "eval_greedy": True,
           "device": "cpu:0", "env_steps_per_seed": 2048, "diverged": []}
    returns = np.array([[10., 20., 30.], [40., 50., 60.]])
    summary = summary_record(run, {"returns": returns}, steps_per_second=1234.5,
                             compile_seconds=2.0, compile_seconds_eval=0.5, wall_seconds=9.0)
    np.testing.assert_allclose(summary["eval_return_per_seed"], [20.0, 50.0])
    assert summary["eval_return_mean"] == 35.0 and summary["eval_return_std"] == 15.0
    table = summary_table(summary)
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[3:]}
    assert rows["eval return (3 episodes/seed)"] == "35.0 ± 15.0  [20.0, 50.0]"
    assert rows["steps/s (all seeds, after compile)"] == "1,234"
    assert rows["compile time (train program; evaluation)"] == "2.0 s; 0.5 s"
    assert rows["env steps per seed"] == "2,048" and rows["wall time"] == "9.0 s"
    nothing = summary_record(run, None, steps_per_second=1.0, compile_seconds=1.0,
                             compile_seconds_eval=None, wall_seconds=1.0)
    assert np.isnan(nothing["eval_return_mean"]) and nothing["eval_episode_returns"] is None


# --------------------------------------------------------------------------- signals

def test_stop_signals_turn_sigint_into_a_flag_and_restore_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        assert stop.installed and stop.received is None
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while stop.received is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.received == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


def test_while_listening_stops_long_work_at_once():
    release = threading.Event()
    with StopSignals() as stop:
        threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        with pytest.raises(StoppedBeforeTraining) as stopped:
            while_listening(stop, release.wait, 30)
        assert time.monotonic() - start < 5 and stopped.value.signum == signal.SIGTERM
    release.set()
    with StopSignals() as stop:
        assert while_listening(stop, lambda x: x + 1, 1) == 2


# --------------------------------------------------------------------------- sinks

def test_fan_out_hands_every_event_to_each_sink_in_order(tmp_path):
    from pgjax.run.loggers import FanOut, Sink

    class Recorder(Sink):
        def __init__(self, name, log):
            self.name, self.log = name, log

        def chunk(self, record):
            self.log.append((self.name, "chunk", record))

        def scalars(self, values, env_steps):
            self.log.append((self.name, "scalars", env_steps))

        def close(self):
            self.log.append((self.name, "close", None))

    log = []
    fan = FanOut([Recorder("a", log), Recorder("b", log), Sink()])  # a bare Sink ignores all
    fan.chunk("R")
    fan.scalars({"x": 1.0}, 7)
    fan.evaluation([], 7)
    fan.close()
    assert log == [("a", "chunk", "R"), ("b", "chunk", "R"), ("a", "scalars", 7),
                   ("b", "scalars", 7), ("a", "close", None), ("b", "close", None)]


def test_metrics_file_writes_live_rows_update_major_with_marks(tmp_path):
    import json
    from pgjax.run.loggers import ChunkRecord, MetricsFile
    labels = [{"seed": 0, "member": 0}, {"seed": 1, "member": 1}]
    record = ChunkRecord({"loss": np.array([[1.0, 2.0], [3.0, np.nan]])}, labels, updates=np.array([5, 6]),
                         live=np.array([[True, True], [True, False]]),
                         marks={(1, 0): {"diverged": True}})
    sink = MetricsFile(tmp_path / "metrics.jsonl")
    sink.chunk(record)
    sink.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["member"], r["update"], r["loss"], r.get("diverged")) for r in rows] == [
        (0, 5, 1.0, None), (1, 5, 3.0, True), (0, 6, 2.0, None)]


def test_progress_line_shows_diverged_and_missing_returns():
    from pgjax.run.loggers import Progress, progress_line
    line = progress_line(Progress(2048, 10240, np.array([12.5, np.nan, 99.0]), 1500.0, 5.46, 42.0,
                                  frozenset({2})))
    assert "2,048/10,240" in line and "[  12.5      —   div ]" in line
    assert "1,500 steps/s" in line and "ETA    5.5s" in line and "eval    42.0" in line
    quiet = progress_line(Progress(0, 10240, np.full(3, np.nan), 0.0, 5.0, None))
    assert "nan" not in quiet and "[     —      —      —]" in quiet


def test_progress_of_a_sweep_shows_each_settings_median_best_first():
    """Settings count by the median over their seeds (a hand computation), diverged members and
    members without an ended episode left out; the evaluation likewise."""
    from pgjax.run.loggers import Progress, progress_line
    returns = np.array([10.0, 30.0, 20.0,   50.0, np.nan, 70.0,   5.0, 1.0, 3.0,   9.0, 9.0, 9.0])
    evals = np.array([1.0, 2.0, 3.0,   7.0, 8.0, 9.0,   4.0, 5.0, 6.0,   0.0, 0.0, 0.0])
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    names = ["lr=1", "lr=2", "lr=3", "lr=4"]
    line = progress_line(Progress(64, 128, returns, 10.0, 1.0, 3.0, frozenset({5}), evals), groups, names)
    # medians: 20, 50 (70 diverged, NaN no episode), 3, 9 -> best 50 (lr=2), median of 4 = 14.5
    assert "return/setting best 50.0 (lr=2) median 14.5 worst 3.0 of 4" in line
    # eval medians 2, 8, 5, 0 -> best 8 (lr=2), median 3.5, worst 0
    assert "eval/setting best 8.0 (lr=2) median 3.5 worst 0.0" in line


# --------------------------------------------------------------------------- chunk sizes

def test_chunk_planner_grows_by_wall_time_and_stops_at_events():
    from pgjax.run.chunks import ChunkPlanner
    planner = ChunkPlanner(max_updates=100, target_seconds=3.0)
    assert planner.next_size(until_event=50) == 1            # first chunk: one update
    planner.observe(1, 0.1)                                   # 0.1 s per update -> 30 wanted
    assert planner.next_size(until_event=50) == 4             # but at most 4x the last chunk
    planner.observe(4, 0.4)
    assert planner.next_size(until_event=50) == 16
    planner.observe(16, 1.6)
    assert planner.next_size(until_event=50) == 30            # the wall-time target
    assert planner.next_size(until_event=7) == 7              # never past the next event
    assert ChunkPlanner(max_updates=10, fixed=25).next_size(until_event=50) == 10


# ---------------------------------------------------------------- bounded logging
def _record(first, n, members=2, seed=0):
    from pgjax.run.loggers import ChunkRecord
    rng = np.random.default_rng(seed + first)
    returns = rng.normal(size=(members, n))
    returns[rng.random((members, n)) < 0.4] = np.nan   # updates where no episode ended
    updates = np.arange(first, first + n)
    metrics = {"loss": rng.normal(size=(members, n)), "episode_return": returns,
               "env_steps": np.broadcast_to(updates * 10, (members, n)).copy()}
    return ChunkRecord(metrics, [{"seed": m, "member": m} for m in range(members)], updates,
                       np.ones((members, n), bool))


def test_thinner_rows_are_window_means_that_cover_every_update_once():
    from pgjax.run.thinning import Thinner
    # chunks of 7, 5 and 9 updates taking 1 s, 0.5 s and 3 s: rows of ~0.5 s are 4, 5 and 2 updates
    chunks = [_record(1, 7), _record(8, 5), _record(13, 9)]
    thinner, rows = Thinner(0.5), []
    for record, seconds in zip(chunks, (1.0, 0.5, 3.0)):
        out = thinner.rows(record, seconds)
        rows += [] if out is None else [out]
    rows += [row for row in [thinner.flush()] if row is not None]
    updates = np.concatenate([r.updates for r in rows])
    spans = np.concatenate([r.spans() for r in rows])
    assert spans.sum() == 21 and updates[-1] == 21 and np.all(np.diff(updates) > 0)
    assert list(updates) == list(np.cumsum(spans))   # consecutive windows, no update twice
    full = {name: np.concatenate([c.metrics[name] for c in chunks], axis=1) for name in ("loss", "episode_return")}
    loss = np.concatenate([r.metrics["loss"] for r in rows], axis=1)
    ret = np.concatenate([r.metrics["episode_return"] for r in rows], axis=1)
    env_steps = np.concatenate([r.metrics["env_steps"] for r in rows], axis=1)
    start = 0
    for k, (end, span) in enumerate(zip(updates, spans)):
        window = slice(start, start + span)
        np.testing.assert_allclose(loss[:, k], full["loss"][:, window].mean(axis=1))
        for m in range(2):  # the mean over the updates where an episode ended (NaN if none did)
            finite = full["episode_return"][m, window][np.isfinite(full["episode_return"][m, window])]
            expected = finite.mean() if finite.size else np.nan
            np.testing.assert_allclose(ret[m, k], expected)
        assert np.all(env_steps[:, k] == end * 10)
        start += span


def test_thinner_without_an_interval_passes_every_update_through():
    from pgjax.run.thinning import Thinner
    record = _record(1, 6)
    assert Thinner(0).rows(record, 10.0) is record


def test_a_diverging_member_keeps_its_mark_and_only_its_live_updates_in_a_row():
    from pgjax.run.thinning import summarise
    record = _record(1, 4)
    record.live[1, 2:] = False
    record.marks[(1, 1)] = {"diverged": True}
    row = summarise(record)
    np.testing.assert_allclose(row.metrics["loss"][1, 0], record.metrics["loss"][1, :2].mean())
    assert row.marks == {(1, 0): {"diverged": True}} and row.live[:, 0].all()


def test_large_populations_write_member_rows_less_often_and_settings_every_row(tmp_path):
    import json
    from pgjax.run.loggers import MetricsFile, SettingsFile
    from pgjax.run.thinning import member_stride
    assert member_stride(3, 16) == 1 and member_stride(2048, 16) == 128
    record = _record(1, 8, members=6)
    members, settings = MetricsFile(tmp_path / "m.jsonl", stride=4), SettingsFile(
        tmp_path / "s.jsonl", [[0, 1, 2], [3, 4, 5]], [{"setting": 0}, {"setting": 1}])
    for sink in (members, settings):
        sink.chunk(record)
        sink.close()
    member_rows = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted({r["update"] for r in member_rows}) == [4, 8] and len(member_rows) == 12
    partial = MetricsFile(tmp_path / "p.jsonl", stride=4)   # a flush writes the latest held row
    partial.chunk(_record(1, 6, members=6))
    partial.flush()
    partial.close()
    assert sorted({json.loads(l)["update"] for l in (tmp_path / "p.jsonl").read_text().splitlines()}) == [4, 6]
    setting_rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(setting_rows) == 16
    row = next(r for r in setting_rows if r["setting"] == 1 and r["update"] == 3)
    values = record.metrics["loss"][3:, 2]
    np.testing.assert_allclose([row["loss/mean"], row["loss/min"], row["loss/median"], row["loss/max"]],
                               [values.mean(), values.min(), np.median(values), values.max()])


# ---------------------------------------------------------------- multi-process settings
def test_multi_process_settings_from_flags_environment_and_slurm():
    from pgjax.run.distributed import settings
    assert settings(environ={}) is None                                   # one process
    assert settings(environ={"SLURM_NTASKS": "1"}) is None                # a one-task job step
    step = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "8",
            "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}                    # an srun job step
    assert settings(environ=step) == {}                                   # jax reads SLURM's layout
    expected = {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    assert settings("10.0.0.1:1234", 2, 1, environ={}) == expected
    env = {"PGJAX_COORDINATOR": "10.0.0.1:1234", "PGJAX_NUM_PROCESSES": "2", "PGJAX_PROCESS_ID": "0"}
    assert settings(process_id=1, environ=env) == expected                # a flag beats the variable


@pytest.mark.parametrize("flags, message", [
    (dict(coordinator="10.0.0.1:1234"), "num_processes, process_id is not set"),
    (dict(coordinator="10.0.0.1", num_processes=2, process_id=0), "coordinator='10.0.0.1' is not allowed"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), "0 ≤ process_id < num_processes"),
])
def test_bad_multi_process_settings_are_refused_by_name(flags, message):
    from pgjax.config import ConfigError
    from pgjax.run.distributed import settings
    with pytest.raises(ConfigError, match=message):
        settings(**flags, environ={})


def test_to_host_turns_typed_keys_into_their_key_data():
    """An environment's state may hold a typed random key (xminigrid's does): evaluation's cache
    fetches it as its key data instead of failing."""
    import jax
    from pgjax.run.devices import to_host
    keys = jax.random.split(jax.random.key(3), 4)
    got = to_host({"key": keys, "x": jax.numpy.arange(3)})
    np.testing.assert_array_equal(got["key"], np.asarray(jax.random.key_data(keys)))
    np.testing.assert_array_equal(got["x"], [0, 1, 2])
