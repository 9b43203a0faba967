"""What the suite adapters share (``craftax:``, ``navix:``, ``jumanji:``; see envs/families.py).

- :class:`SuiteEnv`: a suite's environment behind gymnax's ``Environment``. An adapter gives the
  suite's reset and step and says when an episode *terminates*; the time limit is gymnax's
  (``EnvParams.max_steps_in_episode``, counted in :class:`SuiteState` ``time``), reported as
  ``truncated``, so a time-limit end bootstraps from the final observation as everywhere in pgjax.
  gymnax's ``Environment.step`` resets a finished episode in the same step and keeps the
  pre-reset observation as ``final_observation``.
- :func:`check_suite_id`: the one-line refusals (the extra missing, an unknown name).
- :func:`params_class`: an ``EnvParams`` that mirrors the suite's own parameters, so
  ``--set env.FIELD=…`` reaches them.
- :func:`flat_observation`: the rule for structured observations (below).

**Structured observations.** An observation that is one array is given as it is, as float32 (a
``[H, W, C]`` image goes to ``torso=cnn``; an MLP flattens anything). An observation that is a
structure (a NamedTuple, a dict, nested) is flattened: every leaf in the structure's own order
(``jax.tree.leaves``), each raveled and cast to float32, concatenated into one vector. A field
called ``action_mask`` (Jumanji's) is left out of that order and appended *last*, as 0/1: the
policy then reads the last ``A`` features of the observation as the allowed actions
(:class:`pgjax.networks.ActorCritic`, ``masked_actions``) and gives the others probability 0 by
a logit of −inf. Observation normalisation is refused for such an environment (it would rescale
the mask).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

MASK_FIELD = "action_mask"


@struct.dataclass
class SuiteState(environment.EnvState):
    suite: Any  # the suite's own state (or its time step)
    time: int


class SuiteEnv(environment.Environment):
    """A suite environment as gymnax sees it. Each adapter's subclass defines

    - ``suite_reset(key, params) -> (observation, the suite's state)`` of a new episode, and
    - ``suite_step(key, suite_state, action, params) -> (observation, the suite's state, reward,
      terminated)`` of one step, ``terminated`` a true end of the episode, never the time limit
      (gymnax's, ``is_truncated``);

    ``action_mask_in_observation`` says whether the observation ends with the action mask
    (:func:`flat_observation`)."""

    action_mask_in_observation: bool = False

    def reset_env(self, key, params):
        obs, suite_state = self.suite_reset(key, params)
        return obs, SuiteState(suite=suite_state, time=0)

    def step_env(self, key, state, action, params):
        obs, suite_state, reward, terminated = self.suite_step(key, state.suite, action, params)
        return (obs, SuiteState(suite=suite_state, time=state.time + 1),
                jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool), {})


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def suite_names(module: str, registered) -> tuple[str, ...]:
    """The sorted ids a suite registers, ``registered(the suite's module)`` (empty without it)."""
    if not installed(module):
        return ()
    return tuple(sorted(registered(importlib.import_module(module))))


def check_suite_id(env_id: str, prefix: str, module: str, extra: str, names) -> None:
    """Raise ``ValueError`` for an id of a suite that is not installed (naming the ``pip install``
    command) or not one of ``names()`` (listing them)."""
    if not installed(module):
        raise ValueError(f"{env_id!r} needs {module}, which is not installed: "
                         f"pip install -e '.[{extra}]'")
    name = env_id[len(prefix):]
    known = names()
    if name not in known:
        raise ValueError(f"unknown {module} environment {name!r} in {env_id!r}; {module} has: "
                         f"{', '.join(known)}")


_PARAMS_CLASSES: dict = {}


def params_class(suite_params, *, time_limit: int, drop: tuple[str, ...] = ()):
    """An ``EnvParams`` class holding ``max_steps_in_episode`` (default ``time_limit``) and every
    field of the suite's parameter dataclass ``suite_params`` but ``drop`` (defaults: the suite's
    values), so ``--set env.FIELD=…`` reaches the suite. Built once per suite class and limit."""
    key = (type(suite_params), time_limit, drop)
    if key not in _PARAMS_CLASSES:
        defaults = {"max_steps_in_episode": time_limit}
        defaults.update({f.name: getattr(suite_params, f.name) for f in dataclasses.fields(suite_params)
                         if f.name not in drop})
        body = {"__annotations__": {name: Any for name in defaults}, **defaults,
                "__module__": __name__}
        cls = type(f"{type(suite_params).__name__}WithTimeLimit", (environment.EnvParams,), body)
        _PARAMS_CLASSES[key] = struct.dataclass(cls)
    return _PARAMS_CLASSES[key]


def suite_params(params, suite_default, **fixed):
    """The suite's parameters from ours (:func:`params_class`): each mirrored field's value, and
    ``fixed`` for the fields left out of the mirror."""
    names = {f.name for f in dataclasses.fields(suite_default)}
    values = {name: getattr(params, name) for name in names if name not in fixed}
    return suite_default.replace(**values, **fixed)


def flat_observation(obs) -> jax.Array:
    """The observation as pgjax gives it (the module docstring's rule): one array as float32;
    a structure flattened to one float32 vector, its ``action_mask`` (if any) last as 0/1."""
    if hasattr(obs, "dtype"):  # one array
        return jnp.asarray(obs, jnp.float32)
    mask = _mask_of(obs)
    rest = _without_mask(obs)
    parts = [jnp.ravel(jnp.asarray(leaf, jnp.float32)) for leaf in jax.tree.leaves(rest)]
    if mask is not None:
        parts.append(jnp.ravel(jnp.asarray(mask, jnp.float32)))
    return jnp.concatenate(parts)


def _mask_of(obs):
    if isinstance(obs, dict):
        return obs.get(MASK_FIELD)
    return getattr(obs, MASK_FIELD, None)


def _without_mask(obs):
    if isinstance(obs, dict):
        return {k: v for k, v in obs.items() if k != MASK_FIELD}
    if hasattr(obs, "_replace") and MASK_FIELD in getattr(obs, "_fields", ()):
        return obs._replace(**{MASK_FIELD: None})
    return obs


def has_action_mask(obs) -> bool:
    """Whether a (structured) observation carries an ``action_mask`` field."""
    return _mask_of(obs) is not None
