"""Baselines for controlling variance (Sutton & Barto 2018, §13.4), measured: the variance of REINFORCE's
per-episode gradient estimate with and without a baseline, at fixed policy parameters.

    python -m benchmarks.studies.gradient_variance [--episodes 20000]

Writes ``benchmarks/figures/gradient_variance.png``, ``benchmarks/results/gradient_variance.json``
and the markdown fragment ``benchmarks/results/gradient_variance.md``.

The estimator (S&B 2018 §13.3–13.4, eq. 13.8 and 13.11; Williams 1992): for one episode,

    ĝ = Σ_t (G_t − b(S_t)) ∇_θ log π_θ(A_t|S_t),   E[ĝ] = ∇_θ v_π(s₀)  for any b that does not
                                                                        depend on the actions,

with γ = 1 and a softmax policy over state-independent action preferences θ (a bias-only linear
policy, the parameterisation of S&B's Example 13.1). Each ĝ is ``jax.grad`` of the per-episode
score-function loss −Σ_t log π_θ(A_t) (G_t − b_t), ``jax.vmap``-ed over episodes that were
sampled by the vmapped JAX environments (``envs.VecEnv``). The same episodes are used for every
baseline, so the baselines' mean gradients can be compared pairwise.

Baselines:

- ``none``: b = 0.
- ``constant``: b = v_π(s₀), the exact expected return (bandit: Σ_a π(a) q*(a); corridor: the
  Bellman solve of :mod:`envs.short_corridor`), the same number at every step.
- ``learned``: b = w, the least-squares fit of a state-aliased value v̂ = w to the returns G_t of
  every step of an independent batch of episodes, i.e. the fixed point of REINFORCE-with-baseline's
  w-update at this θ (for the bandit it estimates v_π(s₀); in the corridor it is the average
  return-to-go of the visited steps, which is not v_π(s₀)).
- ``state value`` (corridor only): b = v_π(S_t), the exact value of the *hidden* state (the agent
  cannot see it, but it does not depend on A_t, so the estimator stays unbiased): how much a
  baseline that knows the state could remove.

Reported per setting and baseline: tr Σ̂ (the trace of the sample covariance of ĝ over
parameters; from :func:`pgjax.diagnostics.gradient_statistics`, cross-checked against
``np.cov``), the per-parameter variances, the mean gradient ḡ and the largest |z| of
ḡ − ∇v_π(s₀) (the exact gradient: closed form for the bandit, π ⊙ (q* − v); for the corridor a
central difference of the Bellman solve), the paired |z| of ḡ_b − ḡ_none, and the SNR
‖ḡ‖²/tr Σ̂ of a single episode's estimate.
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

from pgjax import envs
from pgjax.envs import bandit as bandit_env
from pgjax.envs import short_corridor as sc
from pgjax import diagnostics

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- sampling episodes

def sample_episodes(env_id: str, env_params, theta: jax.Array, num_episodes: int, num_steps: int,
                    key: jax.Array):
    """One episode per environment of ``num_episodes`` vmapped copies under softmax(θ), for at most
    ``num_steps`` steps. Returns time-major ``[T, N]`` actions, rewards, a mask of the steps that
    belong to the first episode, the hidden state before each step (corridor: the position;
    bandit: 0) and ``[N]`` flags for episodes that ended (terminated or truncated) in time."""
    env, _ = envs.make(env_id)
    venv = envs.VecEnv(env, num_episodes)
    reset_key, key = jax.random.split(key)
    _, state = venv.reset(reset_key, env_params)

    def body(carry, step_key):
        state, running = carry
        act_key, env_key = jax.random.split(step_key)
        actions = jax.random.categorical(act_key, theta, shape=(num_episodes,))
        hidden = getattr(state, "position", jnp.zeros(num_episodes, jnp.int32))
        _, state, reward, terminated, truncated, _ = venv.step(env_key, state, actions, env_params)
        out = (actions, reward, running.astype(jnp.float32), hidden)
        return (state, running & ~(terminated | truncated)), out

    (_, running), (actions, rewards, mask, hidden) = jax.lax.scan(
        body, (state, jnp.ones(num_episodes, bool)), jax.random.split(key, num_steps))
    return actions, rewards * mask, mask, hidden, ~running


def returns_to_go(rewards: jax.Array) -> jax.Array:
    """G_t = Σ_{k ≥ t} r_k (γ = 1) of time-major, already-masked rewards ``[T, N]``."""
    return jnp.flip(jnp.cumsum(jnp.flip(rewards, 0), 0), 0)


def episode_loss(theta: jax.Array, actions: jax.Array, psi: jax.Array, mask: jax.Array):
    """−Σ_t m_t log π_θ(A_t) Ψ_t for one episode (``[T]`` arrays); its gradient is −ĝ."""
    log_probs = jax.nn.log_softmax(theta)[actions]
    return -jnp.sum(mask * log_probs * jax.lax.stop_gradient(psi))


@jax.jit
def per_episode_gradients(theta, actions, psi, mask):
    """ĝ_i = −∇_θ episode_loss for every episode i: ``[N, A]`` from time-major ``[T, N]`` inputs."""
    grads = jax.vmap(jax.grad(episode_loss), in_axes=(None, 1, 1, 1))(theta, actions, psi, mask)
    return -grads


# --------------------------------------------------------------------------- the settings

def bandit_setting(offset: float):
    """Bandit-v0 with its default Gaussian arms shifted by ``offset``; uniform policy θ = 0."""
    means = jnp.asarray(bandit_env.DEFAULT_ARM_MEANS, jnp.float32) + offset
    _, params = envs.make("Bandit-v0", arm_means=means)
    theta = jnp.zeros(means.shape[0])
    probs = np.asarray(jax.nn.softmax(theta), np.float64)
    q = np.asarray(bandit_env.expected_rewards(params), np.float64)
    value = float(probs @ q)
    return {"env_id": "Bandit-v0", "params": params, "theta": theta, "num_steps": 1,
            "value": value, "exact_gradient": probs * (q - value), "state_values": None,
            "name": f"Bandit-v0, 4 Gaussian arms q* = {np.round(q, 2).tolist()}, σ = 1, uniform π"}


def corridor_setting(p_right: float):
    """ShortCorridor-v0 under π(right) = p, θ = (h_left, h_right) = (0, logit p)."""
    _, params = envs.make("ShortCorridor-v0")
    theta = jnp.asarray([0.0, np.log(p_right / (1 - p_right))], jnp.float32)
    value = sc.start_value(p_right)
    eps = 1e-6  # ∂v/∂h_right = v'(p) p(1 − p), ∂v/∂h_left = −∂v/∂h_right
    dv_dp = (sc.start_value(p_right + eps) - sc.start_value(p_right - eps)) / (2 * eps)
    d_right = dv_dp * p_right * (1 - p_right)
    return {"env_id": "ShortCorridor-v0", "params": params, "theta": theta,
            "num_steps": params.max_steps_in_episode, "value": value,
            "exact_gradient": np.array([-d_right, d_right]),
            "state_values": sc.state_values(p_right),
            "name": f"ShortCorridor-v0, π(right) = {p_right}"}


def measure(setting: dict, num_episodes: int, key: jax.Array) -> dict:
    """Per-episode gradients for every baseline on one batch of episodes, and their statistics."""
    sample_key, fit_key = jax.random.split(key)
    sample = jax.jit(sample_episodes, static_argnums=(0, 3, 4))
    args = (setting["env_id"], setting["params"], setting["theta"])
    actions, rewards, mask, hidden, ended = sample(*args, num_episodes, setting["num_steps"], sample_key)
    returns = returns_to_go(rewards)
    # the learned baseline's fixed point, fitted on an independent batch
    _, fit_rewards, fit_mask, _, _ = sample(*args, num_episodes // 4, setting["num_steps"], fit_key)
    fit_returns = returns_to_go(fit_rewards)
    w = float(jnp.sum(fit_returns * fit_mask) / jnp.sum(fit_mask))

    baselines = {"none": jnp.zeros_like(returns), "constant": jnp.full_like(returns, setting["value"]),
                 "learned": jnp.full_like(returns, w)}
    if setting["state_values"] is not None:
        baselines["state value"] = jnp.asarray(setting["state_values"], jnp.float32)[jnp.minimum(hidden, 2)]
    baseline_values = {"none": 0.0, "constant": setting["value"], "learned": w,
                       "state value": "v_π(S_t)"}
    exact = setting["exact_gradient"]
    grads = {name: per_episode_gradients(setting["theta"], actions, returns - b, mask)
             for name, b in baselines.items()}
    rows = []
    n = num_episodes
    for name, g in grads.items():
        stats = diagnostics.gradient_statistics(g)
        g64 = np.asarray(g, np.float64)
        total_variance = float(stats.total_variance)
        check = float(np.trace(np.atleast_2d(np.cov(g64.T))))
        assert np.isclose(total_variance, check, rtol=1e-3), (total_variance, check)
        mean = g64.mean(0)
        se = g64.std(0, ddof=1) / np.sqrt(n)
        diff = g64 - np.asarray(grads["none"], np.float64)
        diff_se = diff.std(0, ddof=1) / np.sqrt(n)
        paired = np.where(diff_se > 0, np.abs(diff.mean(0)) / np.where(diff_se > 0, diff_se, 1), 0.0)
        rows.append({
            "baseline": name, "b": baseline_values[name], "total_variance": total_variance,
            "per_parameter_variance": g64.var(0, ddof=1).tolist(), "mean_gradient": mean.tolist(),
            "max_abs_z_vs_exact": float(np.max(np.abs(mean - exact) / se)),
            "max_abs_paired_z_vs_none": float(np.max(paired)), "snr": float(stats.snr),
        })
    none = rows[0]["total_variance"]
    for row in rows:
        row["variance_ratio_to_none"] = row["total_variance"] / none
    return {"setting": setting["name"], "episodes": n, "episodes_ended": int(np.sum(ended)),
            "mean_episode_length": float(np.mean(np.sum(np.asarray(mask), 0))),
            "v_pi_s0": setting["value"], "exact_gradient": np.asarray(exact).tolist(), "rows": rows}


# --------------------------------------------------------------------------- output

def plot(path: Path, results: list[dict]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = ["none", "constant", "learned", "state value"]
    colours = {"none": "tab:gray", "constant": "tab:blue", "learned": "tab:orange",
               "state value": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.2
    for j, name in enumerate(names):
        xs, ys = [], []
        for i, res in enumerate(results):
            row = next((r for r in res["rows"] if r["baseline"] == name), None)
            if row is not None:
                xs.append(i + (j - 1.5) * width)
                ys.append(row["total_variance"])
        ax.bar(xs, ys, width, color=colours[name], label=name)
    ax.set_yscale("log")
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels([r["short_name"] for r in results], fontsize=8)
    ax.set_ylabel("tr Cov[ĝ] of one episode's\ngradient estimate (log scale)")
    ax.set_title("REINFORCE per-episode gradient variance by baseline, fixed θ", fontsize=10)
    ax.legend(fontsize=8, title="baseline b", title_fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _vec(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def markdown(result: dict) -> str:
    lines = [
        "### Baselines for controlling variance (REINFORCE gradient variance, measured)",
        "",
        "Per-episode REINFORCE estimate ĝ = Σ_t (G_t − b) ∇_θ log π_θ(A_t) (γ = 1, softmax over "
        "state-independent preferences θ), one `jax.vmap(jax.grad(...))` over "
        f"{result['episodes']} (bandit) or {result['corridor_episodes']} (corridor) episodes of the "
        "vmapped JAX env per setting, the same episodes for every baseline. tr Σ̂ = trace of the "
        "sample covariance of ĝ over the parameters "
        "(`pgjax.diagnostics.gradient_statistics`, cross-checked with `np.cov`); per-parameter "
        "variances in brackets. z exact = largest |ḡ − ∇v_π(s₀)|/s.e. over parameters (exact "
        "gradient: closed form for the bandit, central difference of the Bellman solve for the "
        "corridor); z paired = largest |mean(ĝ_b − ĝ_none)|/s.e.: both should be O(1) if every "
        "baseline is unbiased. SNR = ‖ḡ‖²/tr Σ̂ of a single episode's estimate. "
        "`learned` = the least-squares fit of an aliased v̂ = w to the returns-to-go of an "
        "independent batch (REINFORCE-with-baseline's fixed point at this θ); `state value` = "
        "exact v_π(S_t) of the hidden state (corridor only).",
        "",
    ]
    for res in result["settings"]:
        lines += [
            f"**{res['setting']}** — v_π(s₀) = {res['v_pi_s0']:.3f}, ∇v_π(s₀) = "
            f"{_vec(res['exact_gradient'])}, {res['episodes']} episodes, mean length "
            f"{res['mean_episode_length']:.1f}, "
            f"{res['episodes_ended']}/{res['episodes']} episodes ended.",
            "",
            "| baseline b | tr Σ̂ (per parameter) | ratio to none | mean gradient ḡ | z exact | "
            "z paired | SNR |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in res["rows"]:
            b = row["b"] if isinstance(row["b"], str) else f"{row['b']:.3f}"
            lines.append(
                f"| {row['baseline']} ({b}) | {row['total_variance']:.4g} "
                f"{_vec(row['per_parameter_variance'])} | {row['variance_ratio_to_none']:.3g} | "
                f"{_vec(row['mean_gradient'])} | {row['max_abs_z_vs_exact']:.2f} | "
                f"{row['max_abs_paired_z_vs_none']:.2f} | {row['snr']:.3g} |")
        lines.append("")
    lines += [
        f"Figure: `benchmarks/figures/gradient_variance.png`. Machine: {result['machine']}; wall "
        f"time {result['wall_seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--corridor-episodes", type=int, default=10_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    start = time.time()
    settings = [
        (bandit_setting(0.0), args.episodes, "Bandit q* ≈ 0.4"),
        (bandit_setting(10.0), args.episodes, "Bandit q* + 10"),
        (corridor_setting(0.05), args.corridor_episodes, "Corridor p = 0.05"),
        (corridor_setting(0.5), args.corridor_episodes, "Corridor p = 0.5"),
    ]
    results = []
    for i, (setting, n, short) in enumerate(settings):
        res = measure(setting, n, jax.random.key(i))
        res["short_name"] = short
        results.append(res)
        print(f"{setting['name']}: done ({time.time() - start:.0f} s)", flush=True)
    plot(out / "figures" / "gradient_variance.png", results)
    result = {"episodes": args.episodes, "corridor_episodes": args.corridor_episodes,
              "settings": results, "variance_function": "pgjax.diagnostics.gradient_statistics",
              "machine": f"{platform.machine()}, JAX {jax.__version__} on {jax.default_backend()} "
                         "(2-core AMD EPYC, shared with other jobs)",
              "wall_seconds": time.time() - start}
    save_results(out / "results", "gradient_variance", result, markdown(result), indent=1)
    return result


if __name__ == "__main__":
    main()
