"""The XLA:CPU room (pgjax/_xla_cpu): each trick against its plain implementation under the
``PGJAX_PLAIN`` switch, through the interface the core calls.

Every trick promises the plain path's numbers (bit for bit, or to float round-off where it sums in
another order); the references here are the plain implementations themselves (flax's layers and
initialiser, ``jax.random.permutation``, ``module.init``), selected by the switch, and a whole
update computed both ways. A run under ``PGJAX_PLAIN=1`` goes through the real runner in a
subprocess (its vmapped initialisation then holds flax's batched QR, so it also checks that the
scheduler rule keeps such a program from deadlocking XLA:CPU's pool).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pgjax
from pgjax import _xla_cpu
from pgjax.algorithms import ppo
from pgjax.networks import ActorCritic, CNNTorso


def _with(monkeypatch, plain: str, build):
    """``build()`` with ``PGJAX_PLAIN=plain`` ("" for every trick on)."""
    monkeypatch.setenv(_xla_cpu.SWITCH, plain)
    try:
        return build()
    finally:
        monkeypatch.delenv(_xla_cpu.SWITCH)


def test_switch_names_tricks_and_refuses_unknown_names(monkeypatch):
    assert _with(monkeypatch, "", _xla_cpu.selection) == ",".join(_xla_cpu.TRICKS)
    assert _with(monkeypatch, "1", _xla_cpu.selection) == ""
    assert _with(monkeypatch, "all", _xla_cpu.selection) == ""
    assert _with(monkeypatch, "conv, permutation", _xla_cpu.selection) == \
        "matmul,orthogonal,joint_draws,init_level,gymnax_import"
    with pytest.raises(ValueError, match=r"PGJAX_PLAIN='matmul,qr' is not allowed: 'qr' is not a trick"):
        _with(monkeypatch, "matmul,qr", _xla_cpu.selection)


def test_init_level_compiles_only_the_run_once_program_at_llvm_level_1(monkeypatch):
    """What XLA is handed: level 1 for :func:`compile_once` with the trick on; nothing for
    :func:`compile`, with the trick off, or with a level in XLA_FLAGS (this suite sets level 0
    there, so its own programs keep it); the memory scheduler beside level 1 for a program that
    needs it. The runner's initialisation goes through ``compile_once``. Each program still runs."""
    asked = []
    compile_ = jax.stages.Lowered.compile
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, compiler_options=None: (
        asked.append(compiler_options), compile_(self, compiler_options=compiler_options))[1])
    x = jnp.arange(12.0).reshape(3, 4) / 7
    lowered = jax.jit(lambda a: jnp.tanh(a) @ a.T).lower(x)
    batched_qr = jax.jit(jax.vmap(lambda a: jnp.linalg.qr(a)[0])).lower(jnp.ones((3, 8, 4)))
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    expected = np.tanh(np.asarray(x)) @ np.asarray(x).T
    once = _with(monkeypatch, "", lambda: _xla_cpu.compile_once(lowered))
    np.testing.assert_allclose(once(x), expected, rtol=1e-6)
    _with(monkeypatch, "", lambda: _xla_cpu.compile(lowered))
    _with(monkeypatch, "init_level", lambda: _xla_cpu.compile_once(lowered))
    _with(monkeypatch, "", lambda: _xla_cpu.compile_once(batched_qr))
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=2")
    _with(monkeypatch, "", lambda: _xla_cpu.compile_once(lowered))
    level = {"xla_backend_optimization_level": 1}
    assert asked == [level, None, None, {**level, **_xla_cpu.scheduler.SAFE_SCHEDULER_OPTIONS}, None]

    from pgjax.run import executables, runner
    used = []
    monkeypatch.setattr(executables, "load_or_compile", lambda parts, fn, args, compile_, store: (
        used.append((parts[0], compile_)), jax.jit(fn))[1])
    keys = jax.random.split(jax.random.key(0), 2)
    hparams = jax.tree.map(lambda v: jnp.full((2,), v), ppo.Hparams())
    runner.initial_state(ppo.Config(num_envs=2, rollout_length=8), keys, hparams)
    assert used == [("init", _xla_cpu.compile_once)]


@pytest.mark.parametrize("n", [1, 7, 1000, 5000])
def test_permutation_is_jax_random_permutation_bit_for_bit(monkeypatch, n):
    keys = jax.random.split(jax.random.key(n), 4)
    draw = lambda: jax.jit(jax.vmap(lambda k: _xla_cpu.permutation(k, n)))(keys)  # noqa: E731
    np.testing.assert_array_equal(_with(monkeypatch, "", draw), _with(monkeypatch, "permutation", draw))


def test_orthogonal_is_flaxs_matrix(monkeypatch):
    for shape in [(4, 64), (64, 64), (64, 2), (3, 3, 4, 16)]:
        key = jax.random.key(sum(shape))
        draw = lambda: _xla_cpu.orthogonal(np.sqrt(2.0))(key, shape)  # noqa: E731, B023
        ours, plain = _with(monkeypatch, "", draw), _with(monkeypatch, "orthogonal", draw)
        assert not np.array_equal(ours, plain)  # two computations, not one selected twice
        np.testing.assert_allclose(ours, plain, atol=2e-5)


def _actor_critic():
    return ActorCritic(action_dim=3, discrete=True, hidden_sizes=(16, 16))


def test_joint_draws_give_module_inits_parameters(monkeypatch):
    """The random bits are the same; the floats can differ in the last place where the compiler
    vectorises the two draws differently (this suite compiles at optimisation level 0)."""
    obs = jnp.zeros((1, 5))
    init = lambda: jax.jit(lambda k: _xla_cpu.init_params(_actor_critic(), k, obs))(jax.random.key(3))  # noqa: E731
    ours, plain = _with(monkeypatch, "", init), _with(monkeypatch, "joint_draws", init)
    assert jax.tree.structure(ours) == jax.tree.structure(plain)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _value_and_grads(module, params, x):
    loss = lambda p: jnp.sum(jnp.tanh(module.apply(p, x)) ** 2)  # noqa: E731
    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("trick", ["matmul", "conv"])
def test_layers_give_the_plain_layers_values_and_gradients(monkeypatch, trick):
    """The CNN torso (a convolution, then dense layers) with one trick on and off: the same
    parameter tree (a checkpoint loads either way), the same value, gradients to round-off."""
    x = jax.random.normal(jax.random.key(0), (6, 10, 10, 4))
    params = _with(monkeypatch, "", lambda: CNNTorso(hidden_sizes=(32,)).init(jax.random.key(1), x))
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)
    run = lambda: _value_and_grads(CNNTorso(hidden_sizes=(32,)), params, x)  # noqa: E731
    (ours, ours_grad), (plain, plain_grad) = _with(monkeypatch, "", run), _with(monkeypatch, trick, run)
    np.testing.assert_allclose(ours, plain, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ours_grad), jax.tree.leaves(plain_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gymnax_import_switch_imports_the_plotting_stack(tmp_path):
    """Deferred, ``import gymnax`` leaves seaborn unimported; plain, gymnax imports it."""
    code = ("import sys; from pgjax.envs import _gymnax; _gymnax.load(); "
            "print('seaborn' in sys.modules)")
    seen = {}
    for plain in ("", "gymnax_import"):
        env = {**os.environ, _xla_cpu.SWITCH: plain}
        seen[plain] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                     text=True, check=True).stdout.strip()
    assert seen == {"": "False", "gymnax_import": "True"}


CONFIG = ppo.Config(env_id="Breakout-MinAtar", num_envs=4, rollout_length=16, total_steps=4 * 16,
                    epochs=2, minibatches=2, hidden_sizes=(32,))


def _one_update():
    """One PPO update of 3 vmapped seeds on MinAtar (every trick in play), compiled through the
    room's scheduler rule: plain, the init holds a batched QR."""
    keys = jax.random.split(jax.random.key(0), 3)
    hparams = jax.tree.map(lambda *x: jnp.stack(x), *[ppo.Hparams()] * 3)
    train = jax.jit(jax.vmap(pgjax.make_train(CONFIG)))
    return _xla_cpu.compile(train.lower(keys, hparams))(keys, hparams)[1]


def test_a_whole_update_matches_under_the_switch(monkeypatch):
    """The update's losses and diagnostics with every trick on and with ``PGJAX_PLAIN=1``: the
    initial parameters differ by round-off (Gram–Schmidt against QR), too little to change a
    sampled action in one rollout, so every metric agrees to float tolerance."""
    ours, plain = _with(monkeypatch, "", _one_update), _with(monkeypatch, "1", _one_update)
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm", "value_mean"):
        np.testing.assert_allclose(ours[name], plain[name], rtol=2e-3, atol=1e-6, err_msg=name)


def test_a_plain_run_through_the_runner_matches_the_tricks_run(tmp_path):
    """``pgjax train`` with ``PGJAX_PLAIN=1`` (a fresh process: caches are per selection) and
    without: the same run (3 seeds, one update of CartPole) reports the same losses."""
    rows = {}
    for plain in ("", "1"):
        env = {**os.environ, _xla_cpu.SWITCH: plain}
        subprocess.run([sys.executable, "-m", "pgjax.cli", "train", "ppo", "--seeds", "3",
                        "--total-steps", "512", "--runs-dir", str(tmp_path), "--name", f"p{plain}",
                        "--no-plots", "--no-tensorboard", "--eval-episodes", "2", "--num-evals", "1"],
                       env=env, check=True, capture_output=True, timeout=300)
        lines = (tmp_path / f"p{plain}" / "metrics.jsonl").read_text().splitlines()
        rows[plain] = [json.loads(line) for line in lines]
    assert len(rows[""]) == len(rows["1"]) == 3
    for ours, plain in zip(rows[""], rows["1"]):
        for name in ("policy_loss", "value_loss", "entropy", "grad_norm"):
            np.testing.assert_allclose(ours[name], plain[name], rtol=2e-3, err_msg=name)
