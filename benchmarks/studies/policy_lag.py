"""Policy-lag study: IMPALA's final return against the actors' lag, with and without V-trace.

    python -m benchmarks.studies.policy_lag [--env CartPole-v1] [--total-steps 300000] [--lags 0,1,4,16]

For every lag L and correction ∈ {vtrace, none} it trains 3 seeds (one vmapped program, through
``pgjax.run.runner.run``) where the actors roll out with the learner's parameters from L updates ago
(Espeholt et al. 2018, §4), then evaluates each seed on 200 greedy
episodes. ``correction=none`` is the same actor–critic with log ρ = 0: it treats the stale data as
if it were on-policy. Writes ``benchmarks/results/policy_lag.json`` and
``benchmarks/figures/policy_lag.png``, and prints a markdown table. About 3–5 minutes on 2 CPU
cores at the default budget.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np


from pgjax.run import runner
from pgjax.algorithms import impala
from pgjax.config import apply_overrides

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
# The CartPole settings of benchmarks/learning.py (RMSProp, 16 envs × 20 steps, lr 3e-3) but with a
# constant learning rate: with the default linear decay to 0 the policy barely moves at the end of
# the run, so stale behaviour parameters stop mattering and every lag ends near 500.
BASE_OVERRIDES = ["learning_rate=3e-3", "anneal_lr=false"]


def _metric(rows, name):
    return np.array([np.nan if r[name] is None else r[name] for r in rows], float)


def run_averages(run_dir: Path) -> dict:
    """Means over every update of every seed: training return (area under the learning curve),
    approximate KL[μ‖π] between behaviour and learner policy, fraction of ρ clipped at ρ̄."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"train_return_mean": float(np.nanmean(_metric(rows, "episode_return"))),
            "approx_kl_mean": float(np.nanmean(_metric(rows, "approx_kl"))),
            "rho_clipped_fraction_mean": float(np.nanmean(_metric(rows, "rho_clipped_fraction")))}


def training_curve(run_dir: Path, num_points: int = 50):
    """Mean training episode return over seeds, smoothed into ``num_points`` bins of updates."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = np.array([r["env_steps"] for r in rows], float)
    returns = np.array([np.nan if r["episode_return"] is None else r["episode_return"] for r in rows])
    edges = np.linspace(0, steps.max(), num_points + 1)
    centers, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (steps > lo) & (steps <= hi) & np.isfinite(returns)
        if inside.any():
            centers.append(float((lo + hi) / 2))
            means.append(float(returns[inside].mean()))
    return centers, means


def run_setting(env_id, total_steps, lag, correction, seeds, runs_dir):
    config, hparams = apply_overrides(
        impala.Config(env_id=env_id, total_steps=total_steps), impala.Hparams(),
        BASE_OVERRIDES + [f"policy_lag={lag}", f"correction={correction}"])
    run_dir = Path(runs_dir) / f"{env_id}-{correction}-lag{lag}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a benchmark run starts afresh
    result = runner.run(impala.NAME, config, hparams, list(range(seeds)), run_dir,
                        options=runner.RunOptions(eval_episodes=200), out=io.StringIO())
    returns = result.eval_returns
    steps, curve = training_curve(run_dir)
    return {"lag": lag, "correction": correction, "eval_mean": float(returns.mean()),
            "eval_std": float(returns.std()), "per_seed": returns.tolist(),
            "lag_used_final": float(np.mean(result.metrics_last["policy_lag"])),
            **run_averages(run_dir),
            "wall_s": result.wall_seconds, "curve_steps": steps, "curve_return": curve}


def plot(rows, env_id, total_steps, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lags = sorted({r["lag"] for r in rows})
    colors = {"vtrace": "tab:blue", "none": "tab:red"}
    labels = {"vtrace": "V-trace", "none": "no correction (log ρ = 0)"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    for correction in ("vtrace", "none"):
        sel = [r for r in rows if r["correction"] == correction]
        if not sel:
            continue
        x = np.array([lags.index(r["lag"]) for r in sel], float)
        x += -0.06 if correction == "vtrace" else 0.06
        ax.errorbar(x, [r["eval_mean"] for r in sel], yerr=[r["eval_std"] for r in sel],
                    marker="o", capsize=4, color=colors[correction], label=labels[correction])
        for xi, r in zip(x, sel):
            ax.scatter([xi] * len(r["per_seed"]), r["per_seed"], s=10, alpha=0.4,
                       color=colors[correction])
    ax.set_xticks(range(len(lags)), [str(lag) for lag in lags])
    ax.set_xlabel("policy lag (learner updates)")
    ax.set_ylabel("final return (200 greedy episodes, mean ± std over seeds)")
    ax.set_title(f"IMPALA on {env_id}, {total_steps:,} steps/seed, constant lr")
    ax.legend()
    for ax, correction in zip(axes[1:], ("vtrace", "none")):
        cmap = plt.get_cmap("viridis")
        for i, r in enumerate(sorted((r for r in rows if r["correction"] == correction),
                                     key=lambda r: r["lag"])):
            ax.plot(r["curve_steps"], r["curve_return"], color=cmap(i / max(1, len(lags) - 1)),
                    label=f"lag {r['lag']}")
        ax.set_title(f"training return, {labels[correction]}")
        ax.set_xlabel("env steps per seed")
        ax.set_ylabel("episode return (mean over seeds)")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--total-steps", type=int, default=300_000)
    parser.add_argument("--lags", default="0,1,4,16")
    parser.add_argument("--corrections", default="vtrace,none")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs-dir", default="runs/policy_lag")
    parser.add_argument("--out", default=str(HERE / "results" / "policy_lag.json"))
    parser.add_argument("--figure", default=str(HERE / "figures" / "policy_lag.png"))
    args = parser.parse_args(argv)
    lags = [int(x) for x in args.lags.split(",")]
    corrections = args.corrections.split(",")
    rows = []
    print(f"IMPALA policy-lag study on {args.env}: {args.total_steps:,} env steps/seed, "
          f"{args.seeds} seeds, 200 greedy evaluation episodes per seed")
    print("| policy lag | correction | eval return (mean ± std) | per seed | training return (run mean) "
          "| ρ clipped (run mean) | approx KL[μ‖π] (run mean) | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for correction in corrections:
        for lag in lags:
            row = run_setting(args.env, args.total_steps, lag, correction, args.seeds, args.runs_dir)
            rows.append(row)
            per_seed = ", ".join(f"{r:.1f}" for r in row["per_seed"])
            print(f"| {lag} | {correction} | {row['eval_mean']:.1f} ± {row['eval_std']:.1f} | "
                  f"{per_seed} | {row['train_return_mean']:.1f} | "
                  f"{row['rho_clipped_fraction_mean']:.3f} | {row['approx_kl_mean']:.4f} | "
                  f"{row['wall_s']:.0f} |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env_id": args.env, "total_steps": args.total_steps,
                               "seeds": args.seeds, "overrides": BASE_OVERRIDES, "rows": rows},
                              indent=2))
    plot(rows, args.env, args.total_steps, Path(args.figure))
    print(f"wrote {out} and {args.figure}")


if __name__ == "__main__":
    main()
