"""The population split over several devices (issue 15 §1), on forced host devices: XLA_FLAGS
must be set before jax starts, so the check runs in a subprocess and the flag never leaks into
the rest of the suite."""

import json
import os

import numpy as np
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
options = lambda devices: runner.RunOptions(eval_episodes=2, cache_episodes=0, num_evals=2,
                                            chunk_updates=2, tensorboard=False, plots=False,
                                            devices=devices)
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
print(json.dumps({"devices_per_leaf": sorted({len(s) for s in split}), "bit_identical": same,
                  "max_relative_difference": max_diff, "integers_same": ints_same, "status": [runs[d].status for d in (4, 1)],
                  "eval": [runs[d].eval_returns.tolist() for d in (4, 1)], "refused": refused,
                  "device_line": json.load(open(f"{root}/d4/config.json"))["device"]}))
"""


def test_population_over_four_host_devices_matches_one_device(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
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
