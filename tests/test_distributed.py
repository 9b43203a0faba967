"""Several processes, one run (issue 15 §3): two processes on loopback joined by
``jax.distributed`` (gloo collectives on CPU), two forced host devices each, train a population
of four through ``pgjax train``; both are killed (SIGKILL) after a checkpoint, and the run resumes
with two processes and, from a copy of the killed folder, with one. Each result is compared with
an uninterrupted run of the same population in this process, on one device."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

UPDATES = 160
TRAIN = ["train", "ppo", "--env", "CartPole-v1", "--seeds", "4", "--total-steps", str(UPDATES * 64),
         "--set", "num_envs=4", "--set", "rollout_length=16", "--set", "epochs=1",
         "--set", "minibatches=2", "--set", "hidden_sizes=8", "--eval-episodes", "2",
         "--cache-episodes", "0", "--num-evals", "1", "--checkpoint-every", str(40 * 64),
         "--no-tensorboard", "--no-plots", "--log-every-seconds", "0"]


def _env(devices: int) -> dict:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags.strip()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], processes: int, devices: int) -> list[subprocess.Popen]:
    port = _free_port()
    extra = lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                       "--process-id", str(i)] if processes > 1 else []
    return [subprocess.Popen([sys.executable, "-m", "pgjax.cli", *argv, *extra(i)], env=_env(devices),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(processes)]


def _finish(procs) -> list[str]:
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def _ours(out: str) -> str:
    """A process's output without gloo's connection lines (and blank lines: gloo's messages from
    its threads can interleave, leaving a bare newline; seen once in CI)."""
    return "".join(line for line in out.splitlines(keepends=True)
                   if line.strip() and not line.startswith("[Gloo]"))


def _final_params(run_dir: Path):
    from pgjax.run import spec
    from pgjax.run.checkpoints import Checkpoints
    from pgjax.run.population import Population
    from pgjax.run.runner import init_program
    import jax
    saved = spec.load(run_dir)
    population = Population(saved.seeds, saved.settings)
    like = jax.eval_shape(init_program(saved.config), population.keys(), population.hparams())
    checkpoints = Checkpoints(run_dir)
    try:
        state, meta = checkpoints.restore(like)
    finally:
        checkpoints.close()
    return meta["update"], [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _steps(run_dir: Path) -> list[int]:
    latest = run_dir / "checkpoints" / "latest"
    return sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit()) if latest.exists() else []


def test_two_processes_train_are_killed_and_resume_on_two_and_on_one(tmp_path):
    from pgjax import cli
    assert cli.main([*TRAIN, "--runs-dir", str(tmp_path), "--name", "reference"]) == 0  # one device
    reference = tmp_path / "reference"

    procs = _launch([*TRAIN, "--runs-dir", str(tmp_path), "--name", "mp"], 2, 2)
    deadline = time.monotonic() + 300
    while not _steps(tmp_path / "mp") and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    killed_at = _steps(tmp_path / "mp")
    assert killed_at and killed_at[-1] < UPDATES * 64, killed_at   # killed mid-run, after a save
    shutil.copytree(tmp_path / "mp", tmp_path / "mp-one")

    resuming = [_launch(["train", "--resume", str(tmp_path / "mp")], 2, 2),   # both at once
                _launch(["train", "--resume", str(tmp_path / "mp-one")], 1, 2)]
    two, one = [_finish(procs) for procs in resuming]
    two = [_ours(out) for out in two]
    assert "resuming" in two[0] and two[1] == "", two          # process 0 alone prints
    assert "resuming" in one[0]

    update, expected = _final_params(reference)
    assert update == UPDATES
    for name in ("mp", "mp-one"):
        run = tmp_path / name
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        got_update, got = _final_params(run)
        assert got_update == UPDATES
        # the same members, trained on another split of devices: equal to float tolerance
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        keys = [(r["member"], r["update"]) for r in rows]
        assert sorted(keys) == [(m, u) for m in range(4) for u in range(1, UPDATES + 1)]  # once each
    config = json.loads((tmp_path / "mp" / "config.json").read_text())
    assert "in 2 processes" in config["device"]
