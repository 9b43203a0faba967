"""The score-function update the on-policy methods share (REINFORCE, actor-critic, A2C): the
loss −E[log π·Ψ] + c_v·value loss − β·entropy, one gradient step on it, and the estimators and
masks its callers build Ψ and the targets from."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax import diagnostics, estimators, losses
from pgjax.algorithms.optimiser import apply_gradients
from pgjax.algorithms.setup import make_network, policy_and_values
from pgjax.algorithms.train_state import TrainState
from pgjax.algorithms.update_metrics import env_groups, gradient_diagnostics
from pgjax.networks import ActorCritic
from pgjax.rollout import Trajectory


def gae_and_targets(traj: Trajectory, gamma, lambda_):
    """(GAE(γ, λ) advantages of the rollout, value targets A + V): :func:`pgjax.estimators.gae`
    on the trajectory's rewards, values, bootstrap values, discounts γ(1 − terminated) and episode
    ends (Schulman et al. 2016, eq. 16)."""
    advantages = estimators.gae(traj.rewards, traj.values, traj.next_values, traj.discounts(gamma),
                                traj.dones(), lambda_)
    return advantages, advantages + traj.values


def normalize(x, eps: float = 1e-8):
    """(x − mean)/std over all elements; a single element (minibatch of size 1) is left centred at 0
    rather than divided by a zero std."""
    if x.size <= 1:
        return x - jnp.mean(x)
    return (x - jnp.mean(x)) / (jnp.std(x) + eps)


def flatten_time_batch(tree):
    """[T, N, ...] → [T·N, ...] for every leaf."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def masked_mean(x, mask):
    """Σ mask·x / max(Σ mask, 1) (0 when the mask is empty): :func:`pgjax.losses.masked_mean`."""
    return losses.masked_mean(x, mask=mask)


def score_function_loss(params, network, traj: Trajectory, psi, critic_targets, mask, hparams):
    """The loss every score-function method shares:

    L = −E_m[log π_θ(a_t|s_t)·Ψ_t] + c_v·½E_m[(C_φ(s_t, a_t) − y_t)²] − β·E_m[H(π_θ(·|s_t))],

    where Ψ_t is what multiplies the score (G_t, G_t − b, Q, A, δ), C_φ is the critic (V_φ(s), or
    Q_φ(s, a) with a Q critic), y_t its regression target, and E_m the mean over steps where
    ``mask`` is 1. Ψ and y are constants. Returns (loss, metrics).
    """
    if network.q_critic:
        dist = network.apply(params, traj.obs, method=ActorCritic.policy)
        q = network.apply(params, traj.obs, method=ActorCritic.q_values)
        prediction = jnp.take_along_axis(q, traj.actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
    else:
        dist, prediction = policy_and_values(network, params, traj.obs, traj.memory_start,
                                             traj.episode_done)
    log_probs = dist.log_prob(traj.actions)
    policy_loss = losses.policy_gradient_loss(log_probs, psi, mask=mask)
    value_loss = losses.value_loss(prediction, critic_targets, mask=mask)
    entropy = losses.entropy(dist, mask=mask)
    total = policy_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                   "total_loss": total,
                   "approx_kl": losses.approx_kl(log_probs, traj.log_probs, mask=mask)}


def score_function_update(config, state: TrainState, traj: Trajectory, psi, critic_targets, mask,
                          learning_rate=None):
    """One gradient step on :func:`score_function_loss`. Returns (state, metrics).

    With ``config.log_grad_variance`` the metrics add the gradient-noise statistics over one
    estimate per environment: env i's estimate is N × its share of the batch gradient, i.e. the
    gradient of its own masked-mean loss times N·n_i/Σ_j n_j (n_i its unmasked steps,
    :func:`pgjax.diagnostics.share_weights`), so their mean ḡ is exactly the gradient of the
    batch loss (restricted to the policy's parameters) and an env without unmasked steps
    contributes a zero estimate."""
    network = make_network(config)
    grads, metrics = jax.grad(score_function_loss, has_aux=True)(
        state.params, network, traj, psi, critic_targets, mask, state.hparams)
    group_loss = lambda p, g: score_function_loss(p, network, *g, state.hparams)[0]
    noise = gradient_diagnostics(config, group_loss, state.params, lambda: (
        env_groups(config, (traj, psi, critic_targets, mask)), diagnostics.share_weights(mask, axis=1)))
    params, opt_state, grad_norm = apply_gradients(config, state, grads, learning_rate)
    state = state.replace(params=params, opt_state=opt_state, update_step=state.update_step + 1)
    return state, {**metrics, "grad_norm": grad_norm, **noise}


def complete_episode_mask(dones):
    """1 at steps whose episode ends inside the segment (some done at t' ≥ t), else 0: the steps
    for which a Monte-Carlo return G_t over the complete episode is known."""
    dones = jnp.asarray(dones, jnp.float32)
    return (jnp.flip(jnp.cumsum(jnp.flip(dones, 0), 0), 0) > 0).astype(jnp.float32)
