"""The program store (pgjax.run.executables): a run that finds its programs stored computes the
same bits as one that traced them, and as one with the store off; the key changes with whatever
changes a program; a damaged file is traced again; code outside pgjax is never stored; and across
real processes, a second `pgjax train` loads its programs instead of tracing them."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax.algorithms import ppo
from pgjax.run import chunks, executables, runner
from pgjax.run.checkpoints import to_savable

CONFIG = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=4 * 64,
                    epochs=1, minibatches=2, hidden_sizes=(8,))
HPARAMS = ppo.Hparams(learning_rate=3e-3)
OPTIONS = runner.RunOptions(eval_episodes=4, cache_episodes=1, num_evals=2, chunk_updates=2,
                            tensorboard=False, plots=False, log_every_seconds=0)


def _forget_compiled():
    """What a new process would not have: the programs compiled in this one."""
    executables._LOADED.clear()
    chunks._COMPILED.clear()


def _run(run_dir, config=CONFIG):
    _forget_compiled()
    return runner.run(ppo.NAME, config, HPARAMS, [0, 1], run_dir, options=OPTIONS,
                      out=io.StringIO())


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(to_savable(a.final_state)),
                    jax.tree.leaves(to_savable(b.final_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(a.eval_returns, b.eval_returns)


@pytest.fixture
def store(tmp_path, monkeypatch):
    folder = tmp_path / "store"
    monkeypatch.setattr(executables, "directory", lambda: folder)
    yield folder
    _forget_compiled()


def test_a_stored_program_computes_what_a_traced_one_does(tmp_path, store, monkeypatch):
    traced = _run(tmp_path / "traced")
    stored = sorted(p.name for p in store.iterdir())
    assert len(stored) == 3  # init, the training chunk, evaluation

    def no_tracing(*args):
        raise AssertionError("a stored program was traced again")

    monkeypatch.setattr(executables, "export", no_tracing)
    loaded = _run(tmp_path / "loaded")
    _assert_same(loaded, traced)
    assert sorted(p.name for p in store.iterdir()) == stored
    monkeypatch.undo()
    monkeypatch.setattr(executables, "directory", lambda: None)  # the store off: jax.jit as is
    _assert_same(_run(tmp_path / "plain"), traced)


def test_a_damaged_file_is_traced_again_and_rewritten(store):
    def program(x, scale):
        return {"y": x * scale["s"] + 1.0}

    args = (jax.ShapeDtypeStruct((3,), np.float32), {"s": jax.ShapeDtypeStruct((), np.float32)})
    compile_ = lambda lowered: lowered.compile()  # noqa: E731
    x, scale = np.arange(3, dtype=np.float32), {"s": np.float32(2.0)}
    first = executables.load_or_compile(("toy",), program, args, compile_)(x, scale)
    (path,) = store.iterdir()
    path.write_bytes(path.read_bytes()[:100])  # cut short
    _forget_compiled()
    again = executables.load_or_compile(("toy",), program, args, compile_)(x, scale)
    np.testing.assert_array_equal(again["y"], first["y"])
    np.testing.assert_array_equal(first["y"], x * 2.0 + 1.0)
    assert path.stat().st_size > 100  # rewritten whole


def test_the_key_changes_with_what_changes_a_program(monkeypatch):
    base = executables.program_key("chunk", CONFIG, 8)
    assert executables.program_key("chunk", CONFIG, 8) == base
    assert executables.program_key("chunk", dataclasses.replace(CONFIG, num_envs=8), 8) != base
    assert executables.program_key("chunk", dataclasses.replace(CONFIG, anneal_lr=False), 8) != base
    assert executables.program_key("chunk", CONFIG, 16) != base
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_fast_math=true")
    assert executables.program_key("chunk", CONFIG, 8) != base
    monkeypatch.undo()
    monkeypatch.setattr(executables, "source_digest", lambda: "another pgjax")
    assert executables.program_key("chunk", CONFIG, 8) != base


def test_the_source_digest_covers_the_package_and_its_environments(tmp_path):
    import pgjax
    import pgjax.envs
    roots = executables.source_roots()
    assert Path(pgjax.__file__).parent in roots and Path(pgjax.envs.__file__).parent in roots
    copy = tmp_path / "envs"
    copy.mkdir()
    for path in Path(pgjax.envs.__file__).parent.glob("*.py"):
        (copy / path.name).write_bytes(path.read_bytes())
    before = executables.digest_of([copy])
    assert executables.digest_of([copy]) == before
    (copy / "registry.py").write_text((copy / "registry.py").read_text() + "\n# changed\n")
    assert executables.digest_of([copy]) != before


def test_code_outside_pgjax_is_not_stored(monkeypatch):
    from pgjax.envs import registry
    assert executables.storable(CONFIG)
    def their_env():  # a user's environment factory, in their own module
        return registry.gymnax.make("CartPole-v1")[0]

    monkeypatch.setitem(registry._OWN, "MyEnv-v0", their_env)
    assert not executables.storable(dataclasses.replace(CONFIG, env_id="MyEnv-v0"))

    @dataclasses.dataclass(frozen=True)
    class TheirConfig:
        env_id: str = "CartPole-v1"

    assert not executables.storable(TheirConfig())


def test_a_second_process_loads_its_programs(tmp_path):
    """Two `pgjax train` processes on one cache: the first traces, exports and compiles; the
    second neither traces (no new store file, none rewritten) nor compiles (no new entry in JAX's
    cache), and trains to the same numbers."""
    env = {**os.environ, "PGJAX_COMPILATION_CACHE": "1", "PGJAX_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the test session's cache: not this test's
    argv = [sys.executable, "-m", "pgjax.cli", "train", "ppo", "--seeds", "2", "--runs-dir",
            str(tmp_path / "runs"), "--no-tensorboard", "--no-plots", "--num-evals", "2",
            "--eval-episodes", "4", "--set=num_envs=4", "--set=rollout_length=16",
            "--set=total_steps=256", "--set=epochs=1", "--set=hidden_sizes=8"]
    store, cache = tmp_path / "cache-executables", tmp_path / "cache"

    def train(name):
        done = subprocess.run([*argv, "--name", name], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / "runs" / name / "summary.json").read_text())

    first = train("first")
    stored = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    compiled = sorted(p.name for p in cache.iterdir())
    assert len(stored) == 3
    second = train("second")
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()}.keys() == stored.keys()
    assert sorted(p.name for p in cache.iterdir()) == compiled
    assert second["eval_return_mean"] == first["eval_return_mean"]
    assert second["eval_episode_returns"] == first["eval_episode_returns"]
