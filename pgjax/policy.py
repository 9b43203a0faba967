"""A trained policy as something to use: :func:`load_policy` reads one member of a run folder (the
folder is only read) and :func:`export` writes it as a self-contained ``jax.export`` program.

A :class:`Policy` acts on raw observations, one or a batch: it applies the run's observation
normalisation (the trained agent's statistics, frozen), takes the mode of π(·|s) (greedy) or a
sample with a key, and clips a continuous action to the action space, as the environment the agent
trained in does. A recurrent policy (``torso="gru"``) carries its memory:
``memory = policy.initial_memory(batch)``, then ``action, memory = policy.act(obs, memory=memory)``
(reset a row to the initial memory when its episode ends). Its pure parts, ``policy.apply`` and
``policy.params``, are for users who jit and vmap themselves:
``policy.apply(policy.params, obs_batch, key_or_None, memory)`` returns ``(action, memory)``.

:func:`export` serialises ``act`` (greedy, and sampled with a key) with the parameters and
statistics inside, as StableHLO (``jax.export``), plus ``policy.json`` (spaces, memory shape,
provenance). Calling it needs jax alone (``pip install jax flatbuffers``: jax's deserialiser
imports flatbuffers)::

    import jax, numpy as np
    act = jax.export.deserialize(open("OUT/act_greedy.jaxexport", "rb").read())
    action = act.call(np.zeros((1, *obs_shape), np.float32))      # a batch of any size
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from pgjax.config import ConfigError

OBS_CLIP, OBS_EPSILON = 10.0, 1e-8  # pgjax.envs' NormalizeObservation (clip ±10, ε = 1e-8)
FILES = {"greedy": "act_greedy.jaxexport", "sampled": "act_sampled.jaxexport", "info": "policy.json"}


@dataclass(frozen=True)
class Policy:
    """One trained member's policy (see the module docstring)."""

    apply: Callable            # pure: (params, obs [B, ...], key | None, memory) -> (action [B, ...], memory)
    params: Any                # {"network": parameters, "obs_stats": (mean, var) or None}
    observation_shape: tuple
    recurrent: bool
    info: dict                 # provenance: run folder, algorithm, env, setting, seed, step
    _initial_memory: Callable = dataclasses.field(repr=False, default=None)

    def initial_memory(self, batch: int):
        """A recurrent policy's memory at the start of ``batch`` episodes (None: feed-forward)."""
        return self._initial_memory(batch) if self.recurrent else None

    def act(self, obs, key=None, memory=None):
        """The action for ``obs`` (one observation or a batch ``[B, ...]``): greedy without
        ``key``, sampled with one. A recurrent policy returns ``(action, memory)`` and needs the
        memory (:meth:`initial_memory`)."""
        obs = jnp.asarray(obs, jnp.float32)
        single = obs.shape == tuple(self.observation_shape)
        if not single and obs.shape[1:] != tuple(self.observation_shape):
            raise ConfigError(f"obs of shape {obs.shape} is not allowed: one observation "
                              f"{tuple(self.observation_shape)} or a batch [B, "
                              f"{', '.join(map(str, self.observation_shape))}]")
        if self.recurrent and memory is None:
            raise ConfigError("memory=None is not allowed for a recurrent policy: start from "
                              "policy.initial_memory(batch) and pass back what act returns")
        batch = obs[None] if single else obs
        action, memory = _jitted(self.apply)(self.params, batch, key, memory)
        action = action[0] if single else action
        return (action, memory) if self.recurrent else action


@functools.lru_cache(maxsize=32)
def _jitted(apply):
    return jax.jit(apply)


def make_apply(config) -> tuple[Callable, Callable, bool, tuple]:
    """(apply, initial_memory, recurrent, observation shape) of ``config``'s network: ``apply(params, obs, key,
    memory)`` normalises ``obs`` as :class:`pgjax.envs.wrappers.NormalizeObservation` does, acts
    as the evaluation does (:func:`pgjax.algorithms.setup.policy_and_value_fns`: the mode, or a
    sample with ``key``) and clips a Box action as :class:`pgjax.envs.wrappers.ClipAction` does."""
    from gymnax.environments import spaces

    from pgjax import recurrent
    from pgjax.algorithms import setup
    network = setup.make_network(config)
    venv, env_params = setup.make_env(config)
    space = venv.action_space(env_params)
    bounds = (jnp.asarray(space.low), jnp.asarray(space.high)) if isinstance(space, spaces.Box) else None
    greedy_fn, _ = setup.policy_and_value_fns(network, greedy=True)
    sampled_fn, _ = setup.policy_and_value_fns(network, greedy=False)

    def apply(params, obs, key=None, memory=None):
        stats = params["obs_stats"]
        if stats is not None:
            mean, var = stats
            obs = jnp.clip((obs - mean) / jnp.sqrt(var + OBS_EPSILON), -OBS_CLIP, OBS_CLIP)
        if key is None:
            action, _, _, memory = greedy_fn(params["network"], obs, None, memory)
        else:
            action, _, _, memory = sampled_fn(params["network"], obs, key, memory)
        if bounds is not None:
            action = jnp.clip(action, *bounds)
        return action, memory

    return (apply, functools.partial(recurrent.initial_memory, network), recurrent.is_recurrent(network),
            tuple(venv.observation_space(env_params).shape))


def load_policy(run_dir, *, setting=None, seed=None, step: int | None = None,
                best: bool = False) -> Policy:
    """The policy of one member of the run (or study) in ``run_dir``: ``setting`` (an index or
    ``key=value,…``) and ``seed`` choose it when the run has several; the latest checkpoint, or
    ``step``, or the best by evaluation with ``best=True``. The folder is only read."""
    from pgjax.envs import obs_stats_of
    from pgjax.run import programs, runner, spec as run_specs
    from pgjax.run.checkpoints import Checkpoints
    from pgjax.run.population import Population
    run_dir = Path(run_dir)
    asked_setting = setting
    if programs.is_study(run_dir):
        run_dir, setting = programs.locate(run_dir, None if setting is None else str(setting))
    spec = run_specs.load(run_dir)
    population = Population(spec.seeds, spec.settings)
    members = population.select(None if setting is None else str(setting), seed)
    if len(members) != 1:
        raise ConfigError(f"setting={asked_setting!r}, seed={seed!r} is not allowed: they choose "
                          f"{len(members)} members of {run_dir}; choose one with setting= (one of "
                          f"{population.setting_names()}) and seed= (one of {list(spec.seeds)})")
    member = members[0]
    like = jax.eval_shape(runner.init_program(spec.config), population.keys(), population.hparams())
    reader = Checkpoints(run_dir, read_only=True)
    try:
        state, meta = reader.restore(like, step=step, which="best" if best else "latest")
        restored = reader.restored_step
    finally:
        reader.close()
    pick = lambda tree: jax.tree.map(lambda leaf: leaf[member], tree)
    stats = obs_stats_of(state.env_state)
    params = {"network": pick(state.params),
              "obs_stats": None if stats is None else (pick(stats.mean), pick(stats.var))}
    apply, initial_memory, is_recurrent, observation_shape = make_apply(spec.config)
    label = population.labels()[member]
    info = {"run_dir": str(run_dir), "algorithm": spec.algorithm, "env_id": spec.config.env_id,
            "member": member, "seed": label["seed"],
            "setting": {k[3:]: v for k, v in label.items() if k.startswith("hp_")},
            "step": int(restored), "update": int(meta["update"]), "checkpoint": "best" if best else "latest"}
    return Policy(apply, params, observation_shape, is_recurrent, info, initial_memory)


# --------------------------------------------------------------------------- export

def export(policy: Policy, out_dir) -> Path:
    """Write ``policy`` to ``out_dir`` as ``act_greedy.jaxexport`` (``obs [B, ...] (, memory) ->
    action [B, ...] (, memory)``), ``act_sampled.jaxexport`` (the same with a ``uint32[2]`` key
    first: ``jax.random.key_data`` of a key) and ``policy.json``; B is any batch size."""
    from jax import export as jax_export
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    batch = jax_export.symbolic_shape("b")[0]
    obs = jax.ShapeDtypeStruct((batch, *policy.observation_shape), jnp.float32)
    memory_like = None
    if policy.recurrent:
        concrete = jax.eval_shape(lambda: policy.initial_memory(1))
        memory_like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((batch, *x.shape[1:]), x.dtype), concrete)
    params = policy.params

    def greedy(obs, memory=None):
        action, memory = policy.apply(params, obs, None, memory)
        return (action, memory) if policy.recurrent else action

    def sampled(key_data, obs, memory=None):
        key = jax.random.wrap_key_data(key_data)
        action, memory = policy.apply(params, obs, key, memory)
        return (action, memory) if policy.recurrent else action

    extra = (memory_like,) if policy.recurrent else ()
    written = {
        "greedy": jax_export.export(jax.jit(greedy))(obs, *extra),
        "sampled": jax_export.export(jax.jit(sampled))(jax.ShapeDtypeStruct((2,), jnp.uint32), obs, *extra),
    }
    for name, program in written.items():
        (out / FILES[name]).write_bytes(program.serialize())
    (out / FILES["info"]).write_text(json.dumps(describe(policy), indent=1, default=str) + "\n")
    return out


def describe(policy: Policy) -> dict:
    """``policy.json`` of an exported policy: provenance, spaces, memory shapes, how to call it."""
    action = jax.eval_shape(lambda o: policy.apply(policy.params, o, None, policy.initial_memory(1))[0],
                            jax.ShapeDtypeStruct((1, *policy.observation_shape), jnp.float32))
    return {
        **policy.info, "observation_shape": list(policy.observation_shape),
        "observation_dtype": "float32", "action_shape": list(action.shape[1:]),
        "action_dtype": str(action.dtype), "recurrent": policy.recurrent,
        "memory_shapes": None if not policy.recurrent else [
            list(x.shape[1:]) for x in jax.tree.leaves(jax.eval_shape(lambda: policy.initial_memory(1)))],
        "files": {"greedy": FILES["greedy"], "sampled": FILES["sampled"]},
        "needs": "pip install jax flatbuffers",
        "call": "jax.export.deserialize(bytes).call(obs[B, ...]) (greedy); "
                "call(jax.random.key_data(key), obs) (sampled); a recurrent policy takes and returns "
                "its memory (zeros of memory_shapes at an episode's start)",
    }


__all__ = ["Policy", "describe", "export", "load_policy", "make_apply"]
