"""Sutton & Barto 2018, Figures 13.1 and 13.2: REINFORCE on the short corridor (Example 13.1).

    python benchmarks/short_corridor.py [--runs 100] [--episodes 1000] [--segment 200]

Writes ``benchmarks/figures/short_corridor_fig13_1.png``, ``…_fig13_2.png``,
``benchmarks/results/short_corridor.json`` and the markdown fragment
``benchmarks/results/short_corridor.md``.

What is run
-----------
pgjax's ``reinforce`` (``init`` + ``update`` scanned inside one jit, ``jax.vmap`` over runs ×
step sizes: one compiled program per figure line group) on ``ShortCorridor-v0``, 100 runs per
setting, the total reward of each of the first 1000 episodes averaged over the runs, with the
value v*(s₀) of the best stochastic policy drawn as a horizontal line (computed by the Bellman
solve of :mod:`envs.short_corridor`, not copied from the book).

Next to each pgjax curve (solid) the figure draws a NumPy implementation of S&B's boxed
algorithms done literally (dashed): one update per episode, the θ-update applied step by step
through the episode with ∇ ln π evaluated at the current θ (§13.3 "REINFORCE: Monte-Carlo
Policy-Gradient Control (episodic)" and §13.4 "REINFORCE with Baseline"). It shares no code with
pgjax and shows what the deviations below cost.

How S&B's setting maps onto pgjax
---------------------------------
===================================  ==========================================================
S&B 2018 (Example 13.1, §13.3–13.4)   pgjax
===================================  ==========================================================
h(s, a, θ) = θᵀx(s, a), x(s, right)   ``torso="onehot", feature_args=(("num_states", 1),)``. The
= [1, 0]ᵀ, x(s, left) = [0, 1]ᵀ;      env's observation is the constant [1], which one-hot
softmax in the preferences            features with ``num_states=1`` encode as the zero vector, so
                                     the policy logits are exactly the policy head's bias b_π
                                     (the two preferences; the kernel gets zero gradient) —
                                     S&B's θ up to the order of the two components.
v̂(s, w) = w (a single weight)        the value head's bias b_v (``baseline="learned"``)
α, α^θ, α^w                           ``optimizer="sgd"``, ``learning_rate`` = α^θ,
                                     ``critic_learning_rate`` = α^w, ``vf_coef=1``
                                     (∇ ½(G − v̂)² = −δ ∇v̂), ``max_grad_norm`` 1e9 (no clipping),
                                     ``ent_coef=0``
γ = 1                                 ``gamma=1.0``
θ ← θ + α Σ_t G_t ∇ ln π(A_t|S_t)     ``loss_reduction="sum"`` (added to reinforce.py for this):
per episode                           the loss is summed, not averaged, over the valid steps
one agent                             ``num_envs=1``
θ₀ (the book does not print it)       π(right) = 0.05, i.e. b_π = (+1.472, −1.472): the
                                     ε = 0.1-greedy "mostly left" policy whose value −82.1 S&B
                                     quote in Example 13.1, where the book's curves start
===================================  ==========================================================

Deviations (not exact)
----------------------
1. *Segments, not episodes.* pgjax updates once per segment of ``--segment`` (L) environment
   steps, summing the per-step terms of every episode that ends inside the segment; S&B update
   after every episode. Several short episodes in one segment therefore share one update (their
   gradients are taken at the same θ — a second-order difference in α).
2. *Episodes cut by a segment boundary.* An episode still running at the end of a segment has
   its steps in that segment masked out (their return is not known yet); its remaining steps count
   in the next segment. So the first steps of about one episode per segment never contribute,
   which slows learning a little while episodes are long compared with L.
3. Within an episode S&B update θ step by step (∇ ln π at the already-updated θ); pgjax takes all
   the episode's terms at the θ that generated it (second order in α).
4. The curves are per episode, but pgjax reports per update only the mean return of the episodes
   that finished in it and their count; each of those episodes is assigned the update's mean.
5. ``ShortCorridor-v0`` has a time limit of 1000 steps (the book has none); it is never reached
   by the policies seen here.
The dashed NumPy curves have none of these deviations.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from envs import short_corridor as sc  # noqa: E402
from pgjax.algorithms import reinforce  # noqa: E402
from pgjax.train import scan_updates  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIG13_1_ALPHAS = (2.0**-12, 2.0**-13, 2.0**-14)
FIG13_2 = {"alpha_theta": 2.0**-9, "alpha_w": 2.0**-6, "alpha_no_baseline": 2.0**-13}
INITIAL_P_RIGHT = 0.05
LAST = 100  # "final average reward" = mean over runs of the last LAST of the plotted episodes


# --------------------------------------------------------------------------- pgjax runs

def make_config(baseline: str, segment: int, total_steps: int) -> reinforce.Config:
    """The S&B setting in pgjax terms (see the module docstring's table)."""
    total_steps = max(segment, total_steps - total_steps % segment)
    return reinforce.Config(env_id="ShortCorridor-v0", baseline=baseline, torso="onehot",
                            feature_args=(("num_states", 1),), optimizer="sgd", num_envs=1,
                            rollout_length=segment, total_steps=total_steps, loss_reduction="sum")


def initial_preferences(p_right: float) -> np.ndarray:
    """Action preferences (h_left, h_right) = (−d/2, d/2), d = ln(p/(1 − p)): softmax(h)[right] = p."""
    d = np.log(p_right / (1.0 - p_right))
    return np.array([-d / 2.0, d / 2.0])


def with_initial_policy(params, p_right: float):
    """Policy-head bias set to :func:`initial_preferences`, kernel (multiplying zero features) 0."""
    p = params["params"]
    head = {"bias": jnp.asarray(initial_preferences(p_right), jnp.float32),
            "kernel": jnp.zeros_like(p["policy_head"]["kernel"])}
    return {"params": {**p, "policy_head": head}}


def batched_hparams(n: int, **values) -> reinforce.Hparams:
    """Hparams with every field a float32 ``[n]`` array (one per vmapped run)."""
    defaults = {"gamma": 1.0, "max_grad_norm": 1e9, "ent_coef": 0.0, "vf_coef": 1.0}
    base = reinforce.Hparams(**{**defaults, **values})
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), (n,)), base)


def run_pgjax(config: reinforce.Config, hparams: reinforce.Hparams, keys) -> dict[str, np.ndarray]:
    """All runs of one config in one jitted, vmapped program; per-update metrics ``[n, U]``."""
    def train(key, hp):
        state = reinforce.init(config, hp, key)
        state = state.replace(params=with_initial_policy(state.params, INITIAL_P_RIGHT))
        _, metrics = scan_updates(config, state, config.num_updates)
        return {k: metrics[k] for k in ("episode_return", "episodes_completed")}

    out = jax.jit(jax.vmap(train))(keys, hparams)
    return jax.tree.map(np.asarray, out)


def per_episode(update_returns: np.ndarray, counts: np.ndarray, num_episodes: int) -> np.ndarray:
    """[n, U] per-update mean returns and episode counts → [n, num_episodes] per-episode returns
    (each episode gets the mean of its update; NaN where a run finished fewer episodes)."""
    out = np.full((update_returns.shape[0], num_episodes), np.nan)
    for i, (returns, count) in enumerate(zip(update_returns, counts.astype(int))):
        row = np.repeat(np.nan_to_num(returns), count)[:num_episodes]
        out[i, :row.size] = row
    return out


# --------------------------------------------------------------------------- S&B, literally

def sutton_barto_reinforce(alpha_theta: float, alpha_w: float | None, num_runs: int,
                           num_episodes: int, seed: int, max_steps: int = 1000,
                           step_by_step: bool = True):
    """S&B's REINFORCE box (α_w None) or REINFORCE-with-baseline box, vectorised over runs in
    NumPy: per episode, generate it with π(·|θ), then for t = 0 … T−1 (γ = 1):
    δ = G_t − w; w ← w + α^w δ; θ ← θ + α^θ δ (x(A_t) − Σ_b π(b|θ) x(b)) (eq. 13.9), with w ≡ 0
    and no w-update without a baseline. θ = (h_left, h_right).

    Like ``ShortCorridor-v0`` (and unlike the book) an episode is cut after ``max_steps`` steps;
    as in pgjax its returns are then the rewards received, plus w with a baseline (pgjax's
    bootstrap from V(final observation)). With ``step_by_step=False`` π and w are held at their
    values at the start of the episode and the episode's summed update is applied at its end
    (what pgjax does, without its segments). Returns ([runs, episodes] returns, number of cut
    episodes)."""
    rng = np.random.default_rng(seed)
    theta = np.tile(initial_preferences(INITIAL_P_RIGHT), (num_runs, 1))
    w = np.zeros(num_runs)
    totals = np.zeros((num_runs, num_episodes))
    runs = np.arange(num_runs)
    cut = 0
    for episode in range(num_episodes):
        p_right = 1.0 / (1.0 + np.exp(theta[:, 0] - theta[:, 1]))
        position = np.zeros(num_runs, int)
        running = np.ones(num_runs, bool)
        actions = []
        while running.any() and len(actions) < max_steps:
            action = (rng.random(num_runs) < p_right).astype(int)
            actions.append(np.where(running, action, -1))
            position = np.where(running, sc.NEXT[np.minimum(position, 2), action], position)
            running &= position != sc.GOAL
        actions = np.stack(actions, axis=1)  # [runs, max T], −1 after the episode's end
        lengths = np.sum(actions >= 0, axis=1)
        totals[:, episode] = -lengths
        cut += int(running.sum())
        tail = np.where(running, w, 0.0) if alpha_w is not None else 0.0
        theta_0, w_0 = theta, w  # the parameters that generated the episode
        for t in range(actions.shape[1]):
            active = t < lengths
            g = -(lengths - t).astype(float) + tail       # G_t: −1 per remaining step
            theta_t, w_t = (theta, w) if step_by_step else (theta_0, w_0)
            delta = np.where(active, g - w_t, 0.0)
            if alpha_w is not None:
                w = w + alpha_w * delta
            probs = np.exp(theta_t - theta_t.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            score = -probs
            score[runs, np.maximum(actions[:, t], 0)] += 1.0
            theta = theta + alpha_theta * delta[:, None] * score
    return totals, cut


# --------------------------------------------------------------------------- figures and tables

def final_average(curves: np.ndarray) -> float:
    return float(np.nanmean(curves[:, -LAST:]))


def plot(path: Path, title: str, lines: list[tuple[str, np.ndarray, np.ndarray, str]], v_star: float):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, ours, reference, colour in lines:
        x = np.arange(1, ours.shape[1] + 1)
        ax.plot(x, np.nanmean(ours, 0), color=colour, lw=1.2, label=f"{label} (pgjax)")
        ax.plot(x, reference.mean(0), color=colour, lw=1.0, ls="--", alpha=0.8,
                label=f"{label} (S&B box, NumPy)")
    ax.axhline(v_star, color="black", ls=":", lw=1.0, label=f"v*(s₀) = {v_star:.2f}")
    ax.set_ylim(-90, -10)
    ax.set_xlabel("Episode")
    ax.set_ylabel("Total reward on episode\n(averaged over runs)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict) -> str:
    a = result["settings"]
    lines = [
        "### Short corridor: Sutton & Barto 2018, Figures 13.1 and 13.2",
        "",
        f"REINFORCE on `ShortCorridor-v0` (Example 13.1), {a['runs']} runs per setting vmapped in one "
        f"program, first {a['episodes']} episodes, θ₀ with π(right) = {INITIAL_P_RIGHT}. pgjax: "
        f"`reinforce` with `loss_reduction=\"sum\"`, SGD, γ = 1, `num_envs=1`, one update per "
        f"{a['segment']}-step segment, bias-only softmax policy (see `benchmarks/short_corridor.py` "
        "for the mapping to S&B's per-episode update and its deviations). Reference: S&B's boxed "
        "algorithms done literally in NumPy (per-episode, step-by-step θ updates). "
        f"Bellman solve: p* = {result['p_star']:.4f} (2 − √2), v*(s₀) = {result['v_star']:.3f}.",
        "",
        f"| setting | final avg. reward, pgjax (last {LAST} episodes) | same, S&B box (NumPy) | "
        "mean over all episodes, pgjax | same, NumPy |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['label']} | {row['final_pgjax']:.2f} | {row['final_reference']:.2f} | "
                     f"{row['mean_pgjax']:.2f} | {row['mean_reference']:.2f} |")
    lines += [
        "",
        f"Figures: `benchmarks/figures/short_corridor_fig13_1.png`, "
        f"`benchmarks/figures/short_corridor_fig13_2.png`. Machine: {result['machine']}; wall time "
        f"{result['wall_seconds']:.0f} s (pgjax {result['pgjax_seconds']:.0f} s incl. compilation, "
        f"NumPy reference {result['reference_seconds']:.0f} s).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--segment", type=int, default=200, help="pgjax rollout_length L")
    parser.add_argument("--total-steps", type=int, default=80_000, help="per run (enough for the episodes)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    start = time.time()
    p_star, v_star = sc.optimal_right_probability()
    n = args.runs

    # ---- pgjax: Figure 13.1 (3 step sizes × n runs, one program) and 13.2's baseline line
    t0 = time.time()
    config_none = make_config("none", args.segment, args.total_steps)
    alphas = np.repeat(np.asarray(FIG13_1_ALPHAS), n)
    keys = jax.random.split(jax.random.key(0), alphas.size)
    fig1 = run_pgjax(config_none, batched_hparams(alphas.size, learning_rate=alphas), keys)
    config_base = make_config("learned", args.segment, args.total_steps)
    fig2 = run_pgjax(config_base, batched_hparams(n, learning_rate=FIG13_2["alpha_theta"],
                                                  critic_learning_rate=FIG13_2["alpha_w"]),
                     jax.random.split(jax.random.key(1), n))
    pgjax_seconds = time.time() - t0
    ours = {alpha: per_episode(fig1["episode_return"][i * n:(i + 1) * n],
                               fig1["episodes_completed"][i * n:(i + 1) * n], args.episodes)
            for i, alpha in enumerate(FIG13_1_ALPHAS)}
    ours_baseline = per_episode(fig2["episode_return"], fig2["episodes_completed"], args.episodes)

    # ---- the literal S&B boxes in NumPy
    t0 = time.time()
    reference = {alpha: sutton_barto_reinforce(alpha, None, n, args.episodes, seed=i)
                 for i, alpha in enumerate(FIG13_1_ALPHAS)}
    reference_baseline = sutton_barto_reinforce(FIG13_2["alpha_theta"], FIG13_2["alpha_w"], n,
                                                args.episodes, seed=10)
    reference_seconds = time.time() - t0

    colours = ["tab:blue", "tab:orange", "tab:green"]
    log2 = lambda a: int(round(np.log2(a)))  # noqa: E731
    plot(out / "figures" / "short_corridor_fig13_1.png",
         f"S&B Fig. 13.1: REINFORCE on the short corridor ({n} runs)",
         [(f"α = 2^{log2(a)}", ours[a], reference[a], c) for a, c in zip(FIG13_1_ALPHAS, colours)],
         v_star)
    a13 = FIG13_2["alpha_no_baseline"]
    plot(out / "figures" / "short_corridor_fig13_2.png",
         f"S&B Fig. 13.2: REINFORCE with / without baseline ({n} runs)",
         [(f"with baseline α^θ = 2^{log2(FIG13_2['alpha_theta'])}, α^w = 2^{log2(FIG13_2['alpha_w'])}",
           ours_baseline, reference_baseline, "tab:red"),
          (f"no baseline α = 2^{log2(a13)}", ours[a13], reference[a13], "tab:gray")], v_star)

    rows = []
    for label, mine, ref in ([(f"no baseline, α = 2^{log2(a)}", ours[a], reference[a]) for a in FIG13_1_ALPHAS]
                             + [(f"learned baseline, α^θ = 2^-9, α^w = 2^-6", ours_baseline, reference_baseline)]):
        rows.append({"label": label, "final_pgjax": final_average(mine),
                     "final_reference": final_average(ref), "mean_pgjax": float(np.nanmean(mine)),
                     "mean_reference": float(ref.mean()),
                     "runs_short_of_episodes": int(np.isnan(mine[:, -1]).sum())})
    result = {
        "settings": {"runs": n, "episodes": args.episodes, "segment": args.segment,
                     "total_steps_per_run": config_none.total_steps,
                     "initial_p_right": INITIAL_P_RIGHT, "fig13_1_alphas": list(FIG13_1_ALPHAS),
                     "fig13_2": FIG13_2},
        "p_star": p_star, "v_star": v_star, "rows": rows,
        "curves_pgjax": {r["label"]: np.nanmean(c, 0).round(3).tolist()
                         for r, c in zip(rows, [*ours.values(), ours_baseline])},
        "curves_reference": {r["label"]: c.mean(0).round(3).tolist()
                             for r, c in zip(rows, [*reference.values(), reference_baseline])},
        "machine": f"{platform.processor() or platform.machine()}, JAX {jax.__version__} "
                   f"on {jax.default_backend()} (2-core AMD EPYC, shared with other jobs)",
        "pgjax_seconds": pgjax_seconds, "reference_seconds": reference_seconds,
        "wall_seconds": time.time() - start,
    }
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "short_corridor.json").write_text(json.dumps(result, indent=1))
    (out / "results" / "short_corridor.md").write_text(markdown(result))
    print(markdown(result))
    for row in rows:
        if row["runs_short_of_episodes"]:
            print(f"warning: {row['runs_short_of_episodes']} runs of {row['label']} finished fewer "
                  f"than {args.episodes} episodes; raise --total-steps")
    return result


if __name__ == "__main__":
    main()
