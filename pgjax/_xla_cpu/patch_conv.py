"""A stride-1 "SAME" convolution as one matrix product, which XLA:CPU runs at matmul speed."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def same_padding_patches(x: jax.Array, size: int = 3) -> jax.Array:
    """The ``size``×``size`` neighbourhood of every pixel of ``x`` ``[B, H, W, C]``, zero-padded
    at the borders ("SAME"): ``[B, H, W, size, size, C]``, built from shifted slices only."""
    pad = size // 2
    height, width = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = [jnp.stack([padded[:, i:i + height, j:j + width] for j in range(size)], axis=3)
            for i in range(size)]
    return jnp.stack(rows, axis=3)


class PatchConv(nn.Module):
    """A stride-1 "SAME" 2-D convolution computed as one matrix product over every pixel's
    neighbourhood (:func:`same_padding_patches`): the same function and the same parameters
    (``kernel [size, size, C, features]``, ``bias [features]``) as ``flax.linen.Conv``. On
    XLA:CPU (jaxlib 0.10) the convolution op runs MinAtar's shapes (10 × 10 × C → 16 channels,
    forward and gradients) far below matmul speed; as a matrix product of the
    ``[B·H·W, size·size·C]`` neighbourhoods with the flattened kernel it runs at matmul speed (with
    plain autodiff: the custom product of :mod:`pgjax._xla_cpu.matmul` is slower here).
    ``python -m benchmarks.dev.xla_cpu_tricks`` measures the gain."""
    features: int
    size: int = 3
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (self.size, self.size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        patches = same_padding_patches(x, self.size)  # [B, H, W, size, size, C]
        rows = patches.reshape((-1, kernel.shape[0] * kernel.shape[1] * kernel.shape[2]))
        out = rows @ kernel.reshape((rows.shape[1], self.features))
        return out.reshape(x.shape[:-1] + (self.features,)) + bias
