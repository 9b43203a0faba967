"""Every algorithm and variant runs through the real runner: a couple of updates with
checkpointing on, stopped after the first chunk as Ctrl-C would, then resumed to the end.

Tiny networks and budgets: the point is that no path crashes, that every update of every member is
logged once, that the metrics the design promises are there and finite where they must be, and
that a resumed run ends bit-identical to the same run uninterrupted (checked for the first case of
each algorithm, the others share its code path). Learning is checked elsewhere."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax import algorithms
from pgjax.envs import suites, xminigrid_adapter
from pgjax.run import runner
from pgjax.run.checkpoints import to_savable
from pgjax.config import apply_overrides

ALWAYS_FINITE = ("entropy", "policy_loss", "value_loss", "total_loss", "grad_norm", "value_max",
                 "td_error_mean", "learning_rate")
COMMON = {*ALWAYS_FINITE, "episode_return", "explained_variance", "env_steps", "fps",
          "reward_per_step"}

TINY = ["num_envs=2", "hidden_sizes=8", "total_steps={steps}"]
# (algorithm, env, rollout_length, extra --set assignments)
PATHS = [
    ("ppo", "CartPole-v1", 8, ["epochs=1", "minibatches=2"]),
    ("ppo", "Pendulum-v1", 8, ["epochs=1", "minibatches=2", "normalize_obs=true",
                               "normalize_reward=true", "shared_torso=true"]),
    ("ppo", "CartPole-v1", 8, ["epochs=1", "minibatches=2", "log_grad_variance=true", "shuffle=hash"]),
    ("ppo", "Breakout-MinAtar", 4, ["epochs=1", "minibatches=1", "torso=cnn"]),
    ("ppo", "CartPoleNoVelocity-v1", 8, ["epochs=1", "minibatches=2", "torso=gru"]),
    ("ppo-kl", "CartPole-v1", 8, ["epochs=1", "minibatches=2"]),
    ("reinforce", "CartPole-v1", 8, ["baseline=none"]),
    ("reinforce", "MemoryChain-bsuite", 8, ["baseline=learned", "torso=gru"]),
    ("reinforce", "CartPole-v1", 8, ["baseline=running_average"]),
    ("reinforce", "Pendulum-v1", 8, ["baseline=learned"]),
    ("reinforce", "ShortCorridor-v0", 8, ["baseline=none", "torso=onehot",
                                          "feature_args=num_states:1", "loss_reduction=sum"]),
    ("actor-critic", "CartPole-v1", 4, ["variant=q"]),
    ("actor-critic", "CartPole-v1", 4, ["variant=advantage", "advantage_estimator=q_minus_v"]),
    ("actor-critic", "CartPole-v1", 4, ["variant=advantage", "advantage_estimator=n_step"]),
    ("actor-critic", "CartPole-v1", 4, ["variant=advantage", "advantage_estimator=gae"]),
    ("actor-critic", "CartPole-v1", 4, ["variant=td", "torso=random_projection"]),
    ("actor-critic", "MountainCar-v0", 4, ["variant=td_lambda", "torso=tile",
                                           "feature_args=low:-1.2/-0.07,high:0.6/0.07"]),
    ("actor-critic", "Pendulum-v1", 4, ["variant=td_lambda"]),
    ("a2c", "CartPole-v1", 4, []),
    ("a2c", "Pendulum-v1", 4, ["advantage_estimator=gae", "gae_lambda=0.9"]),
    ("a2c", "Pendulum-v1", 4, ["torso=gru", "shared_torso=true", "normalize_obs=true"]),
    ("a2c", "Pendulum-v1", 4, ["gsde=true", "optimizer=rmsprop_torch", "anneal_lr=true"]),
    ("trpo", "CartPole-v1", 8, ["critic_minibatches=2", "critic_epochs=1"]),
    ("trpo", "Pendulum-v1", 8, ["critic_minibatches=2", "critic_epochs=1"]),
    ("impala", "CartPole-v1", 4, []),  # the defaults: policy lag 0, no queue
    ("impala", "CartPole-v1", 4, ["policy_lag=2", "queue_size=2", "replay_times=2"]),
    ("impala", "Pendulum-v1", 4, ["correction=none"]),
]
# the suites behind the family seam, where their extras are installed (CI installs none of them)
if xminigrid_adapter.available():
    PATHS.append(("ppo", "xminigrid:MiniGrid-Empty-5x5", 8, ["epochs=1", "minibatches=2"]))
if suites.installed("navix"):
    PATHS.append(("ppo", "navix:Navix-DoorKey-5x5-v0", 8, ["epochs=1", "minibatches=2"]))
if suites.installed("jumanji"):  # an action mask in the observation
    PATHS.append(("ppo", "jumanji:Game2048-v1", 8, ["epochs=1", "minibatches=2"]))
if suites.installed("craftax"):
    # short episodes: a Craftax world is generated at every reset, and evaluation plays whole ones
    PATHS.append(("ppo", "craftax:Craftax-Classic-Symbolic-v1", 8, ["epochs=1", "minibatches=2",
                                                                     "env.max_steps_in_episode=16"]))
UPDATES, SEEDS = 4, [0, 1]
OPTIONS = runner.RunOptions(eval_episodes=2, cache_episodes=1, num_evals=1, chunk_updates=2,
                            checkpoint_every=None, tensorboard=False, plots=False,
                            log_every_seconds=0)


def _case_id(path):
    algo, env, _, extra = path
    return "-".join([algo, env.split("-")[0], *[e.split("=")[1].split(":")[0] for e in extra]])


class _StopAfterFirstChunk(io.StringIO):
    def write(self, text):
        if text.startswith("  steps") and "stopped" not in self.__dict__:
            self.stopped = True
            signal.raise_signal(signal.SIGINT)
        return super().write(text)


def _setup(path):
    algo_name, env_id, rollout_length, extra = path
    algo = algorithms.get(algo_name)
    steps = UPDATES * 2 * rollout_length
    assignments = [a.format(steps=steps) for a in TINY] + [f"rollout_length={rollout_length}", *extra]
    if algo_name == "reinforce" and env_id != "ShortCorridor-v0":
        assignments.append(f"env.max_steps_in_episode={rollout_length}")  # episodes end in a rollout
    config, hparams = apply_overrides(algo.Config(env_id=env_id), algo.Hparams(), assignments)
    return algo_name, config, hparams


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("path", PATHS, ids=[_case_id(p) for p in PATHS])
def test_every_path_trains_checkpoints_and_resumes(path, tmp_path):
    algo_name, config, hparams = _setup(path)
    run_dir = tmp_path / "run"
    stopped = runner.run(algo_name, config, hparams, SEEDS, run_dir, options=OPTIONS,
                         out=_StopAfterFirstChunk())
    assert stopped.status == runner.INTERRUPTED, stopped.message
    done = runner.run(algo_name, config, hparams, SEEDS, run_dir, options=OPTIONS, resume=True,
                      out=io.StringIO())
    assert done.status == runner.COMPLETED and not done.diverged, done.message
    rows = _rows(run_dir / "metrics.jsonl")
    assert sorted((r["member"], r["update"]) for r in rows) == [
        (m, u) for m in range(len(SEEDS)) for u in range(1, UPDATES + 1)]
    annealed = getattr(config, "anneal_lr", False)
    for row in rows:
        assert COMMON <= set(row), COMMON - set(row)
        assert all(row[k] is not None and np.isfinite(row[k]) for k in ALWAYS_FINITE), row
        assert row["env_steps"] == row["update"] * config.steps_per_update
        assert row["algorithm"] == algo_name
        if not annealed:  # the learning rate is logged from where it lives: the optimiser state
            assert row["learning_rate"] == pytest.approx(float(hparams.learning_rate))
    assert len(_rows(run_dir / "eval.jsonl")) == len(SEEDS)
    assert np.isfinite(done.eval_returns).all()
    # first case of each algorithm, the recurrent ones (their memory is state too) and each suite
    # (its own state inside ours)
    if path is next(p for p in PATHS if p[0] == path[0]) or "torso=gru" in path[3] or ":" in path[1]:
        straight = runner.run(algo_name, config, hparams, SEEDS, tmp_path / "straight",
                              options=OPTIONS, out=io.StringIO())
        for x, y in zip(jax.tree.leaves(to_savable(done.final_state)),
                        jax.tree.leaves(to_savable(straight.final_state)), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
