"""Flax (linen) policy and value networks.

:class:`ActorCritic` maps an observation to ``(distribution, value)``: a softmax policy over logits
h(s, ·) for discrete actions or N(μ_θ(s), σ²) for continuous ones (seed slide "Policy
Parametrizations"), plus a state-value head V_φ(s). Torsos are MLPs or, for MinAtar-shaped
``[10, 10, C]`` observations, a small CNN. Initialisation is orthogonal (Saxe et al. 2014) with
gains √2 (hidden), 0.01 (policy head) and 1 (value head), as in Andrychowicz et al. 2021, §3.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from pgjax.distributions import Categorical, DiagGaussian

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "elu": nn.elu}


def _dense(features: int, gain: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(gain),
                    bias_init=nn.initializers.zeros)


class MLPTorso(nn.Module):
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    obs_ndim: int = 1  # trailing observation dims, flattened into one feature vector

    @nn.compact
    def __call__(self, x):
        if self.obs_ndim != 1:
            x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,))
        x = x.astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(_dense(size, np.sqrt(2.0))(x))
        return x


class CNNTorso(nn.Module):
    """Conv(16, 3×3) → flatten → MLP, for MinAtar observations ``[..., 10, 10, C]``."""
    hidden_sizes: Sequence[int] = (128,)
    activation: str = "relu"
    channels: int = 16

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)
        x = act(nn.Conv(self.channels, (3, 3), padding="SAME",
                        kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(x))
        x = x.reshape(batch_shape + (-1,))
        for size in self.hidden_sizes:
            x = act(_dense(size, np.sqrt(2.0))(x))
        return x


def _torso(kind: str, hidden_sizes, activation, obs_ndim, name):
    if kind == "cnn":
        return CNNTorso(hidden_sizes=hidden_sizes, activation=activation, name=name)
    return MLPTorso(hidden_sizes=hidden_sizes, activation=activation, obs_ndim=obs_ndim, name=name)


class ActorCritic(nn.Module):
    """Policy π_θ(·|s) and value V_φ(s).

    Attributes:
      action_dim: number of discrete actions, or the continuous action dimension.
      discrete: softmax policy if True, diagonal Gaussian otherwise.
      hidden_sizes, activation: torso widths and nonlinearity.
      shared_torso: one torso for both heads (A3C style) or two separate ones.
      torso: "mlp" or "cnn".
      state_dependent_std: Gaussian log σ from a head on the torso instead of a free parameter.
      log_std_init: initial log σ.
      obs_ndim: rank of one observation (an MLP flattens it).
    """
    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    shared_torso: bool = False
    torso: str = "mlp"
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    obs_ndim: int = 1

    def setup(self):
        make = lambda name: _torso(self.torso, self.hidden_sizes, self.activation, self.obs_ndim, name)
        self.actor_torso = make("actor_torso")
        if not self.shared_torso:
            self.critic_torso = make("critic_torso")
        self.policy_head = _dense(self.action_dim, 0.01)
        self.value_head = _dense(1, 1.0)
        if not self.discrete:
            if self.state_dependent_std:
                self.log_std_head = nn.Dense(self.action_dim, kernel_init=nn.initializers.zeros,
                                             bias_init=nn.initializers.constant(self.log_std_init))
            else:
                self.log_std = self.param("log_std", nn.initializers.constant(self.log_std_init),
                                          (self.action_dim,))

    def policy(self, obs):
        features = self.actor_torso(obs)
        out = self.policy_head(features)
        if self.discrete:
            return Categorical(out)
        log_std = self.log_std_head(features) if self.state_dependent_std else self.log_std
        return DiagGaussian(out, jnp.broadcast_to(log_std, out.shape))

    def value(self, obs):
        features = self.actor_torso(obs) if self.shared_torso else self.critic_torso(obs)
        return self.value_head(features)[..., 0]

    def __call__(self, obs):
        return self.policy(obs), self.value(obs)
