"""Jumanji's environments as gymnax environments: ``envs.make("jumanji:Snake-v1")``.

An optional extra (``pip install -e ".[jumanji]"``); nothing here imports jumanji until a
``jumanji:`` id is made. Jumanji (Bonnet et al. 2024, "Jumanji: a Diverse Suite of Scalable
Reinforcement Learning Environments in JAX") speaks dm_env's protocol. What jumanji 1.1's
environments say, read from its source (``jumanji/types.py`` and each ``env.py``):

- ``reset(key) -> (state, timestep)`` and ``step(state, action) -> (state, timestep)``; the
  randomness lives in the state's own key, so a step is deterministic given the state. The raw
  environments do not reset themselves; gymnax's auto-reset does it here, in the same step.
- A ``TimeStep`` ends an episode when ``step_type`` is ``LAST``; its ``discount`` is 0 for a
  termination (``types.termination``) and 1 for a truncation (``types.truncation``). So here
  **terminated** is ``LAST`` with discount 0, and ``LAST`` with discount ≠ 0 is **truncated**.
- Jumanji's own time limits (Snake 4,000 steps, Maze rows·cols, Tetris 400, …) end with
  ``termination`` in every single-agent environment: the step count is part of the observation
  (``step_count``), so the state stays Markov and the end is a true terminal; pgjax keeps the
  suite's choice. gymnax's time limit is added on top (``EnvParams.max_steps_in_episode``, default
  the suite's ``time_limit`` where it has one, else 10,000; a truncation). Environment parameters
  are constructor arguments in Jumanji, not a parameter object, so ``--set env.FIELD`` reaches
  only the time limit.
- Observations are a NamedTuple per environment; they are flattened into one float32 vector with
  the ``action_mask`` last (:mod:`envs.suites`' rule), and the categorical policy gives the
  masked actions probability 0.
- pgjax's policies take one discrete action or a Box: the environments whose action is several
  discrete choices (``MultiDiscreteArray``: BinPack, Tetris, Minesweeper, …), a bounded integer
  pair (MultiCVRP) or continuous (SearchAndRescue), and the multi-agent ones (a reward per agent),
  are refused when made, saying why. No renderer: Jumanji draws with matplotlib on the host.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from .families import Family, maker
from .suites import (SuiteEnv, check_suite_id, flat_observation, has_action_mask, params_class,
                     suite_names)

PREFIX = "jumanji:"
NO_TIME_LIMIT = 10_000  # gymnax's limit for an environment without a time_limit of its own


@functools.lru_cache(maxsize=None)
def names() -> tuple[str, ...]:
    """The ids jumanji registers (empty without jumanji)."""
    return suite_names("jumanji", lambda jumanji: jumanji.registered_environments())


def check_id(env_id: str) -> None:
    """Raise ``ValueError`` for a ``jumanji:`` id that cannot be made, saying why (building the
    environment to read its action and reward specs)."""
    check_suite_id(env_id, PREFIX, "jumanji", "jumanji", names)
    _check_spaces(env_id, _suite_env(env_id[len(PREFIX):]))


@functools.lru_cache(maxsize=None)
def _suite_env(name: str):
    import jumanji
    with jax.ensure_compile_time_eval():
        return jumanji.make(name)


def _check_spaces(env_id: str, suite_env) -> None:
    """One discrete action and one reward per step, or a ValueError naming what the id has."""
    from jumanji import specs
    action = suite_env.action_spec
    if not isinstance(action, specs.DiscreteArray):
        shape = [int(v) for v in np.ravel(getattr(action, "num_values", action.shape))]
        raise ValueError(f"{env_id!r} is not allowed: its action is {type(action).__name__} "
                         f"{shape}; pgjax's policies take "
                         "one discrete action (DiscreteArray) or a continuous Box")
    if tuple(suite_env.reward_spec.shape) != ():
        raise ValueError(f"{env_id!r} is not allowed: it gives a reward per agent "
                         f"{tuple(suite_env.reward_spec.shape)}; pgjax trains one agent")


class JumanjiEnv(SuiteEnv):
    """A jumanji environment behind gymnax's ``Environment`` API (see the module docstring)."""

    def __init__(self, env_id: str):
        super().__init__()
        self.jumanji_name = env_id[len(PREFIX):]
        self.suite_env = _suite_env(self.jumanji_name)
        limit = getattr(self.suite_env, "time_limit", None)
        self.params_type = params_class(_NoParams(), time_limit=int(limit or NO_TIME_LIMIT))
        _, timestep = jax.eval_shape(self.suite_env.reset, jax.random.key(0))
        self.action_mask_in_observation = has_action_mask(timestep.observation)
        self.obs_shape = jax.eval_shape(flat_observation, timestep.observation).shape

    @property
    def default_params(self):
        return self.params_type()

    def suite_reset(self, key, params):
        state, timestep = self.suite_env.reset(key)
        return flat_observation(timestep.observation), (state, timestep)

    def suite_step(self, key, suite_state, action, params):
        state, timestep = self.suite_env.step(suite_state[0], action)
        terminated = timestep.last() & (timestep.discount == 0)
        return flat_observation(timestep.observation), (state, timestep), timestep.reward, terminated

    def is_truncated(self, state, params):
        """gymnax's time limit, or the suite's own truncation (``LAST`` with discount ≠ 0)."""
        timestep = state.suite[1]
        suite_truncated = timestep.last() & (timestep.discount != 0)
        return (state.time >= params.max_steps_in_episode) | suite_truncated

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.jumanji_name}"

    @property
    def num_actions(self) -> int:
        return int(self.suite_env.action_spec.num_values)

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, tuple(self.obs_shape), jnp.float32)


@struct.dataclass
class _NoParams:
    """Jumanji has no parameter object: the mirror of :func:`envs.suites.params_class` is empty."""


# The (cached) :class:`JumanjiEnv` of a ``jumanji:NAME`` id.
make = maker(check_id, lambda env_id: JumanjiEnv(env_id))


FAMILY = Family(PREFIX, check_id, make, "jumanji:NAME for Jumanji's single-agent environments "
                "with the [jumanji] extra", package="jumanji")
