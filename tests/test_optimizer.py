"""The optimiser and the learning rate: step sizes live only in the hyperparameters (one place),
the actor and the critic take their own step sizes, annealing follows lr_0·(1 − k/K), and
``make_train``'s hooks change or watch a run without copying its loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pgjax
from pgjax.algorithms import optimiser, reinforce
from pgjax.config import hparams_as_arrays

from float_compare import assert_trees_close

CONFIG = reinforce.Config(baseline="learned", optimizer="sgd", num_envs=2, rollout_length=64,
                          total_steps=6 * 128, hidden_sizes=(8,))
HPARAMS = reinforce.Hparams(learning_rate=0.1, critic_learning_rate=0.003, max_grad_norm=1e6)


@pytest.fixture(scope="module")
def plain_run():
    """A plain ``make_train`` run of CONFIG (constant step size), key 1: metrics per update."""
    return jax.jit(pgjax.make_train(CONFIG))(jax.random.key(1), HPARAMS)[1]


def test_optimizer_state_holds_no_step_size():
    state = reinforce.init(CONFIG, hparams_as_arrays(HPARAMS), jax.random.key(0))
    leaves = [np.asarray(x) for x in jax.tree.leaves(state.opt_state)]
    assert all(leaf.size != 1 or float(leaf) not in (0.1, np.float32(0.003)) for leaf in leaves)
    assert not hasattr(state.opt_state, "hyperparams")


def test_actor_and_critic_take_their_own_step_sizes():
    """One SGD step moves each actor leaf by −α^θ·g and each critic leaf by −α^w·g (the clip norm
    is far above the gradient's), compared leaf by leaf with the labels of ``critic_labels``."""
    state = reinforce.init(CONFIG, hparams_as_arrays(HPARAMS), jax.random.key(0))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), state.params)
    params, _, norm = optimiser.apply_gradients(CONFIG, state, grads)
    labels = optimiser.critic_labels(state.params)
    for old, new, label in zip(jax.tree.leaves(state.params), jax.tree.leaves(params),
                               jax.tree.leaves(labels)):
        step = 0.003 if label == "critic" else 0.1
        np.testing.assert_allclose(np.asarray(new), np.asarray(old) - step * 0.5, rtol=1e-6, atol=1e-7)
    assert set(jax.tree.leaves(labels)) == {"actor", "critic"}
    np.testing.assert_allclose(float(norm), 0.5 * np.sqrt(sum(x.size for x in jax.tree.leaves(grads))),
                               rtol=1e-6)


def test_anneal_lr_follows_the_linear_schedule_and_changes_training(plain_run):
    annealed = CONFIG.__class__(**{**CONFIG.__dict__, "anneal_lr": True})
    _, m_annealed = jax.jit(pgjax.make_train(annealed))(jax.random.key(1), HPARAMS)
    m_constant = plain_run
    k, total = np.arange(annealed.num_updates), annealed.num_updates
    np.testing.assert_allclose(np.asarray(m_annealed["learning_rate"]), 0.1 * (1 - k / total), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(m_constant["learning_rate"]), 0.1, rtol=1e-6)
    # the first update uses lr_0 in both, so the losses of updates 0 and 1 agree (two programs, one
    # update apart: to rounding, relative to the larger loss); the annealed run's later steps are
    # smaller
    assert_trees_close(m_annealed["policy_loss"][:2], m_constant["policy_loss"][:2], 1e-5)
    assert not np.allclose(m_annealed["policy_loss"][2:], m_constant["policy_loss"][2:])


def test_make_train_hooks_start_and_record(plain_run):
    """``record`` sees each update's metrics (the same as a plain run's); ``start`` changes the
    initial state: a zeroed policy head is uniform, so the first rollout's entropy is log 2."""
    plain = plain_run
    record = lambda state, metrics: (metrics["entropy"], state.update_step)
    _, (entropy, steps) = jax.jit(pgjax.make_train(CONFIG, record=record))(jax.random.key(1), HPARAMS)
    # a hook that returns less is another program, rounded its own way: six SGD updates later the
    # entropies agree to ~1e-6 (measured with --xla_cpu_max_isa=AVX2 and SSE4_2 too); a hook that
    # saw another update's metrics would be off by ~1e-2
    assert_trees_close(np.asarray(entropy), np.asarray(plain["entropy"]), 1e-4)
    np.testing.assert_array_equal(np.asarray(steps), np.arange(1, CONFIG.num_updates + 1))

    def uniform_start(state):
        p = state.params["params"]
        head = jax.tree.map(jnp.zeros_like, p["policy_head"])
        return state.replace(params={"params": {**p, "policy_head": head}})

    _, started = jax.jit(pgjax.make_train(CONFIG, start=uniform_start))(jax.random.key(1), HPARAMS)
    np.testing.assert_allclose(float(started["entropy"][0]), np.log(2.0), rtol=1e-6)
    assert abs(float(plain["entropy"][0]) - np.log(2.0)) > 1e-6


def _legacy_optimizer(hparams):
    """The optimiser as pgjax built it before 2026-12-01: wrapped in optax.inject_hyperparams,
    whose state kept a copy of the step sizes and clip norm."""
    import optax

    def factory(learning_rate, max_grad_norm, critic_learning_rate):
        split = optax.multi_transform({"actor": optax.sgd(learning_rate),
                                       "critic": optax.sgd(critic_learning_rate)}, optimiser.critic_labels)
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), split)
    return optax.inject_hyperparams(factory)(
        learning_rate=hparams.learning_rate, max_grad_norm=hparams.max_grad_norm,
        critic_learning_rate=hparams.critic_learning_rate)


def test_a_checkpoint_of_the_old_optimizer_layout_restores(tmp_path):
    """A run folder saved by the previous layout (step sizes inside the optimiser state) restores:
    parameters as saved, optimiser state = the old inner state, and training goes on from it
    exactly as from the new layout."""
    from pgjax.run.checkpoints import Checkpoints
    members = jax.random.split(jax.random.key(3), 2)
    hparams = jax.tree.map(lambda x: jnp.full((2,), x, jnp.float32), hparams_as_arrays(HPARAMS))
    step = jax.jit(jax.vmap(lambda s: reinforce.update(CONFIG, s)[0]))
    states = step(jax.jit(jax.vmap(lambda k, h: reinforce.init(CONFIG, h, k)))(members, hparams))
    legacy_opt = jax.vmap(lambda p, h: _legacy_optimizer(h).init(p))(states.params, states.hparams)
    legacy_opt = legacy_opt._replace(inner_state=states.opt_state)
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(64, states.replace(opt_state=legacy_opt), {"update": 1})
    restored, meta = checkpoints.restore(jax.eval_shape(lambda: states))
    checkpoints.close()
    assert meta == {"update": 1}
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(states)):
        if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(step(restored).params)[0]),
                                  np.asarray(jax.tree.leaves(step(states).params)[0]))


@pytest.mark.parametrize("optimizer, eps_in_root", [("rmsprop", True), ("rmsprop_torch", False)])
def test_the_two_rmsprops_put_epsilon_where_they_say(optimizer, eps_in_root):
    """Two steps against NumPy: v ← 0.99·v + 0.01·g², θ ← θ − α·g/√(v + ε) (A3C) or
    θ ← θ − α·g/(√v + ε) (PyTorch), ε = 1e-5, from gradients small enough (1e-4) that the two
    differ by a factor of about 3."""
    import dataclasses
    config = dataclasses.replace(CONFIG, optimizer=optimizer)
    hparams = hparams_as_arrays(HPARAMS.replace(learning_rate=0.01, critic_learning_rate=0.01))
    state = reinforce.init(config, hparams, jax.random.key(0))
    rng = np.random.default_rng(0)
    grads_list = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 1e-4, p.dtype),
                               state.params) for _ in range(2)]
    want = jax.tree.map(lambda p: np.asarray(p, np.float64), state.params)
    v = jax.tree.map(lambda p: np.zeros(p.shape), state.params)
    for grads in grads_list:
        state_params, opt_state, _ = optimiser.apply_gradients(config, state, grads)
        state = state.replace(params=state_params, opt_state=opt_state)
        g = jax.tree.map(lambda x: np.asarray(x, np.float64), grads)
        v = jax.tree.map(lambda v, g: 0.99 * v + 0.01 * g**2, v, g)
        scale = (lambda v: np.sqrt(v + 1e-5)) if eps_in_root else (lambda v: np.sqrt(v) + 1e-5)
        want = jax.tree.map(lambda p, g, v: p - 0.01 * g / scale(v), want, g, v)
    for got, expected in zip(jax.tree.leaves(state.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=1e-5, atol=1e-8)
