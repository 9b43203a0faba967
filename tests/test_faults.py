"""Faults that need a real process: a small training run in a subprocess receives SIGINT, SIGTERM
or SIGKILL at each phase (before compilation, during compilation, mid-chunk, during evaluation,
during a checkpoint write) and is then resumed; `pgjax eval` receives SIGINT; a run meets a file
size limit (RLIMIT_FSIZE). The final parameters must be bit-identical (CPU) to an uninterrupted
run's, and metrics.jsonl / eval.jsonl must hold every update exactly once. A kill during a
checkpoint write must leave the previous checkpoint loadable; a reader of the folder during that
write must change nothing in it.

SIGINT and SIGTERM go through one handler (:class:`pgjax.run.background.StopSignals`), so each
phase is hit by one of them (both exit statuses are checked; at a checkpoint write, SIGINT twice).
A SIGKILL leaves the folder as it is at that instant, and a child paused at a phase writes
nothing, so a SIGKILL at before_compile, mid_chunk or evaluation is the copy of the folder taken
while the child waits there (compile's is before_compile's: config.json and a 'running' status);
one real SIGKILL, in a checkpoint write, checks that a killed process leaves just that.

The windows are hit by hooks, not by luck: the child patches the phase's function (never pgjax's
source) to print ``PGJAX-PHASE <name>`` and wait until the parent, having sent its signal(s),
creates a release file. All children share one persistent compilation cache, which the in-process
``reference`` run fills first, so they load its programs; the resumes run in this process and reuse
its compiled program. The children that meet the file size limit only read that cache (they would
write entries cut short). Under pytest-xdist the children run once per session, in the first
worker that needs them (:func:`interrupted`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax import cli
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

# phase -> which occurrence of it pauses
PHASES = {"before_compile": 1, "compile": 1, "mid_chunk": 2, "evaluation": 1, "checkpoint_write": 2,
          "reevaluation": 1}

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
make_eval_fn = runner.make_eval_fn  # pgjax eval's program
runner.make_eval_fn = lambda *a: (pause("reevaluation"), make_eval_fn(*a))[1]
finalize = atomicity.AtomicRenameTemporaryPath.finalize
async def paused_finalize(self, *a, **k):
    final = Path(str(self.get_final()))
    if final.parent.name == "latest":  # a step folder of the latest checkpoints, written in tmp
        pause("checkpoint_write")
    return await finalize(self, *a, **k)
atomicity.AtomicRenameTemporaryPath.finalize = paused_finalize

from pgjax.cli import entry
if os.environ.get("PGJAX_TEST_FILE_SIZE"):  # files may grow to this many bytes, then EFBIG
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(os.environ["PGJAX_TEST_FILE_SIZE"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
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


def _spawn(env, phase, release, argv, occurrence=None):
    """A child running ``pgjax argv`` that pauses at the ``occurrence``-th ``phase``."""
    argv = [sys.executable, "-c", CHILD, phase, str(occurrence or PHASES.get(phase, 1)), str(release),
            *argv]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            text=True)


def _child(tmp_path, env, phase, name="run"):
    release = tmp_path / f"release-{phase}"
    return _spawn(env, phase, release, [*ARGV, "--runs-dir", str(tmp_path), "--name", name]), release


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


def _interrupt(tmp_path, env, phase, signum, presses=1, while_paused=None):
    """Run a child to ``phase``, call ``while_paused(child)`` if given, deliver ``signum``
    ``presses`` times, release it; return (exit status, rest of stderr, while_paused's result)."""
    process, release = _child(tmp_path, env, phase)
    _wait_for_phase(process, phase)
    seen = while_paused(process) if while_paused else None
    for _ in range(presses):
        process.send_signal(signum)
        time.sleep(0.3)
    release.touch()
    _, err = process.communicate(timeout=180)
    return process.returncode, err, seen


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _digest(root: Path, skip=()) -> dict[str, str]:
    """Every file (its bytes' SHA-256) and folder under ``root`` by relative path."""
    return {str(p.relative_to(root)): "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if str(p.relative_to(root)) not in skip}


def _assert_resumes_to_reference(run_dir, reference):
    resumed = runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, run_dir, options=OPTIONS, resume=True,
                         out=io.StringIO())
    assert resumed.status == runner.COMPLETED
    for x, y in zip(jax.tree.leaves(to_savable(resumed.final_state)),
                    jax.tree.leaves(to_savable(reference.final_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    updates = [(r["member"], r["update"]) for r in _rows(run_dir / "metrics.jsonl")]
    assert sorted(updates) == [(m, u) for m in range(2) for u in range(1, 9)]  # none lost or twice
    settings = [r["update"] for r in _rows(run_dir / "metrics_settings.jsonl")]
    assert sorted(settings) == list(range(1, 9))
    evals = [(r["member"], r["update"], r["eval_return_mean"]) for r in _rows(run_dir / "eval.jsonl")]
    expected = [(r["member"], r["update"], r["eval_return_mean"])
                for r in _rows(reference.run_dir / "eval.jsonl")]
    assert sorted(evals) == sorted(expected)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"


SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143),
           "SIGKILL": (signal.SIGKILL, -9)}
# phase -> (its signal, how many times it is sent)
GRACEFUL = {"before_compile": ("SIGINT", 1), "compile": ("SIGTERM", 1), "mid_chunk": ("SIGINT", 1),
            "evaluation": ("SIGTERM", 1), "checkpoint_write": ("SIGINT", 2)}
COPIED_AT = ("before_compile", "mid_chunk", "evaluation")  # SIGKILL: the folder copied at the pause
CASES = [(phase, name) for phase, (name, _) in GRACEFUL.items()] + [
    (phase, "SIGKILL") for phase in (*COPIED_AT, "checkpoint_write")]


def _in_this_process(argv) -> tuple[int, str, str]:
    """``pgjax argv`` here: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _visit_during_a_checkpoint_write(child) -> dict:
    """While the child holds the lock and is renaming its second checkpoint into place (a
    temporary folder on disk): `pgjax train --resume` is refused, and `pgjax eval` evaluates the
    first checkpoint without changing any file of the folder."""
    run_dir = Path(child.args[child.args.index("--runs-dir") + 1]) / "run"
    before = _digest(run_dir)
    second = _in_this_process(["train", "--resume", str(run_dir)])
    evaluation = _in_this_process(["eval", str(run_dir), "--episodes", "4"])
    return {"second": second, "eval": evaluation, "unchanged": _digest(run_dir) == before,
            "holder": child.pid, "tmp": sorted(p.name for p in run_dir.glob("checkpoints/latest/*"))}


def _eval_interrupted(folder, env, run_dir):
    """`pgjax eval` receives SIGINT while its evaluation program is being built; (exit status,
    stderr, the run folder it read)."""
    release = folder / "release"
    process = _spawn(env, "reevaluation", release, ["eval", str(run_dir), "--episodes", "4"])
    _wait_for_phase(process, "reevaluation")
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    release.touch()
    _, err = process.communicate(timeout=120)
    return process.returncode, err, str(run_dir)


def _file_size_limit(folder, env, reference, what):
    """A run whose files may not grow past a limit (RLIMIT_FSIZE, SIGXFSZ ignored) that the first
    rows of metrics_settings.jsonl set: for ``what="log"``, the fewest rows k (2 to 5) longer than
    any file a checkpoint or the first evaluation writes, plus 100 bytes, so that row k + 1, after
    the checkpoint at update 2·⌊k/2⌋, is written in part and fails with EFBIG; for
    ``what="checkpoint"``, its first 2 rows plus 100 bytes, which orbax's first save exceeds.
    Returns (exit status, stderr, run folder, the update of the latest checkpoint)."""
    rows = [len(line.encode()) for line in
            (reference.run_dir / "metrics_settings.jsonl").read_text().splitlines(keepends=True)]
    # what a checkpoint writes, and the evaluation after update 4 (the one before the cut)
    saved = [p.stat().st_size for p in (reference.run_dir / "checkpoints").rglob("*") if p.is_file()]
    saved.append((reference.run_dir / "eval" / f"step_{4 * CONFIG.steps_per_update:012d}.npz").stat().st_size)
    if what == "log":
        k = next(k for k in range(2, 6) if sum(rows[:k]) > max(saved) + 100)
        limit, update = sum(rows[:k]) + 100, 2 * (k // 2)
    else:
        limit, update = sum(rows[:2]) + 100, 0
        assert max(saved) > limit, "a checkpoint no longer holds a file larger than 2 rows"
    env = {**env, "PGJAX_TEST_FILE_SIZE": str(limit),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1e9"}
    process, _ = _child(folder, env, "none")
    _, err = process.communicate(timeout=180)
    return process.returncode, err, str(folder / "run"), update


def _huge_budget_sigterm(folder, env):
    """--total-steps 3e9, --chunk-seconds 2: SIGTERM while the fourth chunk runs; seconds to exit."""
    release = folder / "release"
    process = _spawn(env, "mid_chunk", release, [*ARGV, "--set=total_steps=3000000000",
                                                 "--chunk-seconds", "2", "--checkpoint-every",
                                                 "1000000000", "--runs-dir", str(folder), "--name",
                                                 "huge"], occurrence=4)
    _wait_for_phase(process, "mid_chunk")  # the fourth chunk: sized from measured update times
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    release.touch()
    _, err = process.communicate(timeout=120)
    return process.returncode, err, time.monotonic() - start, str(folder / "huge")


def _case(phase: str, name: str) -> str:
    return f"{phase}|{name}"


def _run_children(root: Path, cache_env, reference) -> dict:
    """Every subprocess of this module, four at a time: each (phase, signal) case -> (run folder,
    exit status, stderr, what was seen while it paused), exit status and stderr None for a folder
    copied at a pause; "eval", "file size: log", "file size: checkpoint" and "huge budget" ->
    their own results. Paths as text, so that the results travel as JSON."""
    def folder(name):
        path = root / name
        path.mkdir()
        return path

    def graceful(phase):
        where = folder(phase)
        name, presses = GRACEFUL[phase]

        def while_paused(child):
            if phase in COPIED_AT:  # what a SIGKILL at this instant would leave
                shutil.copytree(where / "run", root / f"{phase}-copy" / "run")
            return _visit_during_a_checkpoint_write(child) if phase == "checkpoint_write" else None

        return (str(where / "run"), *_interrupt(where, cache_env, phase, SIGNALS[name][0], presses,
                                                while_paused))

    def killed():
        where = folder("killed")
        return (str(where / "run"), *_interrupt(where, cache_env, "checkpoint_write", signal.SIGKILL))

    jobs = {_case(phase, name): (graceful, phase) for phase, (name, _) in GRACEFUL.items()}
    jobs[_case("checkpoint_write", "SIGKILL")] = (killed,)
    jobs["eval"] = (_eval_interrupted, folder("eval"), cache_env, reference.run_dir)
    for what in ("log", "checkpoint"):
        jobs[f"file size: {what}"] = (_file_size_limit, folder(f"size-{what}"), cache_env, reference, what)
    jobs["huge budget"] = (_huge_budget_sigterm, folder("huge"), cache_env)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(*job) for key, job in jobs.items()}
        results = {key: future.result() for key, future in futures.items()}
    for phase in COPIED_AT:
        results[_case(phase, "SIGKILL")] = (str(root / f"{phase}-copy" / "run"), None, None, None)
    return results


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, cache_env, reference):
    """:func:`_run_children`'s results, computed once per test session: under pytest-xdist the
    first worker to get here runs the children (after its ``reference`` filled the compilation
    cache) and the others wait for its results; each test then resumes only its own folder."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "faults"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        results = shared / "results.json"
        if not results.exists():
            results.write_text(json.dumps(_run_children(shared, cache_env, reference)))
        return json.loads(results.read_text())


@pytest.mark.parametrize("phase, name", CASES)
def test_interrupt_then_resume_is_bit_identical(phase, name, interrupted, reference):
    run_dir, code, err, _ = interrupted[_case(phase, name)]
    run_dir = Path(run_dir)
    if code is not None:  # a process that received the signal (else the folder copied at the pause)
        assert code == SIGNALS[name][1], err
        assert "Traceback" not in err, err
    assert (run_dir / "config.json").exists()  # written before anything compiles
    status = json.loads((run_dir / "status.json").read_text())["status"]
    assert status == ("running" if name == "SIGKILL" else "interrupted")
    if name == "SIGKILL" and phase == "checkpoint_write":
        # the kill hit orbax between writing the second save and renaming it into place: the
        # earlier checkpoint is intact and loadable, the half-written one is only a tmp folder
        checkpoints = Checkpoints(run_dir, read_only=True)
        assert checkpoints.steps() == [2 * CONFIG.steps_per_update]
        _, meta = checkpoints.restore(jax.eval_shape(lambda: jax.vmap(
            lambda k: ppo.init(CONFIG, HPARAMS, k))(jax.random.split(jax.random.key(0), 2))))
        assert meta["update"] == 2
        checkpoints.close()
    _assert_resumes_to_reference(run_dir, reference)
    assert not list(run_dir.glob("checkpoints/*/*tmp*")), "a temporary checkpoint folder was left"


def test_ctrl_c_twice_during_a_checkpoint_write(interrupted):
    """The second Ctrl-C arrives while the checkpoint is being written: it is answered with one
    line, the save completes and the run exits 130 (and resumes to the reference, above)."""
    _, code, err, _ = interrupted[_case("checkpoint_write", "SIGINT")]
    assert code == 130, err
    assert "Traceback" not in err and err.count("already stopping") == 1, err


def test_a_second_process_is_refused_while_the_run_is_running(interrupted):
    """A run paused in a checkpoint write holds the folder's lock: ``pgjax train --resume`` from
    another process is refused before compiling, in one line naming the holder's pid."""
    _, _, _, seen = interrupted[_case("checkpoint_write", "SIGINT")]
    code, _, err = seen["second"]
    assert code == 2, err
    assert f"in use by process {seen['holder']}" in err, err
    assert err.count("\n") == 1


def test_a_reader_during_a_checkpoint_write_changes_nothing(interrupted):
    """`pgjax eval` while the trainer renames its second save into place: it evaluates the first
    checkpoint (step 128), leaves every file of the folder as it was (the temporary folder of the
    save in progress included: a reader that cleaned it up would destroy that save), and the
    trainer then finishes the save and stops normally on its signals."""
    _, code, err, seen = interrupted[_case("checkpoint_write", "SIGINT")]
    committed, in_progress = seen["tmp"]  # the first save, and the second one's temporary folder
    assert committed == "128" and in_progress.startswith("256.") and "tmp" in in_progress
    assert seen["unchanged"]
    eval_code, eval_out, eval_err = seen["eval"]
    assert eval_code == 0 and eval_err == "", eval_err
    assert f"latest checkpoint at step {2 * CONFIG.steps_per_update}" in eval_out
    assert code == 130, err


def test_ctrl_c_during_pgjax_eval_is_one_line(interrupted):
    """SIGINT while `pgjax eval` builds its evaluation: exit 130 at once, one line, nothing
    recorded."""
    code, err, run_dir = interrupted["eval"]
    assert code == 130, err
    assert err == "pgjax: received SIGINT during the evaluation: stopped, nothing recorded\n", err
    assert not (Path(run_dir) / "reeval.jsonl").exists()


@pytest.mark.parametrize("what", ["log", "checkpoint"])
def test_a_file_size_limit_stops_the_run_in_one_line_and_it_resumes(interrupted, reference, what):
    """EFBIG from a real file size limit, while metrics_settings.jsonl is written or while orbax
    writes the first checkpoint (it used to print hundreds of lines of tracebacks from orbax's
    and tensorstore's threads): one line naming the file and the error, exit 4, status.json
    'failed' at the latest checkpoint, the row cut short in the log, the unfinished save left as a
    temporary folder; once the limit is gone, the resume drops the partial row, removes the
    unfinished save and ends bit-identical to the reference."""
    code, err, run_dir, saved = interrupted[f"file size: {what}"]
    run_dir = Path(run_dir)
    where = run_dir / ("metrics_settings.jsonl" if what == "log" else "checkpoints/latest/128")
    message = f"cannot write {where}: [Errno 27] File too large"
    assert code == 4 and err == f"pgjax: error: {message}\n", err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["message"].startswith(message)
    assert status["update"] == saved
    if what == "log":
        assert not (run_dir / "metrics_settings.jsonl").read_text().endswith("\n")
    else:
        [unfinished] = [p.name for p in (run_dir / "checkpoints" / "latest").iterdir()]
        assert unfinished.startswith("128.") and "tmp" in unfinished
    _assert_resumes_to_reference(run_dir, reference)
    assert not list(run_dir.glob("checkpoints/*/*tmp*"))


def test_a_huge_budget_answers_sigterm_within_seconds(interrupted):
    """With --total-steps 3e9 a chunk is sized by wall time (--chunk-seconds 2), not as a
    twentieth of the run: SIGTERM sent while a chunk runs is answered well within the 30 s a
    cluster scheduler waits before SIGKILL, with a checkpoint that restores."""
    code, err, answered, run_dir = interrupted["huge budget"]
    run_dir = Path(run_dir)
    assert code == 143, err
    assert answered < 30, f"SIGTERM took {answered:.1f}s"
    checkpoints = Checkpoints(run_dir, read_only=True)
    config = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16,
                        total_steps=3_000_000_000, epochs=1, minibatches=2, hidden_sizes=(8,))
    state, meta = checkpoints.restore(jax.eval_shape(lambda: jax.vmap(
        lambda k: ppo.init(config, HPARAMS, k))(jax.random.split(jax.random.key(0), 2))))
    checkpoints.close()
    assert 3 < meta["update"] < config.num_updates
    assert int(state.update_step[0]) == meta["update"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
