"""The environment stack and the network a config describes, and the policy and value functions
the rollout and the losses call."""

from __future__ import annotations

import functools

from pgjax.envs import make_vec_env  # before gymnax: envs imports it without its plotting stack
from gymnax.environments import spaces  # noqa: E402,I001
from pgjax import recurrent
from pgjax.networks import ActorCritic, RecurrentActorCritic


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
                  log_std_init=config.log_std_init, obs_ndim=len(obs_shape),
                  masked_actions=discrete and bool(getattr(venv.single_env, "action_mask_in_observation",
                                                           False)))
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
