"""One registry for every environment: all gymnax ids plus the project's own.

``make(env_id, **param_overrides) -> (env, env_params)``. Overrides replace fields of the
environment's ``EnvParams`` (for example ``max_steps_in_episode=200``), so a changed time limit is
a parameter, not a new class.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

import jax

from . import brax_adapter, craftax_adapter, jumanji_adapter, navix_adapter, xminigrid_adapter
from ._gymnax import load as _load_gymnax
from .families import family_of

gymnax = _load_gymnax()

# Suites behind an id prefix: an adapter module each (envs/families.py says what one holds)
FAMILIES = (brax_adapter.FAMILY, xminigrid_adapter.FAMILY, craftax_adapter.FAMILY,
            navix_adapter.FAMILY, jumanji_adapter.FAMILY)

_OWN: dict[str, Callable[[], Any]] = {}


def register(env_id: str, factory: Callable[[], Any]) -> None:
    """Register one of our own environments (a gymnax ``Environment`` subclass or factory)."""
    if env_id in _OWN or env_id in gymnax.registered_envs:
        raise ValueError(f"environment id {env_id!r} is already registered")
    _OWN[env_id] = factory


def registered_ids() -> list[str]:
    """Every id ``make`` accepts: gymnax's, then ours."""
    return list(gymnax.registered_envs) + sorted(_OWN)


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` naming close matches if ``env_id`` is unknown (no env is built). An
    id with a family's prefix (:data:`FAMILIES`, e.g. ``brax:NAME``) is checked by its family."""
    family = family_of(env_id, FAMILIES)
    if family is not None:
        family.check_id(env_id)
        return
    known = registered_ids()
    if env_id in known:
        return
    close = difflib.get_close_matches(str(env_id), known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    families = "; ".join(family.help for family in FAMILIES)
    raise ValueError(f"unknown env id {env_id!r}{hint} (known ids: {', '.join(known)}, and "
                     f"{families})")


def make(env_id: str, **param_overrides: Any):
    """Build ``(env, env_params)`` for a gymnax id or one of ours, with ``EnvParams`` overrides."""
    check_env_id(env_id)
    # Concrete arrays even when called inside a jit trace (e.g. a cached env first built while
    # tracing ``init``): a traced EnvParams leaf would leak out of that trace.
    with jax.ensure_compile_time_eval():
        family = family_of(env_id, FAMILIES)
        if family is not None:
            env = family.make(env_id)
            params = env.default_params
        elif env_id in _OWN:
            env = _OWN[env_id]()
            params = env.default_params
        else:
            env, params = gymnax.make(env_id)
    if param_overrides:
        fields = {f.name for f in dataclasses.fields(params)}
        unknown = sorted(set(param_overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown EnvParams field(s) {unknown} for {env_id!r}; allowed: {sorted(fields)}")
        declared = {f.name: f for f in dataclasses.fields(params)}
        for name, value in param_overrides.items():
            _check_param(env_id, name, value, getattr(params, name),
                         declared[name].metadata.get("choices"))
        params = params.replace(**{name: _as_default_kind(value, getattr(params, name))
                                   for name, value in param_overrides.items()})
    return env, params


_TIME_LIMITS = ("max_steps_in_episode", "max_steps")
_INT32 = (-2 ** 31, 2 ** 31 - 1)  # jax's default integers: what the compiled program holds
_FLOAT32_MAX = 3.4028234663852886e38


def _check_param(env_id: str, name: str, value: Any, default: Any, choices=None) -> None:
    """Refuse an ``EnvParams`` override whose kind differs from the default's (a word for a
    number, a fraction for an integer), a word outside the field's declared ``choices``
    (``struct.field(..., metadata={"choices": (...)})``), a number the program's 32-bit
    integers or floats cannot hold, or a time limit below one step, naming what is allowed."""
    import numpy as np
    where = f"env.{name}={value!r} is not allowed for {env_id!r}"
    if isinstance(default, str):  # a static word: one of the field's declared choices, if any
        if not isinstance(value, str):
            raise ValueError(f"{where}: must be a word (default {default!r})")
        if choices is not None and value not in choices:
            raise ValueError(f"{where}: one of {list(choices)}")
        return
    kind = np.asarray(default).dtype
    if np.asarray(default).ndim != 0:
        if isinstance(value, (str, int, float, bool, np.number)):
            raise ValueError(f"{where}: this field is an array (default shape "
                             f"{np.shape(default)}); pass a sequence of numbers from Python")
        return
    if kind == np.bool_:
        if not (isinstance(value, (bool, np.bool_)) or value in (0, 1)):
            raise ValueError(f"{where}: must be true/false (1/0); default {default!r}")
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{where}: must be a number (default {np.asarray(default).item()!r})")
    if np.issubdtype(kind, np.integer) and float(value) != int(value):
        raise ValueError(f"{where}: must be an integer (default {np.asarray(default).item()!r})")
    if not np.isfinite(float(value)):
        raise ValueError(f"{where}: must be finite")
    if name in _TIME_LIMITS and value < 1:
        raise ValueError(f"{where}: a time limit must be a positive number of steps")
    low = 1 if name in _TIME_LIMITS else _INT32[0]
    if np.issubdtype(kind, np.integer) and not low <= int(value) <= _INT32[1]:
        raise ValueError(f"{where}: must be an integer in [{low}, {_INT32[1]}] (a 32-bit "
                         "integer in the compiled program)")
    if abs(float(value)) > _FLOAT32_MAX:
        raise ValueError(f"{where}: must be within ±{_FLOAT32_MAX:.4g} (a 32-bit float)")


def _as_default_kind(value: Any, default: Any) -> Any:
    """An integral float (``200.0``, ``1e3``) as an int where the default is an integer."""
    import numpy as np
    if (isinstance(value, float) and np.ndim(default) == 0 and not isinstance(default, str)
            and np.issubdtype(np.asarray(default).dtype, np.integer)):
        return int(value)
    return value
