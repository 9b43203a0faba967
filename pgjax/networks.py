"""Flax (linen) policy and value networks.

:class:`ActorCritic` maps an observation to ``(distribution, value)``: a softmax policy over logits
h(s, ·) for discrete actions or N(μ_θ(s), σ²) for continuous ones (Sutton & Barto 2018, §13.1
and §13.7), plus a state-value head V_φ(s). Torsos are MLPs, a small CNN for
image-shaped observations (MinAtar's ``[10, 10, C]``), linear features (one-hot, random
projections, tile coding; Sutton & Barto 2018, §9.3–9.5) or, in :class:`RecurrentActorCritic`,
an MLP then a GRU. Initialisation is orthogonal (Saxe et al. 2014) with
gains √2 (hidden), 0.01 (policy head) and 1 (value head), as in Andrychowicz et al. 2021, §3.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pgjax import _xla_cpu
from pgjax._xla_cpu import orthogonal
from pgjax.distributions import Categorical, DiagGaussian

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "elu": nn.elu}


def gsde_log_std(features, log_std_matrix):
    """log σ_j(s) of gSDE's per-step Gaussian: ½·log(Σ_i z_i² exp(2·log σ_ij) + 1e-6) for features
    z ``[..., F]`` and log σ ``[F, A]`` (Raffin et al. 2022, §3; the 1e-6 keeps σ > 0 where z = 0)."""
    variance = (features**2) @ jnp.exp(2.0 * log_std_matrix)
    return 0.5 * jnp.log(variance + 1e-6)


def _dense(features: int, gain: float) -> nn.Dense:
    """A dense layer with orthogonal init (its product: :func:`pgjax._xla_cpu.dense_dot_general`)."""
    return nn.Dense(features, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros,
                    dot_general=_xla_cpu.dense_dot_general())


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
        x = act(_xla_cpu.conv(self.channels, 3, orthogonal(np.sqrt(2.0)), "Conv_0")(x))
        x = x.reshape(batch_shape + (-1,))
        for size in self.hidden_sizes:
            x = act(_dense(size, np.sqrt(2.0))(x))
        return x


class OneHotFeatures(nn.Module):
    """Tabular features φ(s) = e_s (Sutton & Barto 2018, §9.3: the tabular case is Φ = I). The observation is an integer state
    index (or a length-1 vector holding it) in [0, num_states)."""
    num_states: int

    @nn.compact
    def __call__(self, x):
        index = x[..., 0] if x.ndim >= 1 and x.shape[-1:] == (1,) else x
        return jax.nn.one_hot(index.astype(jnp.int32), self.num_states)


class RandomProjectionFeatures(nn.Module):
    """φ(s) = P s with a fixed random Gaussian matrix P ∈ R^{D×d}, D = ``num_features``
    (linear function approximation, Sutton & Barto 2018 §9.4, on random features). P is a constant, not a parameter."""
    num_features: int
    seed: int = 0
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,)).astype(jnp.float32)
        projection = jax.random.normal(jax.random.key(self.seed), (x.shape[-1], self.num_features))
        return x @ (projection / jnp.sqrt(x.shape[-1]))


class TileCodingFeatures(nn.Module):
    """Tile coding (Sutton & Barto 2018, §9.5.4): ``num_tilings`` grids of ``tiles_per_dim``^d tiles
    over the box [low, high], each offset by a fraction 1/num_tilings of a tile (uniform offsets);
    φ(s) is binary with exactly one active tile per tiling. Observations outside the box are
    clipped into it. With ``num_tilings = 1`` it is a plain state aggregation; with several it is
    coarse coding with overlapping receptive fields (Sutton & Barto 2018, §9.5.3–9.5.4)."""
    low: Sequence[float]
    high: Sequence[float]
    tiles_per_dim: int = 6
    num_tilings: int = 8

    @nn.compact
    def __call__(self, x):
        low = jnp.asarray(self.low, jnp.float32)
        high = jnp.asarray(self.high, jnp.float32)
        d = low.shape[0]
        tile_width = (high - low) / (self.tiles_per_dim - 1)  # one extra tile of room for offsets
        unit = (jnp.clip(x.astype(jnp.float32), low, high) - low) / tile_width  # [..., d] in tiles
        offsets = jnp.arange(self.num_tilings, dtype=jnp.float32)[:, None] / self.num_tilings  # [K, 1]
        coords = jnp.floor(unit[..., None, :] + offsets).astype(jnp.int32)  # [..., K, d]
        coords = jnp.clip(coords, 0, self.tiles_per_dim - 1)
        strides = self.tiles_per_dim ** jnp.arange(d)
        index = jnp.sum(coords * strides, axis=-1)  # [..., K]
        per_tiling = jax.nn.one_hot(index, self.tiles_per_dim**d)  # [..., K, tiles^d]
        return per_tiling.reshape(per_tiling.shape[:-2] + (-1,))


FEATURE_TORSOS = ("onehot", "random_projection", "tile")


def _torso(kind: str, hidden_sizes, activation, obs_ndim, name, feature_args=None):
    feature_args = dict(feature_args or {})
    if kind == "cnn":
        return CNNTorso(hidden_sizes=hidden_sizes, activation=activation, name=name)
    if kind == "onehot":
        return OneHotFeatures(num_states=feature_args["num_states"], name=name)
    if kind == "random_projection":
        return RandomProjectionFeatures(num_features=feature_args.get("num_features", 64),
                                        seed=feature_args.get("seed", 0), obs_ndim=obs_ndim, name=name)
    if kind == "tile":
        return TileCodingFeatures(low=feature_args["low"], high=feature_args["high"],
                                  tiles_per_dim=feature_args.get("tiles_per_dim", 6),
                                  num_tilings=feature_args.get("num_tilings", 8), name=name)
    return MLPTorso(hidden_sizes=hidden_sizes, activation=activation, obs_ndim=obs_ndim, name=name)


def _setup_policy_head(module) -> None:
    """In ``module.setup``: the policy head (logits or μ) and, for continuous actions, log σ: a
    head on the features (``state_dependent_std``), a ``[features, A]`` matrix (``gsde``) or a
    free ``[A]`` vector."""
    module.policy_head = _dense(module.action_dim, 0.01)
    if module.discrete:
        return
    if module.state_dependent_std:
        module.log_std_head = nn.Dense(module.action_dim, kernel_init=nn.initializers.zeros,
                                       bias_init=nn.initializers.constant(module.log_std_init),
                                       dot_general=_xla_cpu.dense_dot_general())
        return
    gsde = getattr(module, "gsde", False)
    shape = (module.hidden_sizes[-1], module.action_dim) if gsde else (module.action_dim,)
    module.log_std = module.param("log_std", nn.initializers.constant(module.log_std_init), shape)


def masked_logits(logits, obs):
    """The logits with −inf where the observation's last ``A`` features (an action mask, 0/1, as
    :mod:`pgjax.envs.suites` lays it out) forbid the action; a mask that allows nothing (a final
    observation, whose policy is never sampled) allows everything."""
    allowed = obs[..., -logits.shape[-1]:] > 0.5
    allowed = allowed | ~jnp.any(allowed, axis=-1, keepdims=True)
    return jnp.where(allowed, logits, -jnp.inf)


def _policy_distribution(module, features, obs=None):
    """π(·|s) from the actor's last features: softmax over logits (masked by the observation's
    action mask with ``masked_actions``), or N(μ, σ²) with σ as :func:`_setup_policy_head` made it
    (gSDE's σ(s) from :func:`gsde_log_std`)."""
    out = module.policy_head(features)
    if module.discrete:
        return Categorical(masked_logits(out, obs) if module.masked_actions else out)
    if getattr(module, "gsde", False):
        return DiagGaussian(out, gsde_log_std(jax.lax.stop_gradient(features), module.log_std))
    log_std = module.log_std_head(features) if module.state_dependent_std else module.log_std
    return DiagGaussian(out, jnp.broadcast_to(log_std, out.shape))


class ActorCritic(nn.Module):
    """Policy π_θ(·|s) and value V_φ(s).

    Attributes:
      action_dim: number of discrete actions, or the continuous action dimension.
      discrete: softmax policy if True, diagonal Gaussian otherwise.
      hidden_sizes, activation: torso widths and nonlinearity.
      shared_torso: one torso for both heads (A3C style) or two separate ones.
      torso: "mlp", "cnn", or a linear-feature torso ("onehot", "random_projection", "tile");
        a recurrent policy is :class:`RecurrentActorCritic` (``torso="gru"`` in a config).
      state_dependent_std: Gaussian log σ from a head on the torso instead of a free parameter.
      log_std_init: initial log σ.
      obs_ndim: rank of one observation (an MLP flattens it).
      q_critic: the critic head outputs Q_φ(s, ·) over discrete actions instead of V_φ(s).
      feature_args: settings of a linear-feature torso ("onehot", "random_projection", "tile"):
        the heads are then linear in φ(s) (Sutton & Barto 2018, §9.4).
      masked_actions: the observation's last ``action_dim`` features are an action mask (0/1):
        forbidden actions get a logit of −inf (:func:`masked_logits`), so π gives them 0.
      gsde: generalized state-dependent exploration for continuous actions (Raffin et al. 2022,
        "Smooth exploration for robotic reinforcement learning", §3): the exploration noise is
        ε(s) = Θᵀz(s), linear in the policy's last features z(s) with a matrix Θ ~ N(0, σ²)
        drawn once per rollout (:meth:`gsde_act`), so a = μ(s) + ε(s). For one step that is
        N(μ(s), σ_j(s)²) with σ_j(s)² = Σ_i z_i(s)²·σ_ij² (+1e-6), the distribution
        :meth:`policy` returns; σ = exp(log σ) is a learned ``[features, action_dim]`` matrix and,
        as in the paper's default, z is not differentiated through σ(s).
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
    q_critic: bool = False
    feature_args: tuple = ()  # (key, value) pairs for feature torsos
    gsde: bool = False
    masked_actions: bool = False

    def setup(self):
        make = lambda name: _torso(self.torso, self.hidden_sizes, self.activation, self.obs_ndim,
                                   name, self.feature_args)
        self.actor_torso = make("actor_torso")
        if not self.shared_torso:
            self.critic_torso = make("critic_torso")
        self.value_head = _dense(self.action_dim if self.q_critic else 1, 1.0)
        _setup_policy_head(self)

    def policy(self, obs):
        return _policy_distribution(self, self.actor_torso(obs), obs)

    def gsde_act(self, obs, unit_noise):
        """(π(·|s), V(s), a) with gSDE's action a = μ(s) + z(s)ᵀ(σ ⊙ E) for ``unit_noise``
        E ~ N(0, 1) ``[*batch, features, action_dim]`` (one exploration matrix Θ = σ ⊙ E per
        environment; gsde only), the actor's torso run once for both."""
        features = self.actor_torso(obs)
        dist = _policy_distribution(self, features)
        theta = jnp.exp(self.log_std) * unit_noise
        action = dist.mean + jnp.einsum("...f,...fa->...a", features, theta)
        return dist, self.value(obs), action

    def _critic_out(self, obs):
        features = self.actor_torso(obs) if self.shared_torso else self.critic_torso(obs)
        return self.value_head(features)

    def q_values(self, obs):
        """Q_φ(s, ·) ``[..., A]`` (only with ``q_critic``, discrete actions)."""
        return self._critic_out(obs)

    def value(self, obs):
        """V_φ(s); with a Q critic, V(s) = Σ_a π(a|s) Q_φ(s, a)."""
        out = self._critic_out(obs)
        if self.q_critic:
            return jnp.sum(self.policy(obs).probs * out, axis=-1)
        return out[..., 0]

    def __call__(self, obs):
        return self.policy(obs), self.value(obs)


class RecurrentActorCritic(nn.Module):
    """Policy π_θ(·|h_t) and value V_φ(h_t) of a memory h_t = GRU(h_{t−1}, MLP(o_t)) (Cho et al.
    2014's gated recurrent unit, ``flax.linen.GRUCell``), for partially observed tasks where the
    observation o_t alone does not determine the state.

    The memory is a tuple of ``[N, H]`` arrays, H = ``hidden_sizes[-1]``: one GRU for the actor and
    one for the critic, or one shared by both heads with ``shared_torso``. A zero memory starts
    every episode (the rollout resets it where an episode ends; :func:`pgjax.recurrent.reset`).
    Initialisation follows :class:`ActorCritic`; the GRU's recurrent kernels are orthogonal.

    Methods (``memory`` is the state before seeing ``obs``; batch shape ``[N]``):
      ``__call__(memory, obs) -> (memory', π(·|h'), V(h'))``: one step.
      ``value(memory, obs) -> V(h')``: the critic only (bootstrap values of final observations).
      ``initial_memory(num)``: the zero memory of ``num`` episodes.
    """
    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    shared_torso: bool = False
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    obs_ndim: int = 1
    q_critic: bool = False  # never set: a Q critic has no recurrent form here (kept for the shared API)
    masked_actions: bool = False  # as ActorCritic's

    @property
    def memory_size(self) -> int:
        return self.hidden_sizes[-1]

    @property
    def branches(self) -> tuple[str, ...]:
        return ("shared",) if self.shared_torso else ("actor", "critic")

    def initial_memory(self, num: int) -> tuple:
        return tuple(jnp.zeros((num, self.memory_size), jnp.float32) for _ in self.branches)

    def setup(self):
        self.encoders = {b: MLPTorso(self.hidden_sizes, self.activation, self.obs_ndim,
                                     name=f"{b}_encoder") for b in self.branches}
        self.cells = {b: nn.GRUCell(self.memory_size, recurrent_kernel_init=orthogonal(1.0),
                                    kernel_init=orthogonal(1.0), name=f"{b}_gru")
                      for b in self.branches}
        self.value_head = _dense(1, 1.0)
        _setup_policy_head(self)

    def _advance(self, branch: str, memory_of_branch, obs):
        new_memory, _ = self.cells[branch](memory_of_branch, self.encoders[branch](obs))
        return new_memory

    def __call__(self, memory, obs):
        new = tuple(self._advance(b, m, obs) for b, m in zip(self.branches, memory))
        actor, critic = (new[0], new[0]) if self.shared_torso else new
        return new, _policy_distribution(self, actor, obs), self.value_head(critic)[..., 0]

    def value(self, memory, obs):
        critic = self._advance(self.branches[-1], memory[-1], obs)
        return self.value_head(critic)[..., 0]
