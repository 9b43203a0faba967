"""Action distributions as small frozen dataclasses registered as JAX pytrees.

- :class:`Categorical`: a softmax over logits ``[*batch, A]`` (Sutton & Barto 2018, §13.1, eq.
  13.2: π(a|s) = exp h(s,a) / Σ_b exp h(s,b)). A logit of −inf forbids an action (an action
  mask): values *and* gradients are those of the distribution over the allowed actions.
- :class:`DiagGaussian`: N(μ, diag σ²) over ``[*batch, D]`` (Sutton & Barto 2018, §13.7), with
  ``log_std`` either state-independent (``[D]``, broadcast) or per state (``[*batch, D]``).

Both are pytrees (only arrays as fields), so they pass through ``jax.jit``, ``jax.vmap`` and
``jax.grad`` and can be returned from a network. Every method is batched over ``batch_shape``;
``kl(other)`` is KL[self ‖ other]. Shapes and dtypes are checked when a method is traced (no
broadcasting between a distribution and its actions); a refused argument raises
:class:`~pgjax.errors.ShapeError` (a ``ValueError``) or :class:`~pgjax.errors.DtypeError` (a
``TypeError``) of the :mod:`pgjax.errors` family, naming the method and the argument.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from pgjax._checks import check_float, check_same_shape, check_shape, is_traced
from pgjax.errors import ArgumentValueError, DtypeError, ShapeError

__all__ = ["Categorical", "DiagGaussian", "Distribution"]

LOG_2PI = math.log(2.0 * math.pi)


def _pytree_dataclass(cls):
    """A frozen dataclass whose fields are all pytree children (JAX arrays)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


class _Replace:
    def replace(self, **changes):
        """A copy with ``changes`` applied (as ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _xlogy_terms(p: jax.Array, log_ratio: jax.Array) -> jax.Array:
    """Σ_a p(a)·log_ratio(a) over the last axis, with 0·(anything) = 0 where p(a) = 0.

    Double ``where``: the forbidden actions' log-ratio (−inf or NaN) is replaced *before* the
    product, so neither the value nor the gradient sees 0·∞ (JAX FAQ, "gradients contain NaN
    where using where")."""
    support = p > 0
    safe = jnp.where(support, log_ratio, 0)
    return jnp.sum(jnp.where(support, p * safe, 0), axis=-1)


@_pytree_dataclass
class Categorical(_Replace):
    """π(a|s) = softmax(logits)_a over A actions.

    Attributes:
      logits: ``[*batch, A]`` unnormalised log-probabilities h(s, ·); −inf forbids an action.
    """

    logits: jax.Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.logits.shape[:-1]

    def _check(self, fn: str) -> None:
        if jnp.ndim(self.logits) < 1:
            raise ShapeError(fn, "logits", f"{fn}: logits must be [*batch, A], got a scalar")
        check_float(fn, "logits", jnp.asarray(self.logits))

    @property
    def log_probs_all(self) -> jax.Array:
        """``[*batch, A]`` log π(·|s) (−inf for forbidden actions)."""
        return jax.nn.log_softmax(self.logits, axis=-1)

    @property
    def probs(self) -> jax.Array:
        """``[*batch, A]`` π(·|s)."""
        return jax.nn.softmax(self.logits, axis=-1)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log π(a|s) of integer actions.

        Outside ``jax.jit`` (concrete actions) an action outside [0, A) is refused. Inside jit the
        values are unknown while tracing, so an out-of-range action gives NaN (not a wrapped or
        clamped index), which a NaN check downstream catches; its gradient is 0.

        Args:
          actions: ``[*batch]`` integer actions (any integer dtype), one per distribution.

        Returns:
          ``[*batch]`` log-probabilities, in the logits' dtype.
        """
        actions = self._checked_actions("Categorical.log_prob", actions)
        valid = (actions >= 0) & (actions < self.logits.shape[-1])
        index = jnp.where(valid, actions, 0)
        log_p = jnp.take_along_axis(self.log_probs_all, index[..., None], axis=-1)[..., 0]
        return jnp.where(valid, log_p, jnp.nan)

    def _checked_actions(self, fn: str, actions) -> jax.Array:
        """Integer actions of the batch shape; concrete (un-traced) values also in [0, A)."""
        self._check(fn)
        num_actions = self.logits.shape[-1]
        traced = is_traced(actions)
        if not isinstance(actions, jax.Array):
            actions = np.asarray(actions)
        if not jnp.issubdtype(actions.dtype, jnp.integer):
            raise DtypeError(fn, "actions",
                             f"{fn}: actions must be integers (indices into the {num_actions} "
                             f"logits), got dtype {actions.dtype}; cast whole-number floats with "
                             f".astype(jnp.int32)")
        check_shape(fn, "actions", actions, self.batch_shape, "the distribution's batch shape")
        if not traced:
            values = np.asarray(actions)
            if values.size and (values.min() < 0 or values.max() >= num_actions):
                raise ArgumentValueError(fn, "actions",
                                         f"{fn}: actions must lie in [0, {num_actions}), got "
                                         f"values from {values.min()} to {values.max()}")
        return jnp.asarray(actions)

    def entropy(self) -> jax.Array:
        """H(π(·|s)) = −Σ_a π(a) log π(a); forbidden actions add 0 (and no NaN gradient).

        Returns:
          ``[*batch]`` entropies in nats.
        """
        self._check("Categorical.entropy")
        log_p = self.log_probs_all
        return -_xlogy_terms(jnp.exp(log_p), log_p)

    def sample(self, key: jax.Array) -> jax.Array:
        """``[*batch]`` int32 actions drawn from π (never a forbidden one)."""
        self._check("Categorical.sample")
        return jax.random.categorical(key, self.logits, axis=-1)

    def mode(self) -> jax.Array:
        """``[*batch]`` the most probable actions, argmax_a h(s, a)."""
        self._check("Categorical.mode")
        return jnp.argmax(self.logits, axis=-1)

    def kl(self, other: "Categorical") -> jax.Array:
        """KL[self ‖ other] = Σ_a p(a) (log p(a) − log q(a)).

        Actions that ``self`` forbids add 0; an action ``self`` allows and ``other`` forbids makes
        it +inf (as it should).

        Args:
          other: a :class:`Categorical` with the same logits shape.

        Returns:
          ``[*batch]`` KL divergences in nats.
        """
        self._check("Categorical.kl")
        other._check("Categorical.kl")
        check_same_shape("Categorical.kl", logits=self.logits, other_logits=other.logits)
        log_p, log_q = self.log_probs_all, other.log_probs_all
        return _xlogy_terms(jnp.exp(log_p), log_p - log_q)


@_pytree_dataclass
class DiagGaussian(_Replace):
    """π(a|s) = Π_d N(a_d; μ_d(s), σ_d²), independent per action dimension.

    Attributes:
      mean: ``[*batch, D]`` μ(s).
      log_std: log σ, ``[*batch, D]`` or broadcastable to it (e.g. a state-independent ``[D]``).
    """

    mean: jax.Array
    log_std: jax.Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.mean.shape[:-1]

    def _check(self, fn: str) -> None:
        if jnp.ndim(self.mean) < 1:
            raise ShapeError(fn, "mean", f"{fn}: mean must be [*batch, D], got a scalar")
        check_float(fn, "mean", jnp.asarray(self.mean))
        check_float(fn, "log_std", jnp.asarray(self.log_std))
        try:
            fits = jnp.broadcast_shapes(jnp.shape(self.log_std), self.mean.shape) == self.mean.shape
        except ValueError:
            fits = False
        if not fits:
            check_shape(fn, "log_std", self.log_std, self.mean.shape, "a shape broadcastable to the mean's")

    def _per_dim_sum(self, per_dim: jax.Array) -> jax.Array:
        """Σ over the action dimensions of a term that may not carry the batch axes yet."""
        return jnp.sum(jnp.broadcast_to(per_dim, self.mean.shape), axis=-1)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log N(a; μ, σ²) = Σ_d [−½((a_d − μ_d)/σ_d)² − log σ_d − ½ log 2π].

        Its gradient w.r.t. μ is (a − μ)/σ², the score of the Gaussian policy (Sutton & Barto
        2018, §13.7).

        Args:
          actions: ``[*batch, D]`` float actions, exactly the mean's shape.

        Returns:
          ``[*batch]`` log-densities.
        """
        fn = "DiagGaussian.log_prob"
        self._check(fn)
        actions = jnp.asarray(actions)
        check_float(fn, "actions", actions)
        check_shape(fn, "actions", actions, self.mean.shape, "the mean's shape [*batch, D]")
        z = (actions - self.mean) / jnp.exp(self.log_std)
        return self._per_dim_sum(-0.5 * z**2 - self.log_std - 0.5 * LOG_2PI)

    def entropy(self) -> jax.Array:
        """H = Σ_d (½ log(2πe) + log σ_d).

        Returns:
          ``[*batch]`` differential entropies in nats.
        """
        self._check("DiagGaussian.entropy")
        return self._per_dim_sum(0.5 * (LOG_2PI + 1.0) + self.log_std)

    def sample(self, key: jax.Array) -> jax.Array:
        """``[*batch, D]`` actions μ + σ·ε, ε ~ N(0, I)."""
        self._check("DiagGaussian.sample")
        noise = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        return self.mean + jnp.exp(self.log_std) * noise

    def mode(self) -> jax.Array:
        """``[*batch, D]`` the mean μ."""
        self._check("DiagGaussian.mode")
        return self.mean

    def kl(self, other: "DiagGaussian") -> jax.Array:
        """KL[N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)] = Σ_d log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²)/(2σ₂²) − ½.

        Args:
          other: a :class:`DiagGaussian` whose mean has the same shape.

        Returns:
          ``[*batch]`` KL divergences in nats.
        """
        fn = "DiagGaussian.kl"
        self._check(fn)
        other._check(fn)
        check_same_shape(fn, mean=self.mean, other_mean=other.mean)
        var_p = jnp.exp(2.0 * self.log_std)
        var_q = jnp.exp(2.0 * other.log_std)
        per_dim = other.log_std - self.log_std + (var_p + (self.mean - other.mean) ** 2) / (2.0 * var_q) - 0.5
        return self._per_dim_sum(per_dim)


Distribution = Categorical | DiagGaussian
