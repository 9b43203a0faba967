"""Policies as artifacts (pgjax.policy): a loaded policy, stepped through the evaluation's own
episodes (same keys, raw observations), earns the returns `pgjax eval` reports: for a categorical
PPO policy, a Gaussian one with observation normalisation, and a GRU policy; the exported program
runs in a Python that has jax and no pgjax or flax, and acts as the loaded policy does."""

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

import pgjax
from pgjax import cli
from pgjax.algorithms import setup
from pgjax.config import ConfigError
from pgjax.run import runner, spec as run_spec
from pgjax.run.evaluation import eval_key, max_episode_steps

EPISODES = 4
OPTIONS = {"eval_episodes": 3, "num_evals": 1, "cache_episodes": 0, "tensorboard": False,
           "plots": False}
RUNS = {
    "categorical": ("CartPole-v1", []),
    "gaussian, normalised observations": ("Pendulum-v1", ["normalize_obs=true"]),
    "gru": ("CartPole-v1", ["torso=gru", "minibatches=2"]),
}


def _train(tmp_path_factory, env, extra, seeds=2):
    run_dir = tmp_path_factory.mktemp("policy") / "run"
    spec = run_spec.fresh(algorithm="ppo", env=env, total_steps=4 * 64, seed_count=seeds,
                          assignments=["num_envs=4", "rollout_length=16", "epochs=1",
                                       "hidden_sizes=16", *extra], given_options=OPTIONS)
    runner.run_spec(spec, run_dir, out=io.StringIO())
    return run_dir


@pytest.fixture(scope="module", params=list(RUNS))
def trained(request, tmp_path_factory):
    env, extra = RUNS[request.param]
    return _train(tmp_path_factory, env, extra)


def stepped_returns(policy, config, episodes: int, greedy: bool = True) -> np.ndarray:
    """Each evaluation episode's return, stepping the environments on the host with the policy
    acting on raw observations: the keys of pgjax.run.evaluation.evaluate (fixed evaluation key,
    reset key, one action key and one environment key per step), its environment stack without
    the observation-normalising wrapper (the policy normalises)."""
    raw = dataclasses.replace(config, normalize_obs=False)
    venv, env_params = setup.make_env(raw, episodes, frozen_obs_stats=True, training=False,
                                       keep_final_state=True)
    reset_key, run_key = jax.random.split(eval_key())
    obs, state = venv.reset(reset_key, env_params)
    step = jax.jit(venv.step)
    memory = policy.initial_memory(episodes)
    active, returns = np.ones(episodes, bool), np.zeros(episodes)
    for step_key in jax.random.split(run_key, max_episode_steps(config)):
        act_key, env_key = jax.random.split(step_key)
        out = policy.act(obs, key=None if greedy else act_key, memory=memory)
        action, memory = out if policy.recurrent else (out, None)
        obs, state, reward, terminated, truncated, _ = step(env_key, state, action, env_params)
        returns += np.where(active, np.asarray(reward), 0.0)
        active &= ~(np.asarray(terminated) | np.asarray(truncated))
        if not active.any():
            break
    return returns


def test_a_loaded_policy_earns_the_returns_pgjax_eval_reports(trained):
    spec = run_spec.load(trained)
    _, rows = runner.reevaluation(trained, spec.algo, spec.config, spec.settings, spec.seeds,
                                  episodes=EPISODES)
    for seed in spec.seeds:
        policy = pgjax.load_policy(trained, seed=seed)
        assert policy.info["seed"] == seed
        mine = stepped_returns(policy, spec.config, EPISODES)
        reported = next(r for r in rows if r["seed"] == seed)["eval_return_mean"]
        # the policy's network runs unbatched over members here and member-vmapped in pgjax eval:
        # a discrete argmax is the same; a Gaussian mean may differ in its last bits, which a
        # clipped Pendulum episode of 200 steps carries into the return at ~1e-5 relative
        assert mine.mean() == pytest.approx(reported, rel=1e-5, abs=1e-4)


def test_a_sampled_action_follows_the_key(trained):
    policy = pgjax.load_policy(trained, seed=0)
    obs = np.zeros((3, *policy.observation_shape), np.float32)
    memory = policy.initial_memory(3)
    act = lambda key: np.asarray(policy.act(obs, key=key, memory=memory)[0] if policy.recurrent
                                 else policy.act(obs, key=key))
    np.testing.assert_array_equal(act(jax.random.key(1)), act(jax.random.key(1)))
    draws = np.stack([act(jax.random.key(k)) for k in range(8)])
    assert np.unique(draws.reshape(8, -1), axis=0).shape[0] > 1  # keys change the samples


def test_one_observation_or_a_batch(trained):
    policy = pgjax.load_policy(trained, seed=1)
    batch = np.asarray(jax.random.normal(jax.random.key(0), (5, *policy.observation_shape)))
    memory = policy.initial_memory(5)
    together = policy.act(batch, memory=memory)
    if policy.recurrent:
        with pytest.raises(ConfigError, match="memory=None is not allowed"):
            policy.act(batch)
        return
    alone = np.stack([np.asarray(policy.act(o)) for o in batch])
    np.testing.assert_allclose(alone, np.asarray(together), rtol=1e-6, atol=1e-6)


def test_a_run_of_several_members_needs_a_choice(trained):
    with pytest.raises(ConfigError, match="choose 2 members"):
        pgjax.load_policy(trained)


# --------------------------------------------------------------------------- export

JAX_ONLY = ["jax", "jaxlib", "numpy", "ml_dtypes", "opt_einsum", "scipy", "flatbuffers"]  # pip install jax flatbuffers


def _jax_only_path(tmp_path: Path) -> Path:
    """A folder holding only jax and what jax imports (links to this environment's installs): a
    Python run with ``-S -I`` and this as its only path cannot import pgjax, flax or chex."""
    import importlib.util
    root = tmp_path / "site"
    root.mkdir()
    for name in JAX_ONLY:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        package = Path(spec.origin).parent
        (root / name).symlink_to(package)
        for libs in package.parent.glob(f"{name}.libs"):
            (root / libs.name).symlink_to(libs)
    return root


CALL = """
import json, sys
import numpy as np
import jax
for absent in ("pgjax", "flax", "chex", "gymnax"):
    try:
        __import__(absent)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{absent} is importable: not a jax-only environment")
out = sys.argv[1]
info = json.load(open(f"{out}/policy.json"))
act = jax.export.deserialize(open(f"{out}/" + info["files"]["greedy"], "rb").read())
obs = np.load(f"{out}/obs.npy")
np.save(f"{out}/actions.npy", np.asarray(act.call(obs)))
sampled = jax.export.deserialize(open(f"{out}/" + info["files"]["sampled"], "rb").read())
key = jax.random.key_data(jax.random.key(7))
np.save(f"{out}/sampled.npy", np.asarray(sampled.call(key, obs)))
"""


def test_an_exported_policy_runs_with_jax_alone_and_acts_as_loaded(tmp_path_factory, tmp_path):
    run_dir = _train(tmp_path_factory, "Pendulum-v1", ["normalize_obs=true"])
    out = tmp_path / "exported"
    assert cli.main(["export", str(run_dir), str(out), "--seed", "1"]) == 0
    policy = pgjax.load_policy(run_dir, seed=1)
    info = json.loads((out / "policy.json").read_text())
    assert info["observation_shape"] == [3] and info["action_shape"] == [1]
    obs = np.asarray(jax.random.normal(jax.random.key(3), (6, 3)) * 3.0, np.float32)
    np.save(out / "obs.npy", obs)
    site = _jax_only_path(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-S", "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r});"
                           + CALL, str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(out / "actions.npy"), np.asarray(policy.act(obs)), rtol=1e-5, atol=1e-6)
    sampled = np.asarray(policy.act(obs, key=jax.random.key(7)))
    np.testing.assert_allclose(np.load(out / "sampled.npy"), sampled, rtol=1e-5, atol=1e-6)
