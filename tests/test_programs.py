"""Studies of several compiled programs (pgjax.run.programs) through the real runner: a static
sweep resumed after a kill in its second program ends equal to an uninterrupted one; successive
halving keeps the settings a NumPy ranking of the rung's evaluation rows keeps, trains a survivor
as the full grid does, saves the env steps it says, and resumes exactly; bad studies are refused
before anything is created."""

from __future__ import annotations

import io
import json
import signal

import jax
import numpy as np
import pytest
from float_compare import FEW_ADAM_UPDATES, assert_trees_close
from progress_signals import SignalOnProgress

from pgjax import cli, report
from pgjax.run import chunks, programs, runner
from pgjax.run.checkpoints import Checkpoints

TINY = ["num_envs=2", "rollout_length=16", "minibatches=2", "epochs=1"]
OPTIONS = {"eval_episodes": 3, "num_evals": 2, "cache_episodes": 0, "tensorboard": False,
           "plots": False, "chunk_updates": 2}


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _interrupted(study, run_dir, at: int, program: str):
    """``run_dir`` after ``study`` got SIGINT at its ``at``-th progress line, inside ``program``."""
    stopped = programs.run_study(study, run_dir, out=SignalOnProgress(signal.SIGINT, at=at))
    assert stopped.status == runner.INTERRUPTED
    assert json.loads((run_dir / "status.json").read_text())["program"] == program
    return run_dir


# --------------------------------------------------------------------------- a static sweep

def _static_study():
    return programs.fresh(algorithm="ppo", total_steps=4 * 32, seed_count=2,
                          assignments=TINY, given_options=OPTIONS,
                          sweeps=["hidden_sizes=(8),(16),(8,8)", "learning_rate=1e-3,3e-3"])


@pytest.fixture(scope="module")
def static_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("static") / "study"
    return programs.run_study(_static_study(), run_dir, out=io.StringIO())


def test_a_static_sweep_is_one_program_per_static_value_with_the_hparams_inside(static_run):
    study = programs.load(static_run.run_dir)
    assert [p.name for p in study.programs] == ["hidden_sizes=8", "hidden_sizes=16", "hidden_sizes=8x8"]
    assert [p.spec.config.hidden_sizes for p in study.programs] == [(8,), (16,), (8, 8)]
    assert all(len(p.spec.settings) == 2 for p in study.programs)
    summary = json.loads((static_run.run_dir / "summary.json").read_text())
    assert len(summary["members"]) == 3 * 2 * 2
    # the study's summary is its programs' summaries, relabelled: program p's members follow p-1's
    for k, program in enumerate(study.programs):
        own = json.loads((static_run.run_dir / "programs" / program.name / "summary.json").read_text())
        assert summary["eval_return_per_seed"][4 * k:4 * k + 4] == own["eval_return_per_seed"]
        assert all(m["hp_hidden_sizes"] == program.static["hidden_sizes"]
                   for m in summary["members"][4 * k:4 * k + 4])


def test_a_static_sweep_resumed_after_a_kill_in_its_second_program_equals_an_uninterrupted_one(
        static_run, tmp_path):
    # 2 progress lines per program (4 updates in chunks of 2): the 3rd is inside the second program
    run_dir = _interrupted(_static_study(), tmp_path / "study", 3, "hidden_sizes=16")
    assert not (run_dir / "programs" / "hidden_sizes=8x8").exists()
    assert cli.main(["train", "--resume", str(run_dir), "--no-plots"]) == 0
    for program in programs.load(run_dir).programs:
        mine, theirs = (d / "programs" / program.name for d in (run_dir, static_run.run_dir))
        assert _rows(mine / "eval.jsonl") == _rows(theirs / "eval.jsonl")
        a, b = _restore(mine, program.spec), _restore(theirs, program.spec)
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _restore(folder, spec):
    from pgjax.run.population import Population
    population = Population(spec.seeds, spec.settings)
    like = jax.eval_shape(runner.init_program(spec.config), population.keys(), population.hparams())
    reader = Checkpoints(folder, read_only=True)
    try:
        return reader.restore(like)[0]
    finally:
        reader.close()


def test_the_report_eval_and_best_config_of_a_static_sweep(static_run, tmp_path, capsys):
    run = report.load_run(static_run.run_dir)
    assert len(report.settings(run)) == 6
    best = report.rank(report.score_settings(run), "final")[0]
    summary = json.loads((static_run.run_dir / "summary.json").read_text())
    per_setting = np.asarray(summary["eval_return_per_seed"]).reshape(6, 2).mean(axis=1)
    assert best.estimate.mean == pytest.approx(per_setting.max())
    out = tmp_path / "best.toml"
    assert cli.main(["report", str(static_run.run_dir), "--out", str(tmp_path / "rep"),
                     "--best-config", str(out)]) == 0
    g = int(per_setting.argmax())
    program = programs.load(static_run.run_dir).programs[g // 2]
    text = out.read_text()
    assert f"hidden_sizes = {list(program.spec.config.hidden_sizes)}" in text
    lr = program.spec.settings[g % 2].learning_rate
    assert f"learning_rate = {lr!r}" in text or f"learning_rate = {float(lr)}" in text
    capsys.readouterr()
    assert cli.main(["eval", str(static_run.run_dir), "--setting", f"hidden_sizes=(8,8),learning_rate={lr}",
                     "--episodes", "3"]) == 0
    assert "programs/hidden_sizes=8x8" in capsys.readouterr().out


# --------------------------------------------------------------------------- successive halving

SWEEP = ["learning_rate=log:1e-4:3e-2:4"]


def test_reading_a_study_imports_no_jax(static_run, halving_run):
    """`pgjax report`'s reader of a static sweep and of a halving study (study.json, the program
    folders' rows) runs in an interpreter that never imports JAX (tests/test_layers.py)."""
    from test_layers import assert_reads_without_jax
    assert_reads_without_jax(static_run.run_dir, halving_run.run_dir)


def _halving_spec(**extra):
    return programs.fresh(algorithm="ppo", total_steps=8 * 32, seed_count=2, assignments=TINY,
                          sweeps=SWEEP, given_options={**OPTIONS, "prune": "halving", "prune_eta": 4,
                                                       "chunk_updates": 1, **extra})


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("halving") / "study"
    return programs.run_study(_halving_spec(), run_dir, out=io.StringIO())


def test_halving_keeps_what_a_numpy_ranking_of_the_rung_evaluations_keeps(halving_run):
    rungs = json.loads((halving_run.run_dir / "study.json").read_text())["rungs"]
    assert [r["end_update"] for r in rungs] == [2, 8]  # η = 4: 4 settings, then 1
    alive = [0, 1, 2, 3]
    for r, rung in enumerate(rungs):
        assert rung["settings"] == alive
        rows = [row for row in _rows(halving_run.run_dir / "programs" / f"rung{r}" / "eval.jsonl")
                if row["update"] == rung["end_update"]]
        scores = np.zeros(len(alive))
        for row in rows:  # mean over the 2 seeds of each setting (members setting-major)
            scores[row["member"] // 2] += row["eval_return_mean"] / 2
        np.testing.assert_allclose(rung["scores"], scores)
        keep = -(-len(alive) // 4)  # ⌈S/η⌉ with η = 4
        order = sorted(range(len(alive)), key=lambda i: (-scores[i], i))[:keep]
        alive = [alive[i] for i in sorted(order)]
    summary = json.loads((halving_run.run_dir / "summary.json").read_text())
    steps_per_update = 2 * 16
    assert summary["env_steps_run"] == steps_per_update * 2 * (4 * 2 + 1 * 6)
    assert summary["env_steps_full_grid"] == steps_per_update * 2 * 4 * 8


def test_a_survivor_trains_as_in_the_full_grid(halving_run, tmp_path):
    """The last rung's setting, trained through two programs of 4 and 1 settings, ends where
    the same setting ends in one program of all four: the members of a vmapped population never
    interact. Two programs round differently, so after 8 Adam updates the comparison is normwise
    at FEW_ADAM_UPDATES (tests/float_compare.py); another setting lies far outside it."""
    full = runner.run_spec(_halving_spec(prune=None), tmp_path / "full", out=io.StringIO())
    best = json.loads((halving_run.run_dir / "study.json").read_text())["rungs"][-1]["settings"][0]
    survivor = halving_run.final_state.params
    grid = jax.tree.map(lambda leaf: leaf[2 * best:2 * best + 2], full.final_state.params)
    assert_trees_close(survivor, grid, FEW_ADAM_UPDATES)
    other = (best + 1) % 4
    far = jax.tree.map(lambda leaf: leaf[2 * other:2 * other + 2], full.final_state.params)
    with pytest.raises(AssertionError):
        assert_trees_close(survivor, far, 10 * FEW_ADAM_UPDATES)


def test_a_halving_study_resumed_after_a_kill_in_its_second_rung_is_the_uninterrupted_one(
        halving_run, tmp_path):
    # a progress line per update: rung 0 prints 2, the 3rd is after rung 1's first update (of 6)
    run_dir = _interrupted(_halving_spec(), tmp_path / "study", 3, "rung1")
    resumed = programs.run_study(programs.load(run_dir), run_dir, resume=True, out=io.StringIO())
    assert resumed.status == runner.COMPLETED
    theirs = json.loads((halving_run.run_dir / "study.json").read_text())["rungs"]
    assert json.loads((run_dir / "study.json").read_text())["rungs"] == theirs
    for r in range(2):
        rung = f"programs/rung{r}/eval.jsonl"
        assert _rows(run_dir / rung) == _rows(halving_run.run_dir / rung)


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("flags, says", [
    (["--sweep", "num_envs=choice:2,4", "--samples", "2"], "static field"),
    (["--sweep", "hidden_sizes=(8),(8,)"], "same value of hidden_sizes"),
    (["--sweep", "num_envs=2,4", "--sweep", "learning_rate=1e-3,1e-2", "--prune", "halving"],
     "not allowed with a static sweep"),
    (["--prune", "halving"], "setting: successive halving ranks"),
    (["--sweep", "learning_rate=1e-3,1e-2", "--prune", "halving", "--prune-eta", "1"], "prune_eta=1"),
    (["--sweep", "learning_rate=1e-3,1e-2", "--prune", "halving", "--pbt"], "PBT keeps the population"),
    (["--sweep", "hidden_sizes=(8,8"], "unbalanced parentheses"),
])
def test_a_bad_study_is_refused_before_anything_is_created(flags, says, tmp_path, capsys):
    assert cli.main(["train", "ppo", "--runs-dir", str(tmp_path), *flags]) == 2
    assert says in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_study_resumes_with_its_own_settings(static_run, capsys):
    assert cli.main(["train", "--resume", str(static_run.run_dir), "--set", "gamma=0.9"]) == 2
    assert "--set is not allowed with --resume of the study" in capsys.readouterr().err


def test_a_program_compiled_ahead_is_the_one_its_run_uses(tmp_path, monkeypatch):
    """A study compiles its next program while the current one trains (runner.precompile): the
    run must find that program, not compile another (shapes, chunk size and placement agree)."""
    spec = programs.fresh(algorithm="ppo", total_steps=3 * 32, seed_count=3, assignments=TINY + ["hidden_sizes=(5)"],
                          given_options=OPTIONS)
    assert runner.precompile(spec)

    def refuse(*args, **kwargs):
        raise AssertionError("the run compiled its training program again")
    monkeypatch.setattr(chunks, "compile_program", refuse)
    assert runner.run_spec(spec, tmp_path / "run", out=io.StringIO()).status == runner.COMPLETED


def test_load_policy_finds_a_studys_setting_in_its_program(static_run):
    import pgjax
    program = programs.load(static_run.run_dir).programs[2]
    lr = program.spec.settings[1].learning_rate
    policy = pgjax.load_policy(static_run.run_dir, setting=f"hidden_sizes=(8,8),learning_rate={lr}", seed=1)
    assert policy.info["run_dir"].endswith("programs/hidden_sizes=8x8")
    assert policy.info["member"] == 1 * 2 + 1 and policy.info["seed"] == 1


def test_a_config_files_sweep_table_takes_static_keys(tmp_path):
    from pgjax.run import spec_file
    path = tmp_path / "study.toml"
    path.write_text('algorithm = "ppo"\n[sweep]\nnum_envs = [2, 4]\nhidden_sizes = "(8),(8,8)"\n'
                    'learning_rate = "1e-3,3e-3"\n')
    study = programs.fresh(file=spec_file.load(str(path)))
    assert [p.name for p in study.programs] == ["num_envs=2,hidden_sizes=8", "num_envs=2,hidden_sizes=8x8",
                                                "num_envs=4,hidden_sizes=8", "num_envs=4,hidden_sizes=8x8"]
    assert all(len(p.spec.settings) == 2 for p in study.programs)
    assert study.programs[3].spec.config.num_envs == 4 and study.programs[3].spec.config.hidden_sizes == (8, 8)
