"""Environment families: suites reached through an id prefix (``brax:NAME``), each adapted in its
own file to gymnax's ``Environment`` interface (``terminated`` and ``truncated`` as pgjax reads
them, the final observation kept for bootstrapping).

A family is one adapter module that defines a :class:`Family` and one line in
:data:`envs.registry.FAMILIES` naming it. The registry asks the family whose prefix an id starts
with to check the id (a missing extra names its ``pip install`` command) and to make the
environment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax


@dataclass(frozen=True)
class Family:
    """An environment suite behind an id prefix."""
    prefix: str                      # "brax:": ids are PREFIX + the suite's own name
    check_id: Callable[[str], None]  # raises ValueError saying why an id cannot be made
    make: Callable[[str], Any]       # the gymnax-style environment of an id (its default_params too)
    help: str                        # for the unknown-id message, e.g. "brax:NAME (the [brax] extra)"
    package: str                     # the suite's distribution, whose version keys stored programs

    def owns(self, env_id) -> bool:
        return str(env_id).startswith(self.prefix)


def family_of(env_id, families) -> Family | None:
    """The family whose prefix ``env_id`` starts with, or None (a gymnax id or pgjax's own)."""
    return next((family for family in families if family.owns(env_id)), None)


def maker(check_id: Callable[[str], None], build: Callable[[str], Any]) -> Callable[[str], Any]:
    """A family's ``make``: ``check_id(env_id)``, then ``build(env_id)`` with concrete arrays (even
    when first called inside a jit trace, so no traced value leaks into the cached environment),
    cached per id."""
    @functools.lru_cache(maxsize=None)
    def make(env_id: str):
        check_id(env_id)
        with jax.ensure_compile_time_eval():
            return build(env_id)
    return make
