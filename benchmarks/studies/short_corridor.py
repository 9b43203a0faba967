"""Sutton & Barto 2018, Figures 13.1 and 13.2: REINFORCE on the short corridor (Example 13.1).

    python -m benchmarks.studies.short_corridor [--runs 100] [--episodes 1000]

Writes ``benchmarks/figures/short_corridor_fig13_1.png``, ``…_fig13_2.png``,
``benchmarks/results/short_corridor.json`` and the markdown fragment
``benchmarks/results/short_corridor.md``.

What is run
-----------
pgjax's ``reinforce`` (``init`` + ``update`` scanned inside one jit, ``jax.vmap`` over runs ×
step sizes: one compiled program per segment length and baseline choice) on ``ShortCorridor-v0``,
100 runs per setting, the total reward of each of the first 1000 episodes averaged over the runs,
with the value v*(s₀) of the best stochastic policy drawn as a horizontal line (from the Bellman
solve of :mod:`envs.short_corridor`, not copied from the book).

Next to each pgjax curve (solid) the figures draw S&B's boxed algorithms done literally in NumPy
(dashed; :func:`sutton_barto_reinforce`): one update per episode, applied step by step through the
episode with ∇ ln π and v̂ evaluated at the already-updated θ and w (§13.3 "REINFORCE:
Monte-Carlo Policy-Gradient Control (episodic)", §13.4 "REINFORCE with Baseline"). It shares no
code with pgjax. A second NumPy variant holds θ and w at their episode-start values and applies
the episode's summed update at its end (pgjax's form, without its segments); it is in the table.

How S&B's setting maps onto pgjax
---------------------------------
===================================  ==========================================================
S&B 2018 (Example 13.1, §13.3–13.4)   pgjax
===================================  ==========================================================
h(s, a, θ) = θᵀx(s, a), x(s, right)   ``torso="onehot", feature_args=(("num_states", 1),)``. The
= [1, 0]ᵀ, x(s, left) = [0, 1]ᵀ;      env's observation is the constant [1], which one-hot
softmax in the preferences            features with ``num_states=1`` encode as the zero vector
                                     (``jax.nn.one_hot`` of an out-of-range index), so the
                                     policy logits are exactly the policy head's bias b_π (the
                                     two preferences; the kernel gets zero gradient) — S&B's θ
                                     with its two components in the order (left, right).
v̂(s, w) = w (a single weight)        the value head's bias b_v (``baseline="learned"``), 0 at
                                     the start
α, α^θ, α^w                           ``optimizer="sgd"``, ``learning_rate`` = α^θ,
                                     ``critic_learning_rate`` = α^w, ``vf_coef=1``
                                     (∇_w ½(G − v̂)² = −δ ∇v̂), ``max_grad_norm=1e9`` (no
                                     clipping), ``ent_coef=0``
γ = 1                                 ``gamma=1.0``
θ ← θ + α Σ_t G_t ∇ ln π(A_t|S_t)     ``loss_reduction="sum"`` (added to reinforce.py for this):
after each episode                    the loss is summed, not averaged, over the valid steps
one agent                             ``num_envs=1``
θ₀ (the book does not print it)       π(right) = 0.05, i.e. b_π = (+1.472, −1.472): the
                                     ε = 0.1-greedy "mostly left" policy whose value −82.1 S&B
                                     quote in Example 13.1, about where the book's curves start
(no counterpart)                      ``rollout_length`` L: 1000 for Figure 13.1 (= the env's time
                                     limit), 100 for the with-baseline line of Figure 13.2
===================================  ==========================================================

Deviations (not exact)
----------------------
1. *Segments, not episodes.* pgjax updates once per segment of L environment steps, summing the
   per-step terms of every episode that ends inside the segment; S&B update after every episode.
   The episodes of one segment share one update (all their terms taken at the same θ), so a long
   segment makes a large step: with the baseline's α^θ = 2^-9 (and w still near 0 at first)
   segments of 250 or 1000 steps throw every run into a near-deterministic policy that never
   reaches the goal; with L = 100 they learn as in the book. The table's sensitivity section
   shows L = 100, 250, 1000 for every setting.
2. *Episodes cut by a segment boundary.* An episode still running at the end of a segment has its
   steps in that segment masked out (their return is not known yet); its remaining steps count in
   the next segment. So the first steps of about one episode per segment never contribute, which
   slows learning while episodes are long compared with L (hence L = 1000 without a baseline,
   where early episodes last ~80 steps and the step sizes are small).
3. Within an episode S&B update θ (and w) step by step; pgjax takes all of an episode's terms at
   the θ (and w) that generated it. This is second order in α per step, but it is not harmless
   here: the NumPy references show that the step-by-step form without a baseline sometimes drives
   θ to a near-deterministic left policy in a very long early episode (a "collapsed" run, stuck
   at the time limit), while the held-θ form with a baseline collapses instead, because δ = G − w
   uses the stale w of the episode start. The tables count collapsed runs (mean of the last 100
   episodes below −200).
4. The curves are per episode, but pgjax reports per update only the mean return of the episodes
   that finished in it and their count; each of those episodes is assigned the update's mean.
5. ``ShortCorridor-v0`` has a time limit of 1000 steps (the book has none). Only collapsed runs
   reach it; the NumPy references cut episodes at 1000 steps too, and treat the cut like pgjax
   (the return is the rewards received, plus w with a baseline, pgjax's bootstrap from
   V(final observation)).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np


from benchmarks.results_table import save_results

import jax
import jax.numpy as jnp

from pgjax.envs import short_corridor as sc
from pgjax.algorithms import reinforce
from pgjax.pure_train import scan_updates

ROOT = Path(__file__).resolve().parents[2]
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

COLLAPSED = -200.0  # a run whose last-100-episode mean is below this is stuck near the time limit


def summary(curves: np.ndarray) -> dict:
    """Final (last ``LAST`` episodes) mean/median over runs, first-100 mean, all-episode mean, and
    the number of collapsed runs, of per-episode returns ``[runs, episodes]`` (NaN after a run's
    last finished episode; such a run's final average is over its last ``LAST`` episodes)."""
    final = np.array([np.mean(row[np.isfinite(row)][-LAST:]) for row in curves])
    return {"final_mean": float(np.nanmean(final)), "final_median": float(np.nanmedian(final)),
            "first100_mean": float(np.nanmean(curves[:, :100])),
            "all_mean": float(np.nanmean(curves)), "collapsed": int(np.sum(final < COLLAPSED)),
            "runs_short_of_episodes": int(np.sum(np.isnan(curves[:, -1])))}


def _mean_without_collapsed(curves: np.ndarray) -> tuple[np.ndarray, str]:
    """Mean over the runs that did not collapse, and a legend note saying how many were left out
    (the tables' means include them)."""
    final = np.array([np.mean(row[np.isfinite(row)][-LAST:]) for row in curves])
    keep = final >= COLLAPSED
    note = "" if keep.all() else f" ({int((~keep).sum())} collapsed runs left out)"
    return np.nanmean(curves[keep], 0), note


def plot(path: Path, title: str, lines, v_star: float):
    """``lines``: (label, segment L, pgjax curves [runs, E], NumPy reference curves [runs, E],
    colour)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lowest = -90.0
    for label, segment, ours, reference, colour in lines:
        x = np.arange(1, ours.shape[1] + 1)
        mean_ours, note_ours = _mean_without_collapsed(ours)
        mean_ref, note_ref = _mean_without_collapsed(reference)
        ax.plot(x, mean_ours, color=colour, lw=1.3, label=f"{label}: pgjax, L = {segment}{note_ours}")
        ax.plot(x, mean_ref, color=colour, lw=1.0, ls="--", alpha=0.75,
                label=f"{label}: S&B box (NumPy){note_ref}")
        lowest = min(lowest, float(np.nanmin(mean_ours)), float(np.nanmin(mean_ref)))
    ax.axhline(v_star, color="black", ls=":", lw=1.0, label=f"v*(s₀) = {v_star:.2f} (Bellman solve)")
    ax.set_ylim(max(lowest - 5, -300), -5)
    ax.set_xlabel(f"Episode   (curves: mean over the runs whose final average is ≥ {COLLAPSED:.0f})")
    ax.set_ylabel("Total reward on episode\n(averaged over runs)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(row: dict | None) -> str:
    if row is None:
        return "–"
    return f"{row['final_mean']:.2f} / {row['final_median']:.2f} / {row['collapsed']}"


def markdown(result: dict) -> str:
    a = result["settings"]
    lines = [
        "### Short corridor: Sutton & Barto 2018, Figures 13.1 and 13.2",
        "",
        f"REINFORCE on `ShortCorridor-v0` (Example 13.1), {a['runs']} runs per setting (vmapped, "
        f"one program per segment length and baseline), the first {a['episodes']} episodes, θ₀ "
        f"with π(right) = {INITIAL_P_RIGHT}. pgjax: `reinforce` with `loss_reduction=\"sum\"`, "
        "plain SGD, γ = 1, `num_envs=1`, bias-only softmax policy, one update per "
        "`rollout_length`-step segment (the mapping to S&B's per-episode update and its deviations "
        "are in the docstring of `benchmarks/studies/short_corridor.py`). \"S&B box\" = the book's "
        "boxed algorithm done literally in NumPy (one update per episode, θ and w updated step by "
        "step); \"held θ\" = the same with θ and w held at their episode-start values. "
        f"Bellman solve: p* = {result['p_star']:.4f} (= 2 − √2), "
        f"v*(s₀) = {result['v_star']:.3f}; the initial policy is worth "
        f"{result['v_initial']:.2f}.",
        "",
        f"Final average reward = mean over runs of each run's mean return over episodes "
        f"{a['episodes'] - LAST + 1}–{a['episodes']}. Cells: mean / median over runs / number of "
        f"collapsed runs (final average below {COLLAPSED:.0f}: a near-deterministic policy "
        "stuck at the 1000-step time limit).",
        "",
        "A run that collapses in pgjax may not finish all the episodes within "
        "`--total-steps`; its final average is then over its last 100 episodes.",
        "",
        "| setting | pgjax (figure's L) | S&B box, NumPy | held θ, NumPy |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['label']} (L = {row['segment']}) | {_fmt(row['pgjax'])} | "
                     f"{_fmt(row['reference'])} | {_fmt(row.get('reference_held'))} |")
    segments = a["segments"]
    lines += [
        "",
        "Sensitivity to the segment length L (no S&B counterpart): final average reward (mean "
        "over runs) / mean over the first 100 episodes / collapsed runs.",
        "",
        "| setting | " + " | ".join(f"L = {L}" for L in segments) + " | S&B box, NumPy |",
        "|---|" + "---|" * (len(segments) + 1),
    ]
    for row in result["rows"]:
        cells = []
        for L in segments:
            r = row["by_segment"][str(L)]
            cells.append(f"{r['final_mean']:.2f} / {r['first100_mean']:.1f} / {r['collapsed']}")
        ref = row["reference"]
        cells.append(f"{ref['final_mean']:.2f} / {ref['first100_mean']:.1f} / {ref['collapsed']}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Figures: `benchmarks/figures/short_corridor_fig13_1.png` (no baseline, L = "
        f"{a['fig13_1_segment']}), `benchmarks/figures/short_corridor_fig13_2.png` (with baseline "
        f"L = {a['fig13_2_segment']}, against the no-baseline α = 2^-13 line of Figure 13.1); "
        "their curves average the runs that did not collapse (the legend says how many did). "
        f"Machine: {result['machine']}; wall time {result['wall_seconds']:.0f} s (pgjax "
        f"{result['pgjax_seconds']:.0f} s for all segment lengths incl. compilation, NumPy "
        f"references {result['reference_seconds']:.0f} s).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--segments", default="100,250,1000", help="pgjax rollout_length L values")
    parser.add_argument("--fig13-1-segment", type=int, default=1000)
    parser.add_argument("--fig13-2-segment", type=int, default=100)
    parser.add_argument("--total-steps", type=int, default=100_000,
                        help="per run; enough for --episodes unless the policy collapses")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = parser.parse_args(argv)
    segments = sorted({int(x) for x in args.segments.split(",")} | {args.fig13_1_segment,
                                                                     args.fig13_2_segment})
    out = Path(args.out)
    start = time.time()
    p_star, v_star = sc.optimal_right_probability()
    n, num_episodes = args.runs, args.episodes
    log2 = lambda a: int(round(np.log2(a)))  # noqa: E731
    settings = [(f"no baseline, α = 2^{log2(a)}", "none", {"learning_rate": a}) for a in FIG13_1_ALPHAS]
    settings.append((f"learned baseline, α^θ = 2^{log2(FIG13_2['alpha_theta'])}, "
                     f"α^w = 2^{log2(FIG13_2['alpha_w'])}", "learned",
                     {"learning_rate": FIG13_2["alpha_theta"], "critic_learning_rate": FIG13_2["alpha_w"]}))

    # ---- pgjax: for every L, all no-baseline step sizes in one program, the baseline in another
    t0 = time.time()
    curves: dict[tuple[str, int], np.ndarray] = {}
    for L in segments:
        alphas = np.repeat(np.asarray(FIG13_1_ALPHAS), n)
        metrics = run_pgjax(make_config("none", L, args.total_steps),
                            batched_hparams(alphas.size, learning_rate=alphas),
                            jax.random.split(jax.random.key(L), alphas.size))
        for i, (label, _, _) in enumerate(settings[:-1]):
            part = slice(i * n, (i + 1) * n)
            curves[label, L] = per_episode(metrics["episode_return"][part],
                                           metrics["episodes_completed"][part], num_episodes)
        label, _, values = settings[-1]
        metrics = run_pgjax(make_config("learned", L, args.total_steps), batched_hparams(n, **values),
                            jax.random.split(jax.random.key(10_000 + L), n))
        curves[label, L] = per_episode(metrics["episode_return"], metrics["episodes_completed"],
                                       num_episodes)
        print(f"pgjax L={L} done ({time.time() - t0:.0f} s)", flush=True)
    pgjax_seconds = time.time() - t0

    # ---- the literal S&B boxes in NumPy (and the held-θ variant where it differs most)
    t0 = time.time()
    reference, reference_held = {}, {}
    for i, (label, baseline, values) in enumerate(settings):
        alpha_w = values.get("critic_learning_rate") if baseline == "learned" else None
        reference[label] = sutton_barto_reinforce(values["learning_rate"], alpha_w, n, num_episodes,
                                                  seed=i)[0]
        if baseline == "learned" or values["learning_rate"] == FIG13_1_ALPHAS[0]:
            reference_held[label] = sutton_barto_reinforce(
                values["learning_rate"], alpha_w, n, num_episodes, seed=100 + i, step_by_step=False)[0]
        print(f"reference {label} done ({time.time() - t0:.0f} s)", flush=True)
    reference_seconds = time.time() - t0

    figure_segment = {label: (args.fig13_2_segment if baseline == "learned" else args.fig13_1_segment)
                      for label, baseline, _ in settings}
    colours = ["tab:blue", "tab:orange", "tab:green"]
    plot(out / "figures" / "short_corridor_fig13_1.png",
         f"S&B Fig. 13.1: REINFORCE on the short corridor ({n} runs; pgjax L = {args.fig13_1_segment})",
         [(label.split(", ")[1], figure_segment[label], curves[label, figure_segment[label]],
           reference[label], c)
          for (label, _, _), c in zip(settings[:-1], colours)], v_star)
    no_base = settings[FIG13_1_ALPHAS.index(FIG13_2["alpha_no_baseline"])][0]
    with_base = settings[-1][0]
    plot(out / "figures" / "short_corridor_fig13_2.png",
         f"S&B Fig. 13.2: REINFORCE with / without baseline ({n} runs)",
         [("with baseline α^θ = 2^-9, α^w = 2^-6", args.fig13_2_segment,
           curves[with_base, args.fig13_2_segment], reference[with_base], "tab:red"),
          ("no baseline α = 2^-13", args.fig13_1_segment,
           curves[no_base, args.fig13_1_segment], reference[no_base], "tab:gray")], v_star)

    rows = []
    for label, baseline, values in settings:
        L = figure_segment[label]
        rows.append({
            "label": label, "segment": L, "pgjax": summary(curves[label, L]),
            "reference": summary(reference[label]),
            "reference_held": summary(reference_held[label]) if label in reference_held else None,
            "by_segment": {str(s): summary(curves[label, s]) for s in segments},
            "curve_pgjax": np.nanmean(curves[label, L], 0).round(3).tolist(),
            "curve_reference": reference[label].mean(0).round(3).tolist(),
            "curve_reference_without_collapsed":
                _mean_without_collapsed(reference[label])[0].round(3).tolist(),
        })
    result = {
        "settings": {"runs": n, "episodes": num_episodes, "segments": segments,
                     "fig13_1_segment": args.fig13_1_segment, "fig13_2_segment": args.fig13_2_segment,
                     "total_steps_per_run": args.total_steps, "initial_p_right": INITIAL_P_RIGHT,
                     "fig13_1_alphas": list(FIG13_1_ALPHAS), "fig13_2": FIG13_2},
        "p_star": p_star, "v_star": v_star, "v_initial": sc.start_value(INITIAL_P_RIGHT),
        "rows": rows,
        "machine": f"{platform.machine()}, JAX {jax.__version__} on {jax.default_backend()} "
                   "(2-core AMD EPYC, shared with other jobs)",
        "pgjax_seconds": pgjax_seconds, "reference_seconds": reference_seconds,
        "wall_seconds": time.time() - start,
    }
    save_results(out / "results", "short_corridor", result, markdown(result), indent=1)
    for row in rows:
        for L, r in row["by_segment"].items():
            if r["runs_short_of_episodes"] and r["collapsed"] < r["runs_short_of_episodes"]:
                print(f"note: {r['runs_short_of_episodes']} runs of {row['label']} (L = {L}) "
                      f"finished fewer than {num_episodes} episodes")
    return result


if __name__ == "__main__":
    main()
