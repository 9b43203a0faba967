"""What every algorithm shares: the train state, the environment stack, the network, the
optimiser with traced hyperparameters, and the common metrics. Algorithms add only their own
estimate-and-learn step on top."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax.envs import make_vec_env  # before gymnax: envs imports it without its plotting stack
from gymnax.environments import spaces  # noqa: E402,I001
from pgjax import diagnostics, estimators, losses, recurrent
from pgjax.networks import ActorCritic, RecurrentActorCritic, init_params
from pgjax.rollout import Trajectory, episode_metrics, rollout


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    hparams: Any
    update_step: jax.Array  # int32 updates done (configs allow fewer than 2^31 updates)
    extra: Any = None       # algorithm-specific state (running baselines, queues, ...)
    memory: Any = None      # a recurrent policy's memory [N, H] per branch (None: feed-forward)


@functools.lru_cache(maxsize=64)
def make_env(config, num_envs: int | None = None, frozen_obs_stats: bool = False,
             training: bool = True, keep_final_state: bool = False):
    """The standard wrapper stack for ``config``; evaluation asks for frozen stats and raw rewards."""
    return make_vec_env(
        config.env_id, num_envs or config.num_envs,
        normalize_obs=config.normalize_obs,
        normalize_reward=config.normalize_reward and training,
        reward_scale=config.reward_scale if training else 1.0,
        frozen_obs_stats=frozen_obs_stats, keep_final_state=keep_final_state,
        env_overrides=dict(config.env_overrides))


def action_spec(venv, env_params) -> tuple[bool, int]:
    """(discrete?, number of actions or action dimension)."""
    space = venv.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        return True, int(space.n)
    return False, int(space.shape[0])


@functools.lru_cache(maxsize=64)
def make_network(config) -> ActorCritic | RecurrentActorCritic:
    """The config's network: :class:`ActorCritic`, or :class:`RecurrentActorCritic` for
    ``torso="gru"``."""
    venv, env_params = make_env(config)
    discrete, action_dim = action_spec(venv, env_params)
    obs_shape = venv.observation_space(env_params).shape
    shared = dict(action_dim=action_dim, discrete=discrete,
                  hidden_sizes=tuple(config.hidden_sizes), activation=config.activation,
                  shared_torso=config.shared_torso, state_dependent_std=config.state_dependent_std,
                  log_std_init=config.log_std_init, obs_ndim=len(obs_shape))
    if config.torso == "gru":
        return RecurrentActorCritic(**shared)
    return ActorCritic(**shared, torso=config.torso, q_critic=config.uses_q_critic,
                       feature_args=tuple(config.feature_args), gsde=config.gsde)


def policy_and_value_fns(network, greedy: bool = False, exploration_noise=None):
    """``policy_fn(params, obs, key, memory) -> (action, log_prob, value, memory)`` and
    ``value_fn(params, obs, memory)`` in the form :func:`pgjax.rollout.rollout` takes. A
    feed-forward network ignores the memory (None); a recurrent one advances it by one step.
    With ``exploration_noise`` (gSDE's unit noise ``[N, features, action_dim]``, fixed for the
    rollout) sampled actions are :meth:`ActorCritic.gsde_act`'s."""
    is_recurrent = recurrent.is_recurrent(network)

    def step(params, obs, memory):
        """(memory after obs, π(·|obs), V(obs)); a feed-forward network keeps memory = None."""
        if is_recurrent:
            return network.apply(params, memory, obs)
        return (memory, *network.apply(params, obs))

    def value(params, obs, memory):
        if is_recurrent:
            return network.apply(params, memory, obs, method=RecurrentActorCritic.value)
        return network.apply(params, obs, method=ActorCritic.value)

    def policy_fn(params, obs, key, memory=None):
        if exploration_noise is not None and not greedy:
            dist, state_value, action = network.apply(params, obs, exploration_noise,
                                                      method=ActorCritic.gsde_act)
            return action, dist.log_prob(action), state_value, memory
        memory, dist, state_value = step(params, obs, memory)
        action = dist.mode() if greedy else dist.sample(key)
        return action, dist.log_prob(action), state_value, memory

    def value_fn(params, obs, memory=None):
        return value(params, obs, memory)

    return policy_fn, value_fn


def policy_and_values(network, params, obs, memory_start=None, dones=None):
    """(π_θ(·|s_t), V_φ(s_t)) for every observation: one batched call for a feed-forward network
    (any batch shape); for a recurrent one, ``obs`` and ``dones`` are time-major ``[T, N]``
    sequences re-run from ``memory_start`` with the rollout's resets
    (:func:`pgjax.recurrent.unroll`)."""
    if recurrent.is_recurrent(network):
        dist, values, _ = recurrent.unroll(network, params, memory_start, obs, dones)
        return dist, values
    return network.apply(params, obs)


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


def init_train_state(config, hparams, key, extra=None) -> TrainState:
    """Parameters, optimiser state and reset environments for one seed."""
    venv, env_params = make_env(config)
    network = make_network(config)
    key, init_key, env_key = jax.random.split(key, 3)
    obs, env_state = venv.reset(env_key, env_params)
    memory = recurrent.initial_memory(network, config.num_envs)
    params = init_params(network, init_key, *([] if memory is None else [memory]), obs)
    opt_state = make_optimizer(config, hparams).init(params)
    return TrainState(params=params, opt_state=opt_state, env_state=env_state, obs=obs, key=key,
                      hparams=hparams, update_step=jnp.asarray(0, jnp.int32), extra=extra,
                      memory=memory)


def collect(config, state: TrainState, params=None):
    """Roll the state's environments forward ``config.rollout_length`` steps with ``params``
    (default: the current ones). Returns (state with new env_state/obs/key, trajectory).
    Environment steps are not counted here: a 32-bit counter would wrap after 2^31 steps, so the
    runner counts them on the host (update k has taken k·``config.steps_per_update``)."""
    venv, env_params = make_env(config)
    network = make_network(config)
    key, rollout_key = jax.random.split(state.key)
    noise = None
    if config.gsde:  # one exploration matrix per environment for this rollout
        key, noise_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, state.obs.shape[:1] + state.params["params"]["log_std"].shape)
    policy_fn, value_fn = policy_and_value_fns(network, exploration_noise=noise)
    env_state, obs, memory, trajectory = rollout(
        venv, env_params, policy_fn, value_fn, state.params if params is None else params,
        state.env_state, state.obs, rollout_key, config.rollout_length, memory=state.memory)
    state = state.replace(env_state=env_state, obs=obs, key=key, memory=memory)
    return state, trajectory


def apply_gradients(config, state: TrainState, grads, learning_rate=None):
    """One optimiser step; returns (params, opt_state, grad global norm before clipping)."""
    optimizer = make_optimizer(config, state.hparams, learning_rate)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt_state, optax.tree.norm(grads)


def value_metrics(trajectory: Trajectory, gamma) -> dict[str, jax.Array]:
    """Max and mean value estimate and the one-step TD error δ (mean and mean |δ|)."""
    deltas = estimators.td_errors(trajectory.rewards, trajectory.values, trajectory.next_values,
                                  trajectory.discounts(gamma))
    return {"value_max": jnp.max(trajectory.values), "value_mean": jnp.mean(trajectory.values),
            "td_error_mean": jnp.mean(deltas), "td_error_abs_mean": jnp.mean(jnp.abs(deltas))}


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


def policy_leaves(params) -> list:
    """The leaves of ``params`` (or of a gradient tree shaped like it, with any leading axes)
    that belong to the policy: everything :func:`critic_labels` calls "actor"."""
    labels = jax.tree.leaves(critic_labels(jax.tree.map(lambda x: 0, params)))
    return [x for x, label in zip(jax.tree.leaves(params), labels) if label == "actor"]


def gradient_diagnostics(config, loss_fn, params, make_groups) -> dict[str, jax.Array]:
    """The optional gradient-noise metrics (``config.log_grad_variance``; :mod:`pgjax.diagnostics`).

    ``loss_fn(params, group) -> scalar`` is the algorithm's loss on one group; ``make_groups()``
    returns ``(groups, weights)``: the G groups stacked on a leading axis
    (:func:`pgjax.diagnostics.split_groups`) and the ``[G]`` weights of
    :func:`pgjax.diagnostics.group_gradients` (or None). It is called only when the flag is on.
    The statistics are taken over the policy's parameters only (:func:`policy_leaves`; a shared
    torso counts, so there the value loss adds to them): ``grad_variance`` = tr Σ̂, ``grad_mean_sq_norm`` = ‖ḡ‖², ``grad_snr`` = ‖ḡ‖²/tr Σ̂.
    When the flag is off this returns ``{}`` and traces nothing, so the compiled update is the
    same as without the diagnostic."""
    if not config.log_grad_variance:
        return {}
    groups, weights = make_groups()
    grads = diagnostics.group_gradients(loss_fn, params, groups, weights)
    stats = diagnostics.gradient_statistics(policy_leaves(grads))
    return {"grad_variance": stats.total_variance, "grad_mean_sq_norm": stats.mean_sq_norm,
            "grad_snr": stats.snr}


def env_groups(config, tree):
    """One group per environment of time-major ``[T, N, ...]`` leaves: ``[N, T, 1, ...]``."""
    return diagnostics.split_groups(tree, config.num_envs, axis=1)


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


def common_metrics(state: TrainState, traj: Trajectory, value_targets) -> dict:
    """Episode statistics, value/TD statistics, explained variance, learning rate (env steps and
    fps are added by the runner, which counts them on the host)."""
    hp = state.hparams
    return {**episode_metrics(traj), **value_metrics(traj, hp.gamma),
            "explained_variance": estimators.explained_variance(traj.values, value_targets),
            "learning_rate": hp.learning_rate}


def complete_episode_mask(dones):
    """1 at steps whose episode ends inside the segment (some done at t' ≥ t), else 0: the steps
    for which a Monte-Carlo return G_t over the complete episode is known."""
    dones = jnp.asarray(dones, jnp.float32)
    return (jnp.flip(jnp.cumsum(jnp.flip(dones, 0), 0), 0) > 0).astype(jnp.float32)
