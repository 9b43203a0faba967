"""The train state every algorithm carries, its initialisation for one seed, and the rollout
that collects a batch of experience with it."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pgjax import recurrent
from pgjax.algorithms.optimiser import make_optimizer
from pgjax.algorithms.setup import make_env, make_network, policy_and_value_fns
from pgjax._xla_cpu import init_params
from pgjax.rollout import rollout


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
