"""The actor-critic family, selected by the term Ψ that multiplies ∇log π (the policy
gradient theorem, Sutton & Barto 2018, §13.2 and §13.5):

- ``variant="q"``          Q actor-critic: Ψ = (1−γ)·Q_φ(s, a) (Q on one step's scale,
                           :func:`normalized_q`). The critic Q_φ(s, ·) is learned by expected SARSA,
                           y = r + γ(1−term)·Σ_a' π(a'|s') Q_φ(s', a'). Discrete actions.
- ``variant="advantage"``  advantage actor-critic, Ψ = Â(s, a) from ``advantage_estimator``:
    ``"q_minus_v"``  Q_φ(s, a) − V_φ(s) with V_φ(s) = Σ_a π(a|s) Q_φ(s, a) (Sutton & Barto
                     2018, §13.4, with V from Q); critic as for ``"q"``. Discrete actions.
    ``"n_step"``     the n-step advantage Σ_{i<n} γ^i r_{t+i} + γ^n V_φ(s_{t+n}) − V_φ(s_t) (Mnih et al.
                     2016); V_φ regressed on the n-step return.
    ``"gae"``        GAE(γ, λ) (Schulman et al. 2016); V_φ regressed on A + V.
- ``variant="td"``         TD actor-critic: Ψ = δ = r + γ(1−term)·V_φ(s') − V_φ(s); V_φ by TD(0).
- ``variant="td_lambda"``  TD(λ) actor-critic with eligibility traces for actor and critic, updated
                           online at every environment step (Sutton & Barto 2018, §13.6, "Actor–Critic
                           with Eligibility Traces (episodic)"), per environment:

      δ   = R + γ(1−term)·v̂(S', w) − v̂(S, w)
      z^w ← γ λ^w z^w + ∇_w v̂(S, w)            w ← w + α^w δ z^w
      z^θ ← γ λ^θ z^θ + I ∇_θ ln π(A|S, θ)      θ ← θ + α^θ δ z^θ (+ α^θ β ∇_θ H)
      I   ← γ I;  at an episode end (terminated or truncated) I ← 1, z ← 0.

  The N vmapped environments each keep their own traces; their updates are averaged. With
  ``log_grad_variance`` the gradient-noise metrics are taken over the N per-environment actor
  directions δ_i z^θ_i at every step and averaged over the rollout's steps. Traces are
  pytrees shaped like the parameters, so the same code serves linear features (``torso`` =
  "onehot" / "random_projection" / "tile") and neural networks. Plain SGD, as in Sutton & Barto
  2018, §13.5.

All batch variants take one gradient step per rollout on the shared score-function loss
(:func:`pgjax.algorithms.score_function.score_function_loss`); the critic has its own step size α^w
(``critic_learning_rate``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import diagnostics, estimators
from pgjax.algorithms import score_function, setup, train_state, update_metrics
from pgjax.config import CommonConfig, CommonHparams, require, setting
from pgjax.networks import ActorCritic

NAME = "actor-critic"
VARIANTS = ("q", "advantage", "td", "td_lambda")
ADVANTAGE_ESTIMATORS = ("q_minus_v", "n_step", "gae")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    variant: str = setting(
        "advantage", choices=VARIANTS, help="q, advantage, td or td_lambda (online, "
        "eligibility traces)")
    advantage_estimator: str = setting(
        "gae", choices=ADVANTAGE_ESTIMATORS, help="variant=advantage: q_minus_v, n_step or gae")
    n_steps: int = setting(5, low=1, help="advantage_estimator=n_step: n")
    num_envs: int = 16
    rollout_length: int = 16
    total_steps: int = 1_000_000

    def __post_init__(self):
        super().__post_init__()
        require(not self.shared_torso, "shared_torso", True,
                "actor and critic have their own step sizes (and traces), so torsos are separate")
        require(not (self.gsde and self.variant == "td_lambda"), "gsde", self.gsde,
                "the online td_lambda variant steps its own rollout, which draws no gSDE noise")

    @property
    def uses_q_critic(self) -> bool:
        return self.variant == "q" or (self.variant == "advantage" and self.advantage_estimator == "q_minus_v")

    @property
    def supported_action_spaces(self):  # a Q head over actions needs discrete actions
        return ("discrete",) if self.uses_q_critic else ("discrete", "continuous")


@struct.dataclass
class Hparams(CommonHparams):
    learning_rate: Any = setting(
        3e-4, low=0, low_open=True, help="the actor's step size α^θ, below α^w: the critic on "
        "the faster timescale (Konda & Tsitsiklis 2000)")
    critic_learning_rate: Any = setting(
        1e-3, low=0, low_open=True, help="the critic's step size α^w")
    gae_lambda: Any = setting(0.95, low=0, high=1, help="advantage_estimator=gae: λ of GAE")
    lambda_actor: Any = setting(
        0.9, low=0, high=1, help="td_lambda: trace decay λ^θ of the actor's eligibility trace")
    lambda_critic: Any = setting(
        0.9, low=0, high=1, help="td_lambda: trace decay λ^w of the critic's eligibility trace")
    vf_coef: Any = 1.0
    max_grad_norm: Any = 10.0


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    extra = None
    if config.variant == "td_lambda":
        state = train_state.init_train_state(config, hparams, key)
        zeros = jax.tree.map(lambda p: jnp.zeros((config.num_envs,) + p.shape, p.dtype), state.params)
        extra = {"z_actor": zeros, "z_critic": zeros, "discount_product": jnp.ones((config.num_envs,))}
        return state.replace(extra=extra)
    return train_state.init_train_state(config, hparams, key)


def psi_and_targets(config: Config, params, traj, hparams):
    """(Ψ_t, critic targets y_t) of a batch variant, from the rollout's values and next_values
    (with a Q critic those are V = Σπ Q) and, for Q-based variants, the current Q_φ(s_t, a_t)."""
    discounts, dones = traj.discounts(hparams.gamma), traj.dones()
    one_step = traj.rewards + discounts * traj.next_values
    if config.uses_q_critic:
        network = setup.make_network(config)
        q = network.apply(params, traj.obs, method=ActorCritic.q_values)
        q_taken = jnp.take_along_axis(q, traj.actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
        psi = normalized_q(q_taken, hparams.gamma) if config.variant == "q" else q_taken - traj.values
        return psi, one_step
    if config.variant == "td":
        return one_step - traj.values, one_step
    if config.advantage_estimator == "n_step":
        returns = estimators.n_step_returns(traj.rewards, traj.next_values, discounts, dones, config.n_steps)
        return returns - traj.values, returns
    return score_function.gae_and_targets(traj, hparams.gamma, hparams.gae_lambda)


def normalized_q(q_taken: jax.Array, gamma) -> jax.Array:
    """Ψ of the Q actor-critic: (1 − γ)·Q_φ(s, a), the action value on the scale of one step's
    reward (the normalised value of Kakade & Langford 2002; Agarwal et al. 2021, §2). It is Ψ = Q
    times a positive constant, so the gradient's direction is the textbook one; what changes is
    the entropy bonus β's weight against it. Q ≈ r/(1 − γ) (≈ 100 on CartPole) swamps β = 0.01,
    the policy collapses to one action, and expected SARSA then evaluates only that action and
    gives no signal to leave it; with (1 − γ)·Q it does not collapse
    (``python -m benchmarks.learning --only actor-critic-q-CartPole-v1``). The advantage variants' Ψ is already
    on a per-step scale."""
    return (1.0 - gamma) * q_taken


def td_lambda_step(network: ActorCritic, hparams, params, traces, transition, with_stats: bool = False):
    """One online TD(λ) actor-critic step over N environments (see the module docstring).
    ``traces`` = {"z_actor", "z_critic": per-env pytrees [N, ...], "discount_product": [N]}.
    Returns (params, traces, δ [N], info): ``info["direction_norm"]`` is the global norm of this
    step's update direction before the step sizes, ‖(mean_i δ_i z^θ_i + β·mean_i ∇H_i,
    mean_i δ_i z^w_i)‖ (the online method's counterpart of a gradient norm), and with
    ``with_stats`` ``info["stats"]`` holds the gradient-noise statistics of the N
    per-environment actor directions δ_i z^θ_i (:mod:`pgjax.diagnostics`)."""
    gamma = hparams.gamma
    discount = transition.discounts(gamma)       # γ(1 − terminated)
    done = transition.dones()

    def per_env(obs, action, next_obs):
        value, grad_v = jax.value_and_grad(lambda p: network.apply(p, obs, method=ActorCritic.value))(params)
        next_value = network.apply(params, next_obs, method=ActorCritic.value)
        grad_logp = jax.grad(lambda p: network.apply(p, obs, method=ActorCritic.policy).log_prob(action))(params)
        grad_h = jax.grad(lambda p: network.apply(p, obs, method=ActorCritic.policy).entropy())(params)
        return value, next_value, grad_v, grad_logp, grad_h

    values, next_values, grad_v, grad_logp, grad_h = jax.vmap(per_env)(
        transition.obs, transition.actions, transition.next_obs)
    delta = transition.rewards + discount * next_values - values
    expand = lambda x, leaf: x.reshape(x.shape + (1,) * (leaf.ndim - 1))
    z_critic = jax.tree.map(lambda z, g: gamma * hparams.lambda_critic * z + g, traces["z_critic"], grad_v)
    z_actor = jax.tree.map(lambda z, g: gamma * hparams.lambda_actor * z
                           + expand(traces["discount_product"], g) * g, traces["z_actor"], grad_logp)
    mean_update = lambda z: jnp.mean(expand(delta, z) * z, axis=0)
    actor_direction = jax.tree.map(
        lambda za, gh: mean_update(za) + hparams.ent_coef * jnp.mean(gh, axis=0), z_actor, grad_h)
    critic_direction = jax.tree.map(mean_update, z_critic)
    params = jax.tree.map(
        lambda p, da, dc: p + hparams.learning_rate * da + hparams.critic_learning_rate * dc,
        params, actor_direction, critic_direction)
    keep = 1.0 - done
    new_traces = {"z_actor": jax.tree.map(lambda z: expand(keep, z) * z, z_actor),
                  "z_critic": jax.tree.map(lambda z: expand(keep, z) * z, z_critic),
                  "discount_product": jnp.where(done > 0, 1.0, traces["discount_product"] * gamma)}
    info = {"direction_norm": optax.tree.norm((actor_direction, critic_direction))}
    if with_stats:
        directions = jax.tree.map(lambda z: expand(delta, z) * z, z_actor)
        info["stats"] = diagnostics.gradient_statistics(update_metrics.policy_leaves(directions))
    return params, new_traces, delta, info


def _update_td_lambda(config: Config, state: train_state.TrainState):
    from pgjax.rollout import rollout
    network = setup.make_network(config)
    venv, env_params = setup.make_env(config)
    policy_fn, value_fn = setup.policy_and_value_fns(network)
    hp = state.hparams

    def on_step(params, learner, transition):
        params, traces, delta, info = td_lambda_step(network, hp, params, learner["traces"],
                                                     transition, with_stats=config.log_grad_variance)
        sums = {"abs_delta": jnp.mean(jnp.abs(delta)), "direction_norm": info["direction_norm"]}
        if config.log_grad_variance:
            stats = info["stats"]
            sums.update({"grad_variance": stats.total_variance,
                         "grad_mean_sq_norm": stats.mean_sq_norm, "grad_snr": stats.snr})
        return params, {"traces": traces, "sums": jax.tree.map(jnp.add, learner["sums"], sums)}

    key, rollout_key = jax.random.split(state.key)
    env_state, obs, _, traj, params, learner = rollout(
        venv, env_params, policy_fn, value_fn, state.params, state.env_state, state.obs, rollout_key,
        config.rollout_length, on_step=on_step, learner_state=_td_lambda_learner(config, state.extra))
    state = state.replace(params=params, env_state=env_state, obs=obs, key=key, extra=learner["traces"],
                          update_step=state.update_step + 1)
    dist = network.apply(params, traj.obs, method=ActorCritic.policy)
    targets = traj.rewards + traj.discounts(hp.gamma) * traj.next_values
    # per-step quantities averaged over the rollout; grad_norm is the mean norm of the update
    # direction (td_lambda_step), the online counterpart of a batch method's gradient norm
    means = {k: v / config.rollout_length for k, v in learner["sums"].items()}
    metrics = {**update_metrics.common_metrics(state, traj, targets), "entropy": jnp.mean(dist.entropy()),
               "online_abs_td_error": means.pop("abs_delta"), "grad_norm": means.pop("direction_norm"),
               "policy_loss": -jnp.mean(traj.log_probs * (targets - traj.values)),
               "value_loss": 0.5 * jnp.mean((targets - traj.values) ** 2),
               "learning_rate": hp.learning_rate, **means}
    metrics["total_loss"] = metrics["policy_loss"] + hp.vf_coef * metrics["value_loss"]
    return state, metrics


def _td_lambda_learner(config: Config, traces) -> dict:
    names = ["abs_delta", "direction_norm"]
    if config.log_grad_variance:
        names += ["grad_variance", "grad_mean_sq_norm", "grad_snr"]
    return {"traces": traces, "sums": {name: jnp.asarray(0.0) for name in names}}


def update(config: Config, state: train_state.TrainState):
    if config.variant == "td_lambda":
        return _update_td_lambda(config, state)
    state, traj = train_state.collect(config, state)
    psi, targets = psi_and_targets(config, state.params, traj, state.hparams)
    mask = jnp.ones_like(traj.rewards)
    state, learn = score_function.score_function_update(config, state, traj, psi, targets, mask)
    return state, {**learn, **update_metrics.common_metrics(state, traj, targets), "psi_mean": jnp.mean(psi)}
