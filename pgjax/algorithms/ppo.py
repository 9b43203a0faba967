"""Proximal Policy Optimization (Schulman et al. 2017).

One update = one rollout of ``rollout_length`` steps in ``num_envs`` environments (the shared
engine), GAE(γ, λ) advantages (Schulman et al. 2016) with truncation-correct bootstrapping, then
``epochs`` passes of ``minibatches`` shuffled minibatches minimising

    L = L^{CLIP} + c_v·L^{V} − β·H[π],

with L^{CLIP} from :func:`pgjax.losses.ppo_clip_loss`, L^{V} the (optionally clipped) squared
error to the GAE targets A + V, and H the entropy. Discrete and continuous action spaces.
A recurrent policy (``torso="gru"``) learns from minibatches of whole sequences, one per
environment, re-run from the memory the rollout started with (:mod:`pgjax.recurrent`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from pgjax import estimators, losses
from pgjax.algorithms import optimiser, score_function, setup, train_state, update_metrics
from pgjax.config import CommonConfig, CommonHparams, require, setting
from pgjax.rollout import episode_metrics
from pgjax import shuffle
from pgjax.shuffle import SHUFFLES

NAME = "ppo"


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    supports_recurrent: ClassVar[bool] = True
    epochs: int = setting(4, low=1, help="passes over each rollout")
    minibatches: int = setting(
        4, low=1, help="minibatches per epoch (must divide num_envs*rollout_length)")
    normalize_advantages: bool = setting(True, help="normalise advantages per minibatch")
    clip_value: bool = setting(
        True, help="clip the value loss around the old values (value_clip_eps)")
    anneal_lr: bool = setting(True, help="decay the learning rate linearly to 0 over the run")
    shuffle: str = setting(
        "sort", choices=SHUFFLES, help="minibatch order: sort (jax.random.permutation's, bit for "
        "bit) or hash (sort-free); pgjax.shuffle")

    def __post_init__(self):
        super().__post_init__()
        require(self.steps_per_update % self.minibatches == 0, "minibatches", self.minibatches,
                f"must divide the batch num_envs*rollout_length = {self.steps_per_update}")
        require(self.torso != "gru" or self.num_envs % self.minibatches == 0, "minibatches",
                self.minibatches, f"must divide num_envs = {self.num_envs} with torso='gru' "
                "(a recurrent policy's minibatches are whole sequences, one per environment)")

    @property
    def grad_variance_groups(self) -> int:
        return self.minibatches

    grad_variance_group_name = "minibatch (minibatches)"


@struct.dataclass
class Hparams(CommonHparams):
    clip_eps: Any = setting(0.2, low=0, low_open=True, help="ε of the clipped surrogate")
    gae_lambda: Any = setting(0.95, low=0, high=1, help="λ of GAE")
    value_clip_eps: Any = setting(
        0.2, low=0, low_open=True, help="clip range of the value loss (with clip_value)")


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    return train_state.init_train_state(config, hparams, key)


class Batch(NamedTuple):
    """What a minibatch step learns from: per-step leaves ``[B, ...]`` (feed-forward) or
    time-major sequences ``[T, n, ...]`` with their start memories ``[n, ...]`` (recurrent)."""
    obs: jax.Array
    actions: jax.Array
    log_probs: jax.Array       # log π_θold(a|s), the behaviour policy's
    values: jax.Array          # V_old(s)
    advantages: jax.Array
    targets: jax.Array         # value targets A + V_old
    dones: Any = None          # recurrent: episode ended at the step (the memory is reset after it)
    memory_start: Any = None   # recurrent: the memory before each sequence's first step


def clipped_surrogate(log_probs, old_log_probs, advantages, hparams, extra):
    """PPO's policy term: (L^CLIP, its own metrics)."""
    return (losses.ppo_clip_loss(log_probs, old_log_probs, advantages, hparams.clip_eps),
            {"clip_fraction": losses.clip_fraction(log_probs, old_log_probs, hparams.clip_eps)})


def _loss(params, network, batch: Batch, hparams, extra, clip_value: bool,
          normalize_advantages: bool, policy_term):
    """L = policy term + c_v·L^V − β·H on one minibatch; ``policy_term(log π_θ, log π_old, A,
    hparams, extra) -> (loss, metrics)`` is the surrogate (:func:`clipped_surrogate` for PPO)."""
    _, actions, old_log_probs, old_values, advantages, targets, _, _ = batch
    dist, values = setup.policy_and_values(network, params, batch.obs, batch.memory_start,
                                            batch.dones)
    log_probs = dist.log_prob(actions)
    if normalize_advantages:
        advantages = score_function.normalize(advantages)
    policy_loss, policy_metrics = policy_term(log_probs, old_log_probs, advantages, hparams, extra)
    value_loss = losses.value_loss(values, targets, old_values if clip_value else None,
                                   hparams.value_clip_eps if clip_value else None)
    entropy = losses.entropy(dist)
    total = policy_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    aux = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
           "total_loss": total, "approx_kl": losses.approx_kl(log_probs, old_log_probs),
           **policy_metrics}
    return total, aux


def shuffled_minibatches(config: Config, batch: Batch, key):
    """One epoch's minibatches in a random order ``key`` draws: the steps of a flat ``batch``
    (leaves ``[B, ...]``) cut into ``[minibatches, B/minibatches, ...]``; for a recurrent policy,
    whole sequences (one per environment, ``[T, N, ...]``), ``[minibatches, T, N/minibatches, ...]``."""
    if getattr(batch, "memory_start", None) is None:  # also any tree of [B, ...] leaves
        return shuffle.shuffled_minibatches(batch, key, config.minibatches, config.shuffle)
    sequences, memory = shuffle.shuffled_sequence_minibatches(
        batch._replace(memory_start=None), batch.memory_start, key, config.minibatches,
        config.shuffle)
    return sequences._replace(memory_start=memory)


def learning_batch(traj, advantages, targets) -> Batch:
    """The rollout as PPO learns from it: flattened steps, or whole sequences with their start
    memories for a recurrent policy."""
    batch = Batch(traj.obs, traj.actions, traj.log_probs, traj.values, advantages, targets)
    if traj.memory_start is None:
        return score_function.flatten_time_batch(batch)
    return batch._replace(dones=traj.episode_done, memory_start=traj.memory_start)


def update(config: Config, state: train_state.TrainState):
    """rollout → GAE → epochs × minibatches of clipped-surrogate steps. Returns (state, metrics)."""
    return surrogate_update(config, state, clipped_surrogate)


def surrogate_update(config: Config, state: train_state.TrainState, policy_term):
    """rollout → GAE → epochs × minibatches of steps on :func:`_loss` with ``policy_term`` as the
    surrogate (PPO's clipped one, or a variant's: :mod:`pgjax.algorithms.ppo_kl`). Returns
    (state, metrics).

    With ``config.log_grad_variance`` the gradient-noise metrics compare the gradients of the
    loss on the first epoch's ``minibatches`` minibatches, all taken at the parameters θ_old the
    rollout used (where the ratio is 1 and nothing is clipped), so they are G = ``minibatches``
    estimates of one gradient and not mixed with the parameter drift between minibatch steps."""
    hp = state.hparams
    network = setup.make_network(config)
    state, traj = train_state.collect(config, state)
    advantages, targets = score_function.gae_and_targets(traj, hp.gamma, hp.gae_lambda)
    batch = learning_batch(traj, advantages, targets)
    learning_rate = optimiser.current_learning_rate(config, hp, state.update_step)
    grad_fn = jax.grad(_loss, has_aux=True)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, aux = grad_fn(params, network, minibatch, hp, state.extra, config.clip_value,
                             config.normalize_advantages, policy_term)
        params, opt_state, grad_norm = optimiser.apply_gradients(
            config, state.replace(params=params, opt_state=opt_state), grads, learning_rate)
        return (params, opt_state), {**aux, "grad_norm": grad_norm}

    def epoch_step(carry, epoch_key):
        return jax.lax.scan(minibatch_step, carry, shuffled_minibatches(config, batch, epoch_key))

    key, epochs_key = jax.random.split(state.key)
    epoch_keys = jax.random.split(epochs_key, config.epochs)
    noise = update_metrics.gradient_diagnostics(
        config, lambda p, mb: _loss(p, network, mb, hp, state.extra, config.clip_value,
                                    config.normalize_advantages, policy_term)[0],
        state.params, lambda: (shuffled_minibatches(config, batch, epoch_keys[0]), None))
    (params, opt_state), learn_metrics = jax.lax.scan(
        epoch_step, (state.params, state.opt_state), epoch_keys)
    state = state.replace(params=params, opt_state=opt_state, key=key,
                          update_step=state.update_step + 1)
    metrics = {
        **jax.tree.map(jnp.mean, learn_metrics),
        **episode_metrics(traj),
        **update_metrics.value_metrics(traj, hp.gamma),
        "explained_variance": estimators.explained_variance(traj.values, targets),
        "advantage_mean": jnp.mean(advantages),
        "learning_rate": learning_rate,
        **noise,
    }
    return state, metrics
