"""Action distributions as jittable pytrees (seed slide "Policy Parametrizations").

- :class:`Categorical`: π(a|s) = exp(h(s,a)) / Σ_b exp(h(s,b)), a softmax over logits ``[..., A]``.
- :class:`DiagGaussian`: π(a|s) = N(μ_θ(s), σ²_θ), independent per action dimension ``[..., D]``;
  ``log_std`` may be state-independent (broadcast) or state-dependent (same shape as ``mean``).

Every method is batched over the leading dimensions. ``kl(other)`` is KL[self ‖ other].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

LOG_2PI = math.log(2.0 * math.pi)


@struct.dataclass
class Categorical:
    logits: jax.Array  # [..., A] unnormalised log-probabilities h(s, ·)

    @property
    def log_probs_all(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    @property
    def probs(self) -> jax.Array:
        return jax.nn.softmax(self.logits, axis=-1)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log π(a|s) for integer ``actions`` of shape ``[...]``."""
        actions = jnp.asarray(actions, jnp.int32)
        return jnp.take_along_axis(self.log_probs_all, actions[..., None], axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        """H = −Σ_a π(a) log π(a)."""
        log_p = self.log_probs_all
        p = jnp.exp(log_p)
        return -jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=-1)  # masked (−inf) logits add 0

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits, axis=-1)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)

    def kl(self, other: "Categorical") -> jax.Array:
        """KL[self ‖ other] = Σ_a p(a) (log p(a) − log q(a))."""
        log_p, log_q = self.log_probs_all, other.log_probs_all
        p = jnp.exp(log_p)
        return jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)


@struct.dataclass
class DiagGaussian:
    mean: jax.Array     # [..., D] μ_θ(s)
    log_std: jax.Array  # [..., D] or broadcastable to it: log σ

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log N(a; μ, σ²) summed over action dimensions. Its gradient w.r.t. μ is (a − μ)/σ²,
        the seed's "Concrete example" update."""
        std = jnp.exp(self.log_std)
        z = (actions - self.mean) / std
        per_dim = -0.5 * z**2 - self.log_std - 0.5 * LOG_2PI
        return jnp.sum(per_dim * jnp.ones_like(self.mean), axis=-1)

    def entropy(self) -> jax.Array:
        """H = Σ_d (½ log(2πe) + log σ_d)."""
        per_dim = 0.5 * (LOG_2PI + 1.0) + self.log_std
        return jnp.sum(per_dim * jnp.ones_like(self.mean), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        noise = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        return self.mean + jnp.exp(self.log_std) * noise

    def mode(self) -> jax.Array:
        return self.mean

    def kl(self, other: "DiagGaussian") -> jax.Array:
        """KL[N(μ₁,σ₁²) ‖ N(μ₂,σ₂²)] = Σ_d log(σ₂/σ₁) + (σ₁² + (μ₁−μ₂)²)/(2σ₂²) − ½."""
        var_p = jnp.exp(2.0 * self.log_std)
        var_q = jnp.exp(2.0 * other.log_std)
        per_dim = other.log_std - self.log_std + (var_p + (self.mean - other.mean) ** 2) / (2.0 * var_q) - 0.5
        return jnp.sum(per_dim * jnp.ones_like(self.mean), axis=-1)


Distribution = Categorical | DiagGaussian
