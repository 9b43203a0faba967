"""Robustness table (issue 11): every bad input with the message it gets, every injected fault with
its outcome.

    python benchmarks/robustness.py [--no-faults]

Bad inputs go through ``pgjax.cli.main`` in this process (nothing compiles: each is refused first).
Faults use the subprocess harness of ``tests/test_faults.py``: a small PPO run receives SIGINT,
SIGTERM or SIGKILL at a phase, and is resumed here; the table records the exit status, how long
the process took to exit after the signal, the status left in the folder, and whether the resumed
run's parameters equal an uninterrupted run's bit for bit. Writes ``benchmarks/results/robustness.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.results_table import save_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def bad_inputs(root: Path) -> list[tuple[str, str]]:
    """(command, first line of stderr) for each bad input, in a scratch folder."""
    from pgjax import cli
    a_file = root / "a-file"
    a_file.write_text("x")
    run = root / "run"
    run.mkdir()
    cases = [
        "train ppo --set env.max_steps_in_episode=abc",
        "train ppo --set env.max_steps_in_episode=0",
        "train ppo --set env.max_steps_in_episode=-5",
        "train ppo --seed-offset -1",
        "train ppo --set torso=cnn",
        f"train ppo --runs-dir {a_file}",
        "train ppo --runs-dir /proc/not-writable",
        "train ppo --name ../escape",
        "train ppo --name a/b",
        f"report {run} --out {a_file}",
        f"train --resume {run}   (config.json empty)",
        f"train --resume {run}   (config.json is {{}})",
        f"train --resume {run}   (config.json with an unknown field)",
        f"train --resume {run}   (config.json with num_envs=-3)",
        f"eval {run}   (checkpoints/ deleted)",
        "train ppo --total-steps 2199023255552000",
        "train ppo --set learning_rate=-1",
        "train ppo --on-nonfinite ignore",
        "train trpo --set torso=gru",
        "train ppo --set torso=gru --set minibatches=8",
        "train ppo --set gsde=true",
        "train ppo --set optimizer=sgdx",
        "train ppo --env CartPoleNoVelocity-v2",
    ]
    from pgjax.algorithms import ppo
    from pgjax.config import config_to_dict, hparams_to_dict
    good = {"algorithm": "ppo", "config": config_to_dict(ppo.Config()),
            "hparams": hparams_to_dict(ppo.Hparams()), "seeds": [0]}
    contents = {"(config.json empty)": "", "(config.json is {})": "{}",
                "(config.json with an unknown field)": json.dumps(
                    {**good, "config": {**good["config"], "bogus": 1}}),
                "(config.json with num_envs=-3)": json.dumps(
                    {**good, "config": {**good["config"], "num_envs": -3}}),
                "(checkpoints/ deleted)": json.dumps(good)}
    (run / "config.json").write_text(json.dumps(good))
    rows = []
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for case in cases:
            command, _, note = case.partition("   ")
            if note:
                (run / "config.json").write_text(contents[note])
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli.main(command.split())
                except SystemExit as exit_:  # argparse refusals
                    code = exit_.code
            first = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""
            rows.append((f"pgjax {command.replace(str(root), '…')}" + (f" {note}" if note else ""),
                         code, first.replace(str(root), "…")))
    finally:
        os.chdir(cwd)
    return rows


def faults(root: Path) -> list[dict]:
    import io as _io

    import test_faults as harness
    from pgjax.run import runner
    from pgjax.algorithms import ppo
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache")}
    reference = runner.run(ppo.NAME, harness.CONFIG, harness.HPARAMS, harness.SEEDS, root / "ref",
                           options=harness.OPTIONS, out=_io.StringIO())
    rows = []
    for phase, name in harness.CASES:
        folder = root / f"{phase}-{name}"
        folder.mkdir()
        process, release = harness._child(folder, env, phase)
        harness._wait_for_phase(process, phase)
        process.send_signal(harness.SIGNALS[name][0])
        sent = time.monotonic()
        time.sleep(0.3)
        release.touch()
        _, err = process.communicate(timeout=300)
        exit_seconds = time.monotonic() - sent - 0.3
        status = json.loads((folder / "run" / "status.json").read_text())["status"]
        try:
            harness._assert_resumes_to_reference(folder / "run", reference)
            resumed = "bit-identical, every update logged once"
        except AssertionError as error:  # recorded, not hidden
            resumed = f"DIFFERS: {str(error).splitlines()[0]}"
        rows.append({"phase": phase, "signal": name, "exit": process.returncode,
                     "exit_seconds": max(exit_seconds, 0.0), "status": status,
                     "traceback": "Traceback" in err, "resume": resumed})
    return rows


def markdown(inputs, fault_rows) -> str:
    lines = ["| input | exit | message |", "|---|---:|---|"]
    escape = lambda text: text.replace("|", "\\|")
    lines += [f"| `{command}` | {code} | {escape(message)} |" for command, code, message in inputs]
    if fault_rows:
        lines += ["", "| phase | signal | exit status | exit after signal (s) | status.json | "
                  "traceback | resume |", "|---|---|---:|---:|---|---|---|"]
        lines += [f"| {r['phase']} | {r['signal']} | {r['exit']} | {r['exit_seconds']:.1f} | "
                  f"{r['status']} | {'yes' if r['traceback'] else 'no'} | {r['resume']} |"
                  for r in fault_rows]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-faults", action="store_true",
                        help="redo the bad-input table only, keeping the saved fault rows")
    args = parser.parse_args()
    os.environ.setdefault("PGJAX_COMPILATION_CACHE", "0")
    with tempfile.TemporaryDirectory(prefix="pgjax-robustness-") as scratch:
        root = Path(scratch)
        inputs = bad_inputs(root)
        saved = RESULTS / "robustness.json"
        if args.no_faults:
            fault_rows = json.loads(saved.read_text())["faults"] if saved.exists() else []
        else:
            fault_rows = faults(root)
    save_results(RESULTS, "robustness", {"bad_inputs": inputs, "faults": fault_rows},
                 markdown(inputs, fault_rows))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
