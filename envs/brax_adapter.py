"""Brax environments as gymnax environments: ``envs.make("brax:inverted_pendulum")``.

An optional extra (``pip install -e ".[brax]"``); nothing here imports brax until a ``brax:`` id
is made. :class:`BraxEnv` wraps ``brax.envs.get_environment(name, backend=...)`` (Freeman et al.
2021) in gymnax's ``Environment`` interface, so the rest of pgjax sees the usual step signature:

- ``terminated`` is Brax's ``done`` (a true end: the hopper fell, the pendulum tipped); the time
  limit is ours, ``EnvParams.max_steps_in_episode`` (default 1000, Brax's training episode
  length), reported as ``truncated`` by gymnax's step. So a time-limit end bootstraps, as
  everywhere in pgjax, instead of being Brax's ``done`` with a ``truncation`` flag.
- Actions are continuous in [−1, 1]^A (the action space says so; :class:`envs.ClipAction`
  clips the policy's samples into it).
- Auto-reset is gymnax's (a fresh ``reset`` where an episode ended); the pre-reset observation is
  the ``final_observation`` pgjax bootstraps from.

Brax itself says its own pipelines and environments are no longer actively maintained (it points
to MuJoCo's MJX and MuJoCo Playground); the adapter uses what brax 0.14 ships.
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any

import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from .families import Family, maker

PREFIX = "brax:"
BACKEND = "generalized"  # brax's default pipeline for its own environments


@struct.dataclass
class EnvState(environment.EnvState):
    brax_state: Any  # brax.envs.base.State: pipeline state, obs, reward, done, metrics, info
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


def available() -> bool:
    """Whether brax can be imported (the ``[brax]`` extra is installed)."""
    try:
        # mujoco (a brax dependency) prints "Failed to import mujoco_warp" on stdout when its
        # optional GPU backend is absent; brax's own environments do not need it.
        with contextlib.redirect_stdout(io.StringIO()):
            import brax.envs  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def brax_names() -> tuple[str, ...]:
    """The environment names brax registers (empty without brax)."""
    if not available():
        return ()
    from brax import envs as brax_envs
    return tuple(sorted(brax_envs._envs))  # brax keeps its registry in this dict


def check_id(env_id: str) -> None:
    """Raise ``ValueError`` for a ``brax:`` id that cannot be made, saying why."""
    name = env_id[len(PREFIX):]
    if not available():
        raise ValueError(f"{env_id!r} needs brax, which is not installed: "
                         "pip install -e '.[brax]'")
    if name not in brax_names():
        raise ValueError(f"unknown brax environment {name!r} in {env_id!r}; brax has: "
                         f"{', '.join(brax_names())}")


class BraxEnv(environment.Environment):
    """A brax environment behind gymnax's ``Environment`` API (see the module docstring)."""

    def __init__(self, name: str, backend: str = BACKEND):
        super().__init__()
        from brax import envs as brax_envs
        self.brax_name = name
        self.brax_env = brax_envs.get_environment(name, backend=backend)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key, params):
        brax_state = self.brax_env.reset(key)
        return brax_state.obs, EnvState(brax_state=brax_state, time=jnp.asarray(0, jnp.int32))

    def step_env(self, key, state, action, params):
        brax_state = self.brax_env.step(state.brax_state, action)
        terminated = brax_state.done > 0.5
        state = EnvState(brax_state=brax_state, time=state.time + 1)
        return brax_state.obs, state, brax_state.reward, terminated, {}

    def is_terminal(self, state, params):
        return jnp.logical_or(state.brax_state.done > 0.5, state.time >= params.max_steps_in_episode)

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.brax_name}"

    def action_space(self, params=None):
        size = self.brax_env.action_size
        return spaces.Box(-jnp.ones(size), jnp.ones(size), (size,), jnp.float32)

    def observation_space(self, params):
        size = self.brax_env.observation_size
        return spaces.Box(-jnp.inf * jnp.ones(size), jnp.inf * jnp.ones(size), (size,), jnp.float32)


# The (cached) :class:`BraxEnv` of a ``brax:NAME`` id: building one parses the model file.
make = maker(check_id, lambda env_id: BraxEnv(env_id[len(PREFIX):]))


FAMILY = Family(PREFIX, check_id, make, "brax:NAME for brax's environments with the [brax] extra",
                package="brax")
