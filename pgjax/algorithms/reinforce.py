"""REINFORCE: Monte-Carlo policy gradient, with or without a baseline (Williams 1992; Sutton &
Barto 2018, §13.3–13.4).

    θ ← θ + α (G_t − b(S_t)) ∇_θ log π_θ(A_t|S_t)

averaged over the steps of the batch. ``baseline`` selects b:

- ``"none"``: b = 0.
- ``"running_average"``: b = an exponential moving average of past returns G (rate
  ``baseline_decay``), updated *after* the gradient step, so b never depends on the current
  actions (the estimator stays unbiased).
- ``"learned"``: b(s) = V_w(s), regressed on G_t with its own step size α^w
  (``critic_learning_rate``), as in Sutton & Barto's "REINFORCE with Baseline" box.

For a Gaussian policy N(μ_θ(s), σ²) the score is (A_t − μ_θ(S_t))/σ²·∇μ_θ(S_t), so the update is
θ ← θ + α G_t (A_t − μ_θ(S_t))/σ² ∇μ_θ(S_t).

Complete episodes. Each update rolls the vmapped environments for ``rollout_length`` steps (make
it at least the time limit, the default for CartPole being 500). G_t is the discounted sum of
rewards to the end of S_t's episode; steps whose episode has not ended inside the segment are
masked out (their environments carry on into the next update, whose steps from the same
episode then have complete futures). Time limits: where an episode is *truncated*, the return is
bootstrapped from the learned value of the final observation, G_t = … + γ^k V_w(s_final), when
a critic exists (``baseline="learned"``); without one, the truncated return is the plain sum of
the rewards received, which undervalues states near the time limit — use a learned baseline (or
a time limit the policy never reaches) where that matters.

No γ^t factor multiplies the update (as in most implementations; Sutton & Barto 2018 §13.3's
boxed algorithm has one).

``loss_reduction``: ``"mean"`` (default) averages the loss over the valid steps of the batch;
``"sum"`` sums it, θ ← θ + α Σ_t (G_t − b(S_t)) ∇_θ log π_θ(A_t|S_t) (and likewise the value
loss ½ Σ_t (V_w(S_t) − G_t)², the entropy bonus Σ_t H_t), which is Sutton & Barto's per-episode
update (§13.3–13.4 boxes, with the step-by-step θ changes inside an episode summed) applied to all
the complete episodes of the segment. Use it with ``optimizer="sgd"`` to reproduce their step sizes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
from flax import struct

from pgjax import estimators
from pgjax.algorithms import optimiser, score_function, train_state, update_metrics
from pgjax.config import CommonConfig, CommonHparams, require, setting

NAME = "reinforce"
BASELINES = ("none", "running_average", "learned")
REDUCTIONS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    supports_recurrent: ClassVar[bool] = True
    baseline: str = setting(
        "learned", choices=BASELINES, help="b: none, running_average (of past returns) or "
        "learned (a critic V_φ with its own step size)")
    num_envs: int = 8
    rollout_length: int = 500
    total_steps: int = 1_000_000
    normalize_psi: bool = setting(
        False, help="divide G − b by its batch std (a common variance trick; off = textbook)")
    loss_reduction: str = setting(
        "mean", choices=REDUCTIONS, help="mean over valid steps, or sum (Sutton & Barto's "
        "per-episode sum; see the module doc)")
    anneal_lr: bool = setting(
        False, help="decay the policy's step size α linearly to 0 over the run")

    def __post_init__(self):
        super().__post_init__()
        require(not (self.baseline == "learned" and self.shared_torso), "shared_torso", True,
                "a learned baseline has its own step size, so the torsos must be separate")


@struct.dataclass
class Hparams(CommonHparams):
    learning_rate: Any = 1e-3
    critic_learning_rate: Any = setting(
        1e-3, low=0, low_open=True, help="step size α^w of the learned baseline V_φ")
    vf_coef: Any = 1.0
    ent_coef: Any = 0.0
    max_grad_norm: Any = 10.0
    baseline_decay: Any = setting(
        0.05, low=0, low_open=True, high=1, help="rate of the running-average baseline: "
        "b ← b + rate·(mean G − b)")


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    return train_state.init_train_state(config, hparams, key, extra={"running_baseline": jnp.zeros(())})


def returns_and_mask(config: Config, traj, gamma):
    """(G_t, mask of steps whose episode completes in the segment)."""
    bootstrap = traj.next_values if config.baseline == "learned" else jnp.zeros_like(traj.rewards)
    returns = estimators.discounted_returns(traj.rewards, bootstrap, traj.discounts(gamma), traj.dones())
    return returns, score_function.complete_episode_mask(traj.dones())


def update(config: Config, state: train_state.TrainState):
    hp = state.hparams
    learning_rate = optimiser.current_learning_rate(config, hp, state.update_step)
    state, traj = train_state.collect(config, state)
    returns, mask = returns_and_mask(config, traj, hp.gamma)
    running = state.extra["running_baseline"]
    if config.baseline == "learned":
        baseline = traj.values
    elif config.baseline == "running_average":
        baseline = jnp.broadcast_to(running, returns.shape)
    else:
        baseline = jnp.zeros_like(returns)
    psi = returns - baseline
    if config.normalize_psi:
        psi = psi / (jnp.sqrt(score_function.masked_mean(psi**2, mask)) + 1e-8)
    if config.loss_reduction == "sum":
        # the masked mean times n = Σ mask is the masked sum: scale Ψ and the loss coefficients
        n = jnp.sum(mask)
        summed = hp.replace(vf_coef=hp.vf_coef * n, ent_coef=hp.ent_coef * n)
        state, learn = score_function.score_function_update(config, state.replace(hparams=summed), traj,
                                                    psi * n, returns, mask, learning_rate)
        state = state.replace(hparams=hp)
    else:
        state, learn = score_function.score_function_update(config, state, traj, psi, returns, mask,
                                                    learning_rate)
    mean_return = score_function.masked_mean(returns, mask)
    has_data = jnp.sum(mask) > 0
    running = jnp.where(has_data, running + hp.baseline_decay * (mean_return - running), running)
    state = state.replace(extra={"running_baseline": running})
    metrics = {**learn, **update_metrics.common_metrics(state, traj, returns),
               "baseline_mean": score_function.masked_mean(baseline, mask), "return_mean": mean_return,
               "valid_fraction": jnp.mean(mask), "learning_rate": learning_rate}
    return state, metrics
