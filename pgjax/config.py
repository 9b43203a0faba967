"""Static configuration and traced hyperparameters (shared/DESIGN.md, "Static vs traced").

- A *config* is a frozen, hashable dataclass: everything that changes an array shape or the
  compiled program. It is validated in ``__post_init__`` so bad values fail before compilation.
- *Hyperparameters* are a flax struct dataclass of float scalars carried in the train state, so
  ``jax.vmap`` over a batch of them is one compiled program.

:func:`apply_overrides` turns ``--set key=value`` strings into a new (config, hparams) pair,
refusing unknown keys with the list of allowed ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, ClassVar

import jax.numpy as jnp
from flax import struct


OPTIMIZERS = ("adam", "rmsprop", "rmsprop_torch", "sgd")  # built by pgjax.algorithms.common


class ConfigError(ValueError):
    """A configuration or hyperparameter value that is not allowed."""


def require(condition: bool, field: str, value: Any, allowed: str) -> None:
    """Raise a :class:`ConfigError` naming the field, its bad value and what is allowed."""
    if not condition:
        raise ConfigError(f"{field}={value!r} is not allowed: {allowed}")


def require_positive_int(field: str, value: Any) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value > 0, field, value,
            "must be a positive integer")


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """Fields every algorithm shares. Subclasses add their own and call ``super().__post_init__``."""
    env_id: str = "CartPole-v1"  # gymnax id or one of envs/ (pgjax: envs.registered_ids())
    env_overrides: tuple[tuple[str, Any], ...] = ()  # EnvParams fields, e.g. (("max_steps_in_episode", 200),)
    num_envs: int = 4  # environments stepped in parallel per member
    rollout_length: int = 128  # steps per environment per update (T)
    total_steps: int = 500_000  # environment steps per member (rounded down to whole updates)
    hidden_sizes: tuple[int, ...] = (64, 64)  # widths of the MLP torso's hidden layers (also the CNN's dense layers)
    activation: str = "tanh"  # tanh, relu, gelu or elu
    shared_torso: bool = False  # actor and critic share one torso
    torso: str = "mlp"  # "mlp", "cnn", "gru" (MLP then a GRU memory; ppo, a2c, reinforce), or linear features: "onehot", "random_projection", "tile"
    feature_args: tuple[tuple[str, Any], ...] = ()  # e.g. (("low", (-1., -1.)), ("high", (1., 1.)))
    state_dependent_std: bool = False  # continuous actions: σ from a head of the torso instead of a free parameter
    log_std_init: float = 0.0  # continuous actions: initial log σ
    gsde: bool = False  # continuous actions: generalized state-dependent exploration (Raffin et al. 2022), noise drawn once per rollout
    normalize_obs: bool = False  # running mean/std normalisation of observations (batch statistics)
    normalize_reward: bool = False  # scale rewards by a running std of the discounted return
    reward_scale: float = 1.0  # multiply training rewards by this (evaluation reports raw rewards)
    optimizer: str = "adam"  # adam, rmsprop (A3C's ε in the root), rmsprop_torch (ε outside it) or sgd, after global-norm clipping
    log_grad_variance: bool = False  # add grad_variance / grad_mean_sq_norm / grad_snr (pgjax.diagnostics)
    lean_metrics: bool = False  # benchmark mode: per-update metrics cut to episode statistics, losses, entropy and gradient norm (pgjax.algorithms.LEAN_METRICS); the program computes no others

    def __post_init__(self):
        from envs import check_env_id
        from pgjax.networks import ACTIVATIONS
        try:
            check_env_id(self.env_id)
        except ValueError as error:
            raise ConfigError(f"env_id: {error}") from None
        self._check_env()
        require_positive_int("num_envs", self.num_envs)
        require_positive_int("rollout_length", self.rollout_length)
        require_positive_int("total_steps", self.total_steps)
        require(self.total_steps >= self.steps_per_update, "total_steps", self.total_steps,
                f"must be at least num_envs*rollout_length = {self.steps_per_update}")
        require(self.num_updates < 2 ** 31, "total_steps", self.total_steps,
                f"at most {2 ** 31 - 1} updates of {self.steps_per_update} steps (the update "
                "counter is a 32-bit integer in the train state)")
        require(isinstance(self.hidden_sizes, tuple) and len(self.hidden_sizes) > 0
                and all(isinstance(h, int) and h > 0 for h in self.hidden_sizes),
                "hidden_sizes", self.hidden_sizes, "must be a non-empty tuple of positive integers")
        require(self.activation in ACTIVATIONS, "activation", self.activation,
                f"one of {sorted(ACTIVATIONS)}")
        torsos = ("mlp", "cnn", "gru", "onehot", "random_projection", "tile")
        require(self.torso in torsos, "torso", self.torso, f"one of {list(torsos)}")
        if self.torso == "gru":
            self._check_recurrent()
        if self.gsde:
            require(self.torso == "mlp" and not self.state_dependent_std, "gsde", self.gsde,
                    "gSDE needs torso='mlp' and a free log σ matrix (state_dependent_std=false)")
        features = dict(self.feature_args)
        if self.torso == "tile":
            require("low" in features and "high" in features, "feature_args", self.feature_args,
                    "tile coding needs low and high bounds, e.g. --set feature_args=... ")
        if self.torso == "onehot":
            require("num_states" in features, "feature_args", self.feature_args,
                    "one-hot features need num_states")
        require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {list(OPTIMIZERS)}")
        require(isinstance(self.reward_scale, (int, float)) and self.reward_scale > 0,
                "reward_scale", self.reward_scale, "must be a positive number")
        require(isinstance(self.log_grad_variance, bool), "log_grad_variance",
                self.log_grad_variance, "true or false")
        require(isinstance(self.lean_metrics, bool), "lean_metrics", self.lean_metrics,
                "true or false")
        require(not self.log_grad_variance or self.grad_variance_groups >= 2, "log_grad_variance",
                self.log_grad_variance,
                f"the gradient variance needs at least 2 estimates and {type(self).__name__} "
                f"takes one per {self.grad_variance_group_name} (this config has "
                f"{self.grad_variance_groups})")

    def _check_env(self) -> None:
        from gymnax.environments import spaces
        from envs import make
        try:
            env, params = make(self.env_id, **dict(self.env_overrides))
        except ValueError as error:
            raise ConfigError(f"env_overrides: {error}") from None
        obs_shape = env.observation_space(params).shape
        require(self.torso != "cnn" or len(obs_shape) == 3, "torso", self.torso,
                f"'cnn' needs image observations [height, width, channels]; {self.env_id} "
                f"observes shape {tuple(obs_shape)} (use torso=mlp)")
        space = env.action_space(params)
        require(not self.gsde or isinstance(space, spaces.Box), "gsde", self.gsde,
                f"gSDE explores continuous actions; {self.env_id} has {space!r}")
        kinds = self.supported_action_spaces
        ok = (isinstance(space, spaces.Discrete) and "discrete" in kinds) or (
            isinstance(space, spaces.Box) and len(space.shape) == 1 and "continuous" in kinds)
        require(ok, "env_id", self.env_id,
                f"{type(self).__name__} needs an action space of kind {kinds} "
                f"(Discrete, or a 1-D Box for continuous); this env has {space!r}")

    supported_action_spaces: ClassVar[tuple[str, ...]] = ("discrete", "continuous")
    supports_recurrent: ClassVar[bool] = False  # whether torso="gru" (a memory) is implemented

    def _check_recurrent(self) -> None:
        """What a recurrent policy needs: an algorithm that re-runs whole sequences, and
        no per-environment gradient groups (their memories are not split out)."""
        require(self.supports_recurrent, "torso", self.torso,
                f"{type(self).__module__.rsplit('.', 1)[-1]} has no recurrent form; "
                "torso='gru' works with ppo, a2c and reinforce")
        require(not self.log_grad_variance, "log_grad_variance", self.log_grad_variance,
                "not available with torso='gru'")

    @property
    def uses_q_critic(self) -> bool:
        """Whether the critic head is Q_φ(s, ·) rather than V_φ(s) (the Q actor-critics)."""
        return False

    @property
    def grad_variance_groups(self) -> int:
        """How many gradient estimates ``log_grad_variance`` compares (one per environment unless
        an algorithm groups otherwise, e.g. PPO's minibatches)."""
        return self.num_envs

    grad_variance_group_name: ClassVar[str] = "environment (num_envs)"

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_length

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.steps_per_update


@struct.dataclass
class CommonHparams:
    """Traced numbers shared by every algorithm (vmappable)."""
    learning_rate: Any = 2.5e-4  # step size α (the actor's where the critic has its own)
    gamma: Any = 0.99  # discount γ
    max_grad_norm: Any = 0.5  # global-norm gradient clipping
    ent_coef: Any = 0.01  # entropy bonus β
    vf_coef: Any = 0.5  # weight c_v of the value loss


def validate_hparams(hparams) -> None:
    """Check the host-side values of a hyperparameter dataclass (scalars or arrays)."""
    import numpy as np
    ranges = {
        "learning_rate": (0.0, math.inf, False), "gamma": (0.0, 1.0, True),
        "gae_lambda": (0.0, 1.0, True), "lambda_": (0.0, 1.0, True), "clip_eps": (0.0, math.inf, False),
        "max_grad_norm": (0.0, math.inf, False), "ent_coef": (0.0, math.inf, True),
        "vf_coef": (0.0, math.inf, True), "value_clip_eps": (0.0, math.inf, False),
        "rho_bar": (0.0, math.inf, False), "c_bar": (0.0, math.inf, False),
        "pg_rho_bar": (0.0, math.inf, False),
    }
    for field in dataclasses.fields(hparams):
        value = np.asarray(getattr(hparams, field.name), dtype=np.float64)
        require(bool(np.all(np.isfinite(value))), field.name, value.tolist(), "must be finite")
        if field.name in ranges:
            low, high, low_inclusive = ranges[field.name]
            ok = np.all(value >= low) if low_inclusive else np.all(value > low)
            ok = ok and np.all(value <= high)
            bound = f"[{low}, {high}]" if low_inclusive else f"({low}, {high}]"
            require(bool(ok), field.name, value.tolist(), f"must lie in {bound}")


def hparams_as_arrays(hparams):
    """Turn every field into a float32 array (so vmapped and single runs trace alike)."""
    return hparams.replace(**{f.name: jnp.asarray(getattr(hparams, f.name), jnp.float32)
                              for f in dataclasses.fields(hparams)})


def _parse_value(text: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        lowered = text.lower()
        require(lowered in ("true", "false", "1", "0"), key, text, "true or false")
        return lowered in ("true", "1")
    if isinstance(current, int):
        try:
            return int(float(text)) if float(text).is_integer() else int(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not allowed: must be an integer") from None
    if isinstance(current, tuple):
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not allowed: a comma-separated list of integers") from None
    if isinstance(current, str):
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not allowed: must be a number") from None


def apply_overrides(config, hparams, assignments: list[str]):
    """Apply ``key=value`` strings to (config, hparams). Keys of EnvParams go in as ``env.KEY``.

    Raises :class:`ConfigError` for malformed assignments, unknown keys (with close matches and
    the allowed list) and values of the wrong type; the new config is validated as a whole.
    """
    config_fields = {f.name: f for f in dataclasses.fields(config)}
    hparam_fields = {f.name for f in dataclasses.fields(hparams)}
    config_changes: dict[str, Any] = {}
    hparam_changes: dict[str, Any] = {}
    env_overrides = dict(config.env_overrides)
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment!r} is not allowed: expected key=value")
        key, text = (part.strip() for part in assignment.split("=", 1))
        if key.startswith("env."):
            env_overrides[key[4:]] = _parse_env_value(text)
        elif key == "feature_args":
            config_changes[key] = _parse_feature_args(text)
        elif key in hparam_fields:
            hparam_changes[key] = _parse_value(text, 0.0, key)
        elif key in config_fields and key != "env_overrides":
            config_changes[key] = _parse_value(text, getattr(config, key), key)
        else:
            allowed = sorted(hparam_fields | set(config_fields) - {"env_overrides"})
            close = difflib.get_close_matches(key, allowed, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown key {key!r}{hint}; allowed: {', '.join(allowed)}, env.<EnvParams field>")
    if env_overrides != dict(config.env_overrides):
        config_changes["env_overrides"] = tuple(sorted(env_overrides.items()))
    new_config = dataclasses.replace(config, **config_changes)
    new_hparams = hparams.replace(**hparam_changes)
    validate_hparams(new_hparams)
    return new_config, new_hparams


def _parse_feature_args(text: str) -> tuple:
    """``low:-1/-2,high:1/2,tiles_per_dim:6`` → (("high", (1.0, 2.0)), ("low", (-1.0, -2.0)), ...);
    a value with ``/`` is a tuple of floats, anything else a number."""
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if ":" not in item:
            raise ConfigError(f"feature_args={text!r} is not allowed: expected name:value pairs "
                              "separated by commas, e.g. low:-1/-1,high:1/1,tiles_per_dim:6")
        name, value = item.split(":", 1)
        try:
            pairs[name] = (tuple(float(v) for v in value.split("/")) if "/" in value
                           else _parse_env_value(value))
        except ValueError:
            raise ConfigError(f"feature_args: {name}={value!r} is not a number or a /-separated list") from None
    return tuple(sorted(pairs.items()))


def _parse_env_value(text: str) -> Any:
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def config_to_dict(config) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out["env_overrides"] = dict(config.env_overrides)
    return out


def hparams_to_dict(hparams) -> dict[str, Any]:
    import numpy as np
    return {f.name: np.asarray(getattr(hparams, f.name)).tolist() for f in dataclasses.fields(hparams)}


def _as_tuple(value: Any) -> Any:
    """JSON lists back to (nested) tuples, as the frozen configs hold them."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def config_from_dict(config_class, saved: dict[str, Any]):
    """Rebuild a config from :func:`config_to_dict`'s output (``config.json``); validated anew."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(saved) - fields)
    if unknown:
        raise ConfigError(f"saved config has fields {unknown} that {config_class.__module__}.Config "
                          "does not know (saved by another pgjax version?)")
    values = {k: _as_tuple(v) for k, v in saved.items()}
    values["env_overrides"] = tuple(sorted(dict(saved.get("env_overrides", {})).items()))
    if "feature_args" in values:
        values["feature_args"] = tuple(tuple(pair) for pair in values["feature_args"])
    return config_class(**values)


def config_differences(saved, requested) -> list[str]:
    """``field (saved X, requested Y)`` for every field where two configs differ."""
    a, b = config_to_dict(saved), config_to_dict(requested)
    return [f"{k} (saved {a.get(k)!r}, requested {b.get(k)!r})"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
