"""pgjax.study.space: grids exact, random draws reproducible from the sweep seed and inside their
ranges, malformed axes refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgjax.config import ConfigError
from pgjax.study import space


def test_log_and_linear_grids_are_exact_and_include_both_ends():
    (log,) = space.parse(["learning_rate=log:1e-4:1e-2:3"])
    assert [float(v) for v in log.values] == pytest.approx([1e-4, 1e-3, 1e-2], rel=1e-12)
    assert log.log_scale
    (lin,) = space.parse(["clip_eps=lin:0.1:0.3:5"])
    assert [float(v) for v in lin.values] == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3], abs=1e-15)
    assert not lin.log_scale
    (one,) = space.parse(["gamma=lin:0.9:0.99:1"])
    assert [float(v) for v in one.values] == [0.9]


def test_a_grid_is_the_cartesian_product_with_the_last_key_fastest():
    axes = space.parse(["learning_rate=1e-3,3e-4", "clip_eps=0.1,0.2,0.3"])
    settings = space.expand(axes)
    assert settings == [{"learning_rate": lr, "clip_eps": c}
                        for lr in ("1e-3", "3e-4") for c in ("0.1", "0.2", "0.3")]


def test_random_draws_are_reproducible_from_the_sweep_seed_and_stay_in_range():
    texts = ["learning_rate=loguniform:1e-5:1e-2", "ent_coef=uniform:0:0.05", "epochs=int:1:8",
             "activation=choice:tanh,relu,gelu"]
    axes = space.parse(texts, samples=400)
    first, again = space.expand(axes, 400, sweep_seed=7), space.expand(axes, 400, sweep_seed=7)
    other = space.expand(axes, 400, sweep_seed=8)
    assert first == again and first != other
    lrs = np.array([float(s["learning_rate"]) for s in first])
    ents = np.array([float(s["ent_coef"]) for s in first])
    epochs = np.array([int(s["epochs"]) for s in first])
    assert lrs.min() >= 1e-5 and lrs.max() <= 1e-2 and ents.min() >= 0 and ents.max() <= 0.05
    assert set(epochs) == set(range(1, 9))  # both ends included
    assert {s["activation"] for s in first} == {"tanh", "relu", "gelu"}
    # log-uniform: each decade of [1e-5, 1e-2] gets about a third of the draws (uniform would put
    # 90% in the top decade); 400 draws give a standard error of 2.4% per bin
    per_decade = np.histogram(np.log10(lrs), bins=[-5, -4, -3, -2])[0] / len(lrs)
    assert np.all(np.abs(per_decade - 1 / 3) < 0.1)


def test_draws_follow_numpy_pcg64_axis_by_axis():
    """The documented recipe, computed independently: one PCG64(seed), axes drawn in order."""
    axes = space.parse(["learning_rate=loguniform:1e-4:1e-2", "gamma=uniform:0.9:0.999"], samples=5)
    rng = np.random.Generator(np.random.PCG64(3))
    lr = np.exp(rng.uniform(math.log(1e-4), math.log(1e-2), 5))
    gamma = rng.uniform(0.9, 0.999, 5)
    got = space.expand(axes, 5, sweep_seed=3)
    assert [float(s["learning_rate"]) for s in got] == lr.tolist()
    assert [float(s["gamma"]) for s in got] == gamma.tolist()


def test_grid_and_random_axes_mix_as_grid_times_draws():
    axes = space.parse(["clip_eps=0.1,0.2", "learning_rate=loguniform:1e-4:1e-2"], samples=3)
    settings = space.expand(axes, 3, sweep_seed=0)
    assert [s["clip_eps"] for s in settings] == ["0.1"] * 3 + ["0.2"] * 3
    # the same three draws under each grid value
    assert [s["learning_rate"] for s in settings[:3]] == [s["learning_rate"] for s in settings[3:]]


def test_the_record_names_every_axis():
    axes = space.parse(["learning_rate=log:1e-4:1e-2:3", "epochs=int:1:4"], samples=2)
    rec = space.record(axes, 2, 11)
    assert rec["samples"] == 2 and rec["sweep_seed"] == 11
    assert rec["axes"][0]["kind"] == "log" and rec["axes"][1] == {"key": "epochs", "kind": "int",
                                                                   "low": 1.0, "high": 4.0}


@pytest.mark.parametrize("texts, samples, named", [
    (["learning_rate=log:1e-2:1e-4:3"], None, "LO=0.01 must be < HI=0.0001"),
    (["learning_rate=lin:0.1:0.1:3"], None, "empty or reversed"),
    (["learning_rate=log:0:1e-2:3"], None, "a log range needs bounds > 0"),
    (["learning_rate=loguniform:-1:1"], 3, "a log range needs bounds > 0"),
    (["learning_rate=log:1e-4:1e-2:0"], None, "N='0' must be a positive integer"),
    (["learning_rate=log:1e-4:1e-2:2.5"], None, "N='2.5' must be a positive integer"),
    (["learning_rate=log:1e-4:1e-2"], None, "log:LO:HI:N"),
    (["learning_rate=uniform:a:1"], 2, "'a' is not a number"),
    (["learning_rate=uniform:0:inf"], 2, "not a finite number"),
    (["epochs=int:1.5:4"], 2, "integer bounds"),
    (["learning_rate="], None, "at least one value"),
    (["learning_rate"], None, "expected KEY=SPEC"),
    (["activation=choice:"], 2, "at least one value"),
    (["learning_rate=loguniform:1e-4:1e-2"], None, "without --samples N"),
    (["learning_rate=1e-3,1e-4"], 4, "without a random --sweep axis"),
    (["learning_rate=loguniform:1e-4:1e-2"], 0, "--samples=0"),
    (["gamma=0.9", "gamma=0.5"], None, "gamma is swept twice (also --sweep 'gamma=0.9')"),
])
def test_malformed_axes_are_refused_naming_them(texts, samples, named):
    with pytest.raises(ConfigError) as error:
        space.parse(texts, samples)
    assert named in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------- through the spec and the CLI

def test_a_random_search_spec_records_the_drawn_values_and_the_space(tmp_path):
    from pgjax.run import spec
    run = spec.fresh(algorithm="ppo", sweeps=["learning_rate=loguniform:1e-4:1e-2", "clip_eps=0.1,0.3"],
                     samples=3, sweep_seed=5)
    axes = space.parse(["clip_eps=0.1,0.3", "learning_rate=loguniform:1e-4:1e-2"], samples=3)
    lrs = [float(p["learning_rate"]) for p in space.expand(axes, 3, 5)[:3]]
    got = [(float(hp.clip_eps), float(hp.learning_rate)) for hp in run.settings]
    assert got == [(c, lr) for c in (0.1, 0.3) for lr in lrs]
    record = run.record()
    assert record["study"]["samples"] == 3 and record["study"]["sweep_seed"] == 5
    assert record["sweep_space"] == {"learning_rate": "log"}
    assert [s["learning_rate"] for s in record["hparams_settings"]] == [hp.learning_rate for hp in run.settings]


def test_a_config_files_sweep_table_and_flags_on_top(tmp_path):
    from pgjax.run import spec, spec_file
    path = tmp_path / "study.toml"
    path.write_text('algorithm = "ppo"\n[sweep]\nlearning_rate = "log:1e-4:1e-2:3"\n'
                    'clip_eps = [0.1, 0.2]\n')
    run = spec.fresh(file=spec_file.load(path))
    assert [(hp.learning_rate, hp.clip_eps) for hp in run.settings] == [
        (lr, c) for lr in (1e-4, 1e-3, 1e-2) for c in (0.1, 0.2)]
    # a flag sweeping a key of the file replaces the file's axis for that key
    run = spec.fresh(file=spec_file.load(path), sweeps=["clip_eps=0.3"])
    assert sorted({hp.clip_eps for hp in run.settings}) == [0.3] and len(run.settings) == 3
    path.write_text('algorithm = "ppo"\n[sweep]\nlearning_rate = "loguniform:1e-4:1e-2"\nsamples = 4\n'
                    'sweep_seed = 9\n')
    drawn = spec.fresh(file=spec_file.load(path))
    again = spec.fresh(algorithm="ppo", sweeps=["learning_rate=loguniform:1e-4:1e-2"], samples=4, sweep_seed=9)
    assert drawn.settings == again.settings and len(drawn.settings) == 4


@pytest.mark.parametrize("argv, named", [
    (["--sweep", "learning_rate=loguniform:1e-4:1e-2"], "without --samples N"),
    (["--sweep", "learning_rate=log:1e-2:1e-4:3"], "LO=0.01 must be < HI=0.0001"),
    (["--sweep", "learning_rate=log:-1:1e-4:3"], "a log range needs bounds > 0"),
    (["--sweep", "num_envz=1,2"], "--sweep='num_envz' is not allowed"),
    (["--samples", "3", "--sweep", "learning_rate=1e-3,1e-4"], "without a random --sweep axis"),
])
def test_the_cli_refuses_a_bad_space_before_anything_is_created(tmp_path, capsys, argv, named):
    from pgjax import cli
    code = cli.main(["train", "ppo", "--runs-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and named in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_random_search_trains_the_recorded_draws_and_the_report_reads_its_space(tmp_path, capsys):
    """Through the real CLI: config.json holds the drawn values and the space; the report ranks the
    settings and draws learning_rate on the log axis the space declares."""
    import json

    from pgjax import cli
    from pgjax.report import load_run
    from pgjax.report.sweep import axis_scales
    code = cli.main(["train", "ppo", "--seeds", "2", "--total-steps", "128", "--set", "num_envs=2",
                     "--set", "rollout_length=16", "--set", "minibatches=2", "--set", "epochs=1",
                     "--set", "hidden_sizes=8", "--sweep", "learning_rate=loguniform:1e-4:1e-2",
                     "--samples", "2", "--sweep-seed", "4", "--eval-episodes", "2", "--num-evals", "1",
                     "--no-plots", "--no-tensorboard", "--name", "rs", "--runs-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "rs" / "config.json").read_text())
    draws = space.expand(space.parse(["learning_rate=loguniform:1e-4:1e-2"], 2), 2, 4)
    assert [s["learning_rate"] for s in record["hparams_settings"]] == [float(d["learning_rate"]) for d in draws]
    assert record["study"]["sweep_seed"] == 4 and record["sweep_space"] == {"learning_rate": "log"}
    assert axis_scales(load_run(tmp_path / "rs")) == {"learning_rate": "log"}
    assert len(record["members"]) == 4
    # pgjax eval and pgjax episodes choose a setting (by index or values) and a seed
    run_dir = tmp_path / "rs"
    capsys.readouterr()
    second = record["hparams_settings"][1]["learning_rate"]
    assert cli.main(["eval", str(run_dir), "--episodes", "2", "--setting",
                     f"learning_rate={second!r}", "--seed", "1"]) == 0
    table = capsys.readouterr().out
    members = [line for line in table.splitlines() if line.startswith("| 3 |")]
    assert len(members) == 1 and "| 1 |" in members[0]  # member 3 = setting 1, seed 1
    assert not [line for line in table.splitlines() if line.startswith(("| 0 |", "| 1 |", "| 2 |"))]
    assert cli.main(["episodes", str(run_dir), "--setting", "0"]) == 0
    assert "members [0, 1]" in capsys.readouterr().out
    assert cli.main(["eval", str(run_dir), "--setting", "learning_rate=7"]) == 2
    assert "it matches no setting" in capsys.readouterr().err
    assert cli.main(["eval", str(run_dir), "--seed", "5"]) == 2
    assert "the run's seeds are [0, 1]" in capsys.readouterr().err
