"""The CNN torso's convolution, written as a matrix product over pixel neighbourhoods, against
flax's own ``nn.Conv`` with the same parameters; :func:`pgjax._xla_cpu.initialisers.init_params`'s joint
kernel draws against ``module.init``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax._xla_cpu.patch_conv import PatchConv
from pgjax._xla_cpu.initialisers import init_params
from pgjax.networks import ActorCritic, CNNTorso, RecurrentActorCritic


def test_patch_conv_equals_flax_conv_with_the_same_parameters():
    x = jax.random.normal(jax.random.key(0), (5, 10, 10, 4))
    patch = PatchConv(16, 3)
    params = patch.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)  # a non-zero bias too
    want = nn.Conv(16, (3, 3), padding="SAME").apply(params, x)
    np.testing.assert_allclose(patch.apply(params, x), want, rtol=1e-5, atol=1e-5)


def test_cnn_torso_keeps_flax_convs_parameter_layout():
    """Same names and shapes as a torso built on ``nn.Conv`` (checkpoints stay loadable)."""
    params = CNNTorso(hidden_sizes=(8,)).init(jax.random.key(0), jnp.zeros((2, 10, 10, 4)))
    shapes = jax.tree.map(lambda p: p.shape, params)["params"]
    assert shapes["Conv_0"] == {"kernel": (3, 3, 4, 16), "bias": (16,)}
    assert shapes["Dense_0"]["kernel"] == (1600, 8)


def _init_cases():
    """(module, init arguments) for each network family, feed-forward and recurrent."""
    obs = jnp.linspace(-1.0, 1.0, 3 * 4).reshape(3, 4)
    recurrent = RecurrentActorCritic(action_dim=2, discrete=True, hidden_sizes=(8,))
    return [
        (ActorCritic(action_dim=2, discrete=True, hidden_sizes=(64, 64)), (obs,)),
        (ActorCritic(action_dim=3, discrete=False, hidden_sizes=(16, 5), shared_torso=True,
                     state_dependent_std=True), (obs,)),
        (ActorCritic(action_dim=4, discrete=True, hidden_sizes=(8,), torso="cnn"),
         (jnp.zeros((2, 10, 10, 3)),)),
        (recurrent, (recurrent.initial_memory(3), obs)),
        # a 160×128 kernel, above JOINT_DRAW_MAX_SIZE: drawn on its own, the others jointly
        (ActorCritic(action_dim=2, discrete=True, hidden_sizes=(160, 128)), (obs,)),
    ]


@pytest.mark.parametrize("case", range(5), ids=["mlp", "shared-gaussian", "cnn", "gru", "large"])
def test_joint_kernel_draws_give_module_inits_parameters(case):
    """init_params draws every orthogonal kernel's normals in one vmapped call, each kernel taking
    a prefix of its key's draw: the parameters must be those of ``module.init`` (which draws each
    kernel on its own), jitted and vmapped over seeds as the runner does. Bit for bit under XLA's
    default options; this suite compiles at optimisation level 0 (conftest.py), where the two
    draws' floats can differ in the last bit and Gram–Schmidt can grow that to about 1e-6, hence
    the 1e-5 (a wrong draw is off by O(0.1))."""
    module, args = _init_cases()[case]
    keys = jax.random.split(jax.random.key(5), 3)
    want = jax.jit(jax.vmap(lambda k: module.init(k, *args)))(keys)
    got = jax.jit(jax.vmap(lambda k: init_params(module, k, *args)))(keys)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)


def test_joint_kernel_draws_are_one_draw_for_raw_keys_and_eagerly():
    """The joint path is taken (one random-bits call for the six kernels of an MLP actor-critic,
    where ``module.init`` makes several), for raw ``uint32[2]`` keys as for typed ones, and gives
    ``module.init``'s parameters outside jit too."""
    module, args = _init_cases()[0]
    for key in (jax.random.PRNGKey(7), jax.random.key(7)):
        ours = str(jax.make_jaxpr(lambda k: init_params(module, k, *args))(key))
        flaxs = str(jax.make_jaxpr(lambda k: module.init(k, *args))(key))
        assert ours.count("random_bits") == 1 < flaxs.count("random_bits")
        for g, w in zip(jax.tree.leaves(init_params(module, key, *args)),
                        jax.tree.leaves(module.init(key, *args))):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)


def test_joint_kernel_draws_fall_back_outside_partitionable_threefry():
    """With jax's older, non-partitionable threefry a shorter draw is not a prefix of a longer
    one, so init_params must fall back to ``module.init`` (and still give its parameters)."""
    module, args = _init_cases()[0]
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        short = jax.random.normal(jax.random.key(0), (4,))
        assert not np.array_equal(short, jax.random.normal(jax.random.key(0), (8,))[:4])
        got, want = init_params(module, jax.random.key(1), *args), module.init(jax.random.key(1), *args)
    finally:
        jax.config.update("jax_threefry_partitionable", previous)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g, w)
