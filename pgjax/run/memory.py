"""What a run costs in memory, known before paying it: a run that cannot fit is refused in one
line, with the estimate and the device's memory, instead of compiling for a minute and then dying
while allocating.

Two estimates, each compared with the memory of the device the run uses (:func:`device_memory`):

- **Before anything is created or compiled** (:func:`check_training`, :func:`check_evaluation`),
  a lower bound from shapes alone, in well under a second whatever the sizes: the train state's
  bytes exactly (``jax.eval_shape`` of the population's init: tracing, no allocation), twice
  (the chunk program takes the state and returns the next one: XLA counts arguments and outputs
  apart when nothing is donated), plus one rollout's trajectory, which every update holds at once
  (``rollout_length × num_envs × members`` steps of observation, action and reward). Evaluation:
  every episode's environment state and observation and one hidden layer's activations, plus the
  episodes cached step by step (``cache_episodes × the time limit``), next to the train state.
- **After compilation, before the program runs** (:func:`check_compiled`), XLA's own account of
  the compiled program (``Compiled.memory_analysis()``: arguments + outputs + temporaries −
  aliased buffers), where the backend gives one (CPU and GPU do).

A run split over several devices needs its share on each; the CPU "devices" of one process
share the host's memory, so there the whole process's need is compared with it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass

import jax
import numpy as np

from pgjax.config import ConfigError

# bytes every environment step adds to a rollout besides its observation: at least the action
# (an int32 index or one float32 component) and the float32 reward
STEP_EXTRA_BYTES = 4 + 4
# per evaluation episode besides its environment state: the return (float32), the length (int32)
# and the still-running flag
EPISODE_EXTRA_BYTES = 4 + 4 + 1
# per recorded evaluation step besides the observation: action, reward (4 bytes each) and the
# terminated, truncated and valid flags
RECORD_EXTRA_BYTES = 4 + 4 + 3


# ------------------------------------------------------------------------------- sizes

def nbytes(tree) -> int:
    """Bytes of every array leaf of ``tree`` (arrays or ShapeDtypeStructs; a typed PRNG key
    counts as its key data)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.eval_shape(jax.random.key_data, leaf)
        total += int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def size_text(count: float) -> str:
    """``count`` bytes in binary units: ``512 B``, ``3.0 KiB``, ``23.4 GiB``, ``1.1 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------- the device

def host_memory(page_size: int | None = None, pages: int | None = None,
                cgroup_files=("/sys/fs/cgroup/memory.max",
                              "/sys/fs/cgroup/memory/memory.limit_in_bytes")) -> int | None:
    """The memory this process may use on the host: the physical memory, or less where a control
    group (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) limits it. None when unknown."""
    try:
        total = (page_size or os.sysconf("SC_PAGE_SIZE")) * (pages or os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        total = None
    for path in cgroup_files:
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)  # "max" (v2) or a huge number (v1): no limit
    return total


def device_memory(device=None) -> tuple[int | None, str]:
    """(bytes one device may hold, what they are): the host's memory for a CPU, the allocator's
    limit for an accelerator. (None, …) when the device does not say."""
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        return host_memory(), "cpu: the host's memory"
    stats = device.memory_stats() or {}
    return stats.get("bytes_limit"), f"{device.platform}: {device.device_kind}"


@dataclass(frozen=True)
class Placement:
    """How a run's bytes fall on the devices: ``count`` devices share the program (an even split
    assumed), ``local`` of them in this process; ``shared`` when those local devices draw on one
    memory (CPU devices all use the host's)."""
    count: int = 1
    local: int = 1
    shared: bool = True

    @classmethod
    def of_run(cls, count: int) -> "Placement":
        local = max(1, count // jax.process_count())
        return cls(count, local, jax.local_devices()[0].platform == "cpu")

    def need(self, total: float) -> float:
        """Bytes one memory must hold when the run's ``total`` is spread over the devices."""
        share = total / self.count
        return share * self.local if self.shared else share

    def need_per_device(self, per_device: float) -> float:
        """The same from one device's bytes (what XLA reports for a partitioned program)."""
        return per_device * self.local if self.shared else per_device


# ------------------------------------------------------------------------------- training

@functools.lru_cache(maxsize=32)
def state_shapes(config, members: int):
    """The member-stacked train state's ShapeDtypeStructs for ``members`` members, traced from
    abstract keys and hyperparameters (nothing is allocated, whatever the sizes)."""
    from pgjax import algorithms
    from pgjax.config import hparams_as_arrays
    algo = algorithms.for_config(config)
    key = jax.eval_shape(lambda: jax.random.key(0))
    keys = jax.ShapeDtypeStruct((members,), key.dtype)
    hparams = jax.tree.map(lambda x: jax.ShapeDtypeStruct((members, *np.shape(x)), np.float32),
                           hparams_as_arrays(algo.Hparams()))
    return jax.eval_shape(jax.vmap(lambda k, hp: algo.init(config, hp, k)), keys, hparams)


def obs_bytes_per_env(config, shapes, members: int) -> int:
    """Bytes of one environment's observation, from the state's ``obs`` ``[M, N, ...]``."""
    return nbytes(shapes.obs) // (members * config.num_envs)


@dataclass(frozen=True)
class Estimate:
    """A lower bound of a program's memory: ``parts`` (name, bytes) and what they count."""
    what: str                        # "the training program", "the evaluation program"
    parts: tuple[tuple[str, int], ...]
    detail: str = ""

    @property
    def total(self) -> int:
        return sum(b for _, b in self.parts)

    def text(self) -> str:
        parts = " + ".join(f"{name} {size_text(b)}" for name, b in self.parts)
        return f"{parts}{'; ' + self.detail if self.detail else ''}"


def training_estimate(config, members: int) -> Estimate:
    """The chunk program's lower bound: the train state in and out, and one rollout."""
    shapes = state_shapes(config, members)
    state = nbytes(shapes)
    per_step = obs_bytes_per_env(config, shapes, members) + STEP_EXTRA_BYTES
    rollout = config.rollout_length * config.num_envs * members * per_step
    return Estimate("the training program", (("train state", state), ("its next value", state),
                                             ("one rollout", rollout)),
                    f"{members:,d} member(s) × {config.num_envs:,d} envs × "
                    f"{config.rollout_length:,d} steps × {per_step} bytes")


def culprit(candidates) -> tuple[str, object]:
    """(name, value) of the size most likely to blame, named in a refusal: of ``candidates``
    (name, value, its default), the one furthest above its default; the first when none is above
    its default (a small device, not a large setting)."""
    name, value, default = max(candidates, key=lambda c: c[1] / max(c[2], 1))
    if value <= default:
        name, value, _ = candidates[0]
    return name, value


def training_culprit(config, seeds: int, settings: int) -> tuple[str, int]:
    """:func:`culprit` of the training program's sizes: num_envs, rollout_length, seeds, settings."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    return culprit([("num_envs", config.num_envs, defaults.get("num_envs", 4)),
                    ("rollout_length", config.rollout_length, defaults.get("rollout_length", 128)),
                    ("seeds", seeds, 3), ("settings", settings, 1)])


def evaluation_culprit(options, seeds: int, settings: int) -> tuple[str, int]:
    """:func:`culprit` of a run's evaluation sizes: eval_episodes, cache_episodes, seeds, settings."""
    return culprit([("eval_episodes", options.eval_episodes, 200),
                    ("cache_episodes", options.cache_episodes, 20), ("seeds", seeds, 3),
                    ("settings", settings, 1)])


# ------------------------------------------------------------------------------- evaluation

def evaluation_estimate(config, members: int, episodes: int, cache_episodes: int) -> Estimate:
    """The evaluation program's lower bound (:func:`pgjax.run.evaluation.evaluate`, vmapped over
    the members): every episode's environment state and observation, one hidden layer's
    activations and its return and length; the cached episodes step by step."""
    from pgjax.run.evaluation import max_episode_steps
    environments = _eval_env_bytes(config, episodes)  # states and observations of all episodes
    per_episode = EPISODE_EXTRA_BYTES + 4 * _widest_layer(config)
    obs = obs_bytes_per_env(config, state_shapes(config, members), members)
    length = max_episode_steps(config)
    recorded = min(cache_episodes, episodes)
    return Estimate("the evaluation program",
                    (("episodes", members * (environments + episodes * per_episode)),
                     ("cached steps", members * recorded * length * (obs + RECORD_EXTRA_BYTES))),
                    f"{members:,d} member(s) × {episodes:,d} episodes, {recorded:,d} of them "
                    f"cached × {length:,d} steps")


def _eval_env_bytes(config, num_episodes: int) -> int:
    """Bytes of the observations and states of ``num_episodes`` evaluation environments (the
    environment stack :func:`pgjax.run.evaluation.evaluate` builds, traced, not run)."""
    from pgjax.algorithms import setup
    venv, env_params = setup.make_env(config, num_episodes, frozen_obs_stats=True, training=False,
                                       keep_final_state=True)
    key = jax.eval_shape(lambda: jax.random.key(0))
    return nbytes(jax.eval_shape(venv.reset, key, env_params))


def _widest_layer(config) -> int:
    """Units of the widest hidden layer of the policy's torso (0 for linear features)."""
    if getattr(config, "torso", "mlp") not in ("mlp", "cnn", "gru"):
        return 0
    return max(getattr(config, "hidden_sizes", ()) or (0,))


# ------------------------------------------------------------------------------- refusals

def refusal(field: str, value, estimate_text: str, need: float, capacity: int, where: str,
            advice: str) -> str:
    """The one line of a refusal: the value, the estimate, the device's memory, what to do."""
    return (f"{field}={value!r} is not allowed: {estimate_text} needs at least {size_text(need)} "
            f"and this device has {size_text(capacity)} ({where}); {advice}")


def check(estimate: Estimate, field: str, value, advice: str, placement: Placement = Placement(),
          also: int = 0, memory=None) -> None:
    """Refuse (ConfigError) when ``estimate`` (plus ``also`` bytes held beside it, e.g. the train
    state next to the evaluation) cannot fit the device memory ``memory`` (default
    :func:`device_memory`)."""
    capacity, where = memory if memory is not None else device_memory()
    need = placement.need(estimate.total + also)
    if capacity is not None and need > capacity:
        beside = f" + the train state beside it {size_text(also)}" if also else ""
        raise ConfigError(refusal(field, value, f"{estimate.what} ({estimate.text()}{beside})",
                                  need, capacity, where, advice))


TRAIN_ADVICE = ("lower num_envs, rollout_length or the number of seeds × settings, or spread the "
                "population over more devices (--devices)")
EVAL_ADVICE = "lower eval_episodes, cache_episodes or the number of seeds × settings"


def check_training(config, seeds: int, settings: int, placement: Placement = Placement(),
                   memory=None) -> Estimate:
    """Refuse a run whose training program cannot fit, from shapes alone (before anything is
    created or compiled). Returns the estimate."""
    estimate = training_estimate(config, seeds * settings)
    field, value = training_culprit(config, seeds, settings)
    check(estimate, field, value, TRAIN_ADVICE, placement, memory=memory)
    return estimate


def check_evaluation(config, members: int, episodes: int, cache_episodes: int,
                     blame: tuple[str, object], advice: str = EVAL_ADVICE,
                     placement: Placement = Placement(), memory=None) -> Estimate:
    """Refuse an evaluation whose program cannot fit beside the train state, naming ``blame``
    (field, value). Returns the estimate."""
    estimate = evaluation_estimate(config, members, episodes, cache_episodes)
    check(estimate, *blame, advice, placement, also=nbytes(state_shapes(config, members)),
          memory=memory)
    return estimate


def compiled_bytes(compiled) -> tuple[int, str] | None:
    """(bytes, their parts) of a compiled program by XLA's memory analysis: arguments + outputs
    + temporaries − aliased (per device for a partitioned program); None where the backend gives
    no analysis."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - a backend without the analysis
        return None
    if analysis is None:
        return None
    a, o = analysis.argument_size_in_bytes, analysis.output_size_in_bytes
    t, alias = analysis.temp_size_in_bytes, analysis.alias_size_in_bytes
    return a + o + t - alias, (f"arguments {size_text(a)} + outputs {size_text(o)} + temporaries "
                               f"{size_text(t)}" + (f" − aliased {size_text(alias)}" if alias else ""))


def check_compiled(compiled, what: str, field: str, value, advice: str,
                   placement: Placement = Placement(), also: int = 0, memory=None) -> int | None:
    """Refuse (ConfigError) a compiled program that cannot fit, by XLA's account of it, before it
    runs. Returns its bytes (None where unknown)."""
    found = compiled_bytes(compiled)
    if found is None:
        return None
    program, parts = found
    capacity, where = memory if memory is not None else device_memory()
    need = placement.need_per_device(program) + placement.need(also)
    if capacity is not None and need > capacity:
        beside = f" + the train state beside it {size_text(also)}" if also else ""
        raise ConfigError(refusal(field, value, f"{what} as compiled ({parts}{beside})", need,
                                  capacity, where, advice))
    return program
