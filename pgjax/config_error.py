"""The one error a bad value raises before anything is created or compiled, with the check that
raises it; the standard library alone, so that the layers that import no JAX (the report, the
study rules, the run folder's readers) raise the same error as the rest."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration or hyperparameter value that is not allowed."""


def require(condition: bool, field: str, value: Any, allowed: str) -> None:
    """Raise a :class:`ConfigError` naming the field, its bad value and what is allowed."""
    if not condition:
        raise ConfigError(f"{field}={value!r} is not allowed: {allowed}")
