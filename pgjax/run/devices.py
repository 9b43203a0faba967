"""The population over several devices (issue 15 §1): members are split along a 1-D mesh with the
axis ``members``, each device training its slice of seeds × settings in the same program.

Every leaf of the member-stacked train state has the member axis first, so one ``NamedSharding``
with ``PartitionSpec("members")`` places the whole state; XLA partitions the vmapped update
along that axis (no member talks to another, so no collective runs). With one device nothing is
placed and the program is the single-device one.
"""

from __future__ import annotations

import math

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pgjax.config import ConfigError

AXIS = "members"


def device_count(requested: int | None, population: int) -> int:
    """How many devices the population is split over. ``requested`` must divide the population
    and be at most the local device count; None takes as many local devices as divide it."""
    available = jax.local_device_count()
    if requested is None:
        return math.gcd(population, available)
    if requested > available:
        raise ConfigError(f"devices={requested} is not allowed: this process sees {available} "
                          f"device(s) ({jax.devices()[0].platform})")
    if population % requested:
        raise ConfigError(f"devices={requested} is not allowed: the population has {population} "
                          f"member(s) (seeds × settings), which must split evenly over the devices; "
                          f"use a divisor of {population}")
    return requested


def member_sharding(count: int) -> NamedSharding | None:
    """The sharding of member-stacked arrays over the first ``count`` local devices (None: one)."""
    if count <= 1:
        return None
    return NamedSharding(Mesh(jax.local_devices()[:count], (AXIS,)), PartitionSpec(AXIS))


def place(tree, sharding):
    """``tree`` (leaves ``[M, ...]``) put on the devices of ``sharding`` (unchanged without one)."""
    return tree if sharding is None else jax.device_put(tree, sharding)


def abstract(tree, sharding):
    """ShapeDtypeStructs of ``tree`` carrying ``sharding`` (what the program is compiled for)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
