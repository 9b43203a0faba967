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

import gymnax
import jax

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
    """Raise ``ValueError`` naming close matches if ``env_id`` is unknown (no env is built)."""
    known = registered_ids()
    if env_id in known:
        return
    close = difflib.get_close_matches(str(env_id), known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown env id {env_id!r}{hint} (known ids: {', '.join(known)})")


def make(env_id: str, **param_overrides: Any):
    """Build ``(env, env_params)`` for a gymnax id or one of ours, with ``EnvParams`` overrides."""
    check_env_id(env_id)
    # Concrete arrays even when called inside a jit trace (e.g. a cached env first built while
    # tracing ``init``): a traced EnvParams leaf would leak out of that trace.
    with jax.ensure_compile_time_eval():
        if env_id in _OWN:
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
        params = params.replace(**param_overrides)
    return env, params
