"""The optimiser with traced hyperparameters (step sizes and the clip norm live in the train
state), the learning-rate schedule, and one optimiser step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:  # annotations only: the train state module imports this one
    from pgjax.algorithms.train_state import TrainState


def _base_optimizer(name: str, learning_rate):
    """The optimiser called ``name`` (one of :data:`pgjax.config.OPTIMIZERS`). The two RMSProps differ in
    where ε goes: ``rmsprop`` is A3C's θ ← θ − η·g/√(v + ε) (Mnih et al. 2016, §4), ``rmsprop_torch``
    is PyTorch's (and so Stable-Baselines3's) θ ← θ − η·g/(√v + ε). Both take decay 0.99 and
    ε = 1e-5; with gradients near 1e-3 or smaller the first takes much smaller steps."""
    if name == "rmsprop":
        return optax.rmsprop(learning_rate, decay=0.99, eps=1e-5)
    if name == "rmsprop_torch":
        return optax.rmsprop(learning_rate, decay=0.99, eps=1e-5, eps_in_sqrt=False)
    if name == "sgd":
        return optax.sgd(learning_rate)
    return optax.adam(learning_rate, eps=1e-5)


CRITIC_MODULES = ("critic_torso", "critic_encoder", "critic_gru", "value_head")


def critic_labels(params):
    """A tree like ``params`` labelling each leaf "critic" (critic torso and value/Q head) or
    "actor" (everything else: actor torso, policy head, log σ; a shared torso counts as actor)."""
    def label(path, _):
        names = {getattr(p, "key", None) for p in path}
        return "critic" if names & set(CRITIC_MODULES) else "actor"
    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config, hparams, learning_rate=None) -> optax.GradientTransformation:
    """Global-norm clipping then the chosen optimiser, built from the hyperparameters of this
    update: step sizes and clip norm live only in ``hparams`` (traced arrays in the train state,
    so they can be vmapped), never in the optimiser state, which holds only the optimiser's
    moments and counts. ``learning_rate`` (default ``hparams.learning_rate``) is this update's
    actor step size, e.g. annealed by :func:`current_learning_rate`. When the hyperparameters
    have a ``critic_learning_rate`` the critic gets its own step size α^w and the actor α^θ
    (Sutton & Barto 2018, §13.4–13.5)."""
    learning_rate = hparams.learning_rate if learning_rate is None else learning_rate
    step = _base_optimizer(config.optimizer, learning_rate)
    if hasattr(hparams, "critic_learning_rate"):
        step = optax.multi_transform(
            {"actor": step,
             "critic": _base_optimizer(config.optimizer, hparams.critic_learning_rate)},
            critic_labels)
    return optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), step)


def linear_annealing(config, hparams, update_step):
    """lr_k = lr_0·(1 − k/K) over the K updates of the run (Schulman et al. 2017, Table 3's
    "α linearly annealed from 1 to 0")."""
    return hparams.learning_rate * (1.0 - update_step.astype(jnp.float32) / config.num_updates)


def current_learning_rate(config, hparams, update_step):
    """The actor step size of update ``update_step``: :func:`linear_annealing` when the config
    has ``anneal_lr`` set, else ``hparams.learning_rate``."""
    if getattr(config, "anneal_lr", False):
        return linear_annealing(config, hparams, update_step)
    return hparams.learning_rate


def apply_gradients(config, state: TrainState, grads, learning_rate=None):
    """One optimiser step; returns (params, opt_state, grad global norm before clipping)."""
    optimizer = make_optimizer(config, state.hparams, learning_rate)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt_state, optax.tree.norm(grads)
