"""CLI: bad input is refused before compiling, with the field named; a tiny run writes its files."""

import json

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
    (["train", "ppo", "--sweep", "num_envs=4,8"], "--sweep='num_envs' is not allowed: a hyperparameter"),
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
    import pgjax.runner as runner
    monkeypatch.setattr(runner, "wandb_available", lambda: False)
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
    assert len(lines) == 2 * (2048 // (8 * 32))  # one line per update and per seed
    assert DESIGN_METRICS <= set(lines[0]), DESIGN_METRICS - set(lines[0])
    assert [l["env_steps"] for l in lines if l["seed"] == 0] == [256 * (k + 1) for k in range(8)]
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["eval_return_per_seed"]) == 2
    assert summary["eval_return_mean"] == pytest.approx(sum(summary["eval_return_per_seed"]) / 2)


def test_total_steps_flag_is_checked_after_overrides():
    # 64 steps = 8 envs x 8 steps is a valid run, but a2c's defaults are 16 x 5 = 80 > 64
    _, config, _ = cli.build_run("a2c", "CartPole-v1", 64, ["num_envs=8", "rollout_length=8"])
    assert config.total_steps == 64 and config.num_updates == 1
