"""Gradient-noise diagnostics: the spread of G gradient estimates of the same objective.

An algorithm splits its batch into G groups (one per environment, or one per minibatch), takes
the gradient of its loss on each group, and summarises the G estimates g_1 … g_G (pytrees, all
parameters flattened into one vector of dimension D) by

    ḡ          = (1/G) Σ_i g_i                                   (the mean estimate)
    tr Σ̂       = 1/(G−1) Σ_i ‖g_i − ḡ‖²                          ``total_variance``
    ‖ḡ‖²       = Σ_d ḡ_d²                                        ``mean_sq_norm``
    SNR        = ‖ḡ‖² / tr Σ̂                                      ``snr``

``total_variance`` is the trace of the unbiased (ddof = 1) sample covariance Σ̂ of *one* group's
estimate, i.e. E‖g − E g‖² summed over every parameter. ``snr`` follows the signal-to-noise
ratio of a gradient estimator of Roberts & Tedrake (2009, "Signal-to-noise ratio analysis of
policy gradient algorithms", NIPS 21): ‖E g‖² / E‖g − E g‖², with both moments replaced by their
sample estimates; it is the SNR of a *single* group's estimate. The mean ḡ of the G groups has
G times that ratio (its covariance is Σ/G). Two caveats of the plug-in form: E‖ḡ‖² = ‖E g‖² +
tr Σ/G, so ``mean_sq_norm`` over-estimates the signal by tr Σ/G and the SNR by about 1/G (the
bias-corrected signal ‖ḡ‖² − tr Σ̂/G can be negative, so it is not reported); and the SNR is
NaN when tr Σ̂ = 0 (G identical estimates).

Everything here is pure and jittable; :func:`pgjax.algorithms.update_metrics.gradient_diagnostics` is the
one place the algorithms call it (behind ``config.log_grad_variance``). A bad shape raises
:class:`~pgjax.errors.ShapeError` (a ``ValueError`` of the :mod:`pgjax.errors` family) naming the
function and the argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from pgjax._checks import check_leading_axes, check_shape, static_int
from pgjax.errors import ShapeError

Array = chex.Array


class GradientStatistics(NamedTuple):
    total_variance: Array  # tr Σ̂ (ddof = 1), summed over all parameters
    mean_sq_norm: Array    # ‖ḡ‖²
    snr: Array             # ‖ḡ‖² / tr Σ̂ (single-estimate SNR; NaN if tr Σ̂ = 0)


def gradient_statistics(grads: Any) -> GradientStatistics:
    """Total variance, squared norm of the mean and SNR of G stacked gradient estimates (see the
    module docstring for the definitions).

    Args:
      grads: a pytree whose every leaf is ``[G, ...]``: estimate i is the slice ``[i]`` of every
        leaf. G ≥ 2 (the ddof = 1 variance needs two estimates).
    Returns: a :class:`GradientStatistics` of float32 scalars.
    """
    fn = "gradient_statistics"
    leaves = jax.tree.leaves(grads)
    check_leading_axes(fn, "grads", leaves, 1)
    num = leaves[0].shape[0]
    if num < 2:
        raise ShapeError(fn, "grads", f"{fn}: grads needs G >= 2 estimates on the leading axis, "
                                      f"got {num}")
    leaves = [jnp.asarray(x, jnp.float32).reshape(num, -1) for x in leaves]
    means = [jnp.mean(x, axis=0) for x in leaves]
    mean_sq_norm = sum(jnp.sum(m**2) for m in means)
    total_variance = sum(jnp.sum((x - m) ** 2) for x, m in zip(leaves, means)) / (num - 1)
    positive = total_variance > 0
    snr = jnp.where(positive, mean_sq_norm / jnp.where(positive, total_variance, 1.0), jnp.nan)
    return GradientStatistics(total_variance, mean_sq_norm, snr)


def split_groups(tree: Any, num_groups: int, axis: int) -> Any:
    """Cut axis ``axis`` (size N, a multiple of ``num_groups``) of every leaf into ``num_groups``
    contiguous groups and stack them on a new leading axis: ``[..., N, ...]`` →
    ``[G, ..., N/G, ...]``. The group axis keeps its place (with size N/G), so a loss written for
    the whole batch takes one group unchanged; e.g. a time-major trajectory ``[T, N, ...]`` with
    ``axis=1, num_groups=N`` gives one ``[T, 1, ...]`` trajectory per environment."""
    num_groups = static_int("split_groups", "num_groups", num_groups)

    def split(x):
        at = _axis("split_groups", "tree", x, axis)
        size = x.shape[at]
        if size % num_groups:
            raise ShapeError("split_groups", "tree", f"split_groups: axis {axis} of a leaf of tree "
                                                     f"has size {size}, which does not split into "
                                                     f"{num_groups} groups")
        shape = x.shape[:at] + (num_groups, size // num_groups) + x.shape[at + 1:]
        return jnp.moveaxis(x.reshape(shape), at, 0)
    return jax.tree.map(split, tree)


def group_gradients(loss_fn: Callable[[Any, Any], Array], params: Any, groups: Any,
                    weights: Array | None = None) -> Any:
    """Per-group gradients w_i·∇_θ loss_fn(θ, group_i), one ``jax.grad`` vmapped over the leading
    axis of ``groups``.

    Args:
      loss_fn: ``(params, group) -> scalar`` loss of one group.
      params: θ (shared by all groups, not batched).
      groups: a pytree whose leaves are ``[G, ...]`` (e.g. from :func:`split_groups`).
      weights: optional ``[G]`` factors w_i (default 1). With a loss that is a (masked) mean,
        w_i = G·n_i/Σ_j n_j (n_i the group's sample count, :func:`share_weights`) turns the
        group's mean gradient into G × its share of the whole-batch mean's gradient, so that
        ḡ = (1/G) Σ_i w_i ∇ loss_i is exactly the gradient of the batch loss.
    Returns: a pytree shaped like ``params`` with a leading axis G.
    """
    grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, groups)
    if weights is None:
        return grads
    num = jax.tree.leaves(groups)[0].shape[0]
    check_shape("group_gradients", "weights", weights, (num,), "one weight per group,")
    return jax.tree.map(lambda g: g * weights.reshape((num,) + (1,) * (g.ndim - 1)), grads)


def share_weights(mask: Array, axis: int) -> Array:
    """w_i = G·n_i/Σ_j n_j with n_i = Σ of ``mask`` over everything but ``axis`` (the group axis,
    size G): the factors that make group i's masked-mean gradient G × its share of the batch's
    masked-mean gradient (:func:`group_gradients`). All zeros when the mask is empty."""
    mask = jnp.asarray(mask)
    axis = _axis("share_weights", "mask", mask, axis)
    counts = jnp.sum(jnp.moveaxis(jnp.asarray(mask, jnp.float32), axis, 0).reshape(mask.shape[axis], -1),
                     axis=1)
    return mask.shape[axis] * counts / jnp.maximum(jnp.sum(counts), 1e-12)


def _axis(fn: str, name: str, x: Array, axis: int) -> int:
    """``axis`` of ``x`` as a non-negative index (negative counts from the end, as in NumPy)."""
    ndim = jnp.ndim(x)
    if not -ndim <= axis < ndim:
        raise ShapeError(fn, name, f"{fn}: {name} has no axis {axis} (its shape is "
                                   f"{jnp.shape(x)})")
    return axis % ndim
