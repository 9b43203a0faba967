"""XLA:CPU scheduler choice (pgjax/__init__.py).

jaxlib 0.10's batched LAPACK kernels (the QR of the orthogonal initialiser under ``jax.vmap``
over seeds) block intra-op pool threads; under XLA:CPU's concurrency-optimised scheduler several
of them can run at once and deadlock the pool. pgjax keeps that scheduler off process-wide and
turns it on per program only where no such call exists (the runner's update chunks)."""

import jax
import jax.numpy as jnp

import pgjax


def test_safety_check_rejects_batched_lapack_and_accepts_plain_programs():
    batched_qr = jax.jit(jax.vmap(lambda x: jnp.linalg.qr(x)[0])).lower(jnp.ones((3, 8, 4)))
    single_qr = jax.jit(lambda x: jnp.linalg.qr(x)[0]).lower(jnp.ones((8, 4)))
    one_seed_qr = jax.jit(jax.vmap(lambda x: jnp.linalg.qr(x)[0])).lower(jnp.ones((1, 8, 4)))
    batched_eigh = jax.jit(lambda x: jnp.linalg.eigh(x)[0]).lower(jnp.ones((2, 8, 8)))
    plain = jax.jit(lambda x: jnp.tanh(x @ x).sum()).lower(jnp.ones((8, 8)))
    callback = jax.jit(lambda x: jax.pure_callback(lambda a: a, x, x)).lower(jnp.ones(3))
    assert not pgjax.concurrency_scheduler_safe(batched_qr.as_text())
    assert not pgjax.concurrency_scheduler_safe(batched_eigh.as_text())
    assert not pgjax.concurrency_scheduler_safe(callback.as_text())
    assert pgjax.concurrency_scheduler_safe(single_qr.as_text())
    assert pgjax.concurrency_scheduler_safe(one_seed_qr.as_text())
    assert pgjax.concurrency_scheduler_safe(plain.as_text())


# The runner's path: a 3-seed train state from its own jit (batched QR inside: must not get the
# concurrency scheduler) and AOT-compiled update chunks (must get it), run several times. Before
# the diagnosis this hung with some probability per run when the scheduler was on everywhere.
def test_runner_programs_are_classified_as_the_fix_needs():
    """On the real programs (PPO, normalised observations, 3 seeds): the vmapped init holds a
    batched QR and keeps the safe scheduler; the runner's update chunk holds no blocking custom
    call and gets the faster one. (Lowering only: the hang itself is timing-dependent.)"""
    from pgjax import algorithms, train
    from pgjax.config import hparams_as_arrays
    algo = algorithms.get("ppo")
    config = algo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=4 * 16 * 4,
                         epochs=2, minibatches=2, normalize_obs=True)
    seeds = 3
    hp = jax.tree.map(lambda *xs: jnp.stack(xs), *[hparams_as_arrays(algo.Hparams())] * seeds)
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32))
    init = jax.jit(jax.vmap(lambda k, h: algo.init(config, h, k)))
    assert not pgjax.concurrency_scheduler_safe(init.lower(keys, hp).as_text())
    state = jax.eval_shape(init, keys, hp)
    chunk = jax.jit(jax.vmap(lambda s: train.scan_updates(config, s, 2))).lower(state)
    assert pgjax.concurrency_scheduler_safe(chunk.as_text())
