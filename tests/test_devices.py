"""Training over several devices (issue 15 §1 and §2) on forced host devices: the population split
over them (``shard="members"``) and each member's environment batch split over them
(``shard="envs"``). XLA_FLAGS must be set before jax starts, so the checks run in one subprocess
and the flag never leaks into the rest of the suite."""

import json
import os

import numpy as np
import pytest
import subprocess
import sys

CHILD = r"""
import io, json, sys
import jax, numpy as np
from pgjax.algorithms import ppo
from pgjax.config import ConfigError
from pgjax.run import runner
from pgjax.run.checkpoints import to_savable
assert jax.local_device_count() == 4, jax.devices()
root = sys.argv[1]
config = ppo.Config(num_envs=2, rollout_length=8, total_steps=4 * 16, epochs=1, minibatches=2,
                    hidden_sizes=(8,))
options = lambda devices, shard="members": runner.RunOptions(
    eval_episodes=2, cache_episodes=0, num_evals=2, chunk_updates=2, tensorboard=False, plots=False,
    devices=devices, shard=shard)
settings = [ppo.Hparams(), ppo.Hparams(learning_rate=1e-3)]
runs = {d: runner.run("ppo", config, settings, [0, 1], f"{root}/d{d}", options=options(d),
                      out=io.StringIO()) for d in (4, 1)}
split = [x.sharding.device_set for x in jax.tree.leaves(runs[4].final_state.params)]
leaves = [jax.tree.leaves(to_savable(runs[d].final_state)) for d in (4, 1)]
same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(*leaves))
floats = [(np.asarray(a), np.asarray(b)) for a, b in zip(*leaves) if np.asarray(a).dtype.kind == "f"]
max_diff = max(float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6))) for a, b in floats)
ints_same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(*leaves)
                if np.asarray(a).dtype.kind != "f")
refused = None
try:
    runner.run("ppo", config, settings, [0, 1, 2], f"{root}/bad", options=options(4),
               out=io.StringIO())
except ConfigError as error:
    refused = str(error)

def compare(name, config, hparams, seeds, devices, shard):
    # the same run on `devices` devices and on one: max relative float difference, integers equal
    runs = [runner.run(name, config, hparams, seeds, f"{root}/{name}-{shard}{d}",
                       options=options(d, shard), out=io.StringIO()) for d in (devices, 1)]
    a, b = [[np.asarray(x) for x in jax.tree.leaves(to_savable(r.final_state))] for r in runs]
    floats = [float(np.max(np.abs(x - y) / (np.abs(y) + 1e-6))) for x, y in zip(a, b) if x.dtype.kind == "f"]
    ints = all(np.array_equal(x, y) for x, y in zip(a, b) if x.dtype.kind != "f")
    obs = runs[0].final_state.obs
    return {"max_relative_difference": max(floats), "integers_same": ints,
            "obs_shard": list(obs.addressable_shards[0].data.shape), "obs": list(obs.shape),
            "status": [r.status for r in runs]}

from pgjax import algorithms
by_envs = {}
# PPO: observation normalisation, advantage normalisation and the minibatch shuffle over the
# global batch; A2C: one gradient step on it (benchmarks/scaling.py checks every algorithm)
for name, extra in [("ppo", dict(epochs=2, minibatches=2, normalize_obs=True)), ("a2c", {})]:
    algo = algorithms.get(name)
    by_envs[name] = compare(name, algo.Config(num_envs=8, rollout_length=8, total_steps=8 * 8 * 2,
                                              hidden_sizes=(8,), **extra), algo.Hparams(), [0], 4, "envs")
refused_envs = None
try:
    runner.run("ppo", config, settings, [0], f"{root}/bad-envs", options=options(4, "envs"),
               out=io.StringIO())
except ConfigError as error:
    refused_envs = str(error)
print(json.dumps({"by_envs": by_envs, "refused_envs": refused_envs, "devices_per_leaf": sorted({len(s) for s in split}), "bit_identical": same,
                  "max_relative_difference": max_diff, "integers_same": ints_same, "status": [runs[d].status for d in (4, 1)],
                  "eval": [runs[d].eval_returns.tolist() for d in (4, 1)], "refused": refused,
                  "device_line": json.load(open(f"{root}/d4/config.json"))["device"]}))
"""


@pytest.fixture(scope="module")
def population_and_envs_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("devices")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_population_over_four_host_devices_matches_one_device(population_and_envs_runs):
    result = population_and_envs_runs
    assert result["devices_per_leaf"] == [4]          # every leaf split over the four devices
    assert result["status"] == ["completed", "completed"]
    # each member as on one device, to float tolerance: XLA compiles a device's slice (one member
    # per device here) with other loop and dot shapes than the 4-member batch, so the last bits of
    # float results differ (max relative difference after 4 updates measured ~1e-6); counters,
    # keys and environment states that are integers agree exactly
    assert result["integers_same"], result
    assert result["max_relative_difference"] < 1e-4, result
    np.testing.assert_allclose(result["eval"][0], result["eval"][1], rtol=0.05)
    assert "devices=4 is not allowed" in result["refused"] and "6 member(s)" in result["refused"]
    assert result["device_line"].startswith("4 × ")


def test_environment_batch_over_four_host_devices_matches_one_device(population_and_envs_runs):
    result = population_and_envs_runs
    for name, run in result["by_envs"].items():
        assert run["status"] == ["completed", "completed"], (name, run)
        # each device steps a quarter of the 8 environments; the update (advantage and observation
        # normalisation, PPO's minibatch shuffle, the gradient mean) runs over the global batch,
        # so the run equals the one-device run to float tolerance (measured max 3e-5 relative,
        # on near-zero entries)
        assert run["obs"] == [1, 8, 4] and run["obs_shard"] == [1, 2, 4], (name, run)
        assert run["integers_same"], (name, run)
        assert run["max_relative_difference"] < 1e-3, (name, run)
    assert set(result["by_envs"]) == {"ppo", "a2c"}
    assert "devices=4 is not allowed" in result["refused_envs"]
    assert "num_envs=2" in result["refused_envs"]
