"""Know the cost before paying it: a run that cannot fit the device's memory is refused in one line
before anything is created or compiled (:mod:`pgjax.run.memory`), a compilation says so while it
runs (:class:`pgjax.run.chunks.CompileNotice`), a process that cannot join a multi-process run
gives up with one line, and SLURM's variables outside a job step run one process with a warning
(:mod:`pgjax.run.distributed`)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax import cli
from pgjax.algorithms import ppo
from pgjax.config import ConfigError, config_to_dict, hparams_as_arrays, hparams_to_dict
from pgjax.run import chunks, distributed, memory, runner
from pgjax.run.evaluation import EvalProgram
from pgjax.run.options import RunOptions
from pgjax.run.population import Population

GiB = 2 ** 30
TINY = ppo.Config(num_envs=2, rollout_length=8, total_steps=64, hidden_sizes=(8,), epochs=1,
                  minibatches=1)


@pytest.fixture
def no_compile(monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, *a, **k: compiles.append(1))
    return compiles


@pytest.fixture
def small_device(monkeypatch):
    """A device of 16 GiB, whatever machine runs the tests."""
    monkeypatch.setattr(memory, "device_memory", lambda device=None: (16 * GiB, "cpu: test"))


def _refused(argv, capsys) -> str:
    start = time.perf_counter()
    assert cli.main(argv) == 2
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert seconds < 10, seconds  # shapes only: nothing of the size asked for is built
    return err


# ---------------------------------------------------------------- the estimate
@pytest.fixture(scope="module")
def tiny_programs():
    """The tiny config's train state (two members), its chunk program and evaluation program."""
    population = Population((0, 1), (ppo.Hparams(),))
    state = runner.init_program(TINY)(population.keys(), population.hparams())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    chunk = chunks.compile_chunk(TINY, abstract, 4)
    options = RunOptions(eval_episodes=3, cache_episodes=2)
    evaluation = EvalProgram(TINY, options, state)
    evaluation.wait()
    return state, chunk, evaluation._compiling.result(), options


def test_state_bytes_are_exact_and_program_bounds_are_below_xla_account(tiny_programs):
    state, chunk, evaluation, options = tiny_programs
    shapes = memory.state_shapes(TINY, 2)
    assert jax.tree.structure(shapes) == jax.tree.structure(state)
    assert [(s.shape, s.dtype) for s in jax.tree.leaves(shapes)] == \
           [(x.shape, x.dtype) for x in jax.tree.leaves(state)]
    key_bytes = sum(np.asarray(jax.random.key_data(x)).nbytes for x in jax.tree.leaves(state)
                    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))
    plain_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state)
                      if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))
    assert memory.nbytes(shapes) == key_bytes + plain_bytes
    train = memory.training_estimate(TINY, 2)
    # CartPole: 4 float32 observations, then action and reward: 8 steps × 2 envs × 2 members
    assert dict(train.parts)["one rollout"] == 8 * 2 * 2 * (16 + 8)
    assert dict(train.parts)["train state"] == memory.nbytes(shapes)
    program, _ = memory.compiled_bytes(chunk)
    assert train.total <= program, (train.total, program)     # a lower bound of XLA's account
    estimate = memory.evaluation_estimate(TINY, 2, options.eval_episodes, options.cache_episodes)
    program, _ = memory.compiled_bytes(evaluation)
    assert estimate.total <= program, (estimate.total, program)


def test_sizes_read_in_binary_units():
    assert [memory.size_text(n) for n in (512, 3 * 1024, int(23.4 * GiB), 1.1 * 2 ** 40)] == \
           ["512 B", "3.0 KiB", "23.4 GiB", "1.1 TiB"]


def test_host_memory_is_the_smaller_of_the_machine_and_its_control_group(tmp_path):
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    machine = dict(page_size=4096, pages=1000)          # 4 096 000 bytes
    v2.write_text("max\n")
    v1.write_text(str(2 ** 63 - 4096))                  # cgroup v1's "no limit"
    assert memory.host_memory(**machine, cgroup_files=(v2, v1)) == 4_096_000
    v2.write_text("1000000\n")
    assert memory.host_memory(**machine, cgroup_files=(v2, v1)) == 1_000_000
    assert memory.host_memory(**machine, cgroup_files=(tmp_path / "missing",)) == 4_096_000


def test_a_compiled_program_that_cannot_fit_is_refused_with_xla_account(tiny_programs):
    _, chunk, _, _ = tiny_programs
    program, parts = memory.compiled_bytes(chunk)
    assert memory.check_compiled(chunk, "the training program", "num_envs", 2, "lower it",
                                 memory=(program, "cpu: test")) == program   # fits exactly
    with pytest.raises(ConfigError) as refused:
        memory.check_compiled(chunk, "the training program", "num_envs", 2, "lower it",
                              memory=(program - 1, "cpu: test"))
    assert str(refused.value) == (
        f"num_envs=2 is not allowed: the training program as compiled ({parts}) needs at least "
        f"{memory.size_text(program)} and this device has {memory.size_text(program - 1)} "
        "(cpu: test); lower it")

    class Analysis:  # CPU devices share the host's memory: two of them need twice one's bytes
        argument_size_in_bytes, output_size_in_bytes, temp_size_in_bytes, alias_size_in_bytes = \
            100, 50, 30, 20

    fake = type("Compiled", (), {"memory_analysis": lambda self: Analysis()})()
    two_cpus = memory.Placement(count=2, local=2, shared=True)
    assert memory.check_compiled(fake, "p", "f", 1, "", two_cpus, memory=(320, "cpu")) == 160
    with pytest.raises(ConfigError, match="needs at least 321 B"):
        memory.check_compiled(fake, "p", "f", 1, "", two_cpus, also=1, memory=(320, "cpu"))
    two_gpus = memory.Placement(count=2, local=2, shared=False)
    memory.check_compiled(fake, "p", "f", 1, "", two_gpus, memory=(160, "gpu"))   # each has its own


def test_a_run_whose_compiled_program_cannot_fit_stops_before_its_first_update(tiny_programs,
                                                                              tmp_path, monkeypatch):
    """Between the shapes' lower bound and XLA's account: refused after compiling, before running."""
    state, chunk, _, _ = tiny_programs
    options = RunOptions(eval_episodes=3, cache_episodes=0, tensorboard=False, plots=False,
                         compile_cache=False)
    bound = max(memory.training_estimate(TINY, 2).total,
                memory.evaluation_estimate(TINY, 2, 3, 0).total + memory.nbytes(state))
    program, _ = memory.compiled_bytes(chunk)
    assert bound < program
    monkeypatch.setattr(memory, "device_memory", lambda device=None: (bound, "cpu: test"))
    with pytest.raises(ConfigError, match=r"^num_envs=2 is not allowed: the training program as "
                                          r"compiled \(arguments "):
        runner.run("ppo", TINY, ppo.Hparams(), [0, 1], tmp_path / "run", options=options,
                   out=io.StringIO())
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and status["update"] == 0
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or \
        not (tmp_path / "run" / "metrics.jsonl").read_text()


# ---------------------------------------------------------------- refusals before anything is made
def test_absurd_num_envs_is_refused_at_once_naming_the_estimate(capsys, tmp_path, no_compile,
                                                                small_device):
    err = _refused(["train", "ppo", "--set", "num_envs=10000000", "--total-steps", str(128 * 10 ** 7),
                    "--runs-dir", str(tmp_path), "--name", "big"], capsys)
    shapes = memory.state_shapes(dataclasses.replace(ppo.Config(), num_envs=10 ** 7,
                                                     total_steps=128 * 10 ** 7), 3)
    rollout = 3 * 10 ** 7 * 128 * (16 + 8)
    need = memory.size_text(2 * memory.nbytes(shapes) + rollout)
    assert err.startswith("pgjax: error: num_envs=10000000 is not allowed: the training program "
                          f"(train state {memory.size_text(memory.nbytes(shapes))} + "), err
    assert f"one rollout {memory.size_text(rollout)}; 3 member(s) × 10,000,000 envs × 128 steps" in err
    assert f"needs at least {need} and this device has 16.0 GiB (cpu: test); lower num_envs" in err
    assert not no_compile and not list(tmp_path.iterdir())


def test_a_huge_population_is_refused_at_once_naming_the_seeds(capsys, tmp_path, no_compile,
                                                               small_device):
    err = _refused(["train", "ppo", "--seeds", "100000", "--runs-dir", str(tmp_path)], capsys)
    assert err.startswith("pgjax: error: seeds=100000 is not allowed: the training program"), err
    assert not no_compile and not list(tmp_path.iterdir())


def test_population_hyperparameters_are_stacked_on_the_host():
    """10 000 seeds took 20 s (100 000: minutes) when each member's values went to the device."""
    settings = (ppo.Hparams(learning_rate=1e-3), ppo.Hparams(learning_rate=3e-4, clip_eps=0.1))
    small = Population((4, 5, 6), settings).hparams()
    per_member = [hparams_as_arrays(hp) for hp in settings for _ in range(3)]
    reference = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *per_member)
    assert jax.tree.structure(small) == jax.tree.structure(reference)
    for got, want in zip(jax.tree.leaves(small), jax.tree.leaves(reference)):
        assert got.dtype == want.dtype and np.array_equal(np.asarray(got), want)
    start = time.perf_counter()
    big = Population(tuple(range(10_000)), settings).hparams()
    assert time.perf_counter() - start < 1.0
    assert big.learning_rate.shape == (20_000,) and float(big.clip_eps[-1]) == np.float32(0.1)


def test_evaluation_that_cannot_fit_is_refused_for_train_and_for_eval(capsys, tmp_path, no_compile,
                                                                      small_device):
    err = _refused(["train", "ppo", "--eval-episodes", "100000000", "--runs-dir", str(tmp_path)],
                   capsys)
    assert err.startswith("pgjax: error: eval_episodes=100000000 is not allowed: the evaluation "
                          "program (episodes "), err
    assert "3 member(s) × 100,000,000 episodes, 20 of them cached × 500 steps + the train state " \
           "beside it" in err and "this device has 16.0 GiB" in err
    assert not list(tmp_path.iterdir())
    run_dir = tmp_path / "run"        # a run folder: pgjax eval reads its config.json first
    run_dir.mkdir()
    record = {"algorithm": "ppo", "config": config_to_dict(ppo.Config(total_steps=512)),
              "hparams": hparams_to_dict(ppo.Hparams()), "seeds": [0, 1]}
    (run_dir / "config.json").write_text(json.dumps(record))
    err = _refused(["eval", str(run_dir), "--episodes", "100000000"], capsys)
    assert err.startswith("pgjax: error: --episodes=100000000 is not allowed: the evaluation "
                          "program (episodes "), err
    assert err.endswith("; lower --episodes\n") and "2 member(s) × 100,000,000 episodes" in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"] and not no_compile


def test_the_estimate_of_a_normal_run_is_far_below_any_device():
    estimate = memory.check_training(ppo.Config(), 3, 1, memory=(GiB, "cpu: test"))
    assert estimate.total < 2 ** 20        # under a MiB: PPO's defaults, three seeds


# ---------------------------------------------------------------- compilation says so
def _slow(seconds, result="program"):
    def compile_():
        time.sleep(seconds)
        return result
    return compile_


def test_a_slow_compile_prints_a_line_then_the_elapsed_time_then_how_long(monkeypatch):
    from pgjax.run import compilation_cache
    monkeypatch.setattr(compilation_cache, "entries", lambda: None)    # no persistent cache
    out = io.StringIO()
    notice = chunks.CompileNotice("the training program", "3 member(s)", out, tty=False,
                                  quiet=0.1, every=0.1)
    assert notice.run(_slow(0.45)) == "program"
    lines = out.getvalue().splitlines()
    assert lines[0] == "compiling the training program (3 member(s))…"
    assert all(re.fullmatch(r"  still compiling the training program: 0 s", l) for l in lines[1:-1])
    assert len(lines) - 2 >= 2, lines                                  # ticks at 0.1, 0.2, 0.3 s…
    took = re.fullmatch(r"compiled the training program in (\d+\.\d) s", lines[-1])
    assert took and float(took[1]) >= 0.4, lines


def test_on_a_terminal_the_line_is_rewritten_and_a_cache_hit_says_so(monkeypatch):
    from pgjax.run import compilation_cache
    monkeypatch.setattr(compilation_cache, "entries", lambda: 7)       # nothing added: a hit
    out = io.StringIO()
    notice = chunks.CompileNotice("the evaluation program", "2 member(s)", out, tty=True,
                                  quiet=0.1, every=0.1)
    notice.run(_slow(0.35))
    text = out.getvalue()
    head = "compiling the evaluation program (2 member(s))… "
    assert text.startswith(head) and text.count("\n") == 1 and text.endswith("\n")
    assert f"\r{head}0 s" in text
    assert re.search(r"\r" + re.escape(head) + r"compiled in \d+\.\d s \(from the compilation "
                     r"cache\)\n$", text), text


def test_a_failed_or_abandoned_compile_stops_talking():
    out = io.StringIO()
    notice = chunks.CompileNotice("x", "y", out, tty=True, quiet=0.05, every=0.05)

    def fails():
        time.sleep(0.12)
        raise RuntimeError("no")
    with pytest.raises(RuntimeError):
        notice.run(fails)
    settled = out.getvalue()
    time.sleep(0.15)
    assert out.getvalue() == settled and settled.endswith("\n") and "compiled" not in settled
    silent = chunks.CompileNotice("x", "y", None, quiet=0.0, every=0.01)   # not process 0
    assert silent.run(_slow(0.05)) == "program"


def test_the_run_announces_its_training_program(tmp_path, monkeypatch):
    compile_program = chunks.compile_program
    monkeypatch.setattr(chunks, "compile_program",
                        lambda lowered: (time.sleep(0.4), compile_program(lowered))[1])
    monkeypatch.setattr(chunks, "CompileNotice", _QuickNotice)
    out = io.StringIO()
    config = dataclasses.replace(TINY, total_steps=48)   # a program no other test compiles
    options = RunOptions(eval_episodes=2, cache_episodes=0, num_evals=1, tensorboard=False,
                         plots=False, compile_cache=False)
    result = runner.run("ppo", config, ppo.Hparams(), [0, 1], tmp_path / "run", options=options,
                        out=out)
    assert result.status == runner.COMPLETED
    lines = out.getvalue().splitlines()
    start = lines.index("compiling the training program (2 member(s), 2 envs × 8 steps, up to 3 "
                        "updates per call)…")
    done = next(i for i, l in enumerate(lines) if l.startswith("compiled the training program in "))
    assert start < done and any(l.startswith("  still compiling the training program: ")
                                for l in lines[start + 1:done]), lines
    assert lines[done + 1].startswith("ppo on CartPole-v1: 2 member(s)"), lines


class _QuickNotice(chunks.CompileNotice):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "quiet": 0.1, "every": 0.1, "tty": False})


def test_the_first_evaluation_says_it_waits_for_its_program(tiny_programs, monkeypatch):
    state, _, _, options = tiny_programs
    compile_ = jax.stages.Lowered.compile
    monkeypatch.setattr(jax.stages.Lowered, "compile",
                        lambda self, *a, **k: (time.sleep(0.5), compile_(self, *a, **k))[1])
    out = io.StringIO()
    program = EvalProgram(TINY, options, state, out)
    result = program(state.params, state.env_state)
    assert result["returns"].shape == (2, 3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "compiling the evaluation program (2 member(s) × 3 episodes of up to 500 steps)…"
    assert lines[-1].startswith("compiled the evaluation program in "), lines
    program(state.params, state.env_state)
    assert len(out.getvalue().splitlines()) == len(lines)               # said once


def test_an_evaluation_program_that_cannot_fit_is_refused_before_it_runs(tiny_programs, monkeypatch):
    state, _, _, options = tiny_programs
    monkeypatch.setattr(memory, "device_memory", lambda device=None: (1024, "cpu: test"))
    program = EvalProgram(TINY, options, state)
    with pytest.raises(ConfigError, match=r"^eval_episodes=3 is not allowed: the evaluation program "
                                          r"as compiled \(arguments .* this device has 1\.0 KiB"):
        program(state.params, state.env_state)


# ---------------------------------------------------------------- joining the processes
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # closed again when the socket is


def test_a_process_without_its_coordinator_gives_up_in_one_line(tmp_path):
    port = _closed_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PGJAX_COORDINATOR_TIMEOUT": "3"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pgjax.cli", "train", "ppo", "--coordinator",
                           f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1",
                           "--runs-dir", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=90)
    seconds = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Check failure" not in done.stderr, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("pgjax")] == [
        f"pgjax: process 1 of 2: waiting for the coordinator at 127.0.0.1:{port} and the other "
        "processes (gives up after 3 s; PGJAX_COORDINATOR_TIMEOUT changes it)",
        f"pgjax: error: coordinator 127.0.0.1:{port} did not let this process join within 3 s: "
        "nothing listens there (start process 0 first, and check the host and port); "
        "PGJAX_COORDINATOR_TIMEOUT sets how long to wait"], done.stderr[-2000:]
    assert 3 <= seconds < 60 and not list(tmp_path.iterdir())


def test_the_coordinator_timeout_is_a_positive_number_of_seconds(capsys, monkeypatch, no_compile):
    assert distributed.coordinator_timeout({}) == distributed.DEFAULT_TIMEOUT == 120
    assert distributed.coordinator_timeout({"PGJAX_COORDINATOR_TIMEOUT": "2.5"}) == 2.5
    monkeypatch.setenv("PGJAX_COORDINATOR_TIMEOUT", "0")
    assert cli.main(["train", "ppo", "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                     "--process-id", "1"]) == 2
    assert capsys.readouterr().err == ("pgjax: error: PGJAX_COORDINATOR_TIMEOUT='0' is not allowed: "
                                       "a positive number of seconds (default 120)\n")


def test_what_a_process_that_gave_up_says_depends_on_what_it_waited_for():
    joined = {"coordinator_address": "h:1", "num_processes": 4, "process_id": 0}
    assert "process 0 serves it, but not all 4 processes joined" in \
           distributed.gave_up_line(joined, 5, True)
    other = {**joined, "process_id": 2}
    assert "it answers, but not all 4 processes joined" in distributed.gave_up_line(other, 5, True)
    assert "nothing listens there" in distributed.gave_up_line(other, 5, False)


# ---------------------------------------------------------------- SLURM
STEP = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "8",
        "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3", "SLURM_LOCALID": "1"}
BATCH_SCRIPT = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NTASKS": "8",
                "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}   # sbatch's script: no step variables


def test_slurm_tasks_outside_a_job_step_run_one_process_with_a_warning():
    assert distributed.settings(environ=STEP) == {}                    # srun: jax reads the layout
    with pytest.warns(UserWarning, match=r"^SLURM_NTASKS=8 but this is not a SLURM job step "
                                         r"\(SLURM_STEP_NODELIST unset"):
        assert distributed.settings(environ=BATCH_SCRIPT) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distributed.settings(environ={**BATCH_SCRIPT, "SLURM_NTASKS": "1"}) is None


def test_slurm_tasks_outside_a_job_step_warn_in_one_line_from_the_cli(capsys, monkeypatch, tmp_path,
                                                                     no_compile):
    for name, value in BATCH_SCRIPT.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["train", "ppo", "--set", "num_envs=0", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("pgjax: warning: SLURM_NTASKS=8 but this is not a "
                                                "SLURM job step"), err
    assert err[0].endswith("running as one process; start a multi-process run with srun"), err
    assert err[1].startswith("pgjax: error: num_envs=0 is not allowed"), err


def test_a_close_racing_the_start_of_the_notice_is_harmless(monkeypatch):
    """A signal during set-up closes the notice from the main thread while the compile thread is
    inside start(): close() must not join a ticker that has not started (it raised RuntimeError,
    seen on a slower instruction set), and the late ticker must end at once."""
    import io
    import threading

    from pgjax.run.chunks import CompileNotice
    notice = CompileNotice("the training program", "test", io.StringIO(), tty=False, quiet=0.0, every=0.01)
    real_start = threading.Thread.start

    def close_first(thread):
        if thread.name == "pgjax-compile-notice":
            notice.close()  # the main thread's close() arrives right here
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", close_first)
    notice.start()
    monkeypatch.setattr(threading.Thread, "start", real_start)
    notice._ticker.join(timeout=5)
    assert not notice._ticker.is_alive()
    assert "still compiling" not in notice.out.getvalue()
