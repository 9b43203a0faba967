"""examples/ppo_from_parts.py — PPO from pgjax's maths with its own network, optimiser and rollout
(the tutorial docs/tutorials/ppo-from-parts.md shows this file) — must still *learn*, not only run.

A tiny budget (16 updates, 8192 CartPole steps, a larger learning rate) takes the greedy
evaluation return from 10–50 (untrained networks, seeds 0–2) to 420–480 (seeds 0–3),
and the training return from ~22 (a random policy) to 165–245 (mean of the last 3 updates). The
thresholds (greedy > 250, training > 100) catch a flipped policy-loss sign (greedy 9) and a
rollout that stores the next observation in place of the one the action was taken in (greedy
220, training 50). They do not catch advantages that ignore the critic (CartPole learns from
Monte-Carlo returns too, greedy 318): the estimators have their own tests.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "ppo_from_parts.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("ppo_from_parts", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_ppo_from_parts_learns_cartpole_on_a_tiny_budget(example):
    config = example.Config(total_steps=8192, learning_rate=2.5e-3)
    assert config.num_updates == 16
    eval_return, metrics, _ = example.run(config, seed=0)
    train_returns = metrics["episode_return"]
    assert eval_return > 250.0, (eval_return, train_returns)
    assert train_returns[-3:].mean() > 100.0, train_returns  # a random policy gets ~22
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert metrics[name].shape == (16,) and all(math.isfinite(x) for x in metrics[name]), name
    assert metrics["entropy"][-1] < metrics["entropy"][0] <= math.log(2) + 1e-6  # the policy sharpens
