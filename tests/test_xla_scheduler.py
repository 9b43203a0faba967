"""XLA:CPU scheduler choice (pgjax/_xla_cpu/scheduler.py).

jaxlib 0.10's batched LAPACK kernels (a QR under ``jax.vmap``) block intra-op pool threads; under
XLA:CPU's concurrency-optimised scheduler (jaxlib's default) several of them can run at once and
deadlock the pool. pgjax's programs hold no LAPACK call (a pure-JAX orthogonal initialiser), so
importing pgjax leaves the process's XLA settings alone; ``_xla_cpu.compile`` gives a program that
does hold one the memory-optimised scheduler."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from pgjax import _xla_cpu


def test_safety_check_rejects_batched_lapack_and_accepts_plain_programs():
    batched_qr = jax.jit(jax.vmap(lambda x: jnp.linalg.qr(x)[0])).lower(jnp.ones((3, 8, 4)))
    single_qr = jax.jit(lambda x: jnp.linalg.qr(x)[0]).lower(jnp.ones((8, 4)))
    one_seed_qr = jax.jit(jax.vmap(lambda x: jnp.linalg.qr(x)[0])).lower(jnp.ones((1, 8, 4)))
    batched_eigh = jax.jit(lambda x: jnp.linalg.eigh(x)[0]).lower(jnp.ones((2, 8, 8)))
    plain = jax.jit(lambda x: jnp.tanh(x @ x).sum()).lower(jnp.ones((8, 8)))
    callback = jax.jit(lambda x: jax.pure_callback(lambda a: a, x, x)).lower(jnp.ones(3))
    assert not _xla_cpu.concurrency_scheduler_safe(batched_qr.as_text())
    assert not _xla_cpu.concurrency_scheduler_safe(batched_eigh.as_text())
    assert not _xla_cpu.concurrency_scheduler_safe(callback.as_text())
    assert _xla_cpu.concurrency_scheduler_safe(single_qr.as_text())
    assert _xla_cpu.concurrency_scheduler_safe(one_seed_qr.as_text())
    assert _xla_cpu.concurrency_scheduler_safe(plain.as_text())


def test_pgjax_programs_hold_no_blocking_custom_call():
    """On the real programs (PPO, normalised observations, 3 seeds): the vmapped init (flax's
    orthogonal initialiser would put a batched QR there) and the update chunk are both safe under
    jaxlib's default concurrent scheduler. (Lowering only: the hang itself is timing-dependent.)"""
    from pgjax import algorithms
    from pgjax import pure_train as train
    from pgjax.config import hparams_as_arrays
    algo = algorithms.get("ppo")
    config = algo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=4 * 16 * 4,
                         epochs=2, minibatches=2, normalize_obs=True)
    seeds = 3
    hp = jax.tree.map(lambda *xs: jnp.stack(xs), *[hparams_as_arrays(algo.Hparams())] * seeds)
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32))
    init = jax.jit(jax.vmap(lambda k, h: algo.init(config, h, k)))
    assert _xla_cpu.concurrency_scheduler_safe(init.lower(keys, hp).as_text())
    state = jax.eval_shape(init, keys, hp)
    chunk = jax.jit(jax.vmap(lambda s: train.scan_updates(config, s, 2))).lower(state)
    assert _xla_cpu.concurrency_scheduler_safe(chunk.as_text())


def test_an_unsafe_program_compiles_with_the_memory_scheduler_and_runs():
    batched_qr = jax.jit(jax.vmap(lambda x: jnp.linalg.qr(x)[0])).lower(jnp.ones((3, 8, 4)))
    q = _xla_cpu.compile(batched_qr)(jnp.eye(8, 4)[None].repeat(3, 0))
    assert q.shape == (3, 8, 4)


def test_importing_pgjax_changes_no_process_setting():
    """Importing the package or its math layer leaves XLA_FLAGS (and so the user's own programs)
    alone."""
    code = ("import os; before = os.environ.get('XLA_FLAGS'); import pgjax, pgjax.losses, "
            "pgjax.estimators, pgjax.distributions; print(os.environ.get('XLA_FLAGS') == before)")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"


def test_orthogonal_initialiser_is_flaxs_matrix_without_lapack():
    """pgjax._xla_cpu.initialisers.orthogonal draws the same matrix as flax's QR-based initialiser from the same
    key (Gram–Schmidt gives the QR factor with R's diagonal positive, flax's sign convention),
    to float32 round-off, for tall, wide and convolution kernels."""
    import flax.linen as nn
    import numpy as np
    from pgjax._xla_cpu.initialisers import orthogonal
    for shape in [(4, 64), (64, 64), (64, 2), (2, 8), (3, 3, 4, 16)]:
        key = jax.random.key(sum(shape))
        ours = orthogonal(1.5)(key, shape)
        np.testing.assert_allclose(ours, nn.initializers.orthogonal(1.5)(key, shape), atol=2e-5)
        flat = np.asarray(ours).reshape(-1, shape[-1]) / 1.5
        gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
        np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-5)
