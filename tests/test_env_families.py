"""The environment-family seam (envs/families.py): a suite behind an id prefix is one adapter
module with a Family plus one entry in envs.registry.FAMILIES. A toy family here (CartPole under
``toy:``) is made, checked and named by the registry like brax's, and its programs, whose code is
outside pgjax, are never kept in the program store."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from pgjax import envs
from pgjax.algorithms import ppo
from pgjax.envs import registry
from pgjax.envs.families import Family, family_of
from pgjax.run import executables


def _check(env_id: str) -> None:
    if env_id != "toy:cartpole":
        raise ValueError(f"unknown toy environment {env_id!r}; the toy suite has: cartpole")


def _make(env_id: str):
    return registry.gymnax.make("CartPole-v1")[0]


TOY = Family("toy:", _check, _make, "toy:NAME for the toy suite", package="gymnax")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, TOY))


def test_a_family_id_is_made_by_its_family(toy):
    env, params = envs.make("toy:cartpole", max_steps_in_episode=50)
    reference, reference_params = registry.gymnax.make("CartPole-v1")
    key = jax.random.key(3)
    obs, state = env.reset(key, params)
    want, _ = reference.reset(key, reference_params)
    np.testing.assert_array_equal(obs, want)
    assert params.max_steps_in_episode == 50  # EnvParams overrides work as for any id
    assert family_of("toy:cartpole", registry.FAMILIES) is TOY
    assert family_of("CartPole-v1", registry.FAMILIES) is None


def test_a_family_checks_its_ids_and_the_unknown_id_message_names_it(toy):
    with pytest.raises(ValueError, match="unknown toy environment 'toy:mountaincar'"):
        envs.make("toy:mountaincar")
    with pytest.raises(ValueError, match="toy:NAME for the toy suite"):
        envs.make("NoSuchEnv-v0")


def test_a_family_outside_pgjax_is_not_stored(toy):
    config = dataclasses.replace(ppo.Config(env_id="CartPole-v1"), env_id="toy:cartpole")
    assert not executables.storable(config)
    assert executables.storable(ppo.Config(env_id="CartPole-v1"))
