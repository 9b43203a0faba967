"""Several processes, one run: two processes on loopback joined by
``jax.distributed`` (gloo collectives on CPU), two forced host devices each, train a population
of four through ``pgjax train``; both are killed (SIGKILL) after their first checkpoint, and the
run resumes with two processes and, from a copy of the killed folder, in this process (one
process, one device). Each result is compared with an uninterrupted run of the same population in
this process, on one device.

The kill is not a race: the first launch runs ``HOLD_AFTER_SAVE``, which lets each process save
its first checkpoint and then wait to be killed, so a short run suffices. The subprocesses share
one persistent compilation cache (the suite's, or a folder of this test's when the suite's is off),
so the resuming processes load the programs the killed ones compiled."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax

from float_compare import FEW_ADAM_UPDATES, assert_trees_close, assert_trees_far

UPDATES, FIRST_SAVE = 8, 4
TRAIN = ["train", "ppo", "--env", "CartPole-v1", "--seeds", "4", "--total-steps", str(UPDATES * 64),
         "--set", "num_envs=4", "--set", "rollout_length=16", "--set", "epochs=1",
         "--set", "minibatches=2", "--set", "hidden_sizes=8", "--eval-episodes", "2",
         "--cache-episodes", "0", "--num-evals", "1", "--checkpoint-every", str(FIRST_SAVE * 64),
         "--no-tensorboard", "--no-plots", "--log-every-seconds", "0"]

# `pgjax train` whose processes each save their first checkpoint, leave a mark, and wait there to
# be killed (argv: the marks' folder, then pgjax's arguments)
HOLD_AFTER_SAVE = r"""
import os, sys, time
from pathlib import Path
from pgjax.run.checkpoints import Checkpoints
save, marks = Checkpoints.save, Path(sys.argv[1])

def save_and_hold(self, *args, **kwargs):
    save(self, *args, **kwargs)
    (marks / str(os.getpid())).touch()
    time.sleep(600)

Checkpoints.save = save_and_hold
from pgjax import cli
cli.entry(sys.argv[2:])
"""


def _env(devices: int, cache: Path) -> dict:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags.strip()}
    if "JAX_COMPILATION_CACHE_DIR" not in env:  # the suite's cache is off: one for these processes
        env.update(PGJAX_CACHE_DIR=str(cache), PGJAX_COMPILATION_CACHE="1",
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], processes: int, devices: int, cache: Path,
            command: list[str] | None = None) -> list[subprocess.Popen]:
    port = _free_port()
    extra = lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                       "--process-id", str(i)] if processes > 1 else []
    command = command or ["-m", "pgjax.cli"]
    return [subprocess.Popen([sys.executable, *command, *argv, *extra(i)], env=_env(devices, cache),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(processes)]


def _finish(procs) -> list[str]:
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def _wait_for_marks(procs, marks: Path, timeout: float = 300.0) -> None:
    """Until every process has left its mark (saved and holding); fails at once if one ended."""
    deadline = time.monotonic() + timeout
    while len(list(marks.iterdir())) < len(procs):
        for p in procs:
            if p.poll() is not None:
                for q in procs:
                    q.kill()
                raise AssertionError(f"process ended with {p.returncode}: {p.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)


def _ours(out: str) -> str:
    """A process's output without gloo's connection lines (and blank lines: gloo's messages from
    its threads can interleave, leaving a bare newline or a line's tail without its "[Gloo]"
    prefix, e.g. "2 is connected to 3 peer ranks. …"; both seen in CI)."""
    return "".join(line for line in out.splitlines(keepends=True)
                   if line.strip() and not line.startswith("[Gloo]") and "peer ranks" not in line)


def _final_params(run_dir: Path):
    from pgjax.run import spec
    from pgjax.run.checkpoints import Checkpoints
    from pgjax.run.population import Population
    from pgjax.run.runner import init_program
    saved = spec.load(run_dir)
    population = Population(saved.seeds, saved.settings)
    like = jax.eval_shape(init_program(saved.config), population.keys(), population.hparams())
    checkpoints = Checkpoints(run_dir)
    try:
        state, meta = checkpoints.restore(like)
    finally:
        checkpoints.close()
    return meta["update"], state.params


def _steps(run_dir: Path) -> list[int]:
    latest = run_dir / "checkpoints" / "latest"
    return sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit()) if latest.exists() else []


def test_two_processes_train_are_killed_and_resume_on_two_and_on_one(tmp_path, capsys):
    from pgjax import cli
    cache, marks = tmp_path / "cache", tmp_path / "marks"
    marks.mkdir()
    procs = _launch([str(marks), *TRAIN, "--runs-dir", str(tmp_path), "--name", "mp"], 2, 2, cache,
                    command=["-c", HOLD_AFTER_SAVE])
    # while they start: the reference, uninterrupted, in this process on one device
    assert cli.main([*TRAIN, "--runs-dir", str(tmp_path), "--name", "reference"]) == 0
    _wait_for_marks(procs, marks)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    assert _steps(tmp_path / "mp") == [FIRST_SAVE * 64]   # killed mid-run, after its first save
    shutil.copytree(tmp_path / "mp", tmp_path / "mp-one")

    resuming = _launch(["train", "--resume", str(tmp_path / "mp")], 2, 2, cache)
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(tmp_path / "mp-one")]) == 0  # meanwhile, here
    one = capsys.readouterr().out
    two = [_ours(out) for out in _finish(resuming)]
    assert "resuming" in two[0] and two[1] == "", two          # process 0 alone prints
    assert f"from update {FIRST_SAVE}" in two[0] and f"from update {FIRST_SAVE}" in one, (two, one)

    update, expected = _final_params(tmp_path / "reference")
    assert update == UPDATES
    member = lambda params, m: [x[m] for x in jax.tree.leaves(params)]  # noqa: E731
    assert_trees_far(member(expected, 0), member(expected, 1), 10 * FEW_ADAM_UPDATES, "members 0, 1")
    for name in ("mp", "mp-one"):
        run = tmp_path / name
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        got_update, got = _final_params(run)
        assert got_update == UPDATES
        # the same members, trained on another split of devices: other programs, 8 updates (16
        # Adam steps) apart, normwise at FEW_ADAM_UPDATES (float_compare.py; measured ~2e-6)
        assert_trees_close(got, expected, FEW_ADAM_UPDATES, name)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        keys = [(r["member"], r["update"]) for r in rows]
        assert sorted(keys) == [(m, u) for m in range(4) for u in range(1, UPDATES + 1)]  # once each
    config = json.loads((tmp_path / "mp" / "config.json").read_text())
    assert "in 2 processes" in config["device"]
