"""PPO on gymnax CartPole-v1, written from parts.

Everything that is *yours* lives in this file: the flax network, the optax optimiser, the rollout
(a ``lax.scan`` over a vmapped gymnax environment) and the training loop. Only the maths comes from
pgjax:

- ``pgjax.distributions.Categorical``: log-probabilities, sampling and entropy of a softmax policy;
- ``pgjax.estimators.gae``: advantages, with terminations and time-limit truncations kept apart;
- ``pgjax.losses``: ``ppo_clip_loss``, ``value_loss``, ``entropy`` (and two diagnostics).

Run it as a script to train for 500k environment steps and print the greedy evaluation return:

    python examples/ppo_from_parts.py [--steps 500000] [--seed 0]

The test suite calls ``make_train`` and ``evaluate`` with a tiny budget
(tests/test_examples.py), and the tutorial docs/tutorials/ppo-from-parts.md shows this very file
(the ``# --8<--`` comments mark the sections it quotes), so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import NamedTuple

import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pgjax.distributions import Categorical
from pgjax.estimators import gae
from pgjax.losses import approx_kl, clip_fraction, entropy, ppo_clip_loss, value_loss


# --8<-- [start:config]
@dataclasses.dataclass(frozen=True)
class Config:
    total_steps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128          # rollout length T; a batch is T × num_envs transitions
    epochs: int = 4
    minibatches: int = 4
    learning_rate: float = 5e-4    # annealed linearly to 0 over the run
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5

    @property
    def num_updates(self) -> int:
        return self.total_steps // (self.num_envs * self.num_steps)
# --8<-- [end:config]


# --8<-- [start:network]
# Your network: separate actor and critic MLPs, orthogonal initialisation.
class ActorCritic(nn.Module):
    num_actions: int
    hidden: int = 64

    @nn.compact
    def __call__(self, obs):
        def dense(features, gain):
            return nn.Dense(features, kernel_init=nn.initializers.orthogonal(gain),
                            bias_init=nn.initializers.zeros)

        x = obs.astype(jnp.float32)
        pi = nn.tanh(dense(self.hidden, np.sqrt(2))(x))
        pi = nn.tanh(dense(self.hidden, np.sqrt(2))(pi))
        logits = dense(self.num_actions, 0.01)(pi)
        v = nn.tanh(dense(self.hidden, np.sqrt(2))(x))
        v = nn.tanh(dense(self.hidden, np.sqrt(2))(v))
        value = dense(1, 1.0)(v)[..., 0]
        return Categorical(logits=logits), value


class Transition(NamedTuple):  # one rollout, time-major: every field is [T, N, ...]
    obs: jax.Array         # s_t
    action: jax.Array      # a_t
    reward: jax.Array      # r_t
    terminated: jax.Array  # s'_t is a true terminal state
    truncated: jax.Array   # a time limit cut the episode after step t (s'_t is not terminal)
    log_prob: jax.Array    # log π_old(a_t|s_t)
    value: jax.Array       # V(s_t)
    final_obs: jax.Array   # s'_t: the next observation, taken *before* gymnax's auto-reset
# --8<-- [end:network]


def make_train(config: Config):
    """Returns ``train(key) -> (params, metrics)``: the whole run as one jittable function."""
    env, env_params = gymnax.make("CartPole-v1")
    network = ActorCritic(env.action_space(env_params).n)
    num_updates = config.num_updates
    batch_size = config.num_envs * config.num_steps
    assert num_updates >= 1 and batch_size % config.minibatches == 0

    schedule = optax.linear_schedule(config.learning_rate, 0.0,
                                     num_updates * config.epochs * config.minibatches)
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                            optax.adam(schedule, eps=1e-5))
    env_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    env_reset = jax.vmap(env.reset, in_axes=(0, None))

    # --8<-- [start:rollout]
    def rollout(params, env_state, obs, ep_return, last_return, key):
        """T steps of all environments; gymnax resets finished episodes itself."""

        def step(carry, key):
            env_state, obs, ep_return, last_return = carry
            k_act, k_env = jax.random.split(key)
            dist, value = network.apply(params, obs)
            action = dist.sample(k_act)
            next_obs, env_state, reward, terminated, truncated, info = env_step(
                jax.random.split(k_env, config.num_envs), env_state, action, env_params)
            reward = reward.astype(jnp.float32)
            done = terminated | truncated
            ep_return = ep_return + reward
            last_return = jnp.where(done, ep_return, last_return)  # latest finished episode
            ep_return = jnp.where(done, 0.0, ep_return)
            transition = Transition(obs, action, reward, terminated, truncated,
                                    dist.log_prob(action), value, info["final_observation"])
            return (env_state, next_obs, ep_return, last_return), transition

        (env_state, obs, ep_return, last_return), traj = jax.lax.scan(
            step, (env_state, obs, ep_return, last_return), jax.random.split(key, config.num_steps))
        return env_state, obs, ep_return, last_return, traj
    # --8<-- [end:rollout]

    # --8<-- [start:loss]
    def loss_fn(params, batch):
        obs, action, old_log_prob, advantages, targets = batch
        dist, values = network.apply(params, obs)
        log_prob = dist.log_prob(action)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        pg = ppo_clip_loss(log_prob, old_log_prob, advantages, config.clip_eps)
        vf = value_loss(values, targets)
        ent = entropy(dist)  # +H: a bonus, so it is subtracted
        total = pg + config.vf_coef * vf - config.ent_coef * ent
        return total, {"policy_loss": pg, "value_loss": vf, "entropy": ent,
                       "approx_kl": approx_kl(log_prob, old_log_prob),
                       "clip_fraction": clip_fraction(log_prob, old_log_prob, config.clip_eps)}
    # --8<-- [end:loss]

    def update(carry, _):
        params, opt_state, env_state, obs, ep_return, last_return, key = carry
        key, k_roll, k_perm = jax.random.split(key, 3)
        env_state, obs, ep_return, last_return, traj = rollout(params, env_state, obs, ep_return,
                                                               last_return, k_roll)

        # --8<-- [start:advantages]
        # V(s'_t) for every step: the next state inside an episode, the pre-reset final
        # observation where an episode ended. Only a truncation actually uses it at an episode end:
        # its discount is γ, while a termination's is 0.
        _, next_values = network.apply(params, traj.final_obs)
        discounts = config.gamma * (1.0 - traj.terminated.astype(jnp.float32))
        dones = (traj.terminated | traj.truncated).astype(jnp.float32)  # cut the GAE trace
        advantages = gae(traj.reward, traj.value, next_values, discounts, dones,
                         config.gae_lambda)
        targets = advantages + traj.value
        # --8<-- [end:advantages]

        def epoch(carry, key):
            params, opt_state = carry
            flat = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]),
                                (traj.obs, traj.action, traj.log_prob, advantages, targets))
            perm = jax.random.permutation(key, batch_size)
            minibatches = jax.tree.map(
                lambda x: x[perm].reshape((config.minibatches, -1) + x.shape[1:]), flat)

            def minibatch(carry, batch):
                params, opt_state = carry
                (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            return jax.lax.scan(minibatch, (params, opt_state), minibatches)

        (params, opt_state), aux = jax.lax.scan(epoch, (params, opt_state),
                                                jax.random.split(k_perm, config.epochs))
        metrics = {k: v.mean() for k, v in aux.items()}
        metrics["episode_return"] = last_return.mean()  # of each env's latest finished episode
        return (params, opt_state, env_state, obs, ep_return, last_return, key), metrics

    def train(key):
        k_init, k_env, key = jax.random.split(key, 3)
        obs, env_state = env_reset(jax.random.split(k_env, config.num_envs), env_params)
        params = network.init(k_init, obs)
        zeros = jnp.zeros(config.num_envs, jnp.float32)
        carry = (params, optimizer.init(params), env_state, obs, zeros, zeros, key)
        (params, *_), metrics = jax.lax.scan(update, carry, length=num_updates)
        return params, metrics

    return train


def evaluate(params, key, num_episodes: int = 64) -> jax.Array:
    """Mean return of ``num_episodes`` greedy episodes (the argmax action), one per environment."""
    env, env_params = gymnax.make("CartPole-v1")
    network = ActorCritic(env.action_space(env_params).n)
    k_reset, k_steps = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_episodes),
                                                       env_params)

    def step(carry, key):
        state, obs, total, alive = carry
        dist, _ = network.apply(params, obs)
        obs, state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None))(jax.random.split(key, num_episodes), state,
                                              dist.mode(), env_params)
        total = total + alive * reward
        alive = alive * (1.0 - (terminated | truncated))
        return (state, obs, total, alive), None

    init = (state, obs, jnp.zeros(num_episodes), jnp.ones(num_episodes))
    (_, _, total, _), _ = jax.lax.scan(step, init,
                                       jax.random.split(k_steps, env_params.max_steps_in_episode))
    return total.mean()


def run(config: Config, seed: int = 0) -> tuple[float, dict, float]:
    """Train once and evaluate: (greedy evaluation return, per-update metrics, seconds)."""
    start = time.perf_counter()
    params, metrics = jax.block_until_ready(jax.jit(make_train(config))(jax.random.key(seed)))
    eval_return = float(jax.jit(evaluate)(params, jax.random.key(seed + 1)))
    return eval_return, jax.tree.map(np.asarray, metrics), time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="PPO on gymnax CartPole-v1, written from parts.")
    parser.add_argument("--steps", type=int, default=Config.total_steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = Config(total_steps=args.steps)
    eval_return, metrics, seconds = run(config, args.seed)
    returns = metrics["episode_return"]
    steps_per_update = config.num_envs * config.num_steps
    for i in np.linspace(0, len(returns) - 1, 6).astype(int):
        print(f"update {i + 1:4d}/{len(returns)}  env steps {(i + 1) * steps_per_update:7d}  "
              f"training return {returns[i]:6.1f}")
    print(f"trained {len(returns) * steps_per_update} steps in {seconds:.1f} s (compilation "
          f"included); greedy evaluation return over 64 episodes: {eval_return:.1f}")


if __name__ == "__main__":
    main()
