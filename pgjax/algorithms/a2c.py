"""A2C: the synchronous form of A3C (Mnih et al. 2016, Algorithm S3).

A3C's asynchronous actor-learner threads are replaced here by ``num_envs`` vmapped, synchronous
actors: every ``rollout_length`` = k steps, all environments' transitions form one batch and one
gradient step updates the single shared parameter set. Each step's advantage is the k-step
estimate of Mnih et al. (2016), with k the number of steps left in the segment (the A3C forward
view):

    A(s_t, a_t) = Σ_{i=0}^{k−1} γ^i r_{t+i} + γ^k V(s_{t+k}) − V(s_t),

cut at episode ends (a termination contributes 0, a truncation bootstraps from V of the final
observation). The loss adds the value regression and the entropy regularisation β·H(π(s_t))
(the entropy term of Mnih et al. 2016): L = −E[log π(a|s)·A] + c_v·½E[(V(s) − R)²] − β·E[H]. RMSProp by default,
as in the paper. ``advantage_estimator="gae"`` uses GAE(γ, λ) instead (Schulman et al. 2016;
``gae_lambda``), which at λ = 1 is the k-step estimate above.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
from flax import struct

from pgjax import estimators
from pgjax.algorithms import optimiser, score_function, train_state, update_metrics
from pgjax.config import CommonConfig, CommonHparams, setting

NAME = "a2c"
ADVANTAGE_ESTIMATORS = ("k_step", "gae")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    supports_recurrent: ClassVar[bool] = True
    num_envs: int = 16
    rollout_length: int = 5
    total_steps: int = 1_000_000
    optimizer: str = "rmsprop"
    normalize_advantages: bool = setting(False, help="normalise advantages over the batch")
    advantage_estimator: str = setting(
        "k_step", choices=ADVANTAGE_ESTIMATORS, help="k_step (A3C's forward view) or gae "
        "(GAE(γ, λ), gae_lambda)")
    anneal_lr: bool = setting(False, help="decay the learning rate linearly to 0 over the run")


@struct.dataclass
class Hparams(CommonHparams):
    learning_rate: Any = 7e-4
    ent_coef: Any = 0.01
    vf_coef: Any = 0.5
    max_grad_norm: Any = 0.5
    gae_lambda: Any = setting(
        0.95, low=0, high=1, help="λ of advantage_estimator=gae (λ = 1 gives the k-step "
        "advantages)")


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    return train_state.init_train_state(config, hparams, key)


def k_step_returns(traj, gamma):
    """R_t = Σ_{i<k} γ^i r_{t+i} + γ^k V(s_{t+k}), k = steps left in the segment (episode ends cut it)."""
    return estimators.discounted_returns(traj.rewards, traj.next_values, traj.discounts(gamma), traj.dones())


def advantages_and_targets(config: Config, traj, hparams):
    """(advantages, value targets) of the rollout: A3C's k-step estimate, or GAE(γ, λ) (Schulman
    et al. 2016, eq. 16) with targets A + V; at λ = 1 the two are equal, at λ = 0 GAE is the TD
    error."""
    if config.advantage_estimator == "gae":
        return score_function.gae_and_targets(traj, hparams.gamma, hparams.gae_lambda)
    returns = k_step_returns(traj, hparams.gamma)
    return returns - traj.values, returns


def update(config: Config, state: train_state.TrainState):
    learning_rate = optimiser.current_learning_rate(config, state.hparams, state.update_step)
    state, traj = train_state.collect(config, state)
    advantages, returns = advantages_and_targets(config, traj, state.hparams)
    if config.normalize_advantages:
        advantages = score_function.normalize(advantages)
    state, learn = score_function.score_function_update(config, state, traj, advantages, returns,
                                                jnp.ones_like(returns), learning_rate)
    return state, {**learn, **update_metrics.common_metrics(state, traj, returns),
                   "advantage_mean": jnp.mean(advantages), "learning_rate": learning_rate}
