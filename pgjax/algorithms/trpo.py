"""Trust Region Policy Optimization (Schulman et al. 2015).

    maximise_θ  L^{IS}(θ) = E_t[π_θ(a_t|s_t)/π_θ_old(a_t|s_t) · A_t]
    subject to  E_t[KL[π_θ_old(·|s_t) ‖ π_θ(·|s_t)]] ≤ δ

One update: a rollout, GAE(γ, λ) advantages (normalised), then
1. g = ∇L^{IS} at θ_old, restricted to the policy's parameters;
2. s ≈ H⁻¹g by ``cg_iterations`` steps of conjugate gradient on Fisher-vector products
   (H = ∇² of the mean KL, via a jvp of its gradient; damping ``cg_damping``);
3. the full step β·s with β = √(2δ / sᵀHs);
4. a backtracking line search that accepts the first shrunken step with a positive surrogate
   improvement and mean KL ≤ δ, or else leaves the policy unchanged;
5. the critic regressed on the GAE targets A + V by ``critic_epochs`` × ``critic_minibatches``
   steps of ``optimizer`` (Adam by default; step size ``learning_rate``), with the policy
   parameters frozen.
The policy and critic have separate torsos, so the two steps touch disjoint parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pgjax import losses, trust_region
from pgjax.algorithms import optimiser, score_function, setup, train_state, update_metrics
from pgjax.config import CommonConfig, CommonHparams, require, setting
from pgjax.networks import ActorCritic
from pgjax.shuffle import shuffled_minibatches

NAME = "trpo"


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    num_envs: int = 16
    rollout_length: int = 128
    total_steps: int = 500_000
    cg_iterations: int = setting(10, low=1, help="conjugate-gradient iterations for F⁻¹g")
    line_search_steps: int = setting(10, low=1, help="backtracking line-search halvings")
    critic_epochs: int = setting(5, low=1, help="critic regression passes per update")
    critic_minibatches: int = setting(
        4, low=1, help="critic minibatches per pass (must divide num_envs*rollout_length)")

    def __post_init__(self):
        super().__post_init__()
        require(not self.shared_torso, "shared_torso", True,
                "TRPO steps the policy and the critic separately, so torsos must be separate")
        require(self.steps_per_update % self.critic_minibatches == 0, "critic_minibatches",
                self.critic_minibatches, f"must divide num_envs*rollout_length = {self.steps_per_update}")


@struct.dataclass
class Hparams(CommonHparams):
    learning_rate: Any = setting(
        1e-3, low=0, low_open=True, help="the critic's step size (the policy's step is set by "
        "max_kl)")
    max_kl: Any = setting(
        0.01, low=0, low_open=True, help="trust-region radius δ: bound on the mean KL of an "
        "update")
    cg_damping: Any = setting(
        0.1, low=0, help="damping added to the Fisher-vector product (F + damping·I)")
    gae_lambda: Any = setting(0.97, low=0, high=1, help="λ of GAE")
    max_grad_norm: Any = 10.0
    ent_coef: Any = 0.0


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    return train_state.init_train_state(config, hparams, key)


def _split(params):
    """(actor mask tree of bools) — True on policy leaves."""
    return jax.tree.map(lambda label: label == "actor", optimiser.critic_labels(params))


def surrogate_objective(params, network: ActorCritic, samples, ent_coef):
    """L^{IS}(θ) + β·E_t[H(π_θ(·|s_t))] on ``samples`` = (obs, actions, log π_θ_old, advantages),
    all ``[T, N, ...]`` (maximised)."""
    obs, actions, old_log_probs, advantages = samples
    dist = network.apply(params, obs, method=ActorCritic.policy)
    return (losses.importance_sampled_surrogate(dist.log_prob(actions), old_log_probs, advantages)
            + ent_coef * losses.entropy(dist))


def policy_step(config: Config, params, traj, advantages, hparams):
    """Steps 1–4 of the module docstring. Returns (params, metrics).

    With ``config.log_grad_variance`` the metrics add the gradient-noise statistics of g over one
    estimate per environment (the gradient of the surrogate on that env's steps; their mean is g)."""
    network = setup.make_network(config)
    actor_mask = _split(params)
    zero_critic = lambda tree: jax.tree.map(lambda x, m: x if m else jnp.zeros_like(x), tree, actor_mask)
    old_dist = network.apply(params, traj.obs, method=ActorCritic.policy)
    old_dist = jax.lax.stop_gradient(old_dist)
    samples = (traj.obs, traj.actions, traj.log_probs, advantages)
    surrogate = lambda p: surrogate_objective(p, network, samples, hparams.ent_coef)

    def mean_kl(p):
        return losses.mean_kl(old_dist, network.apply(p, traj.obs, method=ActorCritic.policy))

    surrogate_old = surrogate(params)
    g = zero_critic(jax.grad(surrogate)(params))
    fvp = lambda v: zero_critic(trust_region.fisher_vector_product(mean_kl, params, v, hparams.cg_damping))
    direction, residual = trust_region.conjugate_gradient(fvp, g, config.cg_iterations)
    shs = trust_region.tree_vdot(direction, fvp(direction))
    beta = jnp.sqrt(2.0 * hparams.max_kl / jnp.maximum(shs, 1e-12))
    full_step = jax.tree.map(lambda d: beta * d, direction)
    new_params, accepted, backtracks, improvement, kl = trust_region.backtracking_line_search(
        lambda p: surrogate(p) - surrogate_old, mean_kl, params, full_step, hparams.max_kl,
        config.line_search_steps)
    metrics = {"kl": kl, "cg_residual": residual, "line_search_backtracks": backtracks.astype(jnp.float32),
               "surrogate_improvement": improvement, "step_accepted": accepted.astype(jnp.float32),
               "policy_loss": -surrogate_old, "grad_norm": jnp.sqrt(trust_region.tree_vdot(g, g)),
               "entropy": jnp.mean(old_dist.entropy()), "approx_kl": kl,
               **update_metrics.gradient_diagnostics(
                   config, lambda p, group: surrogate_objective(p, network, group, hparams.ent_coef),
                   params, lambda: (update_metrics.env_groups(config, samples), None))}
    return new_params, metrics


def critic_step(config: Config, state: train_state.TrainState, traj, targets):
    """Step 5: minibatch regression of V_φ on the targets; the policy leaves get no update."""
    network = setup.make_network(config)
    batch = score_function.flatten_time_batch((traj.obs, targets))
    actor_mask = _split(state.params)

    def value_loss(params, minibatch):
        obs, y = minibatch
        return losses.value_loss(network.apply(params, obs, method=ActorCritic.value), y)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(value_loss)(params, minibatch)
        grads = jax.tree.map(lambda g, m: jnp.where(m, 0.0, g), grads, actor_mask)
        params, opt_state, _ = optimiser.apply_gradients(config, state.replace(params=params, opt_state=opt_state), grads)
        return (params, opt_state), loss

    def epoch(carry, key):
        return jax.lax.scan(minibatch_step, carry,
                            shuffled_minibatches(batch, key, config.critic_minibatches))

    key, epoch_key = jax.random.split(state.key)
    (params, opt_state), value_losses = jax.lax.scan(
        epoch, (state.params, state.opt_state), jax.random.split(epoch_key, config.critic_epochs))
    return state.replace(params=params, opt_state=opt_state, key=key), jnp.mean(value_losses)


def update(config: Config, state: train_state.TrainState):
    hp = state.hparams
    state, traj = train_state.collect(config, state)
    advantages, targets = score_function.gae_and_targets(traj, hp.gamma, hp.gae_lambda)
    params, policy_metrics = policy_step(config, state.params, traj, score_function.normalize(advantages), hp)
    state, value_loss = critic_step(config, state.replace(params=params), traj, targets)
    state = state.replace(update_step=state.update_step + 1)
    metrics = {**policy_metrics, **update_metrics.common_metrics(state, traj, targets), "value_loss": value_loss,
               "total_loss": policy_metrics["policy_loss"] + value_loss,
               "clip_fraction": jnp.asarray(0.0)}
    return state, metrics
