"""Aliased grid world (Sutton & Barto 2018, §13.1): a greedy
value-based agent against a policy-gradient agent on features that cannot tell the grey cells
apart.

    python -m benchmarks.studies.aliased_gridworld [--seeds 10] [--total-steps 160000]

Writes ``benchmarks/figures/aliased_gridworld.png``, ``benchmarks/results/aliased_gridworld.json``
and the markdown fragment ``benchmarks/results/aliased_gridworld.md``.

Both agents see only the wall bits φ(s) ∈ {0,1}⁴ of ``AliasedGridworld-v0`` and get the same
number of environment steps (``--seeds`` seeds vmapped, 16 environments each):

- **Q-learning** (Sutton & Barto 2018, §6.5 and §10.1, semi-gradient with linear features):
  q(s, a) = w_aᵀφ(s) + b_a, ε-greedy behaviour (ε decays linearly from 1 to 0.05 over the first
  quarter of training, then stays; ties broken at random),
  w_a ← w_a + α·mean_n[(R + γ(1 − term)·max_a' q(S', a') − q(S, A))·φ(S)·1{A = a}], bootstrapping
  from the final observation at a truncation. Written here in a few lines of JAX (pgjax has no
  value-based agent). Its ε-greedy policy is near-deterministic, which cannot be optimal where
  states are aliased (Sutton & Barto 2018, §13.1).
- **REINFORCE with a learned baseline** from pgjax (``pgjax.make_train``), softmax policy linear in
  φ: ``torso="random_projection"`` with 8 features is φ ↦ Pφ for a fixed random P of rank 4,
  so the logits Kᵀ(Pφ) + b are exactly a linear function of φ (Sutton & Barto 2018, §13.2,
  "soft-max in action preferences" with linear preferences); the baseline is linear too.

Reference values (exact, from :mod:`envs.aliased_gridworld`, undiscounted, under the 20-step
limit): the best stochastic policy on these features, and the best of the 256 deterministic ones.
"Final return" in the table is the *exact* expected return J(π) of each seed's final policy
(linear-algebra evaluation of the learned probabilities, no sampling noise), for the policy as
it acts (softmax / ε-greedy) and for its greedy version.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np


from benchmarks.results_table import save_results

import jax
import jax.numpy as jnp

from pgjax import envs
from pgjax.envs import aliased_gridworld as ag
import pgjax
from pgjax.algorithms import setup, reinforce
from pgjax.networks import ActorCritic

ROOT = Path(__file__).resolve().parents[2]
ENV_ID = ag.ENV_ID
NUM_ENVS = 16
SEGMENT = 20           # steps per update/segment = the time limit
GAMMA = 0.99
PG_HPARAMS = dict(learning_rate=0.03, critic_learning_rate=0.03, gamma=GAMMA, ent_coef=0.0,
                  max_grad_norm=10.0)
Q_ALPHA = 0.1
EPS_START, EPS_END, EPS_DECAY_FRACTION = 1.0, 0.05, 0.25


# --------------------------------------------------------------------------- Q-learning (JAX)

class QState(NamedTuple):
    weights: jax.Array  # [4 actions, 4 features]
    bias: jax.Array     # [4 actions]
    env_state: object
    obs: jax.Array      # [N, 4]


def q_values(weights, bias, obs):
    """q(s, ·) = W φ(s) + b for a batch of observations ``[..., 4]`` → ``[..., 4]``."""
    return obs @ weights.T + bias


def epsilon_greedy(key, q, epsilon):
    """With probability ε a uniform action, else a greedy one (ties uniformly at random)."""
    explore_key, tie_key, coin_key = jax.random.split(key, 3)
    greedy = jax.random.categorical(tie_key, jnp.where(q >= q.max(-1, keepdims=True), 0.0, -jnp.inf))
    uniform = jax.random.randint(explore_key, greedy.shape, 0, q.shape[-1])
    return jnp.where(jax.random.uniform(coin_key, greedy.shape) < epsilon, uniform, greedy)


def epsilon_at(step, total):
    frac = jnp.clip(step / (EPS_DECAY_FRACTION * total), 0.0, 1.0)
    return EPS_START + frac * (EPS_END - EPS_START)


def make_q_learning(num_blocks: int):
    """``run(key) -> (per-block mean finished return [B], per-block (W, b) [B, ...])``: semi-
    gradient Q-learning over ``num_blocks`` × ``SEGMENT`` vectorised steps of ``NUM_ENVS`` envs;
    the ε in force at the end of each block is ``epsilon_at((b + 1)·SEGMENT, total)``."""
    venv, params = envs.make_vec_env(ENV_ID, NUM_ENVS)
    total = num_blocks * SEGMENT

    def env_step(carry, inputs):
        state, key = carry, inputs[0]
        step = inputs[1]
        act_key, env_key = jax.random.split(key)
        q = q_values(state.weights, state.bias, state.obs)
        action = epsilon_greedy(act_key, q, epsilon_at(step, total))
        obs, env_state, reward, terminated, truncated, info = venv.step(env_key, state.env_state, action, params)
        next_q = q_values(state.weights, state.bias, info["final_observation"]).max(-1)
        target = reward + GAMMA * (1.0 - terminated.astype(jnp.float32)) * next_q
        td = target - jnp.take_along_axis(q, action[:, None], -1)[:, 0]          # [N]
        onehot = jax.nn.one_hot(action, 4) * td[:, None]                        # [N, A]
        weights = state.weights + Q_ALPHA * jnp.einsum("na,nf->af", onehot, state.obs) / NUM_ENVS
        bias = state.bias + Q_ALPHA * onehot.mean(0)
        done = info["episode_done"]
        return QState(weights, bias, env_state, obs), (jnp.sum(info["episode_return"]), jnp.sum(done))

    def block(state, inputs):
        keys, steps = inputs
        state, (sums, counts) = jax.lax.scan(env_step, state, (keys, steps))
        count = counts.sum()
        mean_return = jnp.where(count > 0, sums.sum() / jnp.maximum(count, 1), jnp.nan)
        return state, (mean_return, state.weights, state.bias)

    def run(key):
        reset_key, run_key = jax.random.split(key)
        obs, env_state = venv.reset(reset_key, params)
        state = QState(jnp.zeros((4, 4)), jnp.zeros(4), env_state, obs)
        keys = jax.random.split(run_key, total).reshape(num_blocks, SEGMENT)
        steps = jnp.arange(total, dtype=jnp.float32).reshape(num_blocks, SEGMENT)
        _, (returns, weights, bias) = jax.lax.scan(block, state, (keys, steps))
        return returns, weights, bias

    return run


def q_policy_probs(weights, bias, epsilon):
    """ε-greedy and greedy probabilities ``[..., 4 obs classes, 4]`` of Q weights ``[..., 4, 4]``
    and biases ``[..., 4]`` (ties share the greedy mass, as the tie-breaking does)."""
    q = np.einsum("...af,of->...oa", np.asarray(weights, np.float64), ag.distinct_observations()) \
        + np.asarray(bias, np.float64)[..., None, :]
    best = np.isclose(q, q.max(-1, keepdims=True), atol=1e-9)
    greedy = best / best.sum(-1, keepdims=True)
    epsilon = np.asarray(epsilon, np.float64)[..., None, None]
    return (1 - epsilon) * greedy + epsilon / 4, greedy


# --------------------------------------------------------------------------- REINFORCE (pgjax)

def pg_config(total_steps: int) -> reinforce.Config:
    return reinforce.Config(env_id=ENV_ID, baseline="learned", torso="random_projection",
                            feature_args=(("num_features", 8), ("seed", 0)), num_envs=NUM_ENVS,
                            rollout_length=SEGMENT, total_steps=total_steps)


def policy_probs(config, params):
    """Softmax probabilities ``[4 obs classes, 4]`` of the policy with ``params``."""
    network = setup.make_network(config)
    return network.apply(params, jnp.asarray(ag.distinct_observations()), method=ActorCritic.policy).probs


def make_pg_train(config):
    """``pgjax.make_train(config)`` recording, after every update, the mean finished return and the
    policy's probabilities at the four distinct observations (so the exact J(π) can be drawn over
    training). ``train(key, hparams) -> (returns [U], probs [U, 4, 4])``."""
    record = lambda state, metrics: (metrics["episode_return"], policy_probs(config, state.params))
    train = pgjax.make_train(config, record=record)
    return lambda key, hparams: train(key, hparams)[1]


# --------------------------------------------------------------------------- reporting

def exact_returns(obs_probs, env_params) -> np.ndarray:
    """Exact undiscounted J(π) under the time limit for policies ``[..., 4 obs classes, 4]``."""
    obs_probs = np.asarray(obs_probs, np.float64)
    flat = obs_probs.reshape(-1, 4, 4)
    horizon = int(env_params.max_steps_in_episode)
    values = [ag.exact_values(ag.cell_policy_from_obs_policy(p), env_params, horizon).mean() for p in flat]
    return np.array(values).reshape(obs_probs.shape[:-2])


def binned(curves: np.ndarray, num_bins: int):
    """[seeds, U] per-update values → ([seeds, bins] bin means (NaN-aware), [bins] last update)."""
    chunks = np.array_split(np.arange(curves.shape[1]), num_bins)
    return (np.stack([np.nanmean(curves[:, c], axis=1) for c in chunks], axis=1),
            np.array([c[-1] + 1 for c in chunks]))


COLOURS = {"REINFORCE": "tab:blue", "Q-learning": "tab:red"}


def plot(path: Path, steps_per_update: int, exact_curves: dict, east_curves: dict, refs: dict, grey: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, cx, bx) = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [3, 2.4, 2]})
    for label, per_seed in exact_curves.items():
        x = np.arange(1, per_seed.shape[1] + 1) * steps_per_update
        mean, std = per_seed.mean(0), per_seed.std(0)
        colour = COLOURS[label.split(" ")[0]]
        ax.plot(x, mean, color=colour, label=f"{label}: mean of {per_seed.shape[0]} seeds")
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
        ax.plot(x, per_seed.min(0), color=colour, lw=0.5, ls=":")
        ax.plot(x, per_seed.max(0), color=colour, lw=0.5, ls=":")
    ax.axhline(refs["optimal_stochastic"], color="k", ls="--",
               label=f"best stochastic policy {refs['optimal_stochastic']:.3f}")
    ax.axhline(refs["best_deterministic"], color="gray", ls="-.",
               label=f"best deterministic policy {refs['best_deterministic']:.2f}")
    ax.set_xlabel("environment steps per seed")
    for axis in (ax, cx):
        axis.xaxis.set_major_formatter(lambda v, _: f"{v / 1000:.0f}k")
    ax.set_ylabel("exact expected return J(π) of the current policy")
    ax.set_title("return over training (band ±1 std, dotted min/max)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    for label, per_seed in east_curves.items():  # [S, U] max(π(E|grey), π(W|grey))
        x = np.arange(1, per_seed.shape[1] + 1) * steps_per_update
        colour = COLOURS[label.split(" ")[0]]
        mean, std = per_seed.mean(0), per_seed.std(0)
        cx.plot(x, mean, color=colour, label=label)
        cx.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
    cx.axhline(0.5, color="k", ls="--", lw=0.8)
    cx.set_ylim(0.2, 1.02)
    cx.set_xlabel("environment steps per seed")
    cx.set_ylabel("max(π(E | grey), π(W | grey))")
    cx.set_title("how deterministic the grey-cell choice is (±1 std)", fontsize=10)
    cx.legend(fontsize=7)
    for i, (label, probs) in enumerate(grey.items()):
        colour = COLOURS[label.split(" ")[0]]
        jitter = np.linspace(-0.12, 0.12, probs.shape[0])
        bx.scatter(i + jitter, probs[:, 1], s=18, color=colour, marker=">", label=f"{label}: π(E|grey)")
        bx.scatter(i + jitter, probs[:, 3], s=18, color=colour, marker="<", facecolors="none",
                   label=f"{label}: π(W|grey)")
    bx.axhline(0.5, color="k", ls="--", lw=0.8)
    bx.set_xticks(range(len(grey)), [label.split(" (")[0] for label in grey])
    bx.set_xlim(-0.5, len(grey) - 0.5)
    bx.set_ylim(-0.02, 1.02)
    bx.set_ylabel("final probability (one marker per seed)")
    bx.set_title("final π(E | grey) and π(W | grey) per seed", fontsize=10)
    bx.legend(fontsize=6, loc="upper left")
    fig.suptitle("AliasedGridworld-v0: wall-bit features alias the two grey cells")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--total-steps", type=int, default=160_000)
    args = parser.parse_args(argv)

    env_params = envs.make(ENV_ID)[1]
    refs = ag.reference_values(env_params)
    config = pg_config(args.total_steps)
    num_updates = config.num_updates
    keys = jax.random.split(jax.random.key(0), args.seeds)

    start = time.perf_counter()
    hparams = reinforce.Hparams(**PG_HPARAMS)
    pg_returns, pg_probs = jax.jit(jax.vmap(make_pg_train(config), in_axes=(0, None)))(keys, hparams)
    pg_returns, pg_probs = np.asarray(pg_returns), np.asarray(pg_probs, np.float64)  # [S, U], [S, U, 4, 4]
    pg_seconds = time.perf_counter() - start

    start = time.perf_counter()
    q_returns, q_weights, q_bias = jax.jit(jax.vmap(make_q_learning(num_updates)))(
        jax.random.split(jax.random.key(1), args.seeds))
    q_returns = np.asarray(q_returns)
    q_seconds = time.perf_counter() - start
    total = num_updates * SEGMENT
    epsilons = np.asarray(epsilon_at(np.arange(1, num_updates + 1) * SEGMENT, total))
    q_probs, q_greedy = q_policy_probs(q_weights, q_bias, np.broadcast_to(epsilons, q_returns.shape))

    pg_greedy = np.eye(4)[pg_probs[:, -1].argmax(-1)]
    agents = {"REINFORCE (pgjax, linear softmax)": (pg_probs, pg_greedy, pg_returns, pg_seconds),
              "Q-learning (linear, ε-greedy)": (q_probs, q_greedy[:, -1], q_returns, q_seconds)}
    exact_curves, east_curves, grey, rows = {}, {}, {}, {}
    last = max(1, num_updates // 10)
    for name, (probs, greedy, returns, seconds) in agents.items():
        exact_curves[name] = exact_returns(probs, env_params)                 # [S, U]
        east_curves[name] = np.maximum(probs[:, :, 1, 1], probs[:, :, 1, 3])
        grey_choice = probs[:, :, 1].argmax(-1)                                # [S, U]
        flips = (np.diff(grey_choice, axis=1) != 0).sum(1) * 1000.0 / max(1, num_updates - 1)
        acting, greedy_j = exact_curves[name][:, -1], exact_returns(greedy, env_params)
        grey[name] = probs[:, -1, 1]                                           # [S, 4]
        rows[name] = {
            "exact_return_final_mean": float(acting.mean()), "exact_return_final_std": float(acting.std()),
            "exact_return_final_per_seed": acting.round(4).tolist(),
            "exact_return_last10pct_mean": float(exact_curves[name][:, -last:].mean()),
            "exact_return_greedy_mean": float(greedy_j.mean()), "exact_return_greedy_per_seed": greedy_j.round(4).tolist(),
            "train_return_last10pct_mean": float(np.nanmean(returns[:, -last:])),
            "grey_probs_mean_NESW": grey[name].mean(0).round(4).tolist(),
            "grey_p_east_per_seed": grey[name][:, 1].round(4).tolist(),
            "grey_max_prob_final_mean": float(east_curves[name][:, -1].mean()),
            "greedy_policy_per_seed": ["".join(ag.ACTIONS[a] for a in g.argmax(-1)) for g in greedy],
            "grey_most_likely_action_changes_per_1000_updates": float(flips.mean()),
            "exact_return_curve_mean_every_10pct": exact_curves[name].mean(0)[
                np.linspace(0, num_updates - 1, 11).astype(int)].round(4).tolist(),
            "wall_s_incl_compile": round(seconds, 1),
        }
    plot(ROOT / "benchmarks" / "figures" / "aliased_gridworld.png", config.steps_per_update,
         exact_curves, east_curves, refs,
         {"REINFORCE (softmax)": grey["REINFORCE (pgjax, linear softmax)"],
          f"Q-learning (ε-greedy, ε={EPS_END})": grey["Q-learning (linear, ε-greedy)"]})

    result = {"env_id": ENV_ID, "env_params": {"step_reward": env_params.step_reward,
              "gold_reward": env_params.gold_reward, "skull_reward": env_params.skull_reward,
              "max_steps_in_episode": int(env_params.max_steps_in_episode)},
              "seeds": args.seeds, "env_steps_per_seed": num_updates * config.steps_per_update,
              "num_envs": NUM_ENVS, "gamma": GAMMA, "pg_hparams": PG_HPARAMS,
              "pg_config": {"algorithm": "reinforce", "baseline": "learned", "torso": "random_projection",
                            "feature_args": dict(config.feature_args), "rollout_length": SEGMENT},
              "q_learning": {"alpha": Q_ALPHA, "epsilon_start_end_decay_fraction": [EPS_START, EPS_END, EPS_DECAY_FRACTION]},
              "reference": refs, "agents": rows,
              "machine": "2-core AMD EPYC CPU, contended (shared with other jobs)"}
    save_results(ROOT / "benchmarks" / "results", "aliased_gridworld", result, markdown(result))


def markdown(result) -> str:
    refs = result["reference"]
    lines = [
        "### Aliased grid world (`benchmarks/studies/aliased_gridworld.py`)",
        "",
        f"`AliasedGridworld-v0` (Sutton & Barto 2018, §13.1): observation = "
        f"the 4 wall bits, so the two grey cells look alike; rewards +1 gold, −1 skull, −0.1 per "
        f"other step, 20-step limit, uniform start in the top row. {result['seeds']} seeds × "
        f"{result['env_steps_per_seed']:,} env steps each ({result['num_envs']} envs), γ = {result['gamma']}. "
        f"Machine: 2-core AMD EPYC CPU, contended. J(π) is the *exact* expected undiscounted return "
        f"of a policy from the uniform start under the time limit (linear algebra on the learned "
        f"probabilities, no sampling noise). Best stochastic policy on these features "
        f"**{refs['optimal_stochastic']:.3f}** (E/W ½–½ in the grey cells); best deterministic "
        f"policy **{refs['best_deterministic']:.3f}** ({', '.join(refs['best_deterministic_actions'])} in "
        f"cell 0, grey, cell 2, cell 4).",
        "",
        "| agent | J(final policy, as it acts), mean ± std over seeds | J, mean over last 10 % of training | "
        "J(greedy version) | final π(E \\| grey), π(W \\| grey), seed mean | final max(π(E \\| grey), π(W \\| grey)) | "
        "training return per finished episode, last 10 % | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["agents"].items():
        probs = row["grey_probs_mean_NESW"]
        lines.append(
            f"| {name} | {row['exact_return_final_mean']:.3f} ± {row['exact_return_final_std']:.3f} | "
            f"{row['exact_return_last10pct_mean']:.3f} | {row['exact_return_greedy_mean']:.3f} | "
            f"{probs[1]:.2f}, {probs[3]:.2f} | {row['grey_max_prob_final_mean']:.2f} | "
            f"{row['train_return_last10pct_mean']:.3f} | "
            f"{row['wall_s_incl_compile']:.0f} |")
    east = {k: ", ".join(f"{p:.2f}" for p in v["grey_p_east_per_seed"]) for k, v in result["agents"].items()}
    q = result["agents"]["Q-learning (linear, ε-greedy)"]
    greedy_counts = ", ".join(f"{policy}: {count}" for policy, count in
                              sorted(Counter(q["greedy_policy_per_seed"]).items()))
    lines += [
        "",
        "Per-seed final π(E | grey): " + "; ".join(f"{k}: {v}" for k, v in east.items()) + ".",
        "",
        f"Q-learning's greedy action in the grey cells keeps switching between E and W "
        f"({q['grey_most_likely_action_changes_per_1000_updates']:.0f} switches per 1000 updates of "
        f"{result['num_envs'] * 20} steps): the aliased q(grey, E) and q(grey, W) chase each other, while "
        f"the ε-greedy policy at any moment is near-deterministic (max probability "
        f"{q['grey_max_prob_final_mean']:.2f}). Final greedy policies (actions in cell 0, grey, cell 2, "
        f"cell 4; seeds): {greedy_counts} — with W in cell 4 and S in cell 2 such a policy walks to the "
        f"gold from three starts and shuttles between a grey cell and a corner until the time limit "
        f"from the other two (J = −0.26).",
        "",
        "The training return is the mean over the episodes that *finished* in each update, which "
        "over-weights short episodes (an agent trapped between a grey cell and a corner finishes "
        "one episode per 20 steps, a lucky one several), so it reads higher than J; J is the "
        "number to compare with the reference lines. Figure: `benchmarks/figures/aliased_gridworld.png`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
