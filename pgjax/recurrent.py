"""Memory for recurrent policies: resetting it at episode ends and re-running a policy over whole
sequences.

A recurrent policy (:class:`pgjax.networks.RecurrentActorCritic`) acts on a memory h_t that it
carries from step to step. The rollout keeps h in the train state between updates, resets it to
zero where an episode ended (terminated *or* truncated: the next observation starts a new
episode) and records the memory the rollout started from. An update then re-runs the network
over the rollout's whole sequences from that memory with the same resets
(:func:`unroll`), so the log-probabilities and values it differentiates are those of the
policy that acted, as in recurrent PPO (e.g. the R2D2-style "stored state" of Kapturowski et al.
2019, with a zero state at episode starts).

A feed-forward policy has ``memory = None``: every function here passes it through, so the
rollout and the losses have one code path for both kinds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax._checks import check_shape


def is_recurrent(network) -> bool:
    """Whether ``network`` carries a memory (has ``initial_memory``)."""
    return hasattr(network, "initial_memory")


def initial_memory(network, num: int):
    """The zero memory ``num`` new episodes start from, or None for a feed-forward network."""
    return network.initial_memory(num) if is_recurrent(network) else None


def reset(memory, done: jax.Array):
    """The memory with the rows of environments whose episode ended (``done`` ``[N]``) set to
    zero, the memory every episode starts from; ``None`` (no memory) stays ``None``."""
    def zero_where_done(h):
        check_shape("reset", "done", done, (h.shape[0],), "the memory's batch shape")
        return jnp.where(done.reshape(done.shape + (1,) * (h.ndim - 1)), 0.0, h)
    return jax.tree.map(zero_where_done, memory)


def unroll(network, params, memory, obs: jax.Array, dones: jax.Array):
    """The policy and values at every step of time-major sequences, recomputed from ``memory``.

    Args:
      network: a :class:`pgjax.networks.RecurrentActorCritic`.
      params: its parameters.
      memory: the memory before step 0 (``[N, H]`` per branch), already reset where a new
        episode starts at step 0.
      obs: ``[T, N, *obs]`` the observations o_t the policy saw.
      dones: ``[T, N]`` bool, episode ended at step t (terminated or truncated): the memory is
        reset after step t, exactly as the rollout did.

    Returns: ``(dist, values)`` with batch shape ``[T, N]``, and the memory after the last step.
    """
    check_shape("unroll", "dones", dones, obs.shape[:2], "the observations' [T, N] shape")

    def step(memory, inputs):
        obs_t, done_t = inputs
        memory, dist, value = network.apply(params, memory, obs_t)
        return reset(memory, done_t), (dist, value)

    memory, (dist, values) = jax.lax.scan(step, memory, (obs, dones))
    return dist, values, memory
