"""Learning benchmarks: 3 seeds (vmapped), 200 greedy evaluation episodes per seed at the end.

    python -m benchmarks.learning [--only ppo:CartPole-v1,ppo:Pendulum-v1] [--seeds 3]

Each row's settings are a file in ``benchmarks/configs/`` (``pgjax train --config
benchmarks/configs/ppo-Pendulum-v1.toml`` runs one alone). Targets come from the issues
(gymnax's published PPO results are the reference). Prints a markdown
table and writes ``benchmarks/results/learning.json`` and each row's training-return curve to
``benchmarks/figures/learning/<row>.png``; run folders go to ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np


from benchmarks.results_table import cpu_description
from pgjax.run import runner

CONFIGS = Path(__file__).resolve().parent / "configs"
FIGURES = Path(__file__).resolve().parent / "figures" / "learning"  # one learning curve per row
# row -> target mean evaluation return over the seeds (None: reported only). Each row's settings
# are the file benchmarks/configs/<row>.toml, which `pgjax train --config` runs as it is.
TARGETS = {
    "ppo-CartPole-v1": 475.0, "ppo-Acrobot-v1": -90.0, "ppo-Pendulum-v1": -200.0,
    "ppo-MountainCarContinuous-v0": 85.0,
    # PPO with the adaptive KL penalty in place of clipping (Schulman et al. 2017, §4)
    "ppo-kl-CartPole-v1": 475.0,
    # the policy-gradient family. CartPole rows: the solved bar 475 (Gym's reward
    # threshold); Acrobot rows: PPO's −90. The no-baseline and running-average REINFORCE rows are
    # the comparison of baselines (Sutton & Barto 2018, §13.4) and are expected to fall short at this budget.
    "reinforce-CartPole-v1": 475.0, "reinforce-none-CartPole-v1": 475.0,
    "reinforce-running-CartPole-v1": 475.0, "a2c-CartPole-v1": 475.0, "trpo-CartPole-v1": 475.0,
    "actor-critic-td_lambda-CartPole-v1": 475.0, "actor-critic-td_lambda-tile-CartPole-v1": 475.0,
    "actor-critic-td-CartPole-v1": 475.0, "actor-critic-gae-CartPole-v1": 475.0,
    "actor-critic-nstep-CartPole-v1": 475.0,
    # the Q-critic variants reach CartPole's threshold
    "actor-critic-qv-CartPole-v1": 475.0, "actor-critic-q-CartPole-v1": 475.0,
    "a2c-Acrobot-v1": -90.0, "trpo-Acrobot-v1": -90.0,
    # A2C and TRPO on Pendulum within 1e6 steps
    "a2c-Pendulum-v1": -250.0, "trpo-Pendulum-v1": -250.0, "a2c-gsde-Pendulum-v1": -250.0,
    # IMPALA (V-trace). Breakout: MLP torso on the flattened 10×10×4 frame (on 2 CPU
    # cores 6× faster than torso=cnn before the CNN's convolution became a matrix product, and
    # better at 1e6 steps: 5.5 vs 3.8–4.1); gymnax's PPO reaches 28 at 1e7 steps, this row has
    # 2e6 (what 2 cores allowed), so it falls short.
    "impala-CartPole-v1": 475.0, "impala-Breakout-MinAtar": 28.0,
    # gymnax's published PPO returns (gymnax-blines checkpoints, 1e7 steps)
    "ppo-Breakout-MinAtar": 28.0, "ppo-Asterix-MinAtar": 15.0, "ppo-Freeway-MinAtar": 58.0,
    "ppo-SpaceInvaders-MinAtar": 131.0,
    # the CNN torso against the MLP at a tenth of the budget (per step and per second): no target
    "ppo-cnn-Breakout-MinAtar": None,
    # memory. CartPole without velocities: the solved bar; MemoryChain: +1 for
    # recalling the context bit, so 0.9 = recalled in 95% of episodes; AliasedGridworld: above
    # 0.719, the exact value of the best memoryless (stochastic) policy. The MLP rows are the same
    # PPO without memory, with the same targets: they are there to show it falls short.
    "ppo-gru-CartPoleNoVelocity-v1": 475.0, "ppo-mlp-CartPoleNoVelocity-v1": 475.0,
    "ppo-gru-MemoryChain-bsuite": 0.9, "ppo-mlp-MemoryChain-bsuite": 0.9,
    "ppo-gru-AliasedGridworld-v0": 0.719, "ppo-mlp-AliasedGridworld-v0": 0.719,
    # brax (needs the [brax] extra): 1 per step upright, 1000 steps; 950 = upright 95% of it
    "ppo-brax-inverted_pendulum": 950.0,
    # XLand-MiniGrid's single tasks (needs the [xminigrid] extra): reward 1 − 0.9·steps/max_steps
    # at the goal; reported without a target (no published PPO return at this budget to cite)
    "ppo-xminigrid-MiniGrid-Empty-8x8": None, "ppo-xminigrid-MiniGrid-DoorKey-5x5": None,
    # memory in a gridworld (the [xminigrid] extra): MemoryS8 shows an object at the start and
    # rewards walking to its match at the corridor's end (1 − 0.9·steps/max_steps), ending the
    # episode with 0 at the other; with no memory of the start the choice is a coin flip, so no
    # memoryless policy's expected return exceeds 0.5. The MLP row is the same PPO without memory.
    "ppo-gru-xminigrid-MiniGrid-MemoryS8": 0.5, "ppo-mlp-xminigrid-MiniGrid-MemoryS8": 0.5,
    # Navix (needs the [navix] extra): reward 1 at the goal, so 0.95 = the goal reached in 95% of
    # episodes within navix's 100 steps, evaluated with sampled actions (its config's [options]:
    # a greedy policy can loop where two cells look alike); no published PPO return to cite
    "ppo-navix-Navix-Empty-5x5-v0": 0.95, "ppo-navix-Navix-DoorKey-5x5-v0": 0.95,
    # Craftax-Classic (needs the [craftax] extra): reward = achievements unlocked + health change
    # / 10; the Craftax paper's PPO numbers are at 1e6 (full Craftax) and 1e9 steps, beyond what
    # these 2 cores allow (2e5 steps, 20 sampled episodes), so no target
    "ppo-craftax-Craftax-Classic-Symbolic-v1": None,
    # Jumanji (needs the [jumanji] extra): 1 per fruit eaten; Jumanji publishes no return to cite
    "ppo-jumanji-Snake-v1": None,
    # a GPU row (benchmarks/gpu.sh): Brax's reward is Gym's (alive bonus 10 less distance and
    # velocity penalties), so Gym's registered reward_threshold for InvertedDoublePendulum, 9100
    "ppo-brax-inverted_double_pendulum": 9100.0,
}
# rows sized for an accelerator: run by benchmarks/gpu.sh (or --only), not by a plain CPU run of
# every row
GPU_ROWS = {"ppo-brax-inverted_double_pendulum"}


def load_row(row: str, seeds: int, total_steps: int | None = None):
    """(algorithm name, config, hparams, seeds, run options) of a row from its TOML file;
    ``total_steps`` replaces the file's budget (smoke tests of ``benchmarks/gpu.sh``)."""
    from pgjax.run import spec, spec_file
    run = spec.fresh(file=spec_file.load(CONFIGS / f"{row}.toml"), seed_count=seeds,
                     total_steps=total_steps)
    return run.algorithm, run.config, run.settings[0], list(run.seeds), run.options


def run_one(row, seeds, runs_dir, total_steps=None, figures=FIGURES):
    algo_name, config, hparams, seed_list, options = load_row(row, seeds, total_steps)
    target = TARGETS[row]
    log = io.StringIO()
    run_dir = Path(runs_dir) / row
    shutil.rmtree(run_dir, ignore_errors=True)  # a benchmark run starts afresh
    result = runner.run(algo_name, config, hparams, seed_list, run_dir, options=options, out=log)
    returns = result.eval_returns
    curve = run_dir / "plots" / "episode_return.png"  # mean over seeds, 95% bootstrap band
    if curve.exists():
        Path(figures).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(curve, Path(figures) / f"{row}.png")
    met = None if target is None else bool(returns.mean() >= target)
    return {"algorithm": row.removesuffix("-" + config.env_id.replace(":", "-")), "env_id": config.env_id,
            "total_steps": config.num_updates * config.steps_per_update,
            "target": target, "eval_mean": float(returns.mean()), "eval_std": float(returns.std()),
            "per_seed": returns.tolist(), "passed": met,
            "all_seeds_passed": None if target is None else bool(np.all(returns >= target)),
            "steps_per_s": result.steps_per_second, "compile_s": result.compile_seconds,
            "wall_s": result.wall_seconds, "config_file": f"benchmarks/configs/{row}.toml",
            "eval_greedy": options.greedy_eval, "eval_episodes": options.eval_episodes,
            "machine": cpu_description()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated algo:env pairs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs-dir", default="runs/benchmarks")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "learning.json"))
    parser.add_argument("--total-steps", type=int, default=None,
                        help="env steps per seed instead of each row's own budget (smoke tests)")
    parser.add_argument("--figures", default=str(FIGURES), help="where each row's curve is copied")
    args = parser.parse_args(argv)
    rows = ([p.replace(":", "-") for p in args.only.split(",") if p]
            or [row for row in TARGETS if row not in GPU_ROWS])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print("| algorithm | env | env steps/seed | target | eval return (mean ± std, 3 seeds × 200 ep) | per seed | met | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in rows:
        row = run_one(name, args.seeds, args.runs_dir, args.total_steps, args.figures)
        algo_name, env_id = row["algorithm"], row["env_id"]
        # read again just before writing: another learning.py may have added rows meanwhile
        previous = json.loads(out.read_text()) if out.exists() else {}
        previous[f"{algo_name}:{env_id}"] = row
        out.write_text(json.dumps(previous, indent=2))
        per_seed = ", ".join(f"{r:.1f}" for r in row["per_seed"])
        target = "—" if row["target"] is None else f"{row['target']:g}"
        met = "—" if row["passed"] is None else ("yes" if row["passed"] else "no")
        print(f"| {algo_name} | {env_id} | {row['total_steps']:,} | {target} | "
              f"{row['eval_mean']:.1f} ± {row['eval_std']:.1f} | {per_seed} | {met} | "
              f"{row['wall_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
