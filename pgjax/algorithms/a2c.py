"""A2C: the synchronous form of A3C (Mnih et al. 2016, Algorithm S3; seed slide "Asynchronous
Advantage Actor-Critic (A3C)").

A3C's asynchronous actor-learner threads are replaced here by ``num_envs`` vmapped, synchronous
actors: every ``rollout_length`` = k steps, all environments' transitions form one batch and one
gradient step updates the single shared parameter set. Each step's advantage is the k-step
estimate of the seed's slide, with k the number of steps left in the segment (the A3C forward
view):

    A(s_t, a_t) = Σ_{i=0}^{k−1} γ^i r_{t+i} + γ^k V(s_{t+k}) − V(s_t),

cut at episode ends (a termination contributes 0, a truncation bootstraps from V of the final
observation). The loss adds the value regression and the entropy regularisation β·H(π(s_t))
(the seed's β∇H term): L = −E[log π(a|s)·A] + c_v·½E[(V(s) − R)²] − β·E[H]. RMSProp by default,
as in the paper.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import struct

from pgjax import estimators
from pgjax.algorithms import common
from pgjax.config import CommonConfig, CommonHparams

NAME = "a2c"


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    num_envs: int = 16
    rollout_length: int = 5
    total_steps: int = 1_000_000
    optimizer: str = "rmsprop"
    normalize_advantages: bool = False  # normalise advantages over the batch


@struct.dataclass
class Hparams(CommonHparams):
    learning_rate: Any = 7e-4
    ent_coef: Any = 0.01
    vf_coef: Any = 0.5
    max_grad_norm: Any = 0.5


def init(config: Config, hparams: Hparams, key) -> common.TrainState:
    return common.init_train_state(config, hparams, key)


def k_step_returns(traj, gamma):
    """R_t = Σ_{i<k} γ^i r_{t+i} + γ^k V(s_{t+k}), k = steps left in the segment (episode ends cut it)."""
    return estimators.discounted_returns(traj.rewards, traj.next_values, traj.discounts(gamma), traj.dones())


def update(config: Config, state: common.TrainState):
    state, traj = common.collect(config, state)
    returns = k_step_returns(traj, state.hparams.gamma)
    advantages = returns - traj.values
    if config.normalize_advantages:
        advantages = common.normalize(advantages)
    state, learn = common.score_function_update(config, state, traj, advantages, returns,
                                                jnp.ones_like(returns))
    return state, {**learn, **common.common_metrics(state, traj, returns),
                   "advantage_mean": jnp.mean(advantages)}
