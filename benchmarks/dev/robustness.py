"""Robustness catalogue: every bad input and injected fault, with what it gets and what is kept.

    python -m benchmarks.dev.robustness [--no-faults]

Each row records the command (scratch paths shown as ``…``), its exit status, whether a Python
traceback appeared on stderr, the seconds it took, the first and last line of its message (stderr,
or stdout when stderr is empty), and what was kept, checked after the command: the scratch
folder's tree hash (every file's SHA-256, every folder and link) before and after, a resumed
run's parameters against an uninterrupted run's (bit for bit), a file outside the run folder.

- **Bad input** goes through ``pgjax.cli.main`` in this process. Refusals must come before
  anything is compiled: ``jax.stages.Lowered.compile`` is replaced by a trap while they run, and
  a case that reached it says so in its row.
- **Faults** share one small trained PPO run (the configuration of ``tests/test_faults.py``: 2
  seeds, 8 updates in chunks of 2, a checkpoint after each chunk, evaluations after updates 4 and
  8), copied per case, and the subprocess harness of ``tests/test_faults.py`` for what needs a
  real process (signals at a phase, a file size limit, a reader while the trainer runs). Every
  child loads the programs of the in-process run from one persistent compilation cache.

``--no-faults`` redoes the bad-input rows only and keeps the saved fault rows. Writes
``benchmarks/results/robustness.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from benchmarks.results_table import save_results

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _fault_harness():
    """tests/test_faults.py, the subprocess harness of the fault rows, loaded from its file (the
    tests folder is not a package)."""
    import importlib.util
    if "test_faults" not in sys.modules:
        spec = importlib.util.spec_from_file_location("test_faults", ROOT / "tests" / "test_faults.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["test_faults"] = module
        spec.loader.exec_module(module)
    return sys.modules["test_faults"]
COMMAND = "python -m benchmarks.dev.robustness"

# group key -> (title, what the group shows); the tables come in this order
GROUPS = {
    "inputs": ("Bad input (the first catalogue)", "Refused before anything is created or compiled."),
    "settings": ("Settings out of range", "`--set` values outside a field's declared range, the "
                 "named cases first, then one value just outside the declaration of each field "
                 "that only some algorithms have, and a sample of the shared fields (generated from "
                 "`pgjax.config.settings_of`)."),
    "files": ("Settings files (TOML)", "`pgjax train --config FILE`: the file's values are checked "
              "like `--set`."),
    "before": ("Before the run folder exists", "Feature settings against the observation shape, "
               "environment parameters, a name too long for the file system, SLURM's variables."),
    "numbers": ("Numbers", "Integers past what the program's 32-bit types hold, sweeps that would "
                "drop a value or train a setting twice, an integral float accepted."),
    "cost": ("Cost", "Runs that cannot fit the device's memory are refused from shapes alone; a "
             "process that cannot join a multi-process run gives up."),
    "folder": ("Run folder faults", "Each on a copy of the trained run. 'Bit-identical' compares "
               "every leaf of the final train state with the uninterrupted run's."),
    "packaging": ("Packaging", "A user's own `envs` package in the working folder."),
    "signals": ("Signals (the first catalogue)", "A child (`pgjax train` of the tiny run) paused "
                "by a hook at a phase receives the signal, then the folder is resumed in this "
                "process. Seconds: from the signal to the child's exit, or from the hook's release "
                "where the hook held the process past 0.3 s (finishing the chunk or evaluation and "
                "the checkpoint included)."),
}
FAULT_GROUPS_NOTE = "rows that need a trained run or a real process (kept by --no-faults)"


# ----------------------------------------------------------------------------- small pieces

def tree_digest(root: Path) -> dict[str, str]:
    """Every file (SHA-256 of its bytes), folder and symbolic link under ``root``, by relative path."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        name = str(path.relative_to(root))
        found[name] = (f"link -> {os.readlink(path)}" if path.is_symlink() else "folder"
                       if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def digest_change(before: dict, after: dict) -> str | None:
    """None when equal, else a short account of what appeared, vanished or changed."""
    if before == after:
        return None
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [f"{label} {', '.join(names[:3])}{'…' if len(names) > 3 else ''}"
             for label, names in (("created", added), ("removed", removed), ("changed", changed))
             if names]
    return "; ".join(parts)


def first_and_last(err: str, out: str) -> tuple[str, str]:
    """First and last non-blank line of stderr, or, when stderr has none, of stdout's text (its
    table rows left out)."""
    if err.strip():
        lines = [line.rstrip() for line in err.splitlines() if line.strip()]
    else:
        lines = [line.rstrip() for line in out.splitlines()
                 if line.strip() and not line.lstrip().startswith("|")]
    return (lines[0], lines[-1]) if lines else ("", "")


def damage_checkpoint(step_dir: Path) -> None:
    """Truncate every data file of a checkpoint step to 10 bytes (a copy cut short); its metadata
    stays readable."""
    for path in Path(step_dir).rglob("d/*"):
        with open(path, "r+b") as handle:
            handle.truncate(10)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_line() -> str:
    """Platform, CPU model (/proc/cpuinfo), core count, jax version, date and the command."""
    import jax
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"Machine: {platform.platform()}, {model}, {os.cpu_count()} cores; jax {jax.__version__}; "
            f"{time.strftime('%Y-%m-%d')}; `{COMMAND}`")


class CompileTrap(Exception):
    """Raised by the trap that stands in for ``Lowered.compile`` while a refusal runs."""


class PassedChecks(Exception):
    """Raised where a run would start creating its folder: every check before it passed."""


@contextlib.contextmanager
def trapped(compile_trap: bool, stop_at_folder: bool):
    """While a case runs: ``Lowered.compile`` raises :class:`CompileTrap` (counted), and/or the
    runner stops with :class:`PassedChecks` where it would create the run folder (after every
    check: ``runner.warn_unusual`` is its last step before that)."""
    import jax

    from pgjax.run import runner
    calls = []
    real_compile, real_warn = jax.stages.Lowered.compile, runner.warn_unusual

    def trap(self, *args, **kwargs):
        calls.append(1)
        raise CompileTrap("a program was compiled")

    def stop(*args, **kwargs):
        raise PassedChecks()

    if compile_trap:
        jax.stages.Lowered.compile = trap
    if stop_at_folder:
        runner.warn_unusual = stop
    try:
        yield calls
    finally:
        jax.stages.Lowered.compile, runner.warn_unusual = real_compile, real_warn


def run_cli(argv: list[str], cwd: Path, *, env: dict | None = None, compile_trap: bool = True,
            stop_at_folder: bool = False) -> dict:
    """``pgjax argv`` through ``pgjax.cli.main`` in this process, in ``cwd``, with ``env`` added to
    the environment: exit status, stdout, stderr, seconds, whether a traceback appeared (an
    exception escaping ``main`` is printed as one), whether a program was compiled."""
    from pgjax import cli
    out, err = io.StringIO(), io.StringIO()
    saved_env = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    here = os.getcwd()
    os.chdir(cwd)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(), trapped(compile_trap, stop_at_folder) as compiled:
            warnings.simplefilter("always", UserWarning)  # as in a fresh process: each shown
            try:
                code = cli.main(argv)
            except SystemExit as exit_:  # argparse's refusals
                code = exit_.code
            except PassedChecks:
                code = "passed every check"
            except Exception:  # noqa: BLE001 - recorded in the row, not hidden
                traceback.print_exc()
                code = "exception"
    finally:
        seconds = time.perf_counter() - start
        os.chdir(here)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return {"exit": code, "out": out.getvalue(), "err": err.getvalue(), "seconds": seconds,
            "traceback": "Traceback" in err.getvalue(), "compiled": bool(compiled)}


def run_process(args: list[str], cwd: Path, env: dict, timeout: float = 300) -> dict:
    """A real process: exit status, stdout, stderr, seconds, whether a traceback appeared."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return {"exit": done.returncode, "out": done.stdout, "err": done.stderr,
            "seconds": time.perf_counter() - start, "traceback": "Traceback" in done.stderr,
            "compiled": None}


def shown(argv, root: Path) -> str:
    """``pgjax ARGV`` as a user types it, scratch paths as ``…``."""
    return ("pgjax " + " ".join(shlex.quote(a) for a in argv)).replace(str(root), "…")


def make_row(group: str, command: str, outcome: dict, kept: str, root: Path, *, fault: bool) -> dict:
    """One row of the catalogue (paths under ``root`` shown as ``…``)."""
    first, last = first_and_last(outcome["err"], outcome["out"])
    scrub = lambda text: str(text).replace(str(root), "…")
    return {"group": group, "command": scrub(command), "exit": outcome["exit"],
            "traceback": outcome["traceback"], "seconds": round(outcome["seconds"], 2),
            "first": scrub(first), "last": scrub(last), "kept": scrub(kept), "fault": fault}


def refusal_row(group: str, argv: list[str], work: Path, *, command: str | None = None,
                kept: str = "nothing created", watch: Path | None = None, env=None,
                stop_at_folder: bool = False) -> dict:
    """Run a case that must be refused; 'kept' is ``kept`` when the tree hash of ``watch``
    (default ``work``) is equal afterwards and nothing compiled, else what changed."""
    watch = watch or work
    before = tree_digest(watch)
    outcome = run_cli(argv, work, env=env, stop_at_folder=stop_at_folder)
    change = digest_change(before, tree_digest(watch))
    found = ("COMPILED a program" if outcome["compiled"] else
             f"CHANGED: {change}" if change else kept)
    if outcome["exit"] == "passed every check" and not change:
        found = ("passed every check; stopped by this script where the run folder would be "
                 "created: nothing created")
    env_text = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    return make_row(group, command or ((env_text + " " if env_text else "") + shown(argv, work)),
                    outcome, found, work, fault=False)


# ----------------------------------------------------------------------------- bad input

def first_catalogue(work: Path) -> list[dict]:
    """The bad inputs of the first catalogue, each now with what it kept."""
    from pgjax.algorithms import ppo
    from pgjax.config import config_to_dict, hparams_to_dict
    a_file = work / "a-file"
    a_file.write_text("x")
    run = work / "run"
    run.mkdir()
    good = {"algorithm": "ppo", "config": config_to_dict(ppo.Config()),
            "hparams": hparams_to_dict(ppo.Hparams()), "seeds": [0]}
    contents = {"(config.json empty)": "", "(config.json is {})": "{}",
                "(config.json with an unknown field)": json.dumps(
                    {**good, "config": {**good["config"], "bogus": 1}}),
                "(config.json with num_envs=-3)": json.dumps(
                    {**good, "config": {**good["config"], "num_envs": -3}}),
                "(checkpoints/ deleted)": json.dumps(good)}
    (run / "config.json").write_text(json.dumps(good))
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
    rows = []
    for case in cases:
        command, _, note = case.partition("   ")
        if note:
            (run / "config.json").write_text(contents[note])
        argv = command.split()
        kept = "run folder untouched (tree hash equal)" if str(run) in command else "nothing created"
        rows.append(refusal_row("inputs", argv, work, kept=kept,
                                command=shown(argv, work) + (f" {note}" if note else "")))
    return rows


def bad_text(declared) -> str | None:
    """One value a declaration refuses: just outside its range, or not one of its choices."""
    import math
    if declared.type == "bool":
        return "maybe"
    if declared.type == "str":
        return "no-such-choice" if declared.choices else None
    if declared.type == "ints":
        return "0"
    if declared.type == "pairs":
        return None
    if declared.low is not None:
        return repr(declared.low) if declared.low_open else repr(declared.low - 1)
    if declared.high is not None and declared.high != math.inf:
        return repr(declared.high) if declared.high_open else repr(declared.high + 1)
    return "nan" if declared.type == "float" else "1.5"


NAMED_SETTINGS = [
    ("reinforce", "critic_learning_rate=-1"), ("reinforce", "baseline_decay=5"),
    ("trpo", "max_kl=-0.01"), ("trpo", "cg_damping=-1"),
    ("actor-critic", "lambda_actor=2"), ("actor-critic", "lambda_critic=5"),
    ("ppo", "reward_scale=inf"), ("ppo", "log_std_init=nan"),
]
# shared fields, sampled once under ppo: wrong kind, just outside a bound, not a number
SHARED_SAMPLE = ["num_envs=0", "rollout_length=-1", "total_steps=0", "hidden_sizes=64,0",
                 "activation=swish", "torso=transformer", "gamma=1.5", "ent_coef=-0.01",
                 "max_grad_norm=0", "learning_rate=nan", "normalize_obs=maybe"]


def generated_settings() -> list[tuple[str, str]]:
    """(algorithm, KEY=VALUE) for every field that not every algorithm has, one value just outside
    its declaration, skipping the named cases."""
    from pgjax import algorithms
    from pgjax.config import settings_of
    names = sorted(algorithms.ALGORITHMS)
    fields = {n: {**settings_of(algorithms.get(n).Config), **settings_of(algorithms.get(n).Hparams)}
              for n in names}
    shared = set.intersection(*(set(f) for f in fields.values()))
    named = {(algo, text.split("=")[0]) for algo, text in NAMED_SETTINGS}
    cases = []
    for name in names:
        for field, declared in fields[name].items():
            value = bad_text(declared)
            if field in shared or (name, field) in named or value is None:
                continue
            cases.append((name, f"{field}={value}"))
    return cases


def settings_rows(work: Path) -> list[dict]:
    runs = work / "runs"
    cases = NAMED_SETTINGS + [("ppo", text) for text in SHARED_SAMPLE] + generated_settings()
    return [refusal_row("settings", ["train", algo, "--set", text, "--runs-dir", str(runs)], work)
            for algo, text in cases]


TOML_CASES = [
    ('[config]\nnormalize_obs = "false"\n', 'normalize_obs = "false"'),
    ("[config]\nenv_overrides = 5\n", "env_overrides = 5"),
    ("[config]\nenv_overrides = [1, 2]\n", "env_overrides = [1, 2]"),
    ("[config]\nfeature_args = 5\n", "feature_args = 5"),
    ('[config]\nlog_std_init = "abc"\n', 'log_std_init = "abc"'),
    ("[hparams]\nlerning_rate = 4\n", "[hparams] lerning_rate = 4 (typo)"),
    ("seeds = [0, 0, 1]\n", "seeds = [0, 0, 1]"),
    ("[[hparams_settings]]\ngamma = 0.9\n[[hparams_settings]]\ngamma = 0.90\n",
     "two [[hparams_settings]] with gamma = 0.9 and 0.90"),
    ("[config]\nnum_envz = 4\n", "[config] num_envz = 4 (typo)"),
    ("[config]\ntotal_steps = 1.5\n", "total_steps = 1.5"),
]


def file_rows(work: Path) -> list[dict]:
    rows = []
    for index, (content, label) in enumerate(TOML_CASES):
        path = work / f"case{index}.toml"
        path.write_text('algorithm = "ppo"\n' + content)
        argv = ["train", "--config", str(path), "--runs-dir", str(work / "runs")]
        rows.append(refusal_row("files", argv, work,
                                command=f"{shown(argv, work)}   (file: {label})",
                                kept="nothing created (the .toml unchanged)"))
    return rows


def before_folder_rows(work: Path) -> list[dict]:
    runs = ["--runs-dir", str(work / "runs")]
    cases = [
        ["ppo", "--set", "torso=tile", "--set", "feature_args=low:-1/-1,high:1/1"],
        ["ppo", "--set", "torso=tile", "--set",
         "feature_args=low:-1/-1/-1/-1,high:1/1/1/1,tiles_per_dim:0"],
        ["ppo", "--set", "torso=tile", "--set", "feature_args=low:-1/-1/-1/-1,high:1/1/-2/1"],
        ["ppo", "--env", "ShortCorridor-v0", "--set", "torso=onehot", "--set",
         "feature_args=num_states:0"],
        ["ppo", "--set", "torso=onehot", "--set", "feature_args=num_states:4"],
        ["ppo", "--set", "torso=random_projection", "--set", "feature_args=num_features:-5"],
        ["ppo", "--set", "torso=random_projection", "--set", "feature_args=num_featurs:8"],
        ["ppo", "--env", "Bandit-v0", "--set", "env.kind=poisson"],
    ]
    rows = [refusal_row("before", ["train", *argv, *runs], work) for argv in cases]
    argv = ["train", "ppo", "--name", "r" * 300, *runs]
    rows.append(refusal_row("before", argv, work,
                            command=shown(argv, work).replace("r" * 300, "rrr…(300 × r)")))
    argv = ["train", "ppo", "--set", "num_envs=0", *runs]
    rows.append(refusal_row("before", argv, work, env={"SLURM_NTASKS": "4"},
                            kept="one process: a warning, then the refusal; nothing created"))
    return rows


def number_rows(work: Path) -> list[dict]:
    runs = ["--runs-dir", str(work / "runs")]
    cases = [
        ["ppo", "--set", "env.max_steps_in_episode=1e99"],
        ["ppo", "--set", "env.gravity=1e39"],
        ["ppo", "--seeds", "4294967296"],
        ["ppo", "--seeds", "4294967297"],
        ["ppo", "--seeds", "2", "--seed-offset", "4294967295"],
        ["ppo", "--sweep", "gamma=0.99,0.9", "--sweep", "gamma=0.5"],
        ["ppo", "--sweep", "gamma=0.9,0.90"],
        ["ppo", "--sweep", "learning_rate=1e-3,0.001000000001"],
        ["ppo", "--total-steps", "1.5"],
    ]
    return [refusal_row("numbers", ["train", *argv, *runs], work) for argv in cases]


def cost_rows(work: Path) -> list[dict]:
    """Memory refusals with this machine's own memory; the one that fits here is stopped where
    the run folder would be created, and shown again with a 16 GiB device (as tests/test_cost.py
    assumes) to show the refusal."""
    from pgjax.algorithms import ppo
    from pgjax.config import config_to_dict, hparams_to_dict
    from pgjax.run import memory
    runs = ["--runs-dir", str(work / "runs")]
    rows = [refusal_row("cost", ["train", "ppo", "--seeds", "100000", *runs], work,
                        stop_at_folder=True)]
    real = memory.device_memory
    memory.device_memory = lambda device=None: (16 * 2 ** 30, "cpu: taken as 16 GiB")
    try:
        argv = ["train", "ppo", "--seeds", "100000", *runs]
        rows.append(refusal_row("cost", argv, work,
                                command=shown(argv, work) + "   (device memory taken as 16 GiB)"))
    finally:
        memory.device_memory = real
    for argv in (["ppo", "--set", "num_envs=10000000", "--total-steps", str(128 * 10 ** 7)],
                 ["ppo", "--eval-episodes", "100000000"]):
        rows.append(refusal_row("cost", ["train", *argv, *runs], work))
    run = work / "saved-run"
    run.mkdir()
    record = {"algorithm": "ppo", "config": config_to_dict(ppo.Config(total_steps=512)),
              "hparams": hparams_to_dict(ppo.Hparams()), "seeds": [0, 1]}
    (run / "config.json").write_text(json.dumps(record))
    rows.append(refusal_row("cost", ["eval", str(run), "--episodes", "100000000"], work,
                            kept="run folder untouched (tree hash equal)", watch=run))
    return rows


def bad_inputs(root: Path) -> list[dict]:
    rows = []
    for name, build in (("inputs", first_catalogue), ("settings", settings_rows),
                        ("files", file_rows), ("before", before_folder_rows),
                        ("numbers", number_rows), ("cost", cost_rows)):
        work = root / f"inputs-{name}"
        work.mkdir()
        rows += build(work)
    return rows


# ----------------------------------------------------------------------------- faults

def child_env(root: Path) -> dict:
    """The environment of every child: CPU, this script's compilation cache."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache")}


def same_as_reference(run_dir: Path, reference) -> str:
    """'bit-identical, every update logged once' when the latest checkpoint of ``run_dir`` equals
    the reference's final train state leaf for leaf and metrics.jsonl holds each update once per
    member; else what differs."""
    import jax
    import numpy as np

    from pgjax.run.checkpoints import Checkpoints, to_savable
    checkpoints = Checkpoints(run_dir, read_only=True)
    try:
        state, meta = checkpoints.restore(jax.eval_shape(lambda: reference.final_state))
    finally:
        checkpoints.close()
    for x, y in zip(jax.tree.leaves(to_savable(state)), jax.tree.leaves(to_savable(reference.final_state)),
                    strict=True):
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            return f"DIFFERS from the uninterrupted run (update {meta['update']})"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    updates = sorted((r["member"], r["update"]) for r in rows)
    if updates != [(m, u) for m in range(2) for u in range(1, 9)]:
        return "final state equal, but metrics.jsonl does not hold each update once"
    return "bit-identical, every update logged once"


def resumes(run_dir: Path, reference) -> str:
    """Resume with ``runner.run(resume=True)`` (the harness of tests/test_faults.py) and say how
    it ended."""
    harness = _fault_harness()
    try:
        harness._assert_resumes_to_reference(run_dir, reference)
        return "resumes bit-identical, every update logged once"
    except AssertionError as error:  # recorded, not hidden
        return f"resume DIFFERS: {str(error).splitlines()[0]}"


class Folder:
    """The fault cases on copies of one trained run."""

    def __init__(self, root: Path, finished, env: dict):
        harness = _fault_harness()
        self.root, self.finished, self.env = root, finished, env
        self.step = harness.CONFIG.steps_per_update  # 64 env steps per update
        self.count = 0

    def copy(self) -> Path:
        self.count += 1
        return Path(shutil.copytree(self.finished.run_dir, self.root / f"case{self.count}" / "run",
                                    symlinks=True))

    def row(self, argv, outcome, kept, command=None) -> dict:
        return make_row("folder", command or shown(argv, self.root), outcome, kept, self.root,
                        fault=True)

    def untouched(self, argv, run_dir: Path, kept: str, command=None, compile_trap=False,
                  check=None) -> dict:
        """Run ``argv`` in this process; 'kept' is ``kept`` when run_dir's tree hash is equal,
        after what ``check(outcome)`` says of the output when given."""
        before = tree_digest(run_dir)
        outcome = run_cli(argv, run_dir.parent, compile_trap=compile_trap)
        change = digest_change(before, tree_digest(run_dir))
        if change and (run_dir / "status.json").exists():
            status = json.loads((run_dir / "status.json").read_text())
            change += f" (status.json now {status['status']!r} at update {status['update']})"
        found = f"CHANGED: {change}" if change else kept
        said = f"{check(outcome)}; " if check else ""
        return self.row(argv, outcome, ("COMPILED a program; " if outcome["compiled"] else "")
                        + said + found, command)

    def resume_cli(self, run_dir: Path, label: str) -> dict:
        """``pgjax train --resume`` in this process, then compare with the uninterrupted run."""
        argv = ["train", "--resume", str(run_dir)]
        outcome = run_cli(argv, run_dir.parent, compile_trap=False)
        return self.row(argv, outcome, f"{label}; {same_as_reference(run_dir, self.finished)}",
                        f"{shown(argv, self.root)}   ({label.split(';')[0]})")


def folder_rows(root: Path, finished, env: dict) -> list[dict]:
    """Readers, leftovers, damaged files, locks and flags on copies of the trained run."""
    f = Folder(root / "folder", finished, env)
    return [*reader_rows(f), *leftover_rows(f), *damaged_rows(f), *lock_rows(f), *flag_rows(f)]


def reader_rows(f: Folder) -> list[dict]:
    """`pgjax eval` (with --out, and on a read-only folder) and `pgjax report` change nothing."""
    run = f.copy()
    out = run.parent / "reeval.jsonl"
    rows = [f.untouched(["eval", str(run), "--episodes", "4", "--out", str(out)], run,
                        "run folder untouched (tree hash equal)")]
    rows[-1]["kept"] += f"; {len(out.read_text().splitlines()) if out.exists() else 0} rows in --out"
    rows.append(f.untouched(["report", str(run)], run,
                            "run folder untouched (tree hash equal); report in ./reports/run"))
    if not (run.parent / "reports" / "run" / "report.md").is_file():
        rows[-1]["kept"] += " (MISSING: reports/run/report.md)"
    run = f.copy()
    for path in [run, *run.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        argv = ["eval", str(run), "--episodes", "4"]
        rows.append(f.untouched(argv, run, "read-only folder (write bits off) untouched (tree hash "
                                "equal)" + ("; run as root, so the hash is the check"
                                            if os.geteuid() == 0 else ""),
                                command=shown(argv, f.root) + "   (folder made read-only)"))
    finally:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return rows


def leftover_rows(f: Folder) -> list[dict]:
    """A half-written save in checkpoints/best/ (a run killed while saving its best): a reader
    leaves it to its writer; a resume removes it. A partial last line in every log: a resume drops
    it with the rows after its checkpoint."""
    step = f.step
    run = f.copy()
    tmp = run / "checkpoints" / "best" / f"{9 * step}.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
    tmp.mkdir(parents=True)
    (tmp / "manifest.ocdbt").write_bytes(b"half a save")
    argv = ["eval", str(run), "--episodes", "4", "--best"]
    rows = [f.untouched(argv, run, "the tmp folder left in place for its writer; tree hash equal",
                        command=shown(argv, f.root) + "   (tmp save left in checkpoints/best/)")]
    run = f.copy()
    for s in (6, 8):
        shutil.rmtree(run / "checkpoints" / "latest" / str(s * step))
    tmp = run / "checkpoints" / "best" / f"{6 * step}.orbax-checkpoint-tmp"
    tmp.mkdir()
    (tmp / "_CHECKPOINT_METADATA").write_text("{")
    row = f.resume_cli(run, "tmp save in checkpoints/best/, latest at update 4")
    row["kept"] += "; the tmp save removed" if not tmp.exists() else "; the tmp save STILL THERE"
    rows.append(row)
    run = f.copy()
    for s in (6, 8):
        shutil.rmtree(run / "checkpoints" / "latest" / str(s * step))
    for name in ("metrics.jsonl", "metrics_settings.jsonl", "eval.jsonl"):
        with open(run / name, "a") as handle:
            handle.write('{"member": 0, "update": 9, "episode_ret')
    row = f.resume_cli(run, "partial last line in metrics.jsonl, metrics_settings.jsonl, "
                            "eval.jsonl; latest at update 4")
    evals_equal = (run / "eval.jsonl").read_text() == (f.finished.run_dir / "eval.jsonl").read_text()
    row["kept"] += "; the partial lines dropped, eval.jsonl " + (
        "byte-identical to the uninterrupted run's" if evals_equal else "DIFFERS")
    rows.append(row)
    return rows


def damaged_rows(f: Folder) -> list[dict]:
    """Truncated checkpoints (the newest, then all), a hand-edited config.json, a damaged file of
    the episode cache."""
    step = f.step
    run = f.copy()
    damage_checkpoint(run / "checkpoints" / "latest" / str(8 * step))
    argv = ["eval", str(run), "--episodes", "4"]
    rows = [f.untouched(argv, run, "tree hash equal",
                        command=shown(argv, f.root) + "   (newest checkpoint truncated)",
                        check=lambda outcome: f"evaluated step {6 * step}" if
                        f"latest checkpoint at step {6 * step} " in outcome["out"] else
                        "DID NOT evaluate the previous checkpoint"),
            f.resume_cli(run, "newest checkpoint truncated; resumes from update 6")]
    run = f.copy()
    for s in (4, 6, 8):
        damage_checkpoint(run / "checkpoints" / "latest" / str(s * step))
    for argv in (["eval", str(run)], ["train", "--resume", str(run)]):
        rows.append(f.untouched(argv, run, "run folder untouched (tree hash equal)",
                                command=shown(argv, f.root) + "   (every latest checkpoint truncated)",
                                compile_trap=True))
    run = f.copy()
    record = json.loads((run / "config.json").read_text())
    record["config"]["hidden_sizes"] = [16]
    (run / "config.json").write_text(json.dumps(record))
    for argv in (["eval", str(run)], ["train", "--resume", str(run)]):
        rows.append(f.untouched(argv, run, "run folder untouched (tree hash equal), nothing compiled",
                                command=shown(argv, f.root) + "   (config.json hidden_sizes 8 → 16)",
                                compile_trap=True))
    run = f.copy()
    damaged = run / "eval" / f"step_{8 * step:012d}.npz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    for argv in (["episodes", str(run)], ["episodes", str(run), "--step", str(8 * step)]):
        rows.append(f.untouched(argv, run, "run folder untouched (tree hash equal)",
                                command=shown(argv, f.root) + f"   ({damaged.name} cut to 40 bytes)"))
    return rows


def lock_rows(f: Folder) -> list[dict]:
    """`.lock` as a symbolic link to a file outside the run folder, and as a directory."""
    rows = []
    for kind in ("symlink", "directory"):
        run = f.copy()
        outside = run.parent / "notes.txt"
        outside.write_text("not pgjax's")
        (run / ".lock").unlink()
        if kind == "directory":
            (run / ".lock").mkdir()
        else:
            (run / ".lock").symlink_to(outside)
        argv = ["train", "--resume", str(run)]
        row = f.untouched(argv, run, "run folder untouched (tree hash equal)",
                          command=shown(argv, f.root) + f"   (.lock is a {kind}"
                          + (" to a file outside)" if kind == "symlink" else ")"), compile_trap=True)
        if kind == "symlink":
            row["kept"] += ("; the file it points to untouched" if outside.read_text() == "not pgjax's"
                            else "; the file it points to WAS CHANGED")
        rows.append(row)
    return rows


def flag_rows(f: Folder) -> list[dict]:
    """`pgjax episodes` flags (--step honoured, GIF-only flags refused without --gif, --gif at a
    directory) and the flags a resume would ignore (--name, --runs-dir, --config)."""
    step = f.step
    run = f.copy()
    argv = ["episodes", str(run), "--step", str(4 * step)]
    rows = [f.untouched(argv, run, "tree hash equal", check=lambda outcome: (
        "only that evaluation listed" if f"| {4 * step} |" in outcome["out"]
        and f"| {8 * step} |" not in outcome["out"] else "NOT only that evaluation listed"))]
    for argv in (["episodes", str(run), "--member", "1"], ["episodes", str(run), "--gif", str(run.parent)]):
        rows.append(f.untouched(argv, run, "nothing written; tree hash equal"))
    run = f.copy()
    other = json.loads((run / "config.json").read_text())
    other["hparams_settings"][0]["learning_rate"] = 0.01
    (run.parent / "other.json").write_text(json.dumps(other))
    for flag, value in (("--name", "other"), ("--runs-dir", str(f.root)),
                        ("--config", str(run.parent / "other.json"))):
        rows.append(f.untouched(["train", "--resume", str(run), flag, value], run,
                                "run folder untouched (tree hash equal)", compile_trap=True))
    return rows


def spawn_paused(env: dict, phase: str, release: Path, argv: list[str]) -> subprocess.Popen:
    """A child running ``pgjax argv`` that pauses at ``phase`` until ``release`` exists (the hooks
    of tests/test_faults.py's CHILD), with stdout and stderr piped."""
    harness = _fault_harness()
    args = [sys.executable, "-c", harness.CHILD, phase, str(harness.PHASES.get(phase, 1)),
            str(release), *argv]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def wait_for_phase(process: subprocess.Popen, phase: str, timeout: float = 180) -> str:
    """Read the child's stderr until it says it reached ``phase``; returns what it printed before."""
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if line.strip() == f"PGJAX-PHASE {phase}":
            return "".join(lines)
        lines.append(line)
    process.kill()
    raise RuntimeError(f"phase {phase} never reached; stderr:\n{''.join(lines)}")


def during_training_rows(root: Path, reference, env: dict) -> list[dict]:
    """A trainer paused at its first evaluation (after update 4; it holds the lock and has saved
    checkpoints): `pgjax eval` and a second `pgjax train --resume` from this process; then the
    trainer is released and must finish, bit-identical to the uninterrupted run."""
    harness = _fault_harness()
    folder = root / "live"
    folder.mkdir()
    release = folder / "release"
    process = spawn_paused(env, "evaluation", release,
                           [*harness.ARGV, "--runs-dir", str(folder), "--name", "run"])
    wait_for_phase(process, "evaluation")
    run = folder / "run"
    try:
        before = tree_digest(run)
        evaluation = run_cli(["eval", str(run), "--episodes", "4"], folder, compile_trap=False)
        eval_change = digest_change(before, tree_digest(run))
        second = run_cli(["train", "--resume", str(run)], folder)
        second_change = digest_change(before, tree_digest(run))
    finally:
        release.touch()
    start = time.perf_counter()
    _, err = process.communicate(timeout=300)
    finished = (f"the trainer then finished (exit {process.returncode}, "
                f"{time.perf_counter() - start:.1f} s after release"
                f"{', with a TRACEBACK' if 'Traceback' in err else ''}): "
                f"{same_as_reference(run, reference)}")
    return [make_row("folder", shown(["eval", str(run), "--episodes", "4"], root)
                     + "   (while the training runs)", evaluation,
                     (f"CHANGED: {eval_change}" if eval_change else "tree hash equal while the "
                      "trainer waits") + f"; {finished}", root, fault=True),
            make_row("folder", shown(["train", "--resume", str(run)], root)
                     + "   (while the training runs)", second,
                     f"CHANGED: {second_change}" if second_change else
                     ("COMPILED a program" if second["compiled"] else "tree hash equal, nothing compiled"),
                     root, fault=True)]


def process_fault_rows(root: Path, reference, env: dict) -> list[dict]:
    """A file size limit (RLIMIT_FSIZE) on the trainer, SIGINT during `pgjax eval`."""
    harness = _fault_harness()
    rows = []
    for what, where in (("log", "metrics_settings.jsonl"), ("checkpoint", "the first checkpoint")):
        folder = root / f"size-{what}"
        folder.mkdir()
        start = time.perf_counter()
        code, err, run_dir, update = harness._file_size_limit(folder, env, reference, what)
        outcome = {"exit": code, "err": err, "out": "", "seconds": time.perf_counter() - start,
                   "traceback": "Traceback" in err}
        run_dir = Path(run_dir)
        status = json.loads((run_dir / "status.json").read_text())
        kept = f"status.json {status['status']} at update {status['update']}"
        if what == "log":
            cut = not (run_dir / "metrics_settings.jsonl").read_text().endswith("\n")
            kept += "; the row cut short" if cut else "; no row cut short"
        kept += f"; once the limit is gone, {resumes(run_dir, reference)}"
        rows.append(make_row("folder", f"pgjax train ppo …   (RLIMIT_FSIZE: {where} cannot be "
                             "written in full)", outcome, kept, root, fault=True))
    folder = root / "eval-sigint"
    folder.mkdir()
    start = time.perf_counter()
    code, err, run_dir = harness._eval_interrupted(folder, env, reference.run_dir)
    outcome = {"exit": code, "err": err, "out": "", "seconds": time.perf_counter() - start,
               "traceback": "Traceback" in err}
    rows.append(make_row("folder", shown(["eval", run_dir, "--episodes", "4"], root)
                         + "   (SIGINT while its program is built)", outcome,
                         "nothing recorded (eval writes only with --out)", root, fault=True))
    return rows


def accepted_rows(root: Path, reference) -> list[dict]:
    """Inputs that are accepted: an integral float for --total-steps (trained to the end), and
    SLURM_NTASKS=4 outside a job step (one process, with a warning)."""
    harness = _fault_harness()
    work = root / "accepted"
    work.mkdir()
    argv = ["train", "ppo", "--total-steps", "1e5", "--seeds", "1", "--set", "num_envs=4", "--set",
            "rollout_length=10", "--set", "hidden_sizes=8", "--set", "epochs=1", "--set",
            "minibatches=2", "--eval-episodes", "2", "--num-evals", "1", "--no-plots",
            "--no-tensorboard", "--runs-dir", str(work), "--name", "steps-1e5"]
    outcome = run_cli(argv, work, compile_trap=False)
    summary = work / "steps-1e5" / "summary.json"
    steps = json.loads(summary.read_text()).get("env_steps_per_seed") if summary.exists() else None
    status = json.loads((work / "steps-1e5" / "status.json").read_text())["status"] \
        if (work / "steps-1e5" / "status.json").exists() else "none"
    rows = [make_row("numbers", shown(argv, root), outcome,
                     f"trained to the end: status.json {status}, summary.json env_steps_per_seed = {steps}", root,
                     fault=True)]
    argv = [*harness.ARGV, "--runs-dir", str(work), "--name", "slurm"]
    outcome = run_cli(argv, work, env={"SLURM_NTASKS": "4"}, compile_trap=False)
    same = same_as_reference(work / "slurm", reference) if (work / "slurm").exists() else "no folder"
    rows.append(make_row("before", "SLURM_NTASKS=4 pgjax train ppo …   (the tiny run, outside a job "
                         "step)", outcome, f"ran as one process: {same}", root, fault=True))
    return rows


def coordinator_row(root: Path) -> dict:
    port = closed_port()
    work = root / "coordinator"
    work.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PGJAX_COORDINATOR_TIMEOUT": "3"}
    argv = ["train", "ppo", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", "1", "--runs-dir", str(work / "runs")]
    outcome = run_process([sys.executable, "-m", "pgjax.cli", *argv], work, env, timeout=120)
    made = sorted(p.name for p in work.iterdir())
    return make_row("cost", "PGJAX_COORDINATOR_TIMEOUT=3 " + shown(argv, root).replace(str(port), "<closed port>"),
                    outcome, "nothing created" if not made else f"CREATED {made}", root, fault=True)


def decoy_row(root: Path, reference, env: dict) -> dict:
    """``python -m pgjax.cli train …`` from a folder that holds an ``envs`` package whose import
    fails: pgjax must use pgjax.envs."""
    harness = _fault_harness()
    work = root / "decoy"
    (work / "envs").mkdir(parents=True)
    (work / "envs" / "__init__.py").write_text(
        "def make(*args, **kwargs):\n    raise RuntimeError('the decoy envs package was imported')\n")
    argv = [*harness.ARGV, "--runs-dir", str(work / "runs"), "--name", "decoy"]
    outcome = run_process([sys.executable, "-m", "pgjax.cli", *argv], work, env)
    run = work / "runs" / "decoy"
    kept = (f"trained with pgjax.envs: {same_as_reference(run, reference)}"
            if (run / "summary.json").exists() else "no summary.json")
    return make_row("packaging", "cd folder-with-envs/ && python -m pgjax.cli train ppo …   (the "
                    "tiny run)", outcome, kept, root, fault=True)


def signal_rows(root: Path, reference, env: dict) -> list[dict]:
    """The first catalogue's faults: SIGINT, SIGTERM and SIGKILL at each of five phases, then a
    resume; two children at a time."""
    harness = _fault_harness()
    phases = ("before_compile", "compile", "mid_chunk", "evaluation", "checkpoint_write")

    def one(phase, name):
        folder = root / f"signal-{phase}-{name}"
        folder.mkdir()
        release = folder / "release"
        process = spawn_paused(env, phase, release,
                               [*harness.ARGV, "--runs-dir", str(folder), "--name", "run"])
        printed = wait_for_phase(process, phase)
        process.send_signal(harness.SIGNALS[name][0])
        start = time.monotonic()
        try:  # a process that can answer while the hook holds it exits now
            process.wait(timeout=0.3)
        except subprocess.TimeoutExpired:  # else the time counts from the hook's release
            start = time.monotonic()
        release.touch()
        out, err = process.communicate(timeout=300)
        outcome = {"exit": process.returncode, "out": out, "err": printed + err,
                   "seconds": time.monotonic() - start, "traceback": "Traceback" in printed + err}
        return phase, name, outcome, folder

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda case: one(*case),
                             [(p, n) for p in phases for n in ("SIGINT", "SIGTERM", "SIGKILL")]))
    rows = []
    for phase, name, outcome, folder in done:
        status = json.loads((folder / "run" / "status.json").read_text())["status"]
        rows.append(make_row("signals", f"pgjax train ppo …   ({name} at {phase})", outcome,
                             f"status.json {status}; {resumes(folder / 'run', reference)}", root,
                             fault=True))
    return rows


def faults(root: Path) -> list[dict]:
    harness = _fault_harness()
    from pgjax.algorithms import ppo
    from pgjax.run import runner
    env = child_env(root)
    reference = runner.run(ppo.NAME, harness.CONFIG, harness.HPARAMS, harness.SEEDS,
                           root / "reference" / "run", options=harness.OPTIONS, out=io.StringIO())
    rows = accepted_rows(root, reference)
    rows.append(coordinator_row(root))
    rows += folder_rows(root, reference, env)
    rows += during_training_rows(root, reference, env)
    rows += process_fault_rows(root, reference, env)
    rows.append(decoy_row(root, reference, env))
    rows += signal_rows(root, reference, env)
    return rows


# ----------------------------------------------------------------------------- tables

def counts(rows: list[dict]) -> dict:
    """Cases, exit statuses and tracebacks over ``rows``."""
    exits: dict[str, int] = {}
    for row in rows:
        exits[str(row["exit"])] = exits.get(str(row["exit"]), 0) + 1
    return {"cases": len(rows), "exits": dict(sorted(exits.items())),
            "tracebacks": sum(bool(r["traceback"]) for r in rows),
            "new": sum(r["group"] not in ("inputs", "signals") for r in rows)}


def markdown(rows: list[dict], machine: str, faults_measured: str) -> str:
    escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    total = counts(rows)
    exits = ", ".join(f"exit {code}: {n}" for code, n in total["exits"].items())
    lines = ["# Robustness catalogue", "", f"_Generated by `{COMMAND}`; do not edit._", "",
             machine, f"Rows that need a trained run or a real process measured {faults_measured}.", "",
             f"{total['cases']} cases ({total['new']} beyond the first catalogue); {exits}; "
             f"{total['tracebacks']} with a traceback.", ""]
    for key, (title, about) in GROUPS.items():
        group = [r for r in rows if r["group"] == key]
        if not group:
            continue
        lines += [f"## {title}", "", about, "",
                  "| command | exit | traceback | s | message (first line … last line) | kept |",
                  "|---|---:|---|---:|---|---|"]
        for r in group:
            message = r["first"] if r["first"] == r["last"] else f"{r['first']} … {r['last']}"
            lines.append(f"| `{escape(r['command'])}` | {r['exit']} | "
                         f"{'**yes**' if r['traceback'] else 'no'} | {r['seconds']:.2f} | "
                         f"{escape(message)} | {escape(r['kept'])} |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-faults", action="store_true",
                        help=f"redo the bad-input rows only, keeping the saved {FAULT_GROUPS_NOTE}")
    args = parser.parse_args()
    os.environ.setdefault("PGJAX_COMPILATION_CACHE", "0")
    with tempfile.TemporaryDirectory(prefix="pgjax-robustness-") as scratch:
        root = Path(scratch)
        # one persistent cache: this process's programs, loaded by every child (set before jax loads)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(root / "jax-cache")
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        start = time.perf_counter()
        rows = bad_inputs(root)
        saved = RESULTS / "robustness.json"
        if args.no_faults:
            old = json.loads(saved.read_text()) if saved.exists() else {}
            rows += [r for r in old.get("rows", []) if r.get("fault")]
            faults_measured = old.get("faults_measured", "never")
        else:
            rows += faults(root)
            faults_measured = time.strftime("%Y-%m-%d")
        seconds = time.perf_counter() - start
    machine = machine_line()
    result = {"machine": machine, "faults_measured": faults_measured, "seconds": round(seconds, 1),
              "summary": counts(rows), "rows": rows}
    save_results(RESULTS, "robustness", result, markdown(rows, machine, faults_measured))
    print(f"{counts(rows)}; {seconds:.0f} s")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
