"""Static configuration and traced hyperparameters.

- A *config* is a frozen, hashable dataclass: everything that changes an array shape or the
  compiled program. It is validated in ``__post_init__`` so bad values fail before compilation.
- *Hyperparameters* are a flax struct dataclass of float scalars carried in the train state, so
  ``jax.vmap`` over a batch of them is one compiled program.

Every field of both is declared once, beside itself, with :func:`setting`: its type, the values
allowed (a range or a list of choices) and what it means. Validation (:func:`check_fields`,
:func:`validate_hparams`), ``pgjax train ALGO --help`` (:mod:`pgjax.run.field_docs`) and the
reading of settings files and ``config.json`` (:func:`config_from_dict`, :func:`hparams_from_dict`)
all read that one declaration. A subclass that only changes a default (``num_envs: int = 16``)
keeps its base's declaration; a field declared nowhere is a ``TypeError`` when its class is made.

:func:`apply_overrides` turns ``--set key=value`` strings into a new (config, hparams) pair,
refusing unknown keys with the list of allowed ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from flax import struct

from pgjax.config_error import ConfigError, require  # noqa: F401 - raised and re-exported here
from pgjax.networks import ACTIVATIONS, FEATURE_TORSOS

OPTIMIZERS = ("adam", "rmsprop", "rmsprop_torch", "sgd")  # built by pgjax.algorithms.optimiser
TORSOS = ("mlp", "cnn", "gru") + FEATURE_TORSOS
INT32_MAX = 2 ** 31 - 1  # integers the compiled program holds are 32-bit (jax's default)
SETTING = "pgjax.setting"  # the dataclass-field metadata key of a field's Setting




# --------------------------------------------------------------------------- declarations

def interval(low: float | None, high: float | None, low_open: bool = False,
             high_open: bool = False) -> str:
    """``[0, 1]``, ``(0, ∞)``, ``[1, 2147483647]``: the set of numbers between two bounds."""
    left = "(-∞" if low is None else ("(" if low_open else "[") + _number(low)
    right = "∞)" if high is None or high == math.inf else _number(high) + (")" if high_open else "]")
    return f"{left}, {right}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class Setting:
    """One field's declaration: its ``type``, the values allowed and its ``help`` text.

    ``type`` is ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"ints"`` (a non-empty tuple of
    positive integers), ``"floats"`` (a non-empty tuple of finite numbers) or ``"pairs"`` (a tuple
    of ``(name, value)`` pairs: environment parameters, feature settings). Numbers must be finite
    and lie between ``low`` and ``high`` (open ends where ``low_open``/``high_open``; None: no
    bound); words must be one of ``choices`` when there are choices. ``rule`` says in words what
    is allowed where the type alone does not (the checks then live in ``__post_init__``)."""
    type: str
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    rule: str | None = None

    @property
    def allowed(self) -> str:
        """What values are allowed, in words (``--help`` shows it; errors say it)."""
        if self.rule:
            return self.rule
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return "a word"
        if self.type == "int":
            return f"an integer in {interval(self.low, self.high, self.low_open, self.high_open)}"
        if self.type == "ints":
            return f"a non-empty list of integers in {interval(self.low, self.high)}"
        if self.type == "floats":
            return "a non-empty list of finite numbers"
        if self.type == "pairs":
            return "a table of name = value"
        if self.low is None and self.high is None:
            return "a finite number"
        return f"a finite number in {interval(self.low, self.high, self.low_open, self.high_open)}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (``must be …``), or None when it is. Numbers may be
        arrays (every element is checked: a stacked batch of hyperparameters)."""
        if self.type == "bool":
            return None if isinstance(value, (bool, np.bool_)) else f"must be {self.allowed}"
        if self.type == "str":
            if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
                return f"must be {self.allowed}"
            return None
        if self.type == "int":
            return None if _is_int(value) and self._in_range(value) else f"must be {self.allowed}"
        if self.type == "ints":
            ok = isinstance(value, tuple) and len(value) > 0 and all(
                _is_int(v) and self._in_range(v) for v in value)
            return None if ok else f"must be {self.allowed}"
        if self.type == "floats":
            ok = isinstance(value, tuple) and len(value) > 0 and all(
                _is_real(v) and math.isfinite(v) for v in value)
            return None if ok else f"must be {self.allowed}"
        if self.type == "pairs":
            ok = isinstance(value, tuple) and all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value)
            ok = ok and len({p[0] for p in value}) == len(value)
            return None if ok else f"must be {self.allowed}"
        return self._number_problem(value)

    def _number_problem(self, value: Any) -> str | None:
        try:
            array = np.asarray(value)
        except Exception:  # an object numpy cannot hold: not a number either
            return f"must be {self.allowed}"
        if array.dtype.kind not in "iuf" or array.size == 0:
            return f"must be {self.allowed}"
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            return f"must be {self.allowed}"
        return None if self._in_range(array) else f"must be {self.allowed}"

    def _in_range(self, value) -> bool:
        ok = True
        if self.low is not None:
            ok = np.all(value > self.low) if self.low_open else np.all(value >= self.low)
        if self.high is not None and self.high != math.inf:
            ok = ok and (np.all(value < self.high) if self.high_open else np.all(value <= self.high))
        return bool(ok)

    def check(self, name: str, value: Any) -> None:
        """Raise a one-line :class:`ConfigError` naming ``name``, ``value`` and what is allowed."""
        problem = self.problem(value)
        if problem:
            shown = np.asarray(value).tolist() if hasattr(value, "shape") else value
            raise ConfigError(f"{name}={shown!r} is not allowed: {problem}")

    def coerce(self, name: str, value: Any) -> Any:
        """``value`` as read from a TOML/YAML/JSON file, in the form the field holds: lists
        become tuples, an integral float (``1e5``) an int for an integer, an int a float for a
        number; a value of the wrong kind (a word for a number, ``"false"`` for a bool) is a
        ConfigError. Ranges are checked later, by :meth:`check`."""
        def refuse():
            raise ConfigError(f"{name}={value!r} is not allowed: must be {self.allowed}")
        if self.type == "int":
            return _as_int(value, refuse)
        if self.type == "float":
            if not _is_real(value):
                refuse()
            return float(value)
        if self.type in ("bool", "str"):
            return value if self.problem(value) is None else refuse()
        if self.type == "ints":
            if not isinstance(value, (list, tuple)):
                refuse()
            return tuple(_as_int(v, refuse) for v in value)
        if self.type == "floats":
            values = value if isinstance(value, (list, tuple)) else [value]  # a bare number: length 1
            if not all(_is_real(v) for v in values):
                refuse()
            return tuple(float(v) for v in values)
        if self.type == "pairs":
            return _as_pairs(value, refuse)
        return value


def _as_int(value: Any, refuse) -> int:
    if _is_int(value):
        return int(value)
    if _is_real(value) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return refuse()


def _as_pairs(value: Any, refuse) -> tuple:
    """A table ``{name: value}`` or a list of ``[name, value]`` pairs (what ``config.json``
    holds of a tuple of pairs) as a sorted tuple of pairs, JSON lists turned into tuples."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        items = [tuple(p) for p in value]
    else:
        return refuse()
    if not all(isinstance(k, str) for k, _ in items) or len({k for k, _ in items}) != len(items):
        return refuse()
    return tuple(sorted((k, _as_tuple(v)) for k, v in items))


def setting(default: Any, *, help: str, type: str | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False,
            choices=None, rule: str | None = None):
    """A dataclass field declared with its :class:`Setting` (in the field's metadata).

    ``type`` defaults to the default's (``bool``, ``int``, ``float``, ``str``); tuples name
    theirs. An integer has at most :data:`INT32_MAX` unless ``high`` says otherwise
    (``high=math.inf``: no bound). Usable in a flax ``struct.dataclass``: the field stays a
    pytree node."""
    if type is None:
        type = {bool: "bool", int: "int", float: "float", str: "str"}.get(default.__class__)
        if type is None:
            raise TypeError(f"setting({default!r}): say its type= (one of int, float, bool, str, "
                            "ints, floats, pairs)")
    if type in ("int", "ints") and high is None:
        high = INT32_MAX
    declared = Setting(type, help, low, high, low_open, high_open,
                       tuple(choices) if choices is not None else None, rule)
    problem = declared.problem(default)
    if problem:
        raise TypeError(f"setting({default!r}): the default itself {problem}")
    return dataclasses.field(default=default, metadata={SETTING: declared})


def settings_of(cls) -> dict[str, Setting]:
    """``{field: Setting}`` of every field of dataclass ``cls`` (TypeError if one is undeclared)."""
    found = {}
    for f in dataclasses.fields(cls):
        if SETTING not in f.metadata:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{f.name} has no declaration: "
                            f"write `{f.name}: ... = setting(default, help=..., low=..., "
                            "choices=...)` (pgjax.config.setting)")
        found[f.name] = f.metadata[SETTING]
    return found


def inherit_declarations(cls) -> None:
    """For ``__init_subclass__`` of a declared dataclass: a field of ``cls`` that only changes a
    base's default (``learning_rate: Any = 1e-3``) gets the base's :class:`Setting`; a new field
    with no :func:`setting` is a ``TypeError`` naming it, so no field goes undeclared."""
    inherited: dict[str, Setting] = {}
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            inherited.update({f.name: f.metadata[SETTING] for f in dataclasses.fields(base)
                              if SETTING in f.metadata})
    for name, annotation in inspect.get_annotations(cls).items():  # cls's own fields
        if "ClassVar" in str(annotation):
            continue
        value = cls.__dict__.get(name, dataclasses.MISSING)
        if isinstance(value, dataclasses.Field):
            if SETTING in value.metadata:
                continue
        elif name in inherited and value is not dataclasses.MISSING:
            problem = inherited[name].problem(value)
            if problem:
                raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{name} = {value!r}: the "
                                f"default {problem}")
            setattr(cls, name, dataclasses.field(default=value, metadata={SETTING: inherited[name]}))
            continue
        raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{name} has no declaration: write "
                        f"`{name}: ... = setting(default, help=..., low=..., choices=...)` "
                        "(pgjax.config.setting), or only change the default of a base's field")


def check_fields(instance) -> None:
    """Every field of a declared dataclass instance against its :class:`Setting`."""
    for name, declared in settings_of(type(instance)).items():
        declared.check(name, getattr(instance, name))


# --------------------------------------------------------------------------- feature torsos

# What each linear-feature torso reads of ``feature_args`` (pgjax.networks._torso, which uses the
# same defaults): name -> (default, Setting); a default of None means required.
FEATURE_SETTINGS: dict[str, dict[str, tuple[Any, Setting]]] = {
    "onehot": {
        "num_states": (None, Setting("int", "number of states S; the observation is the state "
                                     "index in [0, S) (φ(s) = e_s)", low=1, high=INT32_MAX))},
    "random_projection": {
        "num_features": (64, Setting("int", "D, the number of random features φ(s) = P s",
                                     low=1, high=INT32_MAX)),
        "seed": (0, Setting("int", "seed of the fixed Gaussian matrix P", low=0, high=2 ** 32 - 1))},
    "tile": {
        "low": (None, Setting("floats", "lower corner of the tiled box, one number per "
                              "observation dimension")),
        "high": (None, Setting("floats", "upper corner of the tiled box, each above low")),
        "tiles_per_dim": (6, Setting("int", "tiles per dimension of each tiling (Sutton & Barto "
                                     "2018, §9.5.4)", low=2, high=INT32_MAX)),
        "num_tilings": (8, Setting("int", "offset tilings", low=1, high=INT32_MAX))},
}
_FEATURE_TYPES = {name: declared for table in FEATURE_SETTINGS.values()
                  for name, (_, declared) in table.items()}


def _feature_args_help() -> str:
    parts = []
    for torso, table in FEATURE_SETTINGS.items():
        names = [f"{n} ({'required' if d is None else d})" for n, (d, _) in table.items()]
        parts.append(f"{torso}: {', '.join(names)}")
    return ("settings of a linear-feature torso, name:value pairs (vectors with /, e.g. "
            "low:-1/-1,high:1/1): " + "; ".join(parts))


def coerce_feature_args(pairs: tuple) -> tuple:
    """Feature settings as a file or a flag spells them, in the form the torso takes: an
    integral float an int (``num_states: 4.0``), a bare number a one-element bound (``low: -1``)."""
    return tuple((name, _FEATURE_TYPES[name].coerce(f"feature_args.{name}", value)
                  if name in _FEATURE_TYPES else value) for name, value in pairs)


def check_feature_args(torso: str, feature_args: tuple, obs_shape: tuple) -> None:
    """Refuse feature settings that ``torso`` would not read, that are missing or out of range, or
    that do not fit observations of shape ``obs_shape``; each a one-line ConfigError."""
    given = dict(feature_args)
    table = FEATURE_SETTINGS.get(torso, {})
    unknown = sorted(set(given) - set(table))
    if unknown:
        reads = (f"reads only {sorted(table)}" if table else
                 f"reads none (only {', '.join(FEATURE_TORSOS)} do)")
        close = [c for name in unknown for c in difflib.get_close_matches(name, list(table), n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"feature_args={feature_args!r} is not allowed: torso={torso!r} {reads}; "
                          f"unknown {unknown}{hint}")
    for name, (default, declared) in table.items():
        require(name in given or default is not None, "feature_args", feature_args,
                f"torso={torso!r} needs {name}: {declared.help}")
        if name in given:
            declared.check(f"feature_args.{name}", given[name])
    shape = tuple(obs_shape)
    if torso == "onehot":
        require(shape in ((), (1,)), "torso", torso, "one-hot features take a state index as the "
                f"observation (shape () or (1,)); this env observes shape {shape}")
    if torso == "tile":
        require(len(shape) == 1, "torso", torso, "tile coding takes a vector observation; this "
                f"env observes shape {shape}")
        for name in ("low", "high"):
            require(len(given[name]) == shape[0], f"feature_args.{name}", given[name],
                    f"one bound per observation dimension: {shape[0]} numbers (this env observes "
                    f"shape {shape})")
        require(all(a < b for a, b in zip(given["low"], given["high"])), "feature_args.high",
                given["high"], f"each bound above the matching low {given['low']}")
        tiles, tilings = given.get("tiles_per_dim", 6), given.get("num_tilings", 8)
        require(tiles ** shape[0] * tilings <= INT32_MAX, "feature_args.tiles_per_dim", tiles,
                f"num_tilings·tiles_per_dim^{shape[0]} features must stay below 2^31 (the tile "
                "index is a 32-bit integer)")


# --------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """Fields every algorithm shares. Subclasses add their own and call ``super().__post_init__``."""
    env_id: str = setting(
        "CartPole-v1", help="environment: a gymnax id, one of pgjax.envs' own, or a suite's "
        "PREFIX:NAME (brax:NAME)",
        rule="a registered environment id (pgjax.envs.registered_ids(), or an id of a family in "
             "pgjax.envs.registry.FAMILIES)")
    env_overrides: tuple[tuple[str, Any], ...] = setting(
        (), type="pairs", help="EnvParams fields, e.g. (('max_steps_in_episode', 200),); on the "
        "command line --set env.FIELD=VALUE", rule="a table of EnvParams field = value")
    num_envs: int = setting(4, low=1, help="environments stepped in parallel per member")
    rollout_length: int = setting(128, low=1, help="steps per environment per update (T)")
    total_steps: int = setting(
        500_000, low=1, high=math.inf, help="environment steps per member (rounded down to whole "
        "updates of num_envs*rollout_length steps, fewer than 2^31 of them)")
    hidden_sizes: tuple[int, ...] = setting(
        (64, 64), type="ints", low=1, help="widths of the MLP torso's hidden layers (also the "
        "CNN's dense layers)")
    activation: str = setting("tanh", choices=ACTIVATIONS, help="nonlinearity of the torso")
    shared_torso: bool = setting(False, help="actor and critic share one torso")
    torso: str = setting(
        "mlp", choices=TORSOS, help="mlp, cnn (image observations), gru (an MLP then a GRU "
        "memory; ppo, ppo-kl, a2c, reinforce), or linear features onehot, random_projection, tile "
        "(feature_args)")
    feature_args: tuple[tuple[str, Any], ...] = setting(
        (), type="pairs", help=_feature_args_help(),
        rule="a table of name = value, only the names its torso reads, each in its range "
        "(tile: one bound per observation dimension)")
    state_dependent_std: bool = setting(
        False, help="continuous actions: σ from a head of the torso instead of a free parameter")
    log_std_init: float = setting(0.0, help="continuous actions: initial log σ")
    gsde: bool = setting(
        False, help="continuous actions: generalized state-dependent exploration (Raffin et al. "
        "2022), noise drawn once per rollout")
    normalize_obs: bool = setting(
        False, help="running mean/std normalisation of observations (batch statistics)")
    normalize_reward: bool = setting(
        False, help="scale rewards by a running std of the discounted return")
    reward_scale: float = setting(
        1.0, low=0, low_open=True, help="multiply training rewards by this (evaluation reports "
        "raw rewards)")
    optimizer: str = setting(
        "adam", choices=OPTIMIZERS, help="adam, rmsprop (A3C's ε in the root), rmsprop_torch (ε "
        "outside it) or sgd, after global-norm clipping")
    log_grad_variance: bool = setting(
        False, help="add grad_variance / grad_mean_sq_norm / grad_snr (pgjax.diagnostics)")
    lean_metrics: bool = setting(
        False, help="benchmark mode: per-update metrics cut to episode statistics, losses, "
        "entropy and gradient norm (pgjax.algorithms.LEAN_METRICS); the program computes no others")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        inherit_declarations(cls)

    def __post_init__(self):
        from pgjax.envs import check_env_id
        check_fields(self)  # each field against its declaration: type, range, choices
        try:
            check_env_id(self.env_id)
        except ValueError as error:
            raise ConfigError(f"env_id: {error}") from None
        self._check_env()
        require(self.total_steps >= self.steps_per_update, "total_steps", self.total_steps,
                f"must be at least num_envs*rollout_length = {self.steps_per_update}")
        require(self.num_updates < 2 ** 31, "total_steps", self.total_steps,
                f"at most {2 ** 31 - 1} updates of {self.steps_per_update} steps (the update "
                "counter is a 32-bit integer in the train state)")
        if self.torso == "gru":
            self._check_recurrent()
        if self.gsde:
            require(self.torso == "mlp" and not self.state_dependent_std, "gsde", self.gsde,
                    "gSDE needs torso='mlp' and a free log σ matrix (state_dependent_std=false)")
        require(not self.log_grad_variance or self.grad_variance_groups >= 2, "log_grad_variance",
                self.log_grad_variance,
                f"the gradient variance needs at least 2 estimates and {type(self).__name__} "
                f"takes one per {self.grad_variance_group_name} (this config has "
                f"{self.grad_variance_groups})")

    def _check_env(self) -> None:
        from gymnax.environments import spaces
        from pgjax.envs import make
        try:
            env, params = make(self.env_id, **dict(self.env_overrides))
        except ValueError as error:
            raise ConfigError(f"env_overrides: {error}") from None
        obs_shape = env.observation_space(params).shape
        require(not (self.normalize_obs and getattr(env, "action_mask_in_observation", False)),
                "normalize_obs", self.normalize_obs, f"{self.env_id}'s observations end with its "
                "action mask, which normalisation would rescale; leave normalize_obs off")
        require(self.torso != "cnn" or len(obs_shape) == 3, "torso", self.torso,
                f"'cnn' needs image observations [height, width, channels]; {self.env_id} "
                f"observes shape {tuple(obs_shape)} (use torso=mlp)")
        check_feature_args(self.torso, self.feature_args, obs_shape)
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
                "torso='gru' works with ppo, ppo-kl, a2c and reinforce")
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


# --------------------------------------------------------------------------- hyperparameters

@struct.dataclass
class CommonHparams:
    """Traced numbers shared by every algorithm (vmappable)."""
    learning_rate: Any = setting(
        2.5e-4, low=0, low_open=True, help="step size α (the actor's where the critic has its own)")
    gamma: Any = setting(0.99, low=0, high=1, help="discount γ")
    max_grad_norm: Any = setting(
        0.5, low=0, low_open=True, help="threshold of the global-norm gradient clipping")
    ent_coef: Any = setting(0.01, low=0, help="weight β of the entropy bonus")
    vf_coef: Any = setting(0.5, low=0, help="weight c_v of the value loss")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        inherit_declarations(cls)


def validate_hparams(hparams) -> None:
    """Check the host-side values of a hyperparameter dataclass (scalars or arrays) against each
    field's declaration: a finite number in its range."""
    check_fields(hparams)


def hparams_as_arrays(hparams):
    """Turn every field into a float32 array (so vmapped and single runs trace alike)."""
    return hparams.replace(**{f.name: jnp.asarray(getattr(hparams, f.name), jnp.float32)
                              for f in dataclasses.fields(hparams)})


# --------------------------------------------------------------------------- from text and files

def _too_big(text: str) -> bool:
    try:
        return abs(float(text)) >= 2 ** 63
    except ValueError:
        return False


def parse_setting(key: str, text: str, declared: Setting) -> Any:
    """The value of ``--set key=text`` for a field declared ``declared`` (its range is checked
    when the config or hyperparameters are built)."""
    def refuse():
        raise ConfigError(f"{key}={text!r} is not allowed: must be {declared.allowed}")
    if declared.type == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            refuse()
        return lowered in ("true", "1")
    if declared.type == "int":
        if _too_big(text):
            refuse()
        try:
            number = float(text)
        except ValueError:
            return refuse()
        return _as_int(number, refuse)
    if declared.type == "ints":
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not allowed: a comma-separated list of "
                              "integers") from None
    if key == "feature_args":
        return coerce_feature_args(_parse_feature_args(text))
    if declared.type == "str":
        return text
    try:
        return float(text)
    except ValueError:
        return refuse()


def _refuse_unknown(given, declared, where: str, also: str = "") -> None:
    unknown = sorted(set(given) - set(declared))
    if unknown:
        close = [c for name in unknown for c in difflib.get_close_matches(name, list(declared), n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"{where}: unknown fields {unknown}{hint}; allowed: "
                          f"{', '.join(sorted(declared))}{also}")


def apply_overrides(config, hparams, assignments: list[str]):
    """Apply ``key=value`` strings to (config, hparams). Keys of EnvParams go in as ``env.KEY``.

    Raises :class:`ConfigError` for malformed assignments, unknown keys (with close matches and
    the allowed list) and values of the wrong type; the new config is validated as a whole.
    """
    config_fields = settings_of(type(config))
    hparam_fields = settings_of(type(hparams))
    config_changes: dict[str, Any] = {}
    hparam_changes: dict[str, Any] = {}
    env_overrides = dict(config.env_overrides)
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment!r} is not allowed: expected key=value")
        key, text = (part.strip() for part in assignment.split("=", 1))
        if key.startswith("env."):
            env_overrides[key[4:]] = _parse_env_value(text)
        elif key == "env_overrides":
            raise ConfigError(f"--set {assignment!r} is not allowed: set environment parameters "
                              "one by one, as env.FIELD=VALUE")
        elif key in hparam_fields:
            hparam_changes[key] = parse_setting(key, text, hparam_fields[key])
        elif key in config_fields:
            config_changes[key] = parse_setting(key, text, config_fields[key])
        else:
            allowed = sorted(set(hparam_fields) | set(config_fields) - {"env_overrides"})
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
        name, value = (part.strip() for part in item.split(":", 1))
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
    return {f.name: np.asarray(getattr(hparams, f.name)).tolist() for f in dataclasses.fields(hparams)}


def _as_tuple(value: Any) -> Any:
    """JSON lists back to (nested) tuples, as the frozen configs hold them."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def config_from_dict(config_class, saved: Any, where: str = "config"):
    """A config from a table of field = value: :func:`config_to_dict`'s output (``config.json``)
    or a settings file's ``[config]``. Unknown fields are refused with close matches, each value
    is read as its declaration says (a word for a number, ``"false"`` for a bool: ConfigError)
    and the config is validated anew."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{where}={saved!r} is not allowed: a table of field = value")
    declared = settings_of(config_class)
    _refuse_unknown(saved, declared, where)
    values = {name: declared[name].coerce(name, value) for name, value in saved.items()}
    if "feature_args" in values:
        values["feature_args"] = coerce_feature_args(values["feature_args"])
    return config_class(**values)


def hparams_from_dict(hparams_class, saved: Any, where: str = "hparams"):
    """Hyperparameters from a table of name = number (a settings file's, ``config.json``'s):
    unknown names refused with close matches, each value a number, validated."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{where}={saved!r} is not allowed: a table of hyperparameter = number")
    declared = settings_of(hparams_class)
    _refuse_unknown(saved, declared, where)
    hparams = hparams_class(**{name: declared[name].coerce(name, value)
                               for name, value in saved.items()})
    validate_hparams(hparams)
    return hparams


def config_differences(saved, requested) -> list[str]:
    """``field (saved X, requested Y)`` for every field where two configs differ."""
    a, b = config_to_dict(saved), config_to_dict(requested)
    return [f"{k} (saved {a.get(k)!r}, requested {b.get(k)!r})"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
