"""Settings that validate themselves: every field of every algorithm is declared once, beside
itself (:func:`pgjax.config.setting`: type, range or choices, help), and that one declaration
checks ``--set`` values, settings files and a resumed run's ``config.json``, and writes ``--help``.
Each bad value is one line naming the field, exit status 2, before any run folder exists."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import jax
import pytest

from pgjax import algorithms, cli
from pgjax.algorithms import a2c, ppo, reinforce, trpo
from pgjax.config import (SETTING, CommonHparams, ConfigError, Setting, config_to_dict,
                          hparams_to_dict, setting, settings_of)
from pgjax.run import field_docs, folder as run_folder, spec

ALGOS = sorted(algorithms.ALGORITHMS)


@pytest.fixture
def no_compile(monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, *a, **k: compiles.append(1))
    return compiles


def _refused(argv, capsys) -> str:
    """Run ``pgjax ARGV``; it must exit 2 with one line on stderr and no traceback."""
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("pgjax: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- declarations

@pytest.mark.parametrize("name", ALGOS)
def test_every_field_of_every_algorithm_is_declared(name):
    """Each Config and Hparams field carries a Setting with help text whose own default it
    allows; every hyperparameter is a number and stays a pytree leaf (vmappable)."""
    algo = algorithms.get(name)
    for cls in (algo.Config, algo.Hparams):
        for f in dataclasses.fields(cls):
            declared = f.metadata.get(SETTING)
            assert isinstance(declared, Setting), f"{cls.__module__}.{cls.__name__}.{f.name}"
            assert declared.help.strip(), f.name
            assert declared.problem(f.default) is None, (f.name, f.default)
    assert {s.type for s in settings_of(algo.Hparams).values()} == {"float"}
    hparams = algo.Hparams()
    assert len(jax.tree.leaves(hparams)) == len(dataclasses.fields(algo.Hparams))


def test_a_changed_default_keeps_the_base_declaration_and_a_new_field_needs_one():
    # reinforce.Hparams writes only `learning_rate: Any = 1e-3`: the range and help are the base's
    assert dataclasses.fields(reinforce.Hparams)[0].default == 1e-3
    assert settings_of(reinforce.Hparams)["learning_rate"] == settings_of(CommonHparams)["learning_rate"]
    assert settings_of(a2c.Config)["num_envs"].low == 1 and a2c.Config().num_envs == 16
    with pytest.raises(TypeError, match=r"Extra\.new_rate has no declaration"):
        class Extra(ppo.Hparams):
            new_rate: Any = 0.1
    with pytest.raises(TypeError, match=r"Extra2\.epochs_too has no declaration"):
        @dataclasses.dataclass(frozen=True)
        class Extra2(ppo.Config):
            epochs_too: int = 3
    with pytest.raises(TypeError, match=r"Extra3\.gamma = 1\.5: the default must be a finite "
                                        r"number in \[0, 1\]"):
        class Extra3(ppo.Hparams):
            gamma: Any = 1.5


def test_setting_refuses_a_default_it_does_not_allow_and_a_tuple_without_a_type():
    with pytest.raises(TypeError, match="the default itself must be"):
        setting(0.0, low=0, low_open=True, help="a step size")
    with pytest.raises(TypeError, match="say its type="):
        setting((1, 2), help="widths")


@pytest.mark.parametrize("declared, allowed", [
    (Setting("float", "", low=0, low_open=True), "a finite number in (0, ∞)"),
    (Setting("float", "", low=0, high=1), "a finite number in [0, 1]"),
    (Setting("float", "", low=0, low_open=True, high=1), "a finite number in (0, 1]"),
    (Setting("float", ""), "a finite number"),
    (Setting("int", "", low=1, high=2 ** 31 - 1), "an integer in [1, 2147483647]"),
    (Setting("str", "", choices=("a", "b")), "one of ['a', 'b']"),
])
def test_allowed_values_in_words(declared, allowed):
    assert declared.allowed == allowed


# --------------------------------------------------------------------------- every field, every algorithm

def _bad_texts(name: str, declared: Setting) -> list[str]:
    """Values ``--set NAME=TEXT`` must refuse, from the declaration alone: the wrong kind, and
    just outside each bound."""
    if declared.type == "bool":
        return ["maybe"]
    if declared.type == "str":
        return ["no-such-choice"]
    if declared.type == "ints":
        return ["0", "a"]
    if declared.type == "pairs":
        return ["abc"]  # env_overrides is refused as a --set key (env.FIELD=VALUE instead)
    texts = ["abc"] if declared.type == "float" else ["abc", "1.5"]
    if declared.type == "float":
        texts += ["nan", "inf"]
    if declared.low is not None:
        texts.append(repr(declared.low) if declared.low_open else repr(declared.low - 1))
    if declared.high is not None and declared.high != math.inf:
        texts.append(repr(declared.high) if declared.high_open else repr(declared.high + 1))
    return texts


@pytest.mark.parametrize("name", ALGOS)
def test_every_field_refuses_a_bad_value_naming_it_before_anything_is_created(
        name, capsys, tmp_path, no_compile):
    algo = algorithms.get(name)
    fields = {**settings_of(algo.Config), **settings_of(algo.Hparams)}
    tried = 0
    for field, declared in fields.items():
        for text in _bad_texts(field, declared):
            err = _refused(["train", name, "--set", f"{field}={text}", "--runs-dir", str(tmp_path)],
                           capsys)
            assert field in err, (field, text, err)
            tried += 1
    assert tried >= 2 * len(fields)
    assert not list(tmp_path.iterdir()) and not no_compile


# --------------------------------------------------------------------------- each case by name

@pytest.mark.parametrize("argv, message", [
    (["reinforce", "--set", "critic_learning_rate=-1"],
     "critic_learning_rate=-1.0 is not allowed: must be a finite number in (0, ∞)"),
    (["reinforce", "--set", "baseline_decay=5"],
     "baseline_decay=5.0 is not allowed: must be a finite number in (0, 1]"),
    (["trpo", "--set", "max_kl=-0.01"], "max_kl=-0.01 is not allowed: must be a finite number in (0, ∞)"),
    (["trpo", "--set", "cg_damping=-1"], "cg_damping=-1.0 is not allowed: must be a finite number in [0, ∞)"),
    (["actor-critic", "--set", "lambda_actor=2"], "lambda_actor=2.0 is not allowed: must be a finite number in [0, 1]"),
    (["actor-critic", "--set", "lambda_critic=5"], "lambda_critic=5.0 is not allowed"),
    (["ppo", "--set", "reward_scale=inf"], "reward_scale=inf is not allowed: must be a finite number"),
    (["ppo", "--set", "log_std_init=nan"], "log_std_init=nan is not allowed: must be a finite number"),
    # feature settings against the observation shape (CartPole observes 4 numbers)
    (["ppo", "--set", "torso=tile", "--set", "feature_args=low:-1/-1,high:1/1"],
     "feature_args.low=(-1.0, -1.0) is not allowed: one bound per observation dimension: 4 numbers"),
    (["ppo", "--set", "torso=tile", "--set", "feature_args=low:-1/-1/-1/-1,high:1/1/1/1,tiles_per_dim:0"],
     "feature_args.tiles_per_dim=0 is not allowed: must be an integer in [2, 2147483647]"),
    (["ppo", "--set", "torso=tile", "--set", "feature_args=low:-1/-1/-1/-1,high:1/1/-2/1"],
     "feature_args.high=(1.0, 1.0, -2.0, 1.0) is not allowed: each bound above the matching low"),
    (["ppo", "--set", "torso=tile", "--set", "feature_args=low:-1/-1/-1/-1,high:1/1/1/1,tiles_per_dim:300"],
     "features must stay below 2^31"),
    (["ppo", "--env", "ShortCorridor-v0", "--set", "torso=onehot", "--set", "feature_args=num_states:0"],
     "feature_args.num_states=0 is not allowed"),
    (["ppo", "--set", "torso=onehot", "--set", "feature_args=num_states:4"],
     "one-hot features take a state index as the observation (shape () or (1,)); this env observes shape (4,)"),
    (["ppo", "--set", "torso=random_projection", "--set", "feature_args=num_features:-5"],
     "feature_args.num_features=-5 is not allowed"),
    (["ppo", "--set", "torso=random_projection", "--set", "feature_args=num_featurs:8"],
     "unknown ['num_featurs'] (did you mean num_features?)"),
    # environment parameters: declared choices, and numbers the program's 32-bit types hold
    (["ppo", "--env", "Bandit-v0", "--set", "env.kind=poisson"],
     "env.kind='poisson' is not allowed for 'Bandit-v0': one of ['gaussian', 'bernoulli']"),
    (["ppo", "--set", "env.max_steps_in_episode=1e99"],
     "env.max_steps_in_episode=1e+99 is not allowed for 'CartPole-v1': must be an integer in [1, 2147483647]"),
    (["ppo", "--set", "env.gravity=1e39"], "env.gravity=1e+39 is not allowed for 'CartPole-v1': must be within"),
    # seeds: the flag at fault is named, with its range
    (["ppo", "--seeds", "4294967296"], "--seeds=4294967296 is not allowed: the number of seeds, an integer in [1, 1048576]"),
    (["ppo", "--seeds", "4294967297"], "--seeds=4294967297 is not allowed"),
    (["ppo", "--seeds", "2", "--seed-offset", "4294967295"],
     "--seed-offset=4294967295 is not allowed: the first seed, an integer in [0, 2^32 − 2] = [0, 4294967294]"),
    # sweeps that would drop values or train a setting twice
    (["ppo", "--sweep", "gamma=0.99,0.9", "--sweep", "gamma=0.5"],
     "--sweep 'gamma=0.5' is not allowed: gamma is swept twice (also --sweep 'gamma=0.99,0.9')"),
    (["ppo", "--sweep", "gamma=0.9,0.90"],
     "--sweep 'gamma=0.9,0.90' is not allowed: 0.9 and 0.90 are the same value of gamma"),
    (["ppo", "--sweep", "learning_rate=1e-3,0.001000000001"], "the same value of learning_rate"),
    (["ppo", "--set", "env_overrides=5"], "set environment parameters one by one, as env.FIELD=VALUE"),
])
def test_each_named_case_is_one_line_before_anything_is_created(argv, message, capsys, tmp_path,
                                                               no_compile):
    err = _refused(["train", *argv, "--runs-dir", str(tmp_path)], capsys)
    assert message in err, err
    assert not list(tmp_path.iterdir()) and not no_compile


def test_a_name_longer_than_the_file_system_allows(capsys, tmp_path, monkeypatch, no_compile):
    import os
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")  # 255 on the usual file systems
    err = _refused(["train", "ppo", "--name", "r" * (limit + 1), "--runs-dir", str(tmp_path)], capsys)
    assert f"({limit + 1} bytes) is not allowed: at most {limit} bytes" in err, err
    calls = []

    def pathconf(path, name):
        calls.append((str(path), name))
        return 16
    monkeypatch.setattr(run_folder.os, "pathconf", pathconf)
    runs = tmp_path / "not" / "yet"  # the nearest existing folder is asked
    run_folder.check_name("r" * 16, runs)
    with pytest.raises(ConfigError, match="at most 16 bytes"):
        run_folder.check_name("é" * 9, runs)  # 18 bytes in UTF-8
    assert calls[0] == (str(tmp_path), "PC_NAME_MAX")
    def no_pathconf(path, name):
        raise OSError("not supported")
    monkeypatch.setattr(run_folder.os, "pathconf", no_pathconf)
    run_folder.check_name("r" * 255, runs)
    with pytest.raises(ConfigError, match="at most 255 bytes"):
        run_folder.check_name("r" * 256, runs)
    assert not list(tmp_path.iterdir()) and not no_compile


def test_integer_flags_take_integral_floats_like_set_does(tmp_path):
    def resolved(*argv):
        return cli.resolve(cli._parser().parse_args(["train", "ppo", *argv, "--runs-dir", str(tmp_path)]))[0]
    by_flag = resolved("--total-steps", "1e5", "--seeds", "2e0", "--eval-episodes", "1e2")
    by_set = resolved("--set", "total_steps=1e5", "--seeds", "2", "--eval-episodes", "100")
    assert by_flag.config.total_steps == by_set.config.total_steps == 100_000
    assert type(by_flag.config.total_steps) is int
    assert by_flag.seeds == by_set.seeds == (0, 1) and by_flag.options.eval_episodes == 100
    assert cli.integer("2.5e6") == 2_500_000 and cli.integer("4294967297") == 4294967297
    for text in ("1.5", "inf", "nan", "ten"):
        with pytest.raises(Exception, match="is not allowed: an integer"):
            cli.integer(text)


def test_a_fractional_integer_flag_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "ppo", "--total-steps", "1.5"])
    assert exit_.value.code == 2
    assert "argument --total-steps: '1.5' is not allowed: an integer" in capsys.readouterr().err


def test_env_integers_are_held_as_integers():
    from pgjax.envs import make
    _, params = make("CartPole-v1", max_steps_in_episode=2e2)
    assert params.max_steps_in_episode == 200 and type(params.max_steps_in_episode) is int
    _, config, _ = spec.config_and_hparams("ppo", None, None, ["env.max_steps_in_episode=1e3"])
    from pgjax.algorithms import setup
    assert type(setup.make_env(config)[1].max_steps_in_episode) is int


def test_feature_bounds_for_a_one_number_observation_can_be_bare_numbers():
    _, config, _ = spec.config_and_hparams("actor-critic", "ShortCorridor-v0", None,
                                           ["torso=tile", "feature_args=low:0,high:2,num_tilings:2e0"])
    assert dict(config.feature_args) == {"low": (0.0,), "high": (2.0,), "num_tilings": 2}


# --------------------------------------------------------------------------- files and config.json

@pytest.mark.parametrize("content, message", [
    ('[config]\nnormalize_obs = "false"\n', "normalize_obs='false' is not allowed: must be true or false"),
    ("[config]\nenv_overrides = 5\n", "env_overrides=5 is not allowed: must be a table of EnvParams field = value"),
    ("[config]\nenv_overrides = [1, 2]\n", "env_overrides=[1, 2] is not allowed"),
    ("[config]\nfeature_args = 5\n", "feature_args=5 is not allowed: must be a table of name = value"),
    ('[config]\nlog_std_init = "abc"\n', "log_std_init='abc' is not allowed: must be a finite number"),
    ('[config]\nhidden_sizes = [64, "a"]\n', "hidden_sizes=[64, 'a'] is not allowed"),
    ("[config]\ntotal_steps = 1.5\n", "total_steps=1.5 is not allowed: must be an integer"),
    ("[config]\nnum_envz = 4\n", "config: unknown fields ['num_envz'] (did you mean num_envs?)"),
    ("[hparams]\nlerning_rate = 4\n", "hparams: unknown fields ['lerning_rate'] (did you mean learning_rate?)"),
    ('[hparams]\nlearning_rate = "abc"\n', "learning_rate='abc' is not allowed: must be a finite number"),
    ("[hparams]\ngamma = true\n", "gamma=True is not allowed: must be a finite number in [0, 1]"),
    ("seeds = [0, 0, 1]\n", "seeds=[0, 0, 1] is not allowed: seed 0 appears more than once"),
    ("seeds = 4294967296\n", "seeds=4294967296 is not allowed: a count in [1, 1048576]"),
    ("seeds = [4294967296]\n", "seeds=[4294967296] is not allowed"),
    ("[[hparams_settings]]\ngamma = 0.9\n[[hparams_settings]]\ngamma = 0.90\n",
     "hparams_settings is not allowed: settings 0 and 1 (from 0) are the same"),
])
def test_a_settings_file_is_type_checked_like_flags(content, message, capsys, tmp_path, no_compile):
    path = tmp_path / "run.toml"
    path.write_text('algorithm = "ppo"\n' + content)
    err = _refused(["train", "--config", str(path), "--runs-dir", str(tmp_path / "runs")], capsys)
    assert message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"] and not no_compile


def test_a_settings_file_reads_integral_floats_and_pair_lists(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('algorithm = "actor-critic"\n[config]\ntotal_steps = 1e5\nhidden_sizes = [8]\n'
                    'torso = "tile"\nfeature_args = {low = [-1, -1], high = [1, 1], tiles_per_dim = 4.0}\n'
                    'env_id = "MountainCar-v0"\n[config.env_overrides]\nmax_steps_in_episode = 2e2\n')
    run, _ = cli.resolve(cli._parser().parse_args(["train", "--config", str(path), "--runs-dir",
                                                   str(tmp_path)]))
    assert run.config.total_steps == 100_000 and run.config.hidden_sizes == (8,)
    assert run.config.feature_args == (("high", (1.0, 1.0)), ("low", (-1.0, -1.0)), ("tiles_per_dim", 4))
    assert type(dict(run.config.feature_args)["tiles_per_dim"]) is int


def _record(**changes) -> dict:
    record = {"algorithm": "trpo",
              "config": config_to_dict(trpo.Config(num_envs=2, rollout_length=8, total_steps=64,
                                                   hidden_sizes=(8,))),
              "hparams": hparams_to_dict(trpo.Hparams()), "seeds": [0]}
    for key, value in changes.items():
        target, _, name = key.rpartition(".")
        (record[target] if target else record)[name] = value
    return record


@pytest.mark.parametrize("changes, message", [
    ({"config.normalize_obs": "false"}, "normalize_obs='false' is not allowed: must be true or false"),
    ({"config.env_overrides": 5}, "env_overrides=5 is not allowed"),
    ({"config.feature_args": 5}, "feature_args=5 is not allowed"),
    ({"config.log_std_init": "abc"}, "log_std_init='abc' is not allowed"),
    ({"config.critic_minibatchs": 2}, "unknown fields ['critic_minibatchs'] (did you mean critic_minibatches?)"),
    ({"hparams.max_kl": -0.01}, "max_kl=-0.01 is not allowed"),
    ({"hparams.max_kll": 0.01}, "unknown fields ['max_kll'] (did you mean max_kl?)"),
    ({"seeds": [3, 3]}, "seed 3 appears more than once"),
    ({"hparams_settings": [{"max_kl": 0.01}, {"max_kl": 0.01}]}, "settings 0 and 1 (from 0) are the same"),
])
def test_a_resumed_runs_config_json_is_checked_the_same_way(changes, message, capsys, tmp_path,
                                                            no_compile):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(_record(**changes)))
    for argv in (["train", "--resume", str(run_dir)], ["eval", str(run_dir)]):
        err = _refused(argv, capsys)
        assert f"{run_dir / 'config.json'}: " in err and message in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"] and not no_compile


def test_a_saved_record_reads_back_equal():
    """config.json's form (lists for tuples, a table for env_overrides, [name, value] pairs for
    feature_args) reads back to the same config and hyperparameters."""
    from pgjax.config import config_from_dict, hparams_from_dict
    from pgjax.algorithms import actor_critic
    config = actor_critic.Config(env_id="MountainCar-v0", torso="tile", hidden_sizes=(8,),
                                 feature_args=(("high", (0.6, 0.07)), ("low", (-1.2, -0.07))),
                                 env_overrides=(("max_steps_in_episode", 50),), variant="td_lambda")
    hparams = actor_critic.Hparams(lambda_actor=0.5)
    saved = json.loads(json.dumps({"c": config_to_dict(config), "h": hparams_to_dict(hparams)}))
    assert config_from_dict(actor_critic.Config, saved["c"]) == config
    assert hparams_to_dict(hparams_from_dict(actor_critic.Hparams, saved["h"])) == saved["h"]


# --------------------------------------------------------------------------- --help from the declarations

@pytest.mark.parametrize("name", ALGOS)
def test_help_shows_each_declared_help_and_range(name, capsys):
    algo = algorithms.get(name)
    docs = {d.name: d for d in field_docs.describe_algorithm(algo)}
    declared = {**settings_of(algo.Config), **settings_of(algo.Hparams)}
    assert set(docs) == set(declared) - {"env_overrides"}
    with pytest.raises(SystemExit):
        cli.main(["train", name, "--help"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    for field, doc in docs.items():
        assert (doc.help, doc.allowed) == (declared[field].help, declared[field].allowed)
        assert doc.help in lines[field] and f"[{doc.allowed}]" in lines[field], lines[field]
    if name == "trpo":
        assert docs["max_kl"].allowed == "a finite number in (0, ∞)"
        assert docs["cg_damping"].allowed == "a finite number in [0, ∞)"
        assert docs["gae_lambda"].allowed == "a finite number in [0, 1]"
        assert docs["torso"].allowed.startswith("one of ['mlp', 'cnn', 'gru', 'onehot'")


@pytest.mark.parametrize("name", sorted(algorithms.ALGORITHMS))
def test_an_algorithms_default_command_prints_no_warning_and_a_chosen_odd_budget_does(name):
    """`pgjax train ALGO` with the defaults must not warn (its total_steps rounds down to whole
    updates quietly, as its help says); a total_steps the user chose that is not a multiple of
    num_envs*rollout_length still warns, naming the steps that will run."""
    import warnings

    from pgjax.run import runner
    algo = algorithms.get(name)
    config = algo.Config()
    with warnings.catch_warnings(record=True) as default_run:
        warnings.simplefilter("always")
        runner.warn_unusual(config, [algo.Hparams()])
    assert [str(w.message) for w in default_run] == []
    odd = dataclasses.replace(config, total_steps=config.steps_per_update * 10 + 1)
    with warnings.catch_warnings(record=True) as chosen:
        warnings.simplefilter("always")
        runner.warn_unusual(odd, [algo.Hparams()])
    messages = [str(w.message) for w in chosen]
    assert len(messages) == 1 and "is not a multiple" in messages[0]
    # 10 whole updates run: the message names them, computed here by hand
    assert f"trains 10 updates = {config.steps_per_update * 10} env steps" in messages[0]
