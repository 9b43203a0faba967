"""PPO with an adaptive KL penalty instead of clipping (Schulman et al. 2017, §4).

Everything but the surrogate is PPO's (:func:`pgjax.algorithms.ppo.surrogate_update`: the
rollout, GAE, epochs × minibatches, the value loss and the entropy bonus). The policy term is

    L^KLPEN(θ) = −E_t[r_t A_t − β·KL[π_old(·|s_t) ‖ π_θ(·|s_t)]]

(:func:`pgjax.losses.ppo_kl_penalty_loss`), and after each update β adapts to the measured
divergence d (the mean over the update's minibatch steps of the KL estimate): β ← β/2 when
d < d_targ/1.5, β ← 2β when d > 1.5·d_targ (the paper's rule; its initial β is not critical
"since the algorithm quickly adjusts it"). β lives in the train state (``extra``), one per member,
so a population of seeds and settings adapts it independently.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import struct

from pgjax import losses
from pgjax.algorithms import ppo, train_state
from pgjax.config import CommonHparams, setting

NAME = "ppo-kl"


@dataclasses.dataclass(frozen=True)
class Config(ppo.Config):
    pass


@struct.dataclass
class Hparams(CommonHparams):
    kl_target: Any = setting(0.01, low=0, low_open=True, help="d_targ: the KL per update β aims at")
    kl_beta_init: Any = setting(1.0, low=0, help="β at the first update (then adapted)")
    gae_lambda: Any = setting(0.95, low=0, high=1, help="λ of GAE")
    value_clip_eps: Any = setting(
        0.2, low=0, low_open=True, help="clip range of the value loss (with clip_value)")


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    return train_state.init_train_state(config, hparams, key,
                                        extra=jnp.asarray(hparams.kl_beta_init, jnp.float32))


def kl_penalised_surrogate(log_probs, old_log_probs, advantages, hparams, beta):
    """The policy term: (L^KLPEN with this update's β, ``{"kl_beta": β}``)."""
    return (losses.ppo_kl_penalty_loss(log_probs, old_log_probs, advantages, beta),
            {"kl_beta": beta})


def adapted_beta(beta, divergence, target):
    """β/2 when the update's divergence d < d_targ/1.5, 2β when d > 1.5·d_targ, else β
    (Schulman et al. 2017, §4)."""
    return jnp.where(divergence < target / 1.5, beta / 2,
                     jnp.where(divergence > target * 1.5, beta * 2, beta))


def update(config: Config, state: train_state.TrainState):
    """PPO's update with the KL-penalised surrogate, then β adapted. Returns (state, metrics)."""
    state, metrics = ppo.surrogate_update(config, state, kl_penalised_surrogate)
    beta = adapted_beta(state.extra, metrics["approx_kl"], state.hparams.kl_target)
    return state.replace(extra=beta), metrics
