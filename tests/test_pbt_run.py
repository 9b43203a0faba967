"""Population-based training through the real runner: the lineage in pbt.jsonl follows the rules
of Jaderberg et al. (2017) checked against the evaluation rows, explore stays in range, the final
hyperparameters are the last round's, and a resumed run is bit-identical to an uninterrupted one."""

from __future__ import annotations

import io
import json
import signal

import jax
import numpy as np
import pytest
from progress_signals import SignalOnProgress

from pgjax.algorithms import ppo
from pgjax.run import runner, spec as run_spec

SWEEP = ["learning_rate=log:1e-4:1e-2:2"]
OPTIONS = {"eval_episodes": 3, "num_evals": 3, "cache_episodes": 0, "tensorboard": False,
           "plots": False, "pbt": True, "pbt_fraction": 0.5, "pbt_resample": 0.5,
           "chunk_updates": 2}


def _spec():
    return run_spec.fresh(algorithm="ppo", total_steps=6 * 32, seed_count=2, sweeps=SWEEP,
                          assignments=["num_envs=2", "rollout_length=16", "minibatches=2", "epochs=1",
                                       "hidden_sizes=8"], given_options=OPTIONS)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    return runner.run_spec(_spec(), run_dir, out=io.StringIO())


def test_every_round_copies_the_bottom_half_from_the_top_half(finished):
    rows = _rows(finished.run_dir / "pbt.jsonl")
    evals = _rows(finished.run_dir / "eval.jsonl")
    rounds = sorted({r["round"] for r in rows})
    assert rounds == [2, 4]  # after the evaluations at updates 2 and 4, not after the last (6)
    for at in rounds:
        these = sorted((r for r in rows if r["round"] == at), key=lambda r: r["member"])
        scores = {e["member"]: e["eval_return_mean"] for e in evals if e["update"] == at}
        assert [r["score"] for r in these] == pytest.approx([scores[m] for m in range(4)])
        order = sorted(range(4), key=lambda m: (-scores[m], m))
        top, bottom = order[:2], order[2:]
        assert sorted(r["member"] for r in these if r["copied"]) == sorted(bottom)
        assert all(r["parent"] in top for r in these if r["copied"])
        assert all(r["parent"] == r["member"] for r in these if not r["copied"])
        for r in these:
            # the range as the train state holds it (float32)
            assert np.float32(1e-4) <= np.float32(r["hp_learning_rate"]) <= np.float32(1e-2)
            if not r["copied"]:
                assert r["hp_learning_rate"] == r["before_learning_rate"]


def test_the_final_hyperparameters_are_the_last_rounds(finished):
    last = {r["member"]: r["hp_learning_rate"] for r in _rows(finished.run_dir / "pbt.jsonl")
            if r["round"] == 4}
    final = np.asarray(finished.final_state.hparams.learning_rate)
    np.testing.assert_array_equal(final, np.float32([last[m] for m in range(4)]))


def test_a_resumed_pbt_run_is_bit_identical(finished, tmp_path):
    run_dir = tmp_path / "interrupted"
    stopped = runner.run_spec(_spec(), run_dir, out=SignalOnProgress(signal.SIGINT, at=2))  # stops after update 4
    assert stopped.status == runner.INTERRUPTED
    resumed = runner.run_spec(run_spec.load(run_dir), run_dir, resume=True, out=io.StringIO())
    assert resumed.status == runner.COMPLETED
    for a, b in zip(jax.tree.leaves(resumed.final_state.params), jax.tree.leaves(finished.final_state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _rows(run_dir / "pbt.jsonl") == _rows(finished.run_dir / "pbt.jsonl")


def test_pbt_without_a_numeric_search_space_is_refused(tmp_path, capsys):
    from pgjax import cli
    assert cli.main(["train", "ppo", "--pbt", "--runs-dir", str(tmp_path)]) == 2
    assert "population-based training needs a --sweep" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["train", "ppo", "--pbt", "--pbt-fraction", "0.7", "--sweep", "gamma=0.9,0.99",
                     "--runs-dir", str(tmp_path)]) == 2
    assert "pbt_fraction=0.7 is not allowed" in capsys.readouterr().err


def test_the_report_draws_each_members_schedule_from_its_setting_through_every_round(finished, tmp_path):
    from pgjax import report
    from pgjax.report.pbt import schedules, pbt_rows
    run = report.load_run(finished.run_dir)
    drawn = schedules(run, pbt_rows(run))["learning_rate"]
    rows = _rows(finished.run_dir / "pbt.jsonl")
    settings = json.loads((finished.run_dir / "config.json").read_text())["hparams_settings"]
    for m in range(4):
        mine = sorted((r for r in rows if r["member"] == m), key=lambda r: r["update"])
        expected = ([(0, settings[m // 2]["learning_rate"])] + [(r["update"], r["hp_learning_rate"]) for r in mine]
                    + [(6, mine[-1]["hp_learning_rate"])])
        assert [u for u, _ in drawn[m]] == [u for u, _ in expected]
        np.testing.assert_allclose([v for _, v in drawn[m]], [v for _, v in expected], rtol=1e-6)
    text = report.report([finished.run_dir], tmp_path)
    assert "![pbt](pbt.png)" in text and (tmp_path / "pbt.png").stat().st_size > 0
