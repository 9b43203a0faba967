"""Training over several devices and processes: one 2-D mesh with the axes
``members`` (population parallelism) and ``envs`` (data parallelism inside each member).

- ``shard="members"`` (default) splits the population: every leaf of the member-stacked train
  state has the member axis first, so ``PartitionSpec("members")`` places it; no member talks to
  another, so no collective runs.
- ``shard="envs"`` splits each member's environment batch: the leaves that hold one entry per
  environment (environment states, observations) are sharded on their second axis with
  ``PartitionSpec(None, "envs")`` and everything else (parameters, optimiser state, normalisation
  statistics, keys) is replicated. The update is the single-device program partitioned by XLA's
  SPMD partitioner (``jit`` with shardings), so every statistic over the batch — advantage
  normalisation, observation-normalisation moments, the minibatch shuffle, the gradient mean —
  is taken over the global batch: XLA inserts the all-reduces (the gradient ``pmean``) and
  gathers itself.

Which leaves are per-environment is found from the shapes, not from names: the state is traced
(``jax.eval_shape``) with ``num_envs`` and with ``2 · num_envs``, and the leaves whose second axis
doubles are the per-environment ones.

With several processes (:mod:`pgjax.run.distributed`) the mesh spans every process's devices; the
state is built on each host and assembled into global arrays with
``jax.make_array_from_callback``, and what the host reads (metrics, evaluation results) is
replicated so every process can read it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pgjax.config import ConfigError

MEMBERS, ENVS = "members", "envs"
SHARD_AXES = (MEMBERS, ENVS)


def visible_devices() -> list:
    """The devices a run may use: every process's devices in a multi-process run, else local."""
    return jax.devices() if jax.process_count() > 1 else jax.local_devices()


def device_count(requested: int | None, population: int, num_envs: int = 1,
                 shard: str = MEMBERS) -> int:
    """How many devices the run is split over. ``requested`` must divide what is split (the
    population, or each member's ``num_envs``) and be at most the visible device count; None takes
    as many devices as divide it. A multi-process run must use every device."""
    available = len(visible_devices())
    split, what = (population, "the population has {n} member(s) (seeds × settings)") \
        if shard == MEMBERS else (num_envs, "each member has num_envs={n} environments")
    if requested is None:
        requested = math.gcd(split, available) if jax.process_count() == 1 else available
    if requested > available:
        raise ConfigError(f"devices={requested} is not allowed: this run sees {available} "
                          f"device(s) ({jax.devices()[0].platform})")
    if split % requested:
        raise ConfigError(f"devices={requested} is not allowed: {what.format(n=split)}, which "
                          f"must split evenly over the devices (shard={shard!r}); use a divisor "
                          f"of {split}")
    if jax.process_count() > 1 and requested != available:
        raise ConfigError(f"devices={requested} is not allowed: a run over {jax.process_count()} "
                          f"processes uses all {available} devices")
    return requested


def per_env_leaves(init_shapes, config) -> list[bool]:
    """For each leaf of the member-stacked state ``init_shapes(config)``: does its second axis run
    over environments? (It doubles when ``num_envs`` does.)"""
    single = jax.tree.leaves(init_shapes(config))
    double = jax.tree.leaves(init_shapes(dataclasses.replace(config, num_envs=2 * config.num_envs)))
    return [len(a.shape) > 1 and b.shape[1] == 2 * a.shape[1] for a, b in zip(single, double)]


@dataclass(frozen=True)
class Layout:
    """Where a run's arrays live: ``count`` devices along the ``shard`` axis of a mesh (``mesh``
    None: one device, nothing placed)."""
    count: int = 1
    shard: str = MEMBERS

    @functools.cached_property
    def mesh(self) -> Mesh | None:
        if self.count <= 1:
            return None
        grid = np.asarray(visible_devices()[:self.count])
        shape = (self.count, 1) if self.shard == MEMBERS else (1, self.count)
        return Mesh(grid.reshape(shape), SHARD_AXES)

    def sharding(self, *spec) -> NamedSharding | None:
        mesh = self.mesh
        return None if mesh is None else NamedSharding(mesh, PartitionSpec(*spec))

    def members(self) -> NamedSharding | None:
        """Arrays with the member axis first (``frozen``, evaluation results, metrics)."""
        return self.sharding(MEMBERS)

    def replicated(self) -> NamedSharding | None:
        return self.sharding()

    def state(self, abstract_state, env_leaves: list[bool]):
        """The sharding of every leaf of the member-stacked train state."""
        leaves, treedef = jax.tree.flatten(abstract_state)
        shardings = [self.sharding(MEMBERS, ENVS) if per_env else self.sharding(MEMBERS)
                     for per_env in env_leaves]
        return jax.tree.unflatten(treedef, shardings) if self.mesh is not None else None

    def describe(self, device: str) -> str:
        if self.count <= 1:
            return device
        procs = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
        return f"{self.count} × {device}{procs} (shard {self.shard})"


def place(tree, shardings):
    """``tree`` put on the devices of ``shardings`` (a tree of them, or one for every leaf;
    unchanged with None). Typed PRNG keys travel as their key data."""
    if shardings is None:
        return tree
    if not isinstance(shardings, NamedSharding):
        return jax.tree.map(_place_leaf, tree, shardings)
    return jax.tree.map(lambda x: _place_leaf(x, shardings), tree)


def _place_leaf(x, sharding):
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)  # one process, or already global (a restore)
    is_key = jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    host = np.asarray(jax.random.key_data(x) if is_key else x)
    array = jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.random.wrap_key_data(array, impl=jax.random.key_impl(x)) if is_key else array


def abstract(tree, shardings):
    """ShapeDtypeStructs of ``tree`` carrying ``shardings`` (what the program is compiled for)."""
    if shardings is None or isinstance(shardings, NamedSharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def to_host(tree):
    """NumPy copies of ``tree``'s leaves; arrays spread over other processes are gathered first,
    and typed random keys (an environment's state may hold one) become their key data."""
    def fetch(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)
    return jax.tree.map(fetch, tree)
