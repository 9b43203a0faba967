"""Training over several devices on forced host devices: the population split
over them (``shard="members"``) and each member's environment batch split over them
(``shard="envs"``). XLA_FLAGS must be set before jax starts, so the checks run in one subprocess
and the flag never leaks into the rest of the suite."""

import json
import os

import numpy as np
import pytest
import subprocess
import sys

from float_compare import FEW_ADAM_UPDATES

CHILD = r"""
import io, json, sys
sys.path.insert(0, sys.argv[2])  # tests/, for float_compare
import jax, numpy as np
from float_compare import relative_difference
from pgjax.algorithms import a2c, ppo
from pgjax.config import ConfigError
from pgjax.run import runner
from pgjax.run.checkpoints import to_savable
assert jax.local_device_count() == 4, jax.devices()
root = sys.argv[1]

def run(name, config, hparams, seeds, devices, shard, folder=None):
    options = runner.RunOptions(eval_episodes=2, cache_episodes=0, num_evals=1, chunk_updates=2,
                                tensorboard=False, plots=False, devices=devices, shard=shard)
    return runner.run(name, config, hparams, seeds, f"{root}/{folder or name + shard + str(devices)}",
                      options=options, out=io.StringIO())

def compare(split, one):
    # a run split over devices and the same run on one: the largest normwise float difference
    # of a leaf of the final state (float_compare.py), whether all integer leaves are equal
    a, b = [[np.asarray(x) for x in jax.tree.leaves(to_savable(r.final_state))] for r in (split, one)]
    state = split.final_state
    return {"max_relative_difference": max(relative_difference(x, y) for x, y in zip(a, b)
                                           if x.dtype.kind == "f"),
            "integers_same": all(np.array_equal(x, y) for x, y in zip(a, b) if x.dtype.kind != "f"),
            "devices_per_leaf": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(state.params)}),
            "obs_shard": list(state.obs.addressable_shards[0].data.shape), "obs": list(state.obs.shape),
            "status": [split.status, one.status],
            "eval": [split.eval_returns.tolist(), one.eval_returns.tolist()],
            "device_line": json.load(open(f"{split.run_dir}/config.json"))["device"]}

def refused(config, settings, seeds, shard):
    try:
        run("ppo", config, settings, seeds, 4, shard, folder=f"refused-{shard}")
    except ConfigError as error:
        return str(error)

# PPO: observation normalisation, advantage normalisation and the minibatch shuffle over the
# global batch; a population of four (two settings, two seeds), split over the devices by member
# or each member's 8 environments split over them, against one run on one device
config = ppo.Config(num_envs=8, rollout_length=8, total_steps=8 * 8 * 2, epochs=2, minibatches=2,
                    normalize_obs=True, hidden_sizes=(8,))
settings = [ppo.Hparams(), ppo.Hparams(learning_rate=1e-3)]
one = run("ppo", config, settings, [0, 1], 1, "members")
result = {"by_members": compare(run("ppo", config, settings, [0, 1], 4, "members"), one),
          "by_envs": {"ppo": compare(run("ppo", config, settings, [0, 1], 4, "envs"), one)}}
# A2C: one gradient step on the global batch (benchmarks/scaling.py checks every algorithm)
config_a2c = a2c.Config(num_envs=8, rollout_length=8, total_steps=8 * 8 * 2, hidden_sizes=(8,))
result["by_envs"]["a2c"] = compare(*(run("a2c", config_a2c, a2c.Hparams(), [0], d, "envs") for d in (4, 1)))
result["refused"] = refused(config, settings, [0, 1, 2], "members")
result["refused_envs"] = refused(ppo.Config(num_envs=2), settings, [0], "envs")
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def population_and_envs_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("devices")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), os.path.dirname(__file__)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# A run split over devices is another program than the same run on one device (XLA compiles a
# device's slice with other loop and dot shapes), 2 to 4 updates apart from the start (Adam, and
# A2C's RMSProp, whose ε makes it as sensitive to the rounding of tiny gradient entries):
# compared normwise at FEW_ADAM_UPDATES (float_compare.py; measured at most ~1e-6 here).


def test_population_over_four_host_devices_matches_one_device(population_and_envs_runs):
    result = population_and_envs_runs["by_members"]
    assert result["devices_per_leaf"] == [4]          # every leaf split over the four devices
    assert result["status"] == ["completed", "completed"]
    # each member as on one device (2 updates): floats to the bound, counters, keys and
    # environment states that are integers exactly
    assert result["integers_same"], result
    assert result["max_relative_difference"] < FEW_ADAM_UPDATES, result
    np.testing.assert_allclose(result["eval"][0], result["eval"][1], rtol=0.05)
    refused = population_and_envs_runs["refused"]
    assert "devices=4 is not allowed" in refused and "6 member(s)" in refused
    assert result["device_line"].startswith("4 × ")


def test_environment_batch_over_four_host_devices_matches_one_device(population_and_envs_runs):
    for name, run in population_and_envs_runs["by_envs"].items():
        assert run["status"] == ["completed", "completed"], (name, run)
        # each device steps a quarter of the 8 environments; the update (advantage and observation
        # normalisation, PPO's minibatch shuffle, the gradient mean) runs over the global batch,
        # so the run (2 updates) equals the one-device run to the bound
        members = 4 if name == "ppo" else 1
        assert run["obs"] == [members, 8, 4] and run["obs_shard"] == [members, 2, 4], (name, run)
        assert run["integers_same"], (name, run)
        assert run["max_relative_difference"] < FEW_ADAM_UPDATES, (name, run)
    assert set(population_and_envs_runs["by_envs"]) == {"ppo", "a2c"}
    refused = population_and_envs_runs["refused_envs"]
    assert "devices=4 is not allowed" in refused and "num_envs=2" in refused
