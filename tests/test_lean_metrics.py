"""``lean_metrics`` (benchmark mode): the per-update metrics cut to
:data:`pgjax.algorithms.LEAN_METRICS` and the losses. A lean run must train exactly as the full
run does, report the kept metrics with the same values, keep every metric the runner watches for
divergence, and reach the runner's log. The lean and the full run are two programs, which XLA
may round differently (by program and by processor), hence the normwise bound below rather than
bit-for-bit equality (tests/float_compare.py)."""

from __future__ import annotations

import dataclasses
import io
import json

import jax
import pytest

import pgjax
from pgjax import algorithms
from pgjax.algorithms import impala, ppo
from pgjax.config import ConfigError, apply_overrides
from pgjax.run import runner

from float_compare import FEW_ADAM_UPDATES, assert_trees_close

TINY = dict(env_id="CartPole-v1", num_envs=2, rollout_length=8, total_steps=48, hidden_sizes=(8,))


@pytest.mark.parametrize("config", [ppo.Config(epochs=2, minibatches=2, **TINY), impala.Config(**TINY)],
                         ids=["ppo", "impala"])
def test_lean_run_trains_as_the_full_run_and_keeps_its_values(config):
    algo = algorithms.for_config(config)
    lean = dataclasses.replace(config, lean_metrics=True)
    full_state, full = jax.jit(pgjax.make_train(config))(jax.random.key(3), algo.Hparams())
    lean_state, kept = jax.jit(pgjax.make_train(lean))(jax.random.key(3), algo.Hparams())

    # two programs, three updates (PPO: 12 Adam steps) apart: normwise at FEW_ADAM_UPDATES
    # (float_compare.py; measured at most ~7e-6); a lean run that trained otherwise (a term
    # dropped from the loss, say) would be 1e-2 or more away
    assert_trees_close(lean_state.params, full_state.params, FEW_ADAM_UPDATES, "params")
    assert set(kept) == {name for name in full if algorithms.is_lean_metric(name)}
    assert {"episode_return", "entropy", "grad_norm", "total_loss"} <= set(kept)
    assert {"value_max", "td_error_mean", "explained_variance"} <= set(full) - set(kept)
    assert {name for name in full if algorithms.is_watched(name)} <= set(kept)  # divergence checks
    assert_trees_close(kept, {name: full[name] for name in kept}, FEW_ADAM_UPDATES, "metrics")


def test_lean_metrics_reach_the_runners_log(tmp_path):
    config, hparams = apply_overrides(ppo.Config(), ppo.Hparams(), [
        "num_envs=2", "hidden_sizes=8", "rollout_length=8", "total_steps=32", "epochs=1",
        "minibatches=2", "lean_metrics=true"])
    options = runner.RunOptions(eval_episodes=2, cache_episodes=1, num_evals=1, chunk_updates=2,
                                checkpoint_every=None, tensorboard=False, plots=False,
                                log_every_seconds=0)
    done = runner.run("ppo", config, hparams, [0, 1], tmp_path / "run", options=options,
                      out=io.StringIO())
    assert done.status == runner.COMPLETED, done.message
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * config.num_updates
    host = {"algorithm", "member", "seed", "update", "env_steps", "fps"}
    for row in rows:
        assert all(algorithms.is_lean_metric(name) for name in set(row) - host), row
        assert {"episode_return", "entropy", "grad_norm", "policy_loss", "value_loss"} <= set(row)


def test_lean_metrics_must_be_a_boolean():
    with pytest.raises(ConfigError, match="lean_metrics.*true or false"):
        ppo.Config(lean_metrics="yes")
