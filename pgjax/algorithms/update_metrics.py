"""What every update logs beside its losses: value and TD statistics, episode statistics,
explained variance, the learning rate, and the optional gradient-noise diagnostics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from pgjax import diagnostics, estimators
from pgjax.algorithms.optimiser import critic_labels
from pgjax.rollout import Trajectory, episode_metrics

if TYPE_CHECKING:
    from pgjax.algorithms.train_state import TrainState


def value_metrics(trajectory: Trajectory, gamma) -> dict[str, jax.Array]:
    """Max and mean value estimate and the one-step TD error δ (mean and mean |δ|)."""
    deltas = estimators.td_errors(trajectory.rewards, trajectory.values, trajectory.next_values,
                                  trajectory.discounts(gamma))
    return {"value_max": jnp.max(trajectory.values), "value_mean": jnp.mean(trajectory.values),
            "td_error_mean": jnp.mean(deltas), "td_error_abs_mean": jnp.mean(jnp.abs(deltas))}


def common_metrics(state: TrainState, traj: Trajectory, value_targets) -> dict:
    """Episode statistics, value/TD statistics, explained variance, learning rate (env steps and
    fps are added by the runner, which counts them on the host)."""
    hp = state.hparams
    return {**episode_metrics(traj), **value_metrics(traj, hp.gamma),
            "explained_variance": estimators.explained_variance(traj.values, value_targets),
            "learning_rate": hp.learning_rate}


def policy_leaves(params) -> list:
    """The leaves of ``params`` (or of a gradient tree shaped like it, with any leading axes)
    that belong to the policy: everything :func:`critic_labels` calls "actor"."""
    labels = jax.tree.leaves(critic_labels(jax.tree.map(lambda x: 0, params)))
    return [x for x, label in zip(jax.tree.leaves(params), labels) if label == "actor"]


def gradient_diagnostics(config, loss_fn, params, make_groups) -> dict[str, jax.Array]:
    """The optional gradient-noise metrics (``config.log_grad_variance``; :mod:`pgjax.diagnostics`).

    ``loss_fn(params, group) -> scalar`` is the algorithm's loss on one group; ``make_groups()``
    returns ``(groups, weights)``: the G groups stacked on a leading axis
    (:func:`pgjax.diagnostics.split_groups`) and the ``[G]`` weights of
    :func:`pgjax.diagnostics.group_gradients` (or None). It is called only when the flag is on.
    The statistics are taken over the policy's parameters only (:func:`policy_leaves`; a shared
    torso counts, so there the value loss adds to them): ``grad_variance`` = tr Σ̂, ``grad_mean_sq_norm`` = ‖ḡ‖², ``grad_snr`` = ‖ḡ‖²/tr Σ̂.
    When the flag is off this returns ``{}`` and traces nothing, so the compiled update is the
    same as without the diagnostic."""
    if not config.log_grad_variance:
        return {}
    groups, weights = make_groups()
    grads = diagnostics.group_gradients(loss_fn, params, groups, weights)
    stats = diagnostics.gradient_statistics(policy_leaves(grads))
    return {"grad_variance": stats.total_variance, "grad_mean_sq_norm": stats.mean_sq_norm,
            "grad_snr": stats.snr}


def env_groups(config, tree):
    """One group per environment of time-major ``[T, N, ...]`` leaves: ``[N, T, 1, ...]``."""
    return diagnostics.split_groups(tree, config.num_envs, axis=1)
