"""XLand-MiniGrid's environments as gymnax environments: ``envs.make("xminigrid:MiniGrid-Empty-8x8")``.

An optional extra (``pip install -e ".[xminigrid]"``); nothing here imports xminigrid until an
``xminigrid:`` id is made. :class:`XMiniGridEnv` wraps ``xminigrid.make(name)`` (Nikulin et al.
2024, "XLand-MiniGrid: scalable meta-reinforcement learning environments in JAX") in gymnax's
``Environment`` interface. What xminigrid 0.9's ``Environment.step`` says, read from its source:

- a step is ``LAST`` when the goal is reached (``terminated``) or when its step counter reaches
  ``max_steps`` (``truncated``); ``discount`` is 0 only for the first, so **terminated** here is
  xminigrid's ``discount == 0`` at a ``LAST`` step. The time limit is gymnax's,
  ``EnvParams.max_steps_in_episode``, whose default is the suite's ``max_steps`` for the id
  (4·height·width for MiniGrid's rooms): reported as ``truncated``, so a time-limit end bootstraps
  from the final observation as everywhere in pgjax. A goal reached on the last step is a
  termination.
- The reward is the suite's: 1 − 0.9·(steps taken)/``max_steps`` on reaching the goal, else 0, with
  the suite's own ``max_steps`` (a changed ``max_steps_in_episode`` moves the time limit, not the
  reward's scale).
- Observations are the agent's egocentric view, ``[view, view, 2]`` small integers (tile, colour),
  given as float32 (the MLP flattens them; ``torso=cnn`` reads them as an image of 2 channels).
  Six discrete actions. Auto-reset is gymnax's (a fresh ``reset`` where an episode ended); the
  pre-reset observation is the ``final_observation`` pgjax bootstraps from.

The MiniGrid ports (``MiniGrid-*``) are single tasks. The XLand ids (``XLand-MiniGrid-R*``) need a
ruleset drawn from one of the suite's benchmarks, which pgjax does not set: they are refused.
"""

from __future__ import annotations

import importlib.util
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from .families import Family, maker
from .suites import SuiteEnv

PREFIX = "xminigrid:"
_META_RL = "XLand-MiniGrid-"


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 100


def available() -> bool:
    return importlib.util.find_spec("xminigrid") is not None


def names() -> tuple[str, ...]:
    """The single-task ids xminigrid registers (empty without xminigrid)."""
    if not available():
        return ()
    import xminigrid
    return tuple(n for n in xminigrid.registered_environments() if not n.startswith(_META_RL))


def check_id(env_id: str) -> None:
    """Raise ``ValueError`` for an ``xminigrid:`` id that cannot be made, saying why."""
    name = env_id[len(PREFIX):]
    if not available():
        raise ValueError(f"{env_id!r} needs xminigrid, which is not installed: "
                         "pip install -e '.[xminigrid]'")
    if name.startswith(_META_RL):
        raise ValueError(f"{env_id!r} is not allowed: XLand-MiniGrid's meta-RL ids need a ruleset "
                         "from one of its benchmarks, which pgjax does not set; the single tasks "
                         f"are: {', '.join(names())}")
    if name not in names():
        raise ValueError(f"unknown xminigrid environment {name!r} in {env_id!r}; xminigrid has: "
                         f"{', '.join(names())}")


class XMiniGridEnv(SuiteEnv):
    """An xminigrid environment behind gymnax's ``Environment`` API (see the module docstring)."""

    def __init__(self, name: str):
        super().__init__()
        import xminigrid
        self.xminigrid_name = name
        self.suite_env, self.suite_params = xminigrid.make(name)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=int(self.suite_params.max_steps))

    def suite_reset(self, key, params):
        timestep = self.suite_env.reset(self.suite_params, key)
        return timestep.observation.astype(jnp.float32), timestep

    def suite_step(self, key, timestep, action, params):
        timestep = self.suite_env.step(self.suite_params, timestep, action)
        terminated = timestep.last() & (timestep.discount == 0)
        return timestep.observation.astype(jnp.float32), timestep, timestep.reward, terminated

    def rgb_frame(self, state, params) -> np.ndarray:
        """``[H, W, 3] uint8``: xminigrid's own RGB drawing of the whole grid and the agent."""
        from xminigrid.rendering.rgb_render import rgb_render
        timestep = state.suite
        return np.asarray(rgb_render(np.asarray(timestep.state.grid), timestep.state.agent,
                                     int(self.suite_params.view_size)), np.uint8)

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.xminigrid_name}"

    @property
    def num_actions(self) -> int:
        return int(self.suite_env.num_actions(self.suite_params))

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params):
        shape = tuple(int(d) for d in self.suite_env.observation_shape(self.suite_params))
        return spaces.Box(0.0, 255.0, shape, jnp.float32)


# The (cached) :class:`XMiniGridEnv` of an ``xminigrid:NAME`` id.
make = maker(check_id, lambda env_id: XMiniGridEnv(env_id[len(PREFIX):]))


FAMILY = Family(PREFIX, check_id, make,
                "xminigrid:NAME for XLand-MiniGrid's single tasks with the [xminigrid] extra",
                package="xminigrid")
