"""The Python API is the CLI's (pgjax.api): pgjax.train and `pgjax train` with the same request
write the same run (config, final evaluation bit for bit: one compiled program on one machine); a
callback receives every metric row and evaluation the run's own files hold; a sweep's result is
arranged per setting and seed; bad input is refused before a folder exists."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import pgjax
from pgjax import cli
from pgjax.config import ConfigError

TINY = {"num_envs": 2, "rollout_length": 16, "minibatches": 2, "epochs": 1, "hidden_sizes": [8]}
FLAGS = ["--set", "num_envs=2", "--set", "rollout_length=16", "--set", "minibatches=2",
         "--set", "epochs=1", "--set", "hidden_sizes=8"]
OPTIONS = dict(eval_episodes=3, num_evals=2, cache_episodes=0, tensorboard=False, plots=False,
               log_every_seconds=0.0, chunk_updates=2)


class Recorder(pgjax.Callback):
    """A user's callback: keeps what it is given."""

    def __init__(self):
        self.chunks, self.evaluations, self.closed = [], [], False

    def chunk(self, record):
        self.chunks.append(record)

    def evaluation(self, rows, env_steps):
        self.evaluations += [dict(row) for row in rows]

    def close(self):
        self.closed = True


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def from_python(tmp_path_factory):
    runs = tmp_path_factory.mktemp("api")
    recorder = Recorder()
    result = pgjax.train("ppo", total_steps=4 * 32, seeds=2, config=TINY, runs_dir=runs, name="py",
                         sweep={"learning_rate": "1e-3,3e-3"}, callbacks=[recorder],
                         out=io.StringIO(), **OPTIONS)
    return result, recorder


def test_pgjax_train_and_the_cli_write_the_same_run(from_python, tmp_path):
    result, _ = from_python
    flags = ["--eval-episodes", "3", "--num-evals", "2", "--cache-episodes", "0", "--no-tensorboard",
             "--no-plots", "--log-every-seconds", "0"]
    assert cli.main(["train", "ppo", "--total-steps", "128", "--seeds", "2", *FLAGS, *flags,
                     "--sweep", "learning_rate=1e-3,3e-3", "--runs-dir", str(tmp_path),
                     "--name", "cli"]) == 0
    mine = json.loads((result.run_dir / "config.json").read_text())
    theirs = json.loads((tmp_path / "cli" / "config.json").read_text())
    for key in ("algorithm", "config", "hparams_settings", "seeds", "members", "study"):
        assert mine[key] == theirs[key], key
    a = json.loads((result.run_dir / "summary.json").read_text())["eval_return_per_seed"]
    b = json.loads((tmp_path / "cli" / "summary.json").read_text())["eval_return_per_seed"]
    assert a == b


def test_the_result_is_arranged_per_setting_and_seed(from_python):
    result, _ = from_python
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.status == "completed" and result.seeds == [0, 1]
    assert [s["learning_rate"] for s in result.settings] == pytest.approx([1e-3, 3e-3])
    np.testing.assert_array_equal(result.final_eval, np.reshape(summary["eval_return_per_seed"], (2, 2)))
    assert result.metrics["policy_loss"].shape == (4, 4)  # members × one row per update


def test_a_callback_receives_every_row_and_evaluation_the_run_writes(from_python):
    result, recorder = from_python
    assert recorder.closed
    assert recorder.evaluations == _rows(result.run_dir / "eval.jsonl")
    written = _rows(result.run_dir / "metrics.jsonl")
    seen = np.concatenate([c.metrics["policy_loss"] for c in recorder.chunks], axis=1)  # [M, updates]
    for row in written:
        assert seen[row["member"], row["update"] - 1] == pytest.approx(row["policy_loss"], rel=1e-6)
    assert seen.shape[1] == 4 and len(written) == 4 * 4


def test_bad_input_is_refused_before_a_folder_exists(tmp_path):
    with pytest.raises(ConfigError, match="the range is empty or reversed"):
        pgjax.train("ppo", sweep={"learning_rate": "log:1e-2:1e-4:3"}, runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="eval_episodes=0 is not allowed"):
        pgjax.train("ppo", eval_episodes=0, runs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_is_written_as_the_flags_write_it():
    from pgjax.api import _sweep_texts
    assert _sweep_texts({"hidden_sizes": [(8,), (16, 16)], "learning_rate": [1e-3, 0.01],
                         "ent_coef": "uniform:0:0.05"}) == [
        "hidden_sizes=(8),(16,16)", "learning_rate=0.001,0.01", "ent_coef=uniform:0:0.05"]
    assert _sweep_texts(["gamma=0.9,0.99"]) == ["gamma=0.9,0.99"]
