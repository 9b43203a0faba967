"""IMPALA: off-policy actor–learner training corrected with V-trace (Espeholt et al. 2018, eq. 1
and §4.2).

In IMPALA the actors act with a behaviour policy μ whose parameters lag behind the learner's
policy π, and the learner corrects for the difference with truncated importance weights. Here the
actor–learner split is simulated inside one jitted program, so the lag is a controlled, static
quantity instead of an accident of timing:

**Actors (policy lag).** ``policy_lag = L`` keeps a ring buffer of the last ``L`` parameter
snapshots in ``state.extra``; update ``k`` rolls out (through the shared engine,
:func:`pgjax.algorithms.train_state.collect`) with the *oldest* snapshot, i.e. with the learner's
parameters θ_{k−L} from L updates ago. The buffer starts filled with the initial parameters θ_0, so
the lag actually used at update ``k`` is ``min(k, L)``: 0 at the first update (no older snapshot
exists), then growing by one per update until it reaches ``L``. That number is reported as the
metric ``policy_lag`` — computed from the version stamp stored with each snapshot, not assumed.
``L = 0`` is on-policy (behaviour = current parameters) and stores nothing.

**Queue (reuse).** With ``queue_size = Q > 1`` the train state holds a FIFO of the last ``Q``
trajectories, each stored with its behaviour log-probabilities log μ(a_t|x_t) (the trajectory's
``log_probs``) and the version of the parameters that generated it. Every update pushes the fresh
trajectory (evicting the oldest) and then takes ``replay_times = R ≤ Q`` learner steps, one per
queued trajectory of age ``a_j = ⌊j·Q/R⌋`` updates (j = 0..R−1), oldest first and the fresh one
(age 0) last. Each trajectory therefore meets the learner exactly ``R`` times, spread over its
``Q`` updates in the queue; its data grows staler with each reuse, which V-trace corrects like any
other lag. Slots that are still empty at the start of training are skipped (no parameter change).
``state.extra.queue_uses`` counts the learner steps each stored trajectory has been used for.

**Learner.** For a trajectory from μ it recomputes log π(a_t|x_t), V(x_t) and V(x'_t) (``next_obs``:
the true successor, the pre-reset final observation at episode ends) under the current parameters
and forms, with log ρ_t = log π(a_t|x_t) − log μ(a_t|x_t) (:func:`pgjax.estimators.vtrace`),

    v_s = V(x_s) + Σ_{t≥s} (Π_{i=s}^{t−1} γ_i c_i) ρ_t δ_t,      ρ_t = min(ρ̄, π/μ),  c_i = λ·min(c̄, π/μ),
    A_s = min(pg_ρ̄, π/μ)·(r_s + γ_s v_{s+1} − V(x_s)),

then minimises  L = −E[log π(a_s|x_s)·A_s] + c_v·½E[(v_s − V(x_s))²] − β·H[π]  (§4.2: value loss,
policy gradient, entropy bonus) with RMSProp (as in the paper) or Adam, after global-norm clipping.
``correction="none"`` sets log ρ = 0: the plain n-step/λ actor–critic on stale data, for the
policy-lag study (benchmarks/studies/policy_lag.py).

**Metrics** (besides PPO's): ``policy_lag`` — updates between the actors' parameters and the
learner's for the fresh trajectory, ``min(k, L)`` as above; ``data_lag_mean`` — the same averaged
over this update's learner steps, counting the extra age of replayed trajectories;
``learner_steps`` — learner steps taken (fewer than ``R`` while the queue fills); ``rho_mean``,
``rho_clipped_fraction``, ``c_clipped_fraction`` — the *actual* ratio π/μ and the fractions above
ρ̄ and c̄ (beyond round-off), reported even with ``correction="none"``; ``approx_kl`` — KL[μ‖π]
estimated on μ's samples. Losses and value statistics are the learner's, averaged over its steps
(so are the optional ``grad_variance``/``grad_mean_sq_norm``/``grad_snr`` of ``log_grad_variance``,
one gradient estimate per environment: :func:`learner_step`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pgjax import estimators, losses
from pgjax.algorithms import optimiser, score_function, setup, train_state, update_metrics
from pgjax.config import CommonConfig, CommonHparams, require, setting
from pgjax.networks import ActorCritic
from pgjax.rollout import Trajectory, episode_metrics

NAME = "impala"

CORRECTIONS = ("vtrace", "none")

# A ratio counts as clipped only beyond float round-off: the learner's log π and the actor's log μ
# come from differently batched network calls, so on-policy log ρ is 0 only to ~1e-7.
_CLIP_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    num_envs: int = 16
    rollout_length: int = 20       # the unroll length of the paper's Atari experiments
    optimizer: str = "rmsprop"     # the paper's optimiser; "adam" also works
    policy_lag: int = setting(
        0, low=0, help="behaviour params = learner params from this many updates ago "
        "(0: on-policy)")
    queue_size: int = setting(1, low=1, help="trajectories kept in the FIFO queue (1: no reuse)")
    replay_times: int = setting(
        1, low=1, help="learner steps each trajectory is used for (at most queue_size)")
    correction: str = setting(
        "vtrace", choices=CORRECTIONS, help="vtrace, or none (log ρ = 0: uncorrected "
        "actor-critic)")
    anneal_lr: bool = setting(True, help="decay the learning rate linearly to 0 over the run")
    normalize_advantages: bool = setting(
        False, help="normalise the V-trace advantages over the batch")

    def __post_init__(self):
        super().__post_init__()
        require(self.replay_times <= self.queue_size, "replay_times", self.replay_times,
                f"must be <= queue_size = {self.queue_size} (a trajectory is used at most once per "
                "update while it is queued)")

    @property
    def replay_ages(self) -> tuple[int, ...]:
        """Ages (in updates) of the queued trajectories each update learns from, oldest first:
        ⌊j·Q/R⌋ for j = R−1..0 (distinct because R ≤ Q); the last is always 0, the fresh one."""
        q, r = self.queue_size, self.replay_times
        return tuple((j * q) // r for j in reversed(range(r)))


@struct.dataclass
class Hparams(CommonHparams):
    learning_rate: Any = 3e-3      # chosen over 1e-3 on CartPole-v1 (python -m benchmarks.learning)
    max_grad_norm: Any = 40.0      # the paper clips the global norm at 40
    lambda_: Any = setting(1.0, low=0, high=1, help="trace-cutting λ of Espeholt et al. "
                           "2018, Remark 2")
    rho_bar: Any = setting(1.0, low=0, low_open=True, help="ρ̄: truncation of ρ_t in the value "
                           "target (its fixed point)")
    c_bar: Any = setting(1.0, low=0, low_open=True, help="c̄: truncation of the trace "
                         "coefficients (contraction speed)")
    pg_rho_bar: Any = setting(1.0, low=0, low_open=True, help="ρ̄ of the policy-gradient "
                              "advantage (§4.2)")


@struct.dataclass
class Extra:
    """IMPALA's part of the train state (``TrainState.extra``); fixed shapes, jittable."""
    snapshots: Any                # params stacked [L, ...] (None when policy_lag = 0)
    snapshot_versions: jax.Array  # int32 [L]: update index at which each snapshot was the learner's
    snapshot_head: jax.Array      # int32: slot of the oldest snapshot (the behaviour params)
    queue: Any                    # Trajectory stacked [Q, T, N, ...] (None when queue_size = 1)
    queue_versions: jax.Array     # int32 [Q]: version of the params that generated it; −1 = empty
    queue_uses: jax.Array         # int32 [Q]: learner steps that used the stored trajectory
    queue_head: jax.Array         # int32: the slot the next trajectory goes into (the oldest)


def init(config: Config, hparams: Hparams, key) -> train_state.TrainState:
    state = train_state.init_train_state(config, hparams, key)
    lag, size = config.policy_lag, config.queue_size
    snapshots = None
    if lag > 0:
        snapshots = jax.tree.map(lambda x: jnp.repeat(x[None], lag, axis=0), state.params)
    queue = None
    if size > 1:
        template = jax.eval_shape(lambda: train_state.collect(config, state)[1])
        queue = jax.tree.map(lambda s: jnp.zeros((size,) + s.shape, s.dtype), template)
    extra = Extra(snapshots=snapshots, snapshot_versions=jnp.zeros((lag,), jnp.int32),
                  snapshot_head=jnp.asarray(0, jnp.int32), queue=queue,
                  queue_versions=jnp.full((size,), -1, jnp.int32),
                  queue_uses=jnp.zeros((size,), jnp.int32), queue_head=jnp.asarray(0, jnp.int32))
    return state.replace(extra=extra)


def behaviour_params(config: Config, state: train_state.TrainState):
    """(μ's parameters, their version): the oldest snapshot in the ring buffer, or the current
    parameters when ``policy_lag = 0``. The version is the update index at which they were the
    learner's parameters, so ``update_step − version`` is the lag actually used."""
    if config.policy_lag == 0:
        return state.params, state.update_step
    extra = state.extra
    params = jax.tree.map(lambda x: x[extra.snapshot_head], extra.snapshots)
    return params, extra.snapshot_versions[extra.snapshot_head]


def _push_snapshot(config: Config, extra: Extra, params, version) -> Extra:
    """Overwrite the oldest snapshot with ``params`` (the learner's θ_k before update k)."""
    if config.policy_lag == 0:
        return extra
    head = extra.snapshot_head
    return extra.replace(
        snapshots=jax.tree.map(lambda buf, x: buf.at[head].set(x), extra.snapshots, params),
        snapshot_versions=extra.snapshot_versions.at[head].set(version),
        snapshot_head=(head + 1) % config.policy_lag)


def vtrace_terms(config: Config, params, traj: Trajectory, hparams):
    """Everything the learner computes on one trajectory under ``params``: the distribution, log π,
    V(x_t), V(x'_t), log ρ (actual), and the V-trace targets ``vs`` and ``pg_advantages`` (with
    log ρ = 0 when ``config.correction == "none"``). Shapes ``[T, N]``."""
    network = setup.make_network(config)
    dist, values = network.apply(params, traj.obs)
    next_values = network.apply(params, traj.next_obs, method=ActorCritic.value)
    log_probs = dist.log_prob(traj.actions)
    log_rhos = jax.lax.stop_gradient(log_probs) - traj.log_probs
    applied = log_rhos if config.correction == "vtrace" else jnp.zeros_like(log_rhos)
    vs, pg_advantages = estimators.vtrace(
        traj.rewards, values, jax.lax.stop_gradient(next_values), traj.discounts(hparams.gamma),
        traj.dones(), applied, hparams.lambda_, hparams.rho_bar, hparams.c_bar, hparams.pg_rho_bar)
    return {"dist": dist, "log_probs": log_probs, "values": values, "next_values": next_values,
            "log_rhos": log_rhos, "vs": vs, "pg_advantages": pg_advantages}


def loss(params, config: Config, traj: Trajectory, hparams):
    """IMPALA's loss on one trajectory (Espeholt et al. 2018, §4.2): policy gradient with the
    V-trace advantages + c_v·½(v_s − V(x_s))² − β·entropy. Returns (total, metrics)."""
    terms = vtrace_terms(config, params, traj, hparams)
    advantages = terms["pg_advantages"]
    if config.normalize_advantages:
        advantages = score_function.normalize(advantages)
    policy_loss = losses.policy_gradient_loss(terms["log_probs"], advantages)
    value_loss = losses.value_loss(terms["values"], terms["vs"])
    entropy = losses.entropy(terms["dist"])
    total = policy_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    log_rhos, values = terms["log_rhos"], jax.lax.stop_gradient(terms["values"])
    clipped = lambda bar: jnp.mean((log_rhos > jnp.log(bar) + _CLIP_TOLERANCE).astype(jnp.float32))
    learner_view = traj._replace(values=values, next_values=terms["next_values"])
    aux = {
        "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
        "total_loss": total,
        "approx_kl": losses.approx_kl(jax.lax.stop_gradient(terms["log_probs"]), traj.log_probs),
        "rho_mean": jnp.mean(jnp.exp(log_rhos)),
        "rho_clipped_fraction": clipped(hparams.rho_bar),
        "c_clipped_fraction": clipped(hparams.c_bar),
        "explained_variance": estimators.explained_variance(values, terms["vs"]),
        "vs_mean": jnp.mean(terms["vs"]),
        "advantage_mean": jnp.mean(terms["pg_advantages"]),
        **update_metrics.value_metrics(learner_view, hparams.gamma),
    }
    return total, aux


def learner_step(config: Config, state: train_state.TrainState, traj: Trajectory, learning_rate):
    """One gradient step on one trajectory; returns (state with new params/opt_state, metrics).
    With ``config.log_grad_variance`` the metrics add the gradient-noise statistics over one
    estimate per environment: the gradient of :func:`loss` on that env's ``[T, 1]`` slice of the
    trajectory (their mean is the step's gradient unless ``normalize_advantages``, which then
    normalises within each env)."""
    grads, aux = jax.grad(loss, has_aux=True)(state.params, config, traj, state.hparams)
    noise = update_metrics.gradient_diagnostics(
        config, lambda p, group: loss(p, config, group, state.hparams)[0], state.params,
        lambda: (update_metrics.env_groups(config, traj), None))
    params, opt_state, grad_norm = optimiser.apply_gradients(config, state, grads, learning_rate)
    return state.replace(params=params, opt_state=opt_state), {**aux, "grad_norm": grad_norm, **noise}


def _enqueue(config: Config, extra: Extra, traj: Trajectory, version) -> Extra:
    if config.queue_size == 1:
        return extra.replace(queue_versions=jnp.reshape(version, (1,)).astype(jnp.int32),
                             queue_uses=jnp.zeros((1,), jnp.int32))
    head = extra.queue_head
    return extra.replace(
        queue=jax.tree.map(lambda buf, x: buf.at[head].set(x), extra.queue, traj),
        queue_versions=extra.queue_versions.at[head].set(version),
        queue_uses=extra.queue_uses.at[head].set(0),
        queue_head=(head + 1) % config.queue_size)


def update(config: Config, state: train_state.TrainState):
    """Actors: one rollout with the lagged behaviour params → queue. Learner: ``replay_times``
    V-trace steps on queued trajectories (see the module doc). Returns (state, metrics)."""
    hp = state.hparams
    step = state.update_step
    learner_params = state.params
    mu_params, mu_version = behaviour_params(config, state)
    state, fresh = train_state.collect(config, state, params=mu_params)
    extra = _enqueue(config, state.extra, fresh, mu_version)
    learning_rate = optimiser.current_learning_rate(config, hp, step)

    newest = (extra.queue_head - 1) % config.queue_size
    slots = (newest - jnp.asarray(config.replay_ages, jnp.int32)) % config.queue_size
    versions = extra.queue_versions[slots]
    valid = versions >= 0
    if config.queue_size == 1:
        batch = jax.tree.map(lambda x: x[None], fresh)
    else:
        batch = jax.tree.map(lambda q: q[slots], extra.queue)

    def learn(learner_state, inputs):
        traj, ok = inputs
        new_state, metrics = learner_step(config, learner_state, traj, learning_rate)
        kept = jax.tree.map(lambda new, old: jnp.where(ok, new, old),
                            (new_state.params, new_state.opt_state),
                            (learner_state.params, learner_state.opt_state))
        return learner_state.replace(params=kept[0], opt_state=kept[1]), metrics

    state, learn_metrics = jax.lax.scan(learn, state, (batch, valid))
    weights = valid.astype(jnp.float32) / jnp.sum(valid)
    extra = extra.replace(queue_uses=extra.queue_uses.at[slots].add(valid.astype(jnp.int32)))
    extra = _push_snapshot(config, extra, learner_params, step)
    state = state.replace(extra=extra, update_step=step + 1)
    data_lags = (step - versions).astype(jnp.float32)
    metrics = {
        **jax.tree.map(lambda m: jnp.sum(jnp.where(valid, weights * m, 0.0)), learn_metrics),
        **episode_metrics(fresh),
        "policy_lag": step - mu_version,
        "data_lag_mean": jnp.sum(weights * data_lags),
        "learner_steps": jnp.sum(valid.astype(jnp.int32)),
        "learning_rate": learning_rate,
    }
    return state, metrics
