"""Navix's environments as gymnax environments: ``envs.make("navix:Navix-DoorKey-5x5-v0")``.

An optional extra (``pip install -e ".[navix]"``); nothing here imports navix until a ``navix:``
id is made (navix's own import takes seconds: it loads its bundled agents, wandb among them).
Navix (Pignatelli et al. 2024, "NAVIX: Scaling MiniGrid Environments with JAX") ports MiniGrid
to JAX. What navix 0.7's ``Environment.step`` says, read from its source:

- a ``Timestep`` carries ``step_type``: 0 while the episode goes on, 1 (``TRUNCATION``) when its
  counter ``t`` reaches the environment's ``max_steps``, 2 (``TERMINATION``) when the task's
  termination function fires (the goal reached, lava, a ball hit); a step that does both is a
  termination. **terminated** here is ``step_type == 2``.
- navix's own time limit is switched off (its ``max_steps`` set out of reach) and gymnax's is used:
  ``EnvParams.max_steps_in_episode``, default 100, the limit ``navix.make`` gives every id. It is
  reported as ``truncated``, so a time-limit end bootstraps from the final observation.
- navix resets one call late (the step after a final time step ignores its action and returns the
  reset); here gymnax's auto-reset replaces a finished episode in the same step, so no episode gets
  that extra transition.
- Rewards are navix's: 1 on reaching the goal (not MiniGrid's 1 − 0.9·t/T), 0 otherwise; its
  optional time penalty (``penality_coeff``, 0 by default) is not used.
- Observations: navix's default ``symbolic`` one, the whole grid as ``[H, W, 3]`` small integers
  (object, colour, state), given as float32 (an MLP flattens it; ``torso=cnn`` reads an image).
  Seven discrete actions (MiniGrid's). Frames for ``pgjax episodes --gif`` come from navix's own
  ``rgb`` observation of the state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from .families import Family, maker
from .suites import SuiteEnv, check_suite_id, suite_names

PREFIX = "navix:"
TERMINATION = 2          # navix.environments.environment.StepType.TERMINATION
NAVIX_TIME_LIMIT = 100   # what navix.make gives every id
_OUT_OF_REACH = 2 ** 30  # navix's own max_steps, so it never truncates an episode itself


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = NAVIX_TIME_LIMIT


@functools.lru_cache(maxsize=None)
def names() -> tuple[str, ...]:
    """The ids navix registers (empty without navix)."""
    return suite_names("navix", lambda navix: navix.registry())


def check_id(env_id: str) -> None:
    """Raise ``ValueError`` for a ``navix:`` id that cannot be made, saying why."""
    check_suite_id(env_id, PREFIX, "navix", "navix", names)


class NavixEnv(SuiteEnv):
    """A navix environment behind gymnax's ``Environment`` API (see the module docstring). Its
    step is deterministic given the state (navix keeps its own key in the state)."""

    def __init__(self, name: str):
        super().__init__()
        import navix
        self.navix_name = name
        self.suite_env = navix.make(name, max_steps=_OUT_OF_REACH)
        # read once, concretely (navix computes them with jnp, which a trace would make abstract)
        space = self.suite_env.observation_space
        self.obs_box = (float(space.minimum), float(space.maximum), tuple(int(d) for d in space.shape))
        self._num_actions = int(self.suite_env.action_space.n)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def suite_reset(self, key, params):
        timestep = self.suite_env.reset(key)
        return timestep.observation.astype(jnp.float32), timestep

    def suite_step(self, key, timestep, action, params):
        timestep = self.suite_env.step(timestep, action)
        return (timestep.observation.astype(jnp.float32), timestep, timestep.reward,
                timestep.step_type == TERMINATION)

    def rgb_frame(self, state, params) -> np.ndarray:
        """``[H, W, 3] uint8``: navix's ``rgb`` observation of one state."""
        import navix
        return np.asarray(jax.jit(navix.observations.rgb)(state.suite.state))

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.navix_name}"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params):
        low, high, shape = self.obs_box
        return spaces.Box(low, high, shape, jnp.float32)


# The (cached) :class:`NavixEnv` of a ``navix:NAME`` id.
make = maker(check_id, lambda env_id: NavixEnv(env_id[len(PREFIX):]))


FAMILY = Family(PREFIX, check_id, make, "navix:NAME for Navix's MiniGrid ports with the [navix] extra",
                package="navix")
