#!/usr/bin/env bash
# Every GPU measurement, in one go (a few minutes on an H100/H200):
#   1. PPO side by side with rejax (benchmarks/peers.py) at 4x128, 64x128 and 2048x32, one seed;
#   2. the population rows: 2048 seeds x (4 x 128) and the single-agent rows through
#      benchmarks/throughput.py (steps/s, compile time, peak device memory);
#   3. the PPO breakdown and the num_envs curve (benchmarks/dev/ppo_profile.py), sort and hash shuffles;
#   4. the GPU learning rows (benchmarks/learning.py, 3 seeds each): PPO on Breakout-MinAtar
#      at gymnax-blines' settings and on brax:inverted_double_pendulum at Brax's (needs brax and
#      mujoco among the wheels). LEARNING_ROWS="" skips it; LEARNING_STEPS shortens every row.
# Budgets come from the environment so the same script is tested on CPU with tiny ones:
#   PEERS_STEPS (default 10000000), POP_STEPS (500000), ENVS (1,4,16,64,256,1024,4096)
#   SHAPES_PEERS (4x128,64x128,2048x32), POP_SHAPES (4x128x1,2048x32x1,4x128x2048),
#   LEARNING_ROWS (ppo:Breakout-MinAtar,ppo:brax:inverted_double_pendulum), LEARNING_STEPS (each
#   row's own budget)
# Wheels for what the device lacks (gymnax, rejax, distrax, tensorflow-probability) may be carried
# in .whl/ (see /work/.library/device/README.md); results land in benchmarks/results/ and, on the
# device machine, in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
python3 -c "import jax; print('devices:', jax.devices())"
python3 -m benchmarks.peers --frameworks pgjax,pgjax-lean,pgjax-hash,rejax --rounds 3 \
  --shapes "${SHAPES_PEERS:-4x128,64x128,2048x32}" --total-steps "${PEERS_STEPS:-10000000}"
python3 -m benchmarks.throughput --algos ppo --repeats 2 --total-steps "${POP_STEPS:-500000}" \
  --shapes "${POP_SHAPES:-4x128x1,2048x32x1,4x128x2048}" --out benchmarks/results/throughput_gpu.json
for shuffle in sort hash; do
  python3 -m benchmarks.dev.ppo_profile --shuffle "$shuffle" --envs "${ENVS:-1,4,16,64,256,1024,4096}"
done
rows="${LEARNING_ROWS-ppo:Breakout-MinAtar,ppo:brax:inverted_double_pendulum}"
if [ -n "$rows" ]; then
  python3 -m benchmarks.learning --only "$rows" --out benchmarks/results/learning_gpu.json \
    --figures benchmarks/figures/learning_gpu --runs-dir runs/gpu \
    ${LEARNING_STEPS:+--total-steps "$LEARNING_STEPS"}
fi
if [ -n "${OUT:-}" ]; then
  cp benchmarks/results/{peers,ppo_profile_sort,ppo_profile_hash}.* \
    benchmarks/results/throughput_gpu.json "$OUT"/
  if [ -n "$rows" ]; then cp -r benchmarks/results/learning_gpu.json benchmarks/figures/learning_gpu "$OUT"/; fi
fi
