"""Bad input: one line naming the value and what is allowed, exit status 2, no
traceback, nothing compiled, nothing created and nothing lost. Warnings for settings that are
allowed but odd. Reports mark runs that did not finish."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import jax
import pytest

from pgjax import cli, report
from pgjax.run import folder as run_folder, runner
from pgjax.algorithms import ppo
from pgjax.config import config_to_dict, hparams_to_dict


@pytest.fixture
def no_compile(monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, *a, **k: compiles.append(1))
    return compiles


def _refused(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None
            for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("argv, message", [
    (["--set", "env.max_steps_in_episode=abc"], "env.max_steps_in_episode='abc' is not allowed"),
    (["--set", "env.gravity=abc"], "must be a number"),
    (["--set", "env.max_steps_in_episode=0"], "a time limit must be a positive number of steps"),
    (["--set", "env.max_steps_in_episode=-5"], "env.max_steps_in_episode=-5 is not allowed"),
    (["--set", "env.max_steps_in_episode=2.5"], "must be an integer"),
    (["--seed-offset", "-1"], "--seed-offset=-1 is not allowed"),
    (["--set", "torso=cnn"], "'cnn' needs image observations"),
    (["--name", "a/b"], "--name='a/b' is not allowed"),
    (["--name", ".."], "--name='..' is not allowed"),
    (["--name", "../escape"], "--name='../escape' is not allowed"),
    (["--total-steps", str(2 ** 31 * 512)], "at most 2147483647 updates"),
    (["--on-nonfinite", "freeze", "--chunk-seconds", "0"], "chunk_seconds=0.0 is not allowed"),
])
def test_bad_train_flags(argv, message, capsys, tmp_path, monkeypatch, no_compile):
    monkeypatch.chdir(tmp_path)
    _refused(["train", "ppo", *argv], message, capsys)
    assert not no_compile and not list(tmp_path.iterdir())  # nothing compiled or created


def test_runs_dir_that_is_a_file_or_not_writable(capsys, tmp_path, no_compile):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _refused(["train", "ppo", "--runs-dir", str(a_file)], "a directory (this is a file)", capsys)
    _refused(["train", "ppo", "--runs-dir", str(a_file / "sub")], "its parent", capsys)
    # /proc refuses new files even to root, so this is "not writable" whoever runs the tests
    _refused(["train", "ppo", "--runs-dir", "/proc/pgjax-runs"], "a directory you can write to", capsys)
    assert a_file.read_text() == "x" and not no_compile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _saved_config(**changes) -> dict:
    record = {"algorithm": "ppo", "config": config_to_dict(ppo.Config(num_envs=4, rollout_length=8,
                                                                         total_steps=64)),
              "hparams": hparams_to_dict(ppo.Hparams()), "seeds": [0]}
    for key, value in changes.items():
        target, _, name = key.rpartition(".")
        (record[target] if target else record)[name] = value
    return record


@pytest.mark.parametrize("content, message", [
    ("", "not readable JSON"),
    ("{", "not readable JSON"),
    ("{}", "it lacks ['algorithm', 'config', 'seeds']"),
    ("[]", "it lacks"),
    (json.dumps(_saved_config(**{"config.bogus_field": 1})), "fields ['bogus_field']"),
    (json.dumps(_saved_config(**{"config.num_envs": -3})), "num_envs=-3 is not allowed"),
    (json.dumps(_saved_config(**{"config.activation": "sigmoidish"})), "activation='sigmoidish'"),
    (json.dumps(_saved_config(**{"hparams.bogus_rate": 1.0})), "bogus_rate"),
    (json.dumps(_saved_config(**{"hparams.gamma": 2.0})), "gamma=2.0 is not allowed"),
    (json.dumps(_saved_config(algorithm="sarsa")), "unknown algorithm 'sarsa'"),
    (json.dumps(_saved_config(seeds=[-1])), "seeds"),
])
def test_broken_config_json_is_one_clear_error(content, message, capsys, tmp_path, no_compile):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(content)
    before = _tree(run_dir)
    for argv in (["train", "--resume", str(run_dir)], ["eval", str(run_dir)],
                 ["episodes", str(run_dir), "--gif", str(tmp_path / "x.gif")]):
        _refused(argv, message, capsys)
    assert _tree(run_dir) == before and not no_compile  # nothing created or lost


def test_eval_of_a_run_whose_checkpoints_were_deleted(capsys, tmp_path, no_compile):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(_saved_config()))
    _refused(["eval", str(run_dir)], "holds no checkpoint", capsys)
    assert not (run_dir / "checkpoints").exists()


def test_report_out_must_be_a_directory(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(_saved_config()))
    target = tmp_path / "report.md"
    target.write_text("mine")
    _refused(["report", str(run_dir), "--out", str(target)], "a directory (this is a file)", capsys)
    assert target.read_text() == "mine"


def test_odd_but_allowed_settings_warn_with_what_they_mean():
    config = ppo.Config(num_envs=4, rollout_length=128, total_steps=1000)
    with pytest.warns(UserWarning) as caught:
        runner.warn_unusual(config, [ppo.Hparams(learning_rate=50.0)])
    messages = [str(w.message) for w in caught]
    assert any("learning_rate=50 is far outside the usual range" in m for m in messages), messages
    assert any("total_steps=1000 is not a multiple of num_envs*rollout_length=512: the run trains "
               "1 updates = 512 env steps" in m for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner.warn_unusual(dataclasses.replace(config, total_steps=1024), [ppo.Hparams()])


def test_cli_prints_a_warning_as_one_line(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        cli._one_line_warning("total_steps=1000 is not a multiple", UserWarning, "x.py", 1)
    assert capsys.readouterr().err == "pgjax: warning: total_steps=1000 is not a multiple\n"


def _fake_run(root: Path, name: str, status: str | None, returns, diverged=()) -> Path:
    run_dir = root / name
    run_dir.mkdir()
    record = _saved_config()
    record["num_updates"] = 8
    record["members"] = [{"seed": s, "member": s} for s in range(len(returns))]
    (run_dir / "config.json").write_text(json.dumps(record))
    rows = [{"seed": s, "member": s, "update": 8, "env_steps": 256, "eval_return_mean": r}
            for s, r in enumerate(returns)]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status == "completed":
        (run_dir / "summary.json").write_text(json.dumps({
            "eval_return_per_seed": list(returns), "members": record["members"],
            "diverged": list(diverged)}))
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps({"status": status, "update": 4,
                                                         "diverged": list(diverged)}))
    return run_dir


def test_report_marks_runs_that_did_not_finish(tmp_path):
    done = _fake_run(tmp_path, "done", "completed", [10.0, 20.0],
                     diverged=[{"member": 1, "seed": 1, "update": 3, "metric": "value_loss"}])
    stopped = _fake_run(tmp_path, "stopped", "interrupted", [5.0, 6.0])
    killed = _fake_run(tmp_path, "killed", "running", [1.0, 2.0])  # nobody holds its lock
    table = report.report([done, stopped, killed], tmp_path / "out", per_run_plots=False)
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    assert "| completed, 1/2 diverged |" in rows["done"]
    assert "| interrupted |" in rows["stopped"] and "| killed |" in rows["killed"]
    assert "stopped: **not finished** (interrupted at update 4 of 8)" in table
    assert "killed: **not finished** (killed" in table
    assert "done: diverged member(s) seed 1 at update 3 (value_loss)" in table
    assert run_folder.read_status(killed)["status"] == run_folder.KILLED
