"""CLI: bad input is refused before compiling, with the field named; a tiny run writes its files."""

import json

import numpy as np

import pytest

from pgjax import cli

DESIGN_METRICS = {
    "episode_return", "episode_length", "reward_per_step", "entropy", "policy_loss", "value_loss",
    "total_loss", "grad_norm", "value_max", "value_mean", "td_error_mean", "td_error_abs_mean",
    "approx_kl", "clip_fraction", "explained_variance", "learning_rate", "env_steps",
}


@pytest.mark.parametrize("argv, message", [
    (["train", "ppo", "--env", "CartPol-v1"], "did you mean 'CartPole-v1'"),
    (["train", "pppo"], "unknown algorithm 'pppo'"),
    (["train", "ppo", "--set", "minibatches=7"], "minibatches=7 is not allowed: must divide"),
    (["train", "ppo", "--set", "num_envs=0"], "num_envs=0 is not allowed"),
    (["train", "ppo", "--set", "rollout_length=-5"], "rollout_length=-5 is not allowed"),
    (["train", "ppo", "--set", "lerning_rate=0.1"], "did you mean learning_rate"),
    (["train", "ppo", "--set", "learning_rate=-1"], "learning_rate=-1.0 is not allowed"),
    (["train", "ppo", "--set", "gamma=1.5"], "gamma=1.5 is not allowed"),
    (["train", "ppo", "--set", "epochs=two"], "epochs='two' is not allowed: must be an integer"),
    (["train", "ppo", "--set", "noequals"], "expected key=value"),
    (["train", "ppo", "--set", "env.max_steps=3"], "max_steps_in_episode"),
    (["train", "ppo", "--env", "Catch-bsuite", "--set", "hidden_sizes=0"], "hidden_sizes"),
    (["train", "ppo", "--seeds", "0"], "--seeds=0"),
    (["train", "ppo", "--total-steps", "10"], "total_steps=10 is not allowed"),
    (["train", "ppo", "--num-evals", "0"], "num_evals=0 is not allowed"),
    (["train", "ppo", "--cache-episodes", "-1"], "cache_episodes=-1 is not allowed"),
    (["train", "ppo", "--sweep", "no_such_key=4,8"], "--sweep='no_such_key' is not allowed: a hyperparameter"),
    (["train", "ppo", "--sweep", "learning_rate=0.1,-1"], "learning_rate=-1.0 is not allowed"),
    (["train"], "algorithm is missing"),
    (["train", "--resume", "no/such/run"], "no config.json there"),
])
def test_bad_input_is_one_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import jax
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, *a, **k: compiles.append(1))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert not compiles and not (tmp_path / "runs").exists()


def test_wandb_without_the_package_is_refused(capsys, monkeypatch):
    import pgjax.run.options as run_options
    monkeypatch.setattr(run_options, "wandb_available", lambda: False)
    assert cli.main(["train", "ppo", "--wandb", "my-project"]) == 2
    assert "Weights & Biases is not installed" in capsys.readouterr().err


def test_wrong_action_space_kind_is_refused():
    from pgjax.algorithms import ppo
    from pgjax.config import ConfigError

    class DiscreteOnly(ppo.Config):
        supported_action_spaces = ("discrete",)

    with pytest.raises(ConfigError, match="needs an action space of kind"):
        DiscreteOnly(env_id="Pendulum-v1")


def test_tiny_run_writes_config_metrics_and_summary(tmp_path, capsys):
    argv = ["train", "ppo", "--env", "CartPole-v1", "--seeds", "2", "--total-steps", "2048",
            "--set", "num_envs=8", "--set", "rollout_length=32", "--eval-episodes", "5",
            "--runs-dir", str(tmp_path), "--name", "tiny"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "steps/s" in out and "eval return (5 episodes/seed)" in out
    run = tmp_path / "tiny"
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["num_envs"] == 8 and config["seeds"] == [0, 1]
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    # by default a row is the mean over ~1 s of updates: per seed the rows' spans cover the 8
    # updates once, the last row ends at update 8
    for seed in (0, 1):
        rows = [line for line in lines if line["seed"] == seed]
        assert sum(row.get("span", 1) for row in rows) == 2048 // (8 * 32)
        assert rows[-1]["update"] == 8 and [r["update"] for r in rows] == sorted({r["update"] for r in rows})
    # the per-setting statistics over the two seeds are those of the member rows
    settings = [json.loads(l) for l in (run / "metrics_settings.jsonl").read_text().splitlines()]
    assert [row["update"] for row in settings] == [row["update"] for row in lines if row["seed"] == 0]
    for row in settings:
        members = [line["entropy"] for line in lines if line["update"] == row["update"]]
        assert row["members"] == 2
        np.testing.assert_allclose([row["entropy/mean"], row["entropy/min"], row["entropy/max"]],
                                   [np.mean(members), min(members), max(members)], rtol=1e-6)
    assert DESIGN_METRICS <= set(lines[0]), DESIGN_METRICS - set(lines[0])
    assert [l["env_steps"] for l in lines if l["seed"] == 0] == [256 * l["update"] for l in lines
                                                                 if l["seed"] == 0]
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["eval_return_per_seed"]) == 2
    assert summary["eval_return_mean"] == pytest.approx(sum(summary["eval_return_per_seed"]) / 2)
    # compile time split into the training program and the evaluation program (compiled while
    # training runs), and whether the training program came from the persistent cache
    assert summary["compile_seconds_train"] == summary["compile_seconds"] > 0
    assert summary["compile_seconds_eval"] > 0
    assert summary["compile_cache_hit"] in (True, False, None)


def test_total_steps_flag_is_checked_after_overrides():
    # 64 steps = 8 envs x 8 steps is a valid run, but a2c's defaults are 16 x 5 = 80 > 64
    from pgjax.run import spec
    _, config, _ = spec.config_and_hparams("a2c", "CartPole-v1", 64, ["num_envs=8", "rollout_length=8"])
    assert config.total_steps == 64 and config.num_updates == 1


def test_train_help_lists_every_setting_of_the_algorithm(capsys):
    """``pgjax train ALGO --help`` names every config field and hyperparameter of ALGO with its
    type, default and the meaning written beside it in the dataclass."""
    import dataclasses

    from pgjax import algorithms
    for name, algo in algorithms.ALGORITHMS.items():
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert f"settings of {name}" in out
        names = [f.name for f in dataclasses.fields(algo.Config) if f.name != "env_overrides"]
        names += [f.name for f in dataclasses.fields(algo.Hparams)]
        for field in names:
            line = next((l for l in out.splitlines() if l.strip().startswith(field + " ")), None)
            assert line is not None, (name, field)
            assert " = " in line and len(line.split(" = ", 1)[1].split("  ", 1)) == 2, line  # a meaning


def _args(argv):
    return cli._parser().parse_args(["train", *argv])


def test_config_file_then_flags_on_top(tmp_path):
    """A TOML file gives algorithm, seeds, config, env parameters, hyperparameters and options;
    --env/--set/--seeds/--sweep apply on top of it."""
    path = tmp_path / "run.toml"
    path.write_text('algorithm = "ppo"\nseeds = [4, 9]\n[config]\nenv_id = "Acrobot-v1"\n'
                    'num_envs = 8\nhidden_sizes = [32, 32]\n[config.env_overrides]\n'
                    'max_steps_in_episode = 200\n[hparams]\nlearning_rate = 1e-3\n'
                    '[options]\neval_episodes = 7\n')
    args = _args(["--config", str(path), "--set", "epochs=2", "--sweep", "clip_eps=0.1,0.3",
                  "--runs-dir", str(tmp_path)])
    run, _ = cli.resolve(args)
    config = run.config
    assert run.algorithm == "ppo" and run.seeds == (4, 9)
    assert (config.env_id, config.num_envs, config.hidden_sizes, config.epochs) == ("Acrobot-v1", 8, (32, 32), 2)
    assert dict(config.env_overrides) == {"max_steps_in_episode": 200}
    assert [(s.learning_rate, s.clip_eps) for s in run.settings] == [(1e-3, 0.1), (1e-3, 0.3)]
    assert run.options.eval_episodes == 7
    run, _ = cli.resolve(_args(["--config", str(path), "--env", "CartPole-v1", "--seeds", "1"]))
    assert run.config.env_id == "CartPole-v1" and run.seeds == (0,)


def test_a_runs_config_json_starts_the_same_run(tmp_path):
    """--config accepts a previous run's config.json: same algorithm, config, settings, seeds."""
    import json

    from pgjax.algorithms import a2c
    from pgjax.config import config_to_dict, hparams_to_dict
    config = a2c.Config(env_id="Pendulum-v1", num_envs=8, normalize_obs=True)
    settings = [a2c.Hparams(learning_rate=1e-3), a2c.Hparams(learning_rate=3e-3)]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"algorithm": "a2c", "config": config_to_dict(config),
                                "hparams": hparams_to_dict(settings[0]),
                                "hparams_settings": [hparams_to_dict(h) for h in settings],
                                "seeds": [1, 2], "members": [], "device": "cpu:0",
                                "options": {"eval_episodes": 9}}))
    run, _ = cli.resolve(_args(["--config", str(path), "--runs-dir", str(tmp_path)]))
    assert run.algorithm == "a2c" and run.config == config and run.seeds == (1, 2)
    assert [hparams_to_dict(h) for h in run.settings] == [hparams_to_dict(h) for h in settings]
    assert run.options.eval_episodes == 9


@pytest.mark.parametrize("content, name, message", [
    ('algorithm = "ppo"\nbogus = 1\n', "x.toml", "unknown key(s) ['bogus']"),
    ('algorithm = "ppo"\n[config]\nnum_envz = 4\n', "x.toml", "num_envz"),
    ('algorithm = "ppo"\n[hparams]\nlerning_rate = 4\n', "x.toml", "lerning_rate"),
    ('algorithm = "ppo"\n[options]\neval_episods = 4\n', "x.toml", "eval_episods"),
    ('algorithm = "ppo"\nseeds = 0\n', "x.toml", "seeds=0 is not allowed"),
    ("algorithm: [ppo\n", "x.yaml", "cannot be parsed"),
    ("{}", "x.ini", "a .toml, .yaml/.yml or .json file"),
    ('algorithm = "ppo"\n', "missing.toml", "no such file"),
    ('[config]\nnum_envs = 4\n', "x.toml", "algorithm is missing"),
])
def test_bad_config_file_is_one_clear_error(content, name, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if name != "missing.toml":
        (tmp_path / name).write_text(content)
    assert cli.main(["train", "--config", name]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_every_shipped_benchmark_config_is_valid():
    """benchmarks/configs/*.toml (the learning rows) each resolve to a valid run."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.learning import CONFIGS, TARGETS, load_row
    assert sorted(p.stem for p in CONFIGS.glob("*.toml")) == sorted(TARGETS)
    from pgjax.envs import suites
    extras = ("brax", "xminigrid", "craftax", "navix", "jumanji")
    for row in TARGETS:
        if any(f"-{extra}-" in row and not suites.installed(extra) for extra in extras):
            continue  # a row of an optional extra that is not installed
        _, config, _, _, _ = load_row(row, 3)
        assert row.endswith(config.env_id.replace(":", "-"))
