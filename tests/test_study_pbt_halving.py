"""pgjax.study.pbt and pgjax.study.halving against plain NumPy references written another way."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax.config import ConfigError
from pgjax.study import halving, pbt


# --------------------------------------------------------------------------- successive halving

def _survivors_reference(scores, eta):
    """Sort by (score descending, index ascending) with a Python sort; NaN counts as -inf."""
    keyed = sorted(range(len(scores)), key=lambda i: (-(scores[i] if math.isfinite(scores[i]) else -math.inf), i))
    return sorted(keyed[: -(-len(scores) // eta)])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("eta", [2, 3, 4])
def test_halving_keeps_the_top_fraction_like_a_plain_sort(seed, eta):
    rng = np.random.default_rng(seed)
    scores = rng.choice([0.0, 1.0, 2.0, 3.5, np.nan], size=11).tolist()  # ties and NaNs on purpose
    assert halving.survivors(scores, eta).tolist() == _survivors_reference(scores, eta)


def test_rung_schedule_is_geometric_and_ends_at_the_budget():
    assert halving.rung_updates(81, 27, 3) == [3, 9, 27, 81]  # 27 → 9 → 3 → 1 settings: 4 rungs
    assert halving.rung_updates(100, 8, 2) == [12, 25, 50, 100]
    assert halving.rung_updates(100, 8, 2, num_rungs=2) == [50, 100]
    with pytest.raises(ConfigError, match="prune_eta=1"):
        halving.rung_updates(100, 8, 1)
    with pytest.raises(ConfigError, match="cannot be split into 6 rungs"):
        halving.rung_updates(8, 9, 3, num_rungs=6)


def test_steps_saved_counts_each_rung_once():
    # 9 settings, 2 seeds, η=3: rungs end at 1, 3, 9 updates of 10 steps with 9, 3, 1 settings
    ran, full = halving.steps_saved([1, 3, 9], [9, 3, 1], 10, 2)
    assert ran == (9 * 1 + 3 * 2 + 1 * 6) * 2 * 10 and full == 9 * 9 * 2 * 10


# --------------------------------------------------------------------------- PBT

def test_ranking_puts_non_finite_last_and_breaks_ties_by_index():
    assert pbt.ranking([1.0, np.nan, 3.0, 1.0, -np.inf, 3.0]).tolist() == [2, 5, 0, 3, 1, 4]


def test_exploit_replaces_exactly_the_bottom_by_members_of_the_top():
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, np.nan, 2.0, 8.0])
    sources = pbt.exploit_sources(scores, 0.25, pbt.round_generator(0, 0))
    # quantile 0.25 of 8 members: bottom {5 (NaN), 1 (score 1)}, top {2 (9), 7 (8)}
    changed = {i for i in range(8) if sources[i] != i}
    assert changed == {5, 1}
    assert set(sources[[1, 5]].tolist()) <= {2, 7}
    again = pbt.exploit_sources(scores, 0.25, pbt.round_generator(0, 0))
    assert sources.tolist() == again.tolist()


def test_explore_stays_in_range_and_touches_only_replaced_members():
    rng = pbt.round_generator(3, 1)
    values = {"learning_rate": np.full(1000, 9e-3), "clip_eps": np.full(1000, 0.2)}
    replaced = np.arange(1000) % 2 == 0
    bounds = {"learning_rate": pbt.Bounds(1e-4, 1e-2, log=True), "clip_eps": pbt.Bounds(0.05, 0.3)}
    out = pbt.explore(values, replaced, bounds, rng, resample_probability=0.25)
    for name, bound in bounds.items():
        assert np.all(out[name] >= bound.low) and np.all(out[name] <= bound.high)
        np.testing.assert_array_equal(out[name][~replaced], values[name][~replaced])
    # perturbed members sit at 0.8x or 1.2x (clipped: 9e-3 * 1.2 > 1e-2), resampled ones anywhere
    lr = out["learning_rate"][replaced]
    perturbed = np.isclose(lr, 9e-3 * 0.8) | np.isclose(lr, 1e-2)
    assert 0.65 < perturbed.mean() < 0.85  # 1 - 0.25 resampled, 500 draws: ±0.06 at 3 s.e.


def test_copy_members_gathers_learner_state_and_keeps_each_members_experience():
    from pgjax.algorithms.train_state import TrainState
    from pgjax.envs.wrappers import NormalizeObsState, RunningMeanStd, obs_stats_of, with_obs_stats
    m = 4
    stats = RunningMeanStd(mean=jnp.arange(m, dtype=jnp.float32)[:, None] * jnp.ones((m, 3)),
                           var=jnp.ones((m, 3)), count=jnp.arange(m, dtype=jnp.float32))
    env_state = NormalizeObsState(env_state=jnp.arange(m) * 10, obs_stats=stats, raw_obs=jnp.zeros((m, 3)))
    states = TrainState(params={"w": jnp.arange(m, dtype=jnp.float32) * 100},
                        opt_state=(jnp.arange(m) + 1,), env_state=env_state,
                        obs=jnp.arange(m, dtype=jnp.float32), key=jnp.arange(m, dtype=jnp.uint32),
                        hparams={"learning_rate": jnp.arange(m, dtype=jnp.float32) / 10},
                        update_step=jnp.zeros(m, jnp.int32), extra={"b": jnp.arange(m) * 7})
    sources = jnp.array([0, 3, 2, 3])
    out = pbt.copy_members(states, sources, (obs_stats_of, with_obs_stats))
    np.testing.assert_array_equal(out.params["w"], np.array([0, 300, 200, 300], np.float32))
    np.testing.assert_array_equal(out.opt_state[0], [1, 4, 3, 4])
    np.testing.assert_array_equal(out.hparams["learning_rate"], np.array([0, 3, 2, 3], np.float32) / 10)
    np.testing.assert_array_equal(out.extra["b"], [0, 21, 14, 21])
    np.testing.assert_array_equal(out.env_state.obs_stats.count, [0, 3, 2, 3])
    # experience stays: env state below the wrapper, observations, keys
    np.testing.assert_array_equal(out.env_state.env_state, [0, 10, 20, 30])
    np.testing.assert_array_equal(out.obs, [0, 1, 2, 3])
    np.testing.assert_array_equal(out.key, [0, 1, 2, 3])
    assert jax.tree.structure(out) == jax.tree.structure(states)


def test_lineage_rows_name_parent_and_values():
    rows = pbt.lineage_rows(2, 40, np.array([0, 0]), np.array([3.0, np.nan]),
                            {"learning_rate": np.array([1e-3, 2e-3])},
                            {"learning_rate": np.array([1e-3, 8e-4])})
    assert rows[1] == {"round": 2, "update": 40, "member": 1, "parent": 0, "copied": True,
                       "score": None, "hp_learning_rate": 8e-4, "before_learning_rate": 2e-3}
