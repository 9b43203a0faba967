"""XLA:CPU scheduler choice (pgjax/__init__.py).

jaxlib 0.10's batched LAPACK kernels (the QR of the orthogonal initialiser under ``jax.vmap``
over seeds) block intra-op pool threads; under XLA:CPU's concurrency-optimised scheduler several
of them can run at once and deadlock the pool. pgjax keeps that scheduler off process-wide and
turns it on per program only where no such call exists (the runner's update chunks)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp

import pgjax

ROOT = Path(__file__).resolve().parents[1]


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
_RUNNER_REPRO = textwrap.dedent("""
    import jax, jax.numpy as jnp, pgjax
    from pgjax import algorithms, runner
    from pgjax.config import hparams_as_arrays
    algo = algorithms.get("ppo")
    config = algo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=4 * 16 * 4,
                         epochs=2, minibatches=2, normalize_obs=True)
    seeds = 3
    hp = jax.tree.map(lambda *xs: jnp.stack(xs), *[hparams_as_arrays(algo.Hparams())] * seeds)
    init = jax.jit(jax.vmap(lambda k, h: algo.init(config, h, k)))
    lowered_init = init.lower(jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32)), hp)
    assert not pgjax.concurrency_scheduler_safe(lowered_init.as_text())
    state = None
    for i in range(10):
        keys = jax.vmap(jax.random.key)(jnp.arange(i * seeds, (i + 1) * seeds, dtype=jnp.uint32))
        state = jax.block_until_ready(init(keys, hp))
    chunk_lowered = jax.jit(jax.vmap(lambda s: pgjax.train.scan_updates(config, s, 2))).lower(state)
    assert pgjax.concurrency_scheduler_safe(chunk_lowered.as_text())
    chunk = runner._compile_chunk(config, state, 2)
    for _ in range(20):
        state, metrics = chunk(state)
    jax.block_until_ready(state)
    print("OK")
""")


def test_runner_path_does_not_hang():
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", _RUNNER_REPRO], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
