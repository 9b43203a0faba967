"""Fault injection (issue 11 §5): a small training run in a subprocess receives SIGINT, SIGTERM or
SIGKILL at each phase — before compilation (initialisation), during compilation, mid-chunk,
during evaluation, during a checkpoint write — and is then resumed. The final parameters must be
bit-identical (CPU) to an uninterrupted run's, and metrics.jsonl / eval.jsonl must hold every
update exactly once. A kill during a checkpoint write must leave the previous checkpoint loadable.

The windows are hit by hooks, not by luck: the child patches the phase's function (never pgjax's
source) to print ``PGJAX-PHASE <name>`` and wait until the parent, having sent its signal(s),
creates a release file. All children share one persistent compilation cache, so only the first
compiles; the resumes run in this process and reuse its compiled program.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax.run import runner
from pgjax.algorithms import ppo
from pgjax.run.checkpoints import Checkpoints, to_savable

CONFIG = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=8 * 64,
                    epochs=1, minibatches=2, hidden_sizes=(8,))
HPARAMS = ppo.Hparams(learning_rate=3e-3)
SEEDS = [0, 1]
# 8 updates in chunks of 2, a checkpoint after every chunk, evaluations after updates 4 and 8
OPTIONS = runner.RunOptions(eval_episodes=4, cache_episodes=1, num_evals=2, chunk_updates=2,
                            checkpoint_every=2 * CONFIG.steps_per_update, tensorboard=False,
                            plots=False, log_every_seconds=0)
ARGV = ["train", "ppo", "--seeds", "2", "--eval-episodes", "4", "--cache-episodes", "1",
        "--num-evals", "2", "--checkpoint-every", str(2 * CONFIG.steps_per_update),
        "--no-tensorboard", "--no-plots", "--log-every-seconds", "0",
        *[f"--set={k}={v}" for k, v in (("num_envs", 4), ("rollout_length", 16),
                                        ("total_steps", 8 * 64), ("epochs", 1), ("minibatches", 2),
                                        ("hidden_sizes", 8), ("learning_rate", 0.003))]]

# phase -> (what the child patches, which occurrence pauses)
PHASES = {"before_compile": 1, "compile": 1, "mid_chunk": 2, "evaluation": 1, "checkpoint_write": 2}

CHILD = r"""
import os, sys, time
from pathlib import Path
phase, occurrence, release = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
seen = {}

def pause(name):
    seen[name] = seen.get(name, 0) + 1
    if name != phase or seen[name] != occurrence:
        return
    print(f"PGJAX-PHASE {name}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)

import jax
from pgjax.run import chunks, runner
from orbax.checkpoint._src.path import atomicity

init_state = runner._Run._init_state
runner._Run._init_state = lambda self: (pause("before_compile"), init_state(self))[1]
lowered_compile = jax.stages.Lowered.compile
jax.stages.Lowered.compile = lambda self, *a, **k: (pause("compile"), lowered_compile(self, *a, **k))[1]
compile_chunk = chunks.compile_chunk
def paused_chunk(*args):
    compiled = compile_chunk(*args)
    return lambda *xs: (pause("mid_chunk"), compiled(*xs))[1]
chunks.compile_chunk = paused_chunk
evaluate = runner.EvalProgram.__call__
runner.EvalProgram.__call__ = lambda self, *xs: (pause("evaluation"), evaluate(self, *xs))[1]
finalize = atomicity.AtomicRenameTemporaryPath.finalize
async def paused_finalize(self, *a, **k):
    final = Path(str(self.get_final()))
    if final.parent.name == "latest":  # a step folder of the latest checkpoints, written in tmp
        pause("checkpoint_write")
    return await finalize(self, *a, **k)
atomicity.AtomicRenameTemporaryPath.finalize = paused_finalize

from pgjax.cli import entry
entry(sys.argv[4:])
"""


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """Environment of the children: one persistent compilation cache for all of them (the test
    session's, tests/conftest.py, or one of this module's own when that is off)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    if "JAX_COMPILATION_CACHE_DIR" not in env:
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, tmp_path_factory.mktemp("ref") / "run",
                      options=OPTIONS, out=io.StringIO())


def _child(tmp_path, env, phase, runs_dir=None, name="run"):
    release = tmp_path / f"release-{phase}"
    argv = [sys.executable, "-c", CHILD, phase, str(PHASES.get(phase, 1)), str(release), *ARGV,
            "--runs-dir", str(runs_dir or tmp_path), "--name", name]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               text=True)
    return process, release


def _wait_for_phase(process, phase, timeout=180):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == f"PGJAX-PHASE {phase}":
            return
    process.kill()
    raise AssertionError(f"phase {phase} never reached; stderr:\n{''.join(lines)}")


def _interrupt(tmp_path, env, phase, signum, presses=1):
    """Run a child to ``phase``, deliver ``signum`` ``presses`` times, release it, return
    (exit status, rest of stderr)."""
    process, release = _child(tmp_path, env, phase)
    _wait_for_phase(process, phase)
    for _ in range(presses):
        process.send_signal(signum)
        time.sleep(0.3)
    release.touch()
    _, err = process.communicate(timeout=180)
    return process.returncode, err


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _assert_resumes_to_reference(run_dir, reference):
    resumed = runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, run_dir, options=OPTIONS, resume=True,
                         out=io.StringIO())
    assert resumed.status == runner.COMPLETED
    for x, y in zip(jax.tree.leaves(to_savable(resumed.final_state)),
                    jax.tree.leaves(to_savable(reference.final_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    updates = [(r["member"], r["update"]) for r in _rows(run_dir / "metrics.jsonl")]
    assert sorted(updates) == [(m, u) for m in range(2) for u in range(1, 9)]  # none lost or twice
    evals = [(r["member"], r["update"], r["eval_return_mean"]) for r in _rows(run_dir / "eval.jsonl")]
    expected = [(r["member"], r["update"], r["eval_return_mean"])
                for r in _rows(reference.run_dir / "eval.jsonl")]
    assert sorted(evals) == sorted(expected)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"


SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143),
           "SIGKILL": (signal.SIGKILL, -9)}
CASES = [(phase, name) for phase in PHASES for name in SIGNALS]


def _second_process_while_running(folder, env):
    """A child paused mid-chunk holds the lock; ``pgjax train --resume`` from a second process."""
    process, release = _child(folder, env, "mid_chunk")
    _wait_for_phase(process, "mid_chunk")
    try:
        second = subprocess.run([sys.executable, "-m", "pgjax.cli", "train", "--resume",
                                 str(folder / "run")], env=env, capture_output=True, text=True,
                                timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        release.touch()
        process.communicate(timeout=120)
    return second.returncode, second.stderr, process.pid, process.returncode


def _huge_budget_sigterm(folder, env):
    """--total-steps 3e9, --chunk-seconds 2: SIGTERM while the fourth chunk runs; seconds to exit."""
    release = folder / "release"
    argv = [sys.executable, "-c", CHILD, "mid_chunk", "4", str(release), *ARGV,
            "--set=total_steps=3000000000", "--chunk-seconds", "2", "--checkpoint-every",
            "1000000000", "--runs-dir", str(folder), "--name", "huge"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               text=True)
    _wait_for_phase(process, "mid_chunk")  # the fourth chunk: sized from measured update times
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    release.touch()
    _, err = process.communicate(timeout=120)
    return process.returncode, err, time.monotonic() - start, folder / "huge"


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, cache_env, reference):
    """Every subprocess of this module, four at a time, once the in-process ``reference`` run has
    filled the compilation cache they share: each (phase, signal) case -> (run_dir, exit status,
    stderr); "ctrl-c twice", "second process" and "huge budget" -> their own results."""
    root = tmp_path_factory.mktemp("faults")

    def folder(name):
        path = root / name
        path.mkdir()
        return path

    def case(key):
        phase, name = key
        where = folder(f"{phase}-{name}")
        return (where / "run", *_interrupt(where, cache_env, phase, SIGNALS[name][0]))

    def twice():
        where = folder("twice")
        return (where / "run", *_interrupt(where, cache_env, "checkpoint_write", signal.SIGINT,
                                           presses=2))

    jobs = {key: (case, key) for key in CASES}
    jobs["ctrl-c twice"] = (twice,)
    jobs["second process"] = (_second_process_while_running, folder("lock"), cache_env)
    jobs["huge budget"] = (_huge_budget_sigterm, folder("huge"), cache_env)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(*job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("phase, name", CASES)
def test_interrupt_then_resume_is_bit_identical(phase, name, interrupted, reference):
    run_dir, code, err = interrupted[(phase, name)]
    assert code == SIGNALS[name][1], err
    assert "Traceback" not in err, err
    assert (run_dir / "config.json").exists()  # written before anything compiles
    status = json.loads((run_dir / "status.json").read_text())["status"]
    assert status == ("running" if name == "SIGKILL" else "interrupted")
    if name == "SIGKILL" and phase == "checkpoint_write":
        # the kill hit orbax between writing the second save and renaming it into place: the
        # earlier checkpoint is intact and loadable, the half-written one is only a tmp folder
        checkpoints = Checkpoints(run_dir)
        assert checkpoints.steps() == [2 * CONFIG.steps_per_update]
        _, meta = checkpoints.restore(jax.eval_shape(lambda: jax.vmap(
            lambda k: ppo.init(CONFIG, HPARAMS, k))(jax.random.split(jax.random.key(0), 2))))
        assert meta["update"] == 2
        checkpoints.close()
    _assert_resumes_to_reference(run_dir, reference)
    assert not list(run_dir.glob("checkpoints/*/*tmp*")), "a temporary checkpoint folder was left"


def test_ctrl_c_twice_during_a_checkpoint_write(interrupted, reference):
    """The second Ctrl-C arrives while the checkpoint is being written: it is answered with one
    line, the save completes, the run exits 130 and resumes to the reference."""
    run_dir, code, err = interrupted["ctrl-c twice"]
    assert code == 130, err
    assert "Traceback" not in err and "already stopping" in err, err
    _assert_resumes_to_reference(run_dir, reference)


def test_a_second_process_is_refused_while_the_run_is_running(interrupted):
    """A run paused mid-chunk holds the folder's lock: ``pgjax train --resume`` from another
    process is refused before compiling, in one line naming the holder's pid."""
    code, err, holder, holder_code = interrupted["second process"]
    assert code == 2, err
    assert f"in use by process {holder}" in err, err
    assert err.count("\n") == 1
    assert holder_code == 143


def test_a_huge_budget_answers_sigterm_within_seconds(interrupted):
    """With --total-steps 3e9 a chunk is sized by wall time (--chunk-seconds 2), not as a
    twentieth of the run: SIGTERM sent while a chunk runs is answered well within the 30 s a
    cluster scheduler waits before SIGKILL, with a checkpoint that restores."""
    code, err, answered, run_dir = interrupted["huge budget"]
    assert code == 143, err
    assert answered < 30, f"SIGTERM took {answered:.1f}s"
    checkpoints = Checkpoints(run_dir)
    config = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16,
                        total_steps=3_000_000_000, epochs=1, minibatches=2, hidden_sizes=(8,))
    state, meta = checkpoints.restore(jax.eval_shape(lambda: jax.vmap(
        lambda k: ppo.init(config, HPARAMS, k))(jax.random.split(jax.random.key(0), 2))))
    checkpoints.close()
    assert 3 < meta["update"] < config.num_updates
    assert int(state.update_step[0]) == meta["update"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
