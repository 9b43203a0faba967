"""The CNN torso's convolution, written as a matrix product over pixel neighbourhoods, against
flax's own ``nn.Conv`` with the same parameters."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pgjax.networks import CNNTorso, PatchConv


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
