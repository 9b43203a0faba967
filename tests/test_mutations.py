"""Tests that catch wrong maths, not just crashes.

Each test compares pgjax with an independent float64 NumPy reference written here from the papers'
formulas: a tiny actor-critic (one tanh layer of 4 units per torso) evaluated in NumPy, gradients by
central finite differences of the NumPy loss, a small deterministic environment simulated in NumPy,
GAE and V-trace as explicit sums over each episode's remaining steps. The data are chosen so that
the plausible wrong implementations listed in each docstring give different numbers:

1. bootstrapping from the post-reset observation instead of ``final_observation`` (rollout.py);
2. a flipped log ρ (log μ − log π) in IMPALA's learner or in ``estimators.vtrace``;
3. PPO: (a) the clip on the wrong ratio (old/new, or clipping log r), (b) value clipping wrong
   or missing (around the target, max → min, off), (c) advantages normalised over the whole batch
   instead of per minibatch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from pgjax import envs
from pgjax.algorithms import optimiser, setup, train_state, impala, ppo
from pgjax.config import hparams_as_arrays

# ---------------------------------------------------------------------------------------------
# A deterministic test environment, simulated again in NumPy below
# ---------------------------------------------------------------------------------------------

CLOCK_ID = "MutationTestClock-v0"
TIME_LIMIT = 4


@struct.dataclass
class ClockState(environment.EnvState):
    level: jax.Array
    time: int


@struct.dataclass
class ClockParams(environment.EnvParams):
    max_steps_in_episode: int = TIME_LIMIT


class Clock(environment.Environment):
    """level' = level + 1 (action 1) or level − ½ (action 0); reward a − level'/4; the episode
    terminates when level' ≥ 1.5 and is truncated after ``max_steps_in_episode`` steps; the
    observation is [level, time/4] and every episode starts at [0, 0]. All numbers are dyadic, so
    float32 and float64 agree exactly. A final observation [level, t/4] never looks like the
    post-reset [0, 0], so V(final) ≠ V(reset) for a generic critic."""

    @property
    def default_params(self) -> ClockParams:
        return ClockParams()

    def step_env(self, key, state, action, params):
        action = jnp.asarray(action, jnp.int32)
        level = state.level + jnp.where(action == 1, 1.0, -0.5)
        new_state = ClockState(level=level.astype(jnp.float32), time=state.time + 1)
        reward = action.astype(jnp.float32) - 0.25 * level
        return self.get_obs(new_state), new_state, reward, level >= 1.5, {}

    def reset_env(self, key, params):
        state = ClockState(level=jnp.asarray(0.0, jnp.float32), time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.level, 0.25 * state.time]).astype(jnp.float32)

    def is_terminated(self, state, params):
        return state.level >= 1.5

    @property
    def name(self) -> str:
        return CLOCK_ID

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(-100.0, 100.0, (2,), jnp.float32)


if CLOCK_ID not in envs.registered_ids():
    envs.register(CLOCK_ID, Clock)


def simulate_clock(actions):
    """The Clock environment in NumPy from the reset state, for actions ``[T, N]``: obs, rewards,
    terminated, truncated and the true successor (pre-reset final observation) of every step."""
    T, N = actions.shape
    level, time = np.zeros(N), np.zeros(N)
    out = {k: [] for k in ("obs", "rewards", "terminated", "truncated", "final_obs", "reset_obs")}
    for t in range(T):
        out["obs"].append(np.stack([level, time / 4], -1))
        level = level + np.where(actions[t] == 1, 1.0, -0.5)
        time = time + 1
        terminated, truncated = level >= 1.5, time >= TIME_LIMIT
        out["rewards"].append(actions[t] - level / 4)
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        out["final_obs"].append(np.stack([level, time / 4], -1))
        done = terminated | truncated
        level, time = np.where(done, 0.0, level), np.where(done, 0, time)
        out["reset_obs"].append(np.stack([level, time / 4], -1))  # what the policy sees next
    return {k: np.asarray(v, np.float64) if k not in ("terminated", "truncated") else np.asarray(v)
            for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# The network in NumPy, parameter vectors, finite differences
# ---------------------------------------------------------------------------------------------

def to_numpy(params):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), params)


def np_network(params, obs):
    """ActorCritic with separate one-layer tanh torsos: (log π(·|s) [..., A], V(s) [...])."""
    p = params["params"]
    dense = lambda layer, x: x @ layer["kernel"] + layer["bias"]  # noqa: E731
    logits = dense(p["policy_head"], np.tanh(dense(p["actor_torso"]["Dense_0"], obs)))
    log_pi = logits - logits.max(-1, keepdims=True)
    log_pi = log_pi - np.log(np.exp(log_pi).sum(-1, keepdims=True))
    value = dense(p["value_head"], np.tanh(dense(p["critic_torso"]["Dense_0"], obs)))[..., 0]
    return log_pi, value


def np_log_prob(log_pi, actions):
    return np.take_along_axis(log_pi, np.asarray(actions)[..., None].astype(int), -1)[..., 0]


def np_entropy(log_pi):
    return -(np.exp(log_pi) * log_pi).sum(-1)


def flatten(params):
    leaves, treedef = jax.tree.flatten(params)
    vector = np.concatenate([np.ravel(x) for x in leaves])

    def unflatten(v):
        out, i = [], 0
        for x in leaves:
            out.append(np.reshape(v[i:i + x.size], x.shape))
            i += x.size
        return jax.tree.unflatten(treedef, out)

    return vector, unflatten


def fd_grad(loss, params, h=1e-6):
    """Central finite differences of a scalar NumPy function of the parameter tree (float64)."""
    vector, unflatten = flatten(params)
    grad = np.zeros_like(vector)
    for i in range(vector.size):
        step = np.zeros_like(vector)
        step[i] = h
        grad[i] = (loss(unflatten(vector + step)) - loss(unflatten(vector - step))) / (2 * h)
    return unflatten(grad)


def random_params(params, seed, scale=0.8):
    """Replace every leaf by N(0, scale²) draws: logits and values of order 1, so ratios and values
    move visibly (the default init has a 0.01-gain policy head)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, scale, x.shape), jnp.float32), params)


def assert_trees_close(got, want, rtol, atol, what=""):
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=rtol, atol=atol,
                                   err_msg=f"{what} {jax.tree_util.keystr(path)}")


def tree_max_abs_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - y)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------------------------------------
# Estimators as explicit sums over the rest of each episode (not the backward recursions)
# ---------------------------------------------------------------------------------------------

def episode_end(dones, t):
    """The last row of the episode segment that contains row t (its done, or the segment end)."""
    T = dones.shape[0]
    end = t
    while end < T - 1 and not dones[end]:
        end += 1
    return end


def np_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A_t = Σ_{l=0}^{end−t} (γλ)^l δ_{t+l}, δ_t = r_t + γ(1 − term_t)V(s'_t) − V(s_t), the sum
    ending at the episode's last step in the segment (Schulman et al. 2016, eq. 16)."""
    T, N = rewards.shape
    dones = terminated | truncated
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            end = episode_end(dones[:, n], t)
            adv[t, n] = sum((gamma * lam) ** (k - t) * deltas[k, n] for k in range(t, end + 1))
    return adv


def np_vtrace(rewards, values, next_values, terminated, truncated, log_pi, log_mu, gamma, lam,
              rho_bar, c_bar, pg_rho_bar):
    """V-trace (Espeholt et al. 2018, eq. 1 and §4.2) with ρ = π/μ formed here from log π, log μ:

    v_s = V(x_s) + Σ_{t=s}^{end} γ^{t−s} (Π_{i=s}^{t−1} c_i) ρ_t δ_t,  ρ_t = min(ρ̄, π/μ),
    c_i = λ·min(c̄, π/μ), δ_t = r_t + γ(1 − term_t)V(x'_t) − V(x_t);
    A_s = min(pg_ρ̄, π/μ)·(r_s + γ(1 − term_s)·b_s − V(x_s)), b_s = v_{s+1} inside the episode,
    else V(x'_s).
    """
    T, N = rewards.shape
    dones = terminated | truncated
    ratio = np.exp(log_pi) / np.exp(log_mu)
    rho, pg_rho = np.minimum(rho_bar, ratio), np.minimum(pg_rho_bar, ratio)
    c = lam * np.minimum(c_bar, ratio)
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    vs = np.zeros((T, N))
    for n in range(N):
        for s in range(T):
            end = episode_end(dones[:, n], s)
            total, trace = 0.0, 1.0
            for t in range(s, end + 1):
                total += trace * rho[t, n] * deltas[t, n]
                trace *= gamma * c[t, n]
            vs[s, n] = values[s, n] + total
    adv = np.zeros((T, N))
    for n in range(N):
        for s in range(T):
            inside = s < T - 1 and not dones[s, n]
            bootstrap = vs[s + 1, n] if inside else next_values[s, n]
            adv[s, n] = pg_rho[s, n] * (rewards[s, n] + gamma * (1.0 - terminated[s, n]) * bootstrap
                                        - values[s, n])
    return vs, adv, ratio


# ---------------------------------------------------------------------------------------------
# PPO's loss in NumPy (Schulman et al. 2017, eq. 7 and 9; Engstrom et al. 2020 value clipping)
# ---------------------------------------------------------------------------------------------

def np_ppo_terms(params, minibatch, hp, clip_value=True, normalize=True):
    obs, actions, old_log_probs, old_values, advantages, targets = minibatch
    log_pi, values = np_network(params, obs)
    log_probs = np_log_prob(log_pi, actions)
    if normalize:  # over this minibatch only
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    eps, veps = hp["clip_eps"], hp["value_clip_eps"]
    ratio = np.exp(log_probs) / np.exp(old_log_probs)
    surrogate = np.minimum(ratio * advantages, np.clip(ratio, 1 - eps, 1 + eps) * advantages)
    policy_loss = -surrogate.mean()
    squared = (values - targets) ** 2
    clipped_squared = (old_values + np.clip(values - old_values, -veps, veps) - targets) ** 2
    if clip_value:
        value_loss = 0.5 * np.maximum(squared, clipped_squared).mean()
    else:
        value_loss = 0.5 * squared.mean()
    entropy = np_entropy(log_pi).mean()
    total = policy_loss + hp["vf_coef"] * value_loss - hp["ent_coef"] * entropy
    return {"total_loss": total, "policy_loss": policy_loss, "value_loss": value_loss,
            "entropy": entropy, "clip_fraction": np.mean(np.abs(ratio - 1) > eps),
            "approx_kl": np.mean(ratio - 1 - np.log(ratio)),
            "value_clip_binds": np.mean(clipped_squared > squared)}  # not a pgjax metric


def hp_floats(hparams):
    return {f.name: float(getattr(hparams, f.name)) for f in dataclasses.fields(hparams)}


# =============================================================================================
# Shared set-up: a PPO train state on the Clock environment and one rollout from it
# =============================================================================================

PPO_CONFIG = ppo.Config(env_id=CLOCK_ID, num_envs=4, rollout_length=6, total_steps=24,
                        hidden_sizes=(4,), epochs=2, minibatches=3, optimizer="sgd",
                        anneal_lr=False)
PPO_HP = hparams_as_arrays(ppo.Hparams(learning_rate=1.0, gamma=0.9, gae_lambda=0.8, clip_eps=0.2,
                                       value_clip_eps=0.2, max_grad_norm=1e6, ent_coef=0.01,
                                       vf_coef=0.5))
PPO_PARAMS_SEED = 11  # a policy with π(1|s) ≈ ½, so episodes both terminate and are truncated

_collect = jax.jit(train_state.collect, static_argnums=0)  # one program for every rollout here


@pytest.fixture(scope="module")
def clock_state():
    """A PPO train state on the Clock environment (reset environments, SGD optimiser state)."""
    return jax.jit(train_state.init_train_state, static_argnums=0)(PPO_CONFIG, PPO_HP, jax.random.key(0))


@pytest.fixture(scope="module")
def clock_rollout(clock_state):
    """The PPO train state with random parameters, and the rollout ``train_state.collect`` (the shared
    engine) takes from it."""
    state = clock_state.replace(params=random_params(clock_state.params, PPO_PARAMS_SEED))
    _, traj = _collect(PPO_CONFIG, state)
    return state, traj


# =============================================================================================
# 1. Rollout: bootstrap from the final observation, not the post-reset one
# =============================================================================================

def test_rollout_next_values_are_values_of_the_final_observation(clock_rollout):
    """Reference: the Clock environment simulated in NumPy from the rollout's actions and the
    critic V evaluated in NumPy on the simulated observations. Catches mutation 1
    (``next_values`` from the post-reset observation or the next step's ``obs``): at every episode
    end here V(final obs) and V(reset obs) differ by far more than the tolerance."""
    state, traj = clock_rollout
    sim = simulate_clock(np.asarray(traj.actions))
    truncated = sim["truncated"] & ~sim["terminated"]
    assert truncated.sum() >= 2 and sim["terminated"].sum() >= 1  # both kinds of ending occur
    np.testing.assert_array_equal(traj.obs, sim["obs"])
    np.testing.assert_array_equal(traj.rewards, sim["rewards"])
    np.testing.assert_array_equal(traj.terminated, sim["terminated"])
    np.testing.assert_array_equal(traj.truncated, sim["truncated"])
    np.testing.assert_array_equal(traj.next_obs, sim["final_obs"])
    params = to_numpy(state.params)
    v_final = np_network(params, sim["final_obs"])[1]
    v_reset = np_network(params, sim["reset_obs"])[1]
    np.testing.assert_allclose(traj.next_values, v_final, rtol=1e-5, atol=1e-5)
    # The mutation would be visible: at the ends the two candidates differ by a lot.
    ends = sim["terminated"] | sim["truncated"]
    assert np.all(np.abs(v_final - v_reset)[ends] > 0.05)
    assert np.all(np.abs(np.asarray(traj.next_values) - v_reset)[ends] > 0.05)
    # Inside an episode the successor is the next row's observation.
    v_obs = np_network(params, sim["obs"])[1]
    np.testing.assert_allclose(traj.values, v_obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(traj.next_values)[:-1][~ends[:-1]],
                               v_obs[1:][~ends[:-1]], rtol=1e-5, atol=1e-5)


# =============================================================================================
# 2. PPO: the loss on one fixed minibatch, and one whole update
# =============================================================================================

# Ratios r = π/π_old around and across both clip edges 1 ± ε = 0.8, 1.2, and e^{±ε} = 0.82, 1.22
# (where clipping log r instead of r would put them), with advantages of both signs.
LOSS_RATIOS = np.array([0.5, 0.79, 0.81, 0.9, 1.0, 1.1, 1.19, 1.21, 1.5, 2.0, 0.7, 1.3])
LOSS_ADVANTAGES = np.array([1.0, -0.5, 2.0, 0.3, -1.2, 0.8, 1.5, 2.5, -0.7, 1.1, -2.0, 3.0])
# V − V_old: inside and outside ±0.2; targets chosen so that either branch of the max wins.
LOSS_VALUE_MOVES = np.array([0.1, -0.5, 0.6, -0.1, 0.35, -0.3, 0.05, 0.45, -0.25, 0.15, -0.6, 0.3])
LOSS_TARGET_OFFSETS = np.array([0.2, 0.4, 0.3, -1.0, -0.2, -0.1, 0.5, -0.4, 0.1, 1.0, 0.3, -0.2])


@pytest.fixture(scope="module")
def loss_minibatch(clock_rollout):
    params = clock_rollout[0].params
    rng = np.random.default_rng(11)
    obs = rng.uniform(-1.5, 1.5, (12, 2)).astype(np.float32).astype(np.float64)
    actions = rng.integers(0, 2, 12)
    log_pi, values = np_network(to_numpy(params), obs)
    log_probs = np_log_prob(log_pi, actions)
    old_log_probs = log_probs - np.log(LOSS_RATIOS)
    old_values = values - LOSS_VALUE_MOVES
    targets = values + LOSS_TARGET_OFFSETS
    # Advantages with mean 0.5 and spread ≠ 1, so per-minibatch normalisation matters.
    batch = (obs, actions, old_log_probs, old_values, LOSS_ADVANTAGES + 0.5, targets)
    batch = tuple(np.asarray(np.asarray(x, np.float32), np.float64) if x.dtype.kind == "f" else x
                  for x in batch)
    return params, batch


@pytest.fixture(scope="module")
def ppo_loss_and_grad():
    network = setup.make_network(PPO_CONFIG)

    @jax.jit
    def run(params, batch, hparams):  # the configuration's defaults: clipped values, normalised A
        (_, aux), grads = jax.value_and_grad(ppo._loss, has_aux=True)(
            params, network, batch, hparams, None, True, True, ppo.clipped_surrogate)
        return aux, grads

    return run


def test_ppo_loss_terms_and_gradient_match_numpy_on_fixed_minibatch(loss_minibatch,
                                                                    ppo_loss_and_grad):
    """Reference: the clipped surrogate, clipped value loss and entropy in NumPy on a fixed
    minibatch (ratios on both sides of 1 ± ε, advantages of both signs, value moves inside and
    outside ±ε_v), gradients by finite differences. Catches 3a (old/new ratio, clipping log r),
    3b (value clip around the target, max → min, no clip) and 3c (no per-minibatch
    normalisation) in ``ppo._loss`` / ``losses``."""
    params, batch = loss_minibatch
    hp = hp_floats(PPO_HP)
    jbatch = ppo.Batch(*(jnp.asarray(x, jnp.float32 if x.dtype.kind == "f" else jnp.int32)
                         for x in batch))
    aux, grads = ppo_loss_and_grad(params, jbatch, PPO_HP)
    p64 = to_numpy(params)
    want = np_ppo_terms(p64, batch, hp)
    for name in ("total_loss", "policy_loss", "value_loss", "entropy", "clip_fraction",
                 "approx_kl"):
        np.testing.assert_allclose(float(aux[name]), want[name], rtol=2e-5, atol=2e-6, err_msg=name)
    want_grads = fd_grad(lambda p: np_ppo_terms(p, batch, hp)["total_loss"], p64)
    assert_trees_close(grads, want_grads, rtol=1e-4, atol=2e-6, what="gradient")
    # The data exercise every branch the mutations touch.
    obs, actions, old_log_probs, old_values, advantages, targets = batch
    _, values = np_network(p64, obs)
    clipped = old_values + np.clip(values - old_values, -0.2, 0.2)
    assert np.any((clipped - targets) ** 2 > (values - targets) ** 2 + 1e-3)  # clipped branch wins
    assert np.any((clipped - targets) ** 2 < (values - targets) ** 2 - 1e-3)  # unclipped wins
    assert abs(advantages.mean()) > 0.3 and abs(advantages.std() - 1) > 0.3


def np_ppo_update(p0, sim, actions, orders, hp, config, bootstrap_obs="final_obs",
                  normalize="minibatch"):
    """One PPO update in NumPy: behaviour log-probs and values from θ_old, GAE targets, then for
    each epoch the given order cut into minibatches, one SGD step θ ← θ − α∇L per minibatch.
    Returns (θ_new, per-step loss terms, advantages)."""
    log_pi, values = np_network(p0, sim["obs"])
    log_probs = np_log_prob(log_pi, actions)
    _, next_values = np_network(p0, sim[bootstrap_obs])
    adv = np_gae(sim["rewards"], values, next_values, sim["terminated"],
                 sim["truncated"], hp["gamma"], hp["gae_lambda"])
    targets = adv + values
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  [T, N] → [T·N], row t·N + n
    batch = [flat(x) for x in (sim["obs"], actions, log_probs, values, adv, targets)]
    if normalize == "batch":
        batch[4] = (batch[4] - batch[4].mean()) / (batch[4].std() + 1e-8)
    size = config.steps_per_update // config.minibatches
    params, steps = p0, []
    for order in orders:
        for k in range(config.minibatches):
            idx = order[k * size:(k + 1) * size]
            minibatch = tuple(x[idx] for x in batch)
            loss = lambda p: np_ppo_terms(p, minibatch, hp, config.clip_value,  # noqa: E731
                                          normalize == "minibatch")
            terms = loss(params)
            grads = fd_grad(lambda p: loss(p)["total_loss"], params)
            terms["grad_norm"] = np.sqrt(sum(np.sum(g ** 2) for g in jax.tree.leaves(grads)))
            steps.append(terms)
            params = jax.tree.map(lambda p, g: p - hp["learning_rate"] * g, params, grads)
    return params, steps, adv


@pytest.fixture(scope="module")
def ppo_update_run(clock_rollout):
    """ppo.update on the Clock environment from random parameters (its rollout is
    ``clock_rollout``'s: same state, same key), with the epochs' minibatch orders recorded from
    the production shuffle (a debug callback around it)."""
    state, traj = clock_rollout
    orders = []
    original = ppo.shuffled_minibatches

    def recording(config, batch, key):
        index = original(config, jnp.arange(config.steps_per_update), key)
        jax.debug.callback(lambda i: orders.append(np.asarray(i).ravel()), index, ordered=True)
        return original(config, batch, key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ppo, "shuffled_minibatches", recording)
        new_state, metrics = jax.jit(ppo.update, static_argnums=0)(PPO_CONFIG, state)
        jax.block_until_ready(new_state)
    return state, traj, new_state, metrics, orders


def test_ppo_update_matches_numpy_minibatch_sgd(ppo_update_run):
    """Reference: one whole PPO update in NumPy — the Clock rollout simulated from the rollout's
    actions, GAE(γ, λ) as explicit sums bootstrapping from V(final observation), advantages
    normalised per minibatch, clipped losses, finite-difference gradients and plain SGD over the
    recorded minibatch orders — against ``ppo.update``'s parameters and metrics. Catches mutation
    1 at the algorithm level (the targets change), 3a, 3b and 3c (whole-batch normalisation)."""
    state, traj, new_state, metrics, orders = ppo_update_run
    config, hp = PPO_CONFIG, hp_floats(PPO_HP)
    B = config.steps_per_update
    assert len(orders) == config.epochs
    for order in orders:  # each epoch's order is a permutation of the batch
        np.testing.assert_array_equal(np.sort(order), np.arange(B))
    actions = np.asarray(traj.actions)
    sim = simulate_clock(actions)
    assert (sim["truncated"] & ~sim["terminated"]).sum() >= 2 and sim["terminated"].sum() >= 1
    np.testing.assert_array_equal(traj.obs, sim["obs"])
    np.testing.assert_allclose(float(metrics["reward_per_step"]), sim["rewards"].mean(), rtol=1e-6)
    p0 = to_numpy(state.params)
    want_params, steps, adv = np_ppo_update(p0, sim, actions, orders, hp, config)
    np.testing.assert_allclose(float(metrics["advantage_mean"]), adv.mean(), rtol=1e-4, atol=1e-5)
    for name in ("total_loss", "policy_loss", "value_loss", "entropy", "clip_fraction",
                 "approx_kl", "grad_norm"):
        np.testing.assert_allclose(float(metrics[name]), np.mean([s[name] for s in steps]),
                                   rtol=2e-4, atol=1e-5, err_msg=name)
    tol = dict(rtol=1e-3, atol=2e-5)
    assert_trees_close(new_state.params, want_params, what="params", **tol)
    # The update really clips (both ratios and values), and the reference is sensitive to each
    # mutation by far more than the tolerance.
    assert np.mean([s["clip_fraction"] for s in steps]) > 0.05
    assert np.mean([s["value_clip_binds"] for s in steps]) > 0.05
    assert tree_max_abs_diff(new_state.params, to_numpy(state.params)) > 0.05
    reset_bootstrap, _, _ = np_ppo_update(p0, sim, actions, orders, hp, config,
                                          bootstrap_obs="reset_obs")
    batch_norm, _, _ = np_ppo_update(p0, sim, actions, orders, hp, config, normalize="batch")
    for wrong in (reset_bootstrap, batch_norm):
        assert tree_max_abs_diff(new_state.params, wrong) > 20 * tol["atol"]


# =============================================================================================
# 3. IMPALA: V-trace with π ≠ μ in the learner
# =============================================================================================

IMPALA_CONFIG = impala.Config(env_id=CLOCK_ID, num_envs=4, rollout_length=6, total_steps=24,
                              hidden_sizes=(4,), optimizer="sgd", anneal_lr=False)
# Distinct truncation levels so that each is exercised (and swapping two would show).
IMPALA_HP = hparams_as_arrays(impala.Hparams(learning_rate=0.5, gamma=0.9, lambda_=0.9,
                                             rho_bar=1.1, c_bar=0.8, pg_rho_bar=1.4,
                                             max_grad_norm=1e6, ent_coef=0.01, vf_coef=0.5))


@pytest.fixture(scope="module")
def impala_run(clock_state):
    """A trajectory from a behaviour policy μ and the learner's terms and one SGD step under π ≠ μ.
    The trajectory comes from the shared rollout program (PPO_CONFIG has the same environment,
    network and shapes as IMPALA_CONFIG)."""
    # Seeds and spread picked so that π/μ lies on both sides of ρ̄, c̄ and pg_ρ̄ and the rollout
    # has terminations and truncations (asserted in the tests).
    pi_params = random_params(clock_state.params, 4)
    mu_params = jax.tree.map(lambda m, p: p + 0.5 * m, random_params(clock_state.params, 7),
                             pi_params)
    _, traj = _collect(PPO_CONFIG, clock_state.replace(params=pi_params), mu_params)
    state = clock_state.replace(  # IMPALA's learner state: π's parameters, its optimiser state
        params=pi_params, hparams=IMPALA_HP,
        opt_state=optimiser.make_optimizer(IMPALA_CONFIG, IMPALA_HP).init(pi_params))

    @jax.jit
    def learner(state, traj):
        terms = impala.vtrace_terms(IMPALA_CONFIG, state.params, traj, state.hparams)
        terms = {k: v for k, v in terms.items() if k != "dist"}
        stepped, metrics = impala.learner_step(IMPALA_CONFIG, state, traj, IMPALA_HP.learning_rate)
        return terms, stepped.params, metrics

    terms, stepped_params, metrics = learner(state, traj)
    return pi_params, mu_params, traj, terms, stepped_params, metrics


def np_impala_reference(pi, mu, traj, hp, flip=False):
    actions = np.asarray(traj.actions)
    sim = simulate_clock(actions)
    log_pi_all, values = np_network(pi, sim["obs"])
    _, next_values = np_network(pi, sim["final_obs"])
    log_pi = np_log_prob(log_pi_all, actions)
    log_mu = np_log_prob(np_network(mu, sim["obs"])[0], actions)
    if flip:
        log_pi, log_mu = log_mu, log_pi
    vs, adv, ratio = np_vtrace(sim["rewards"], values, next_values,
                               sim["terminated"], sim["truncated"], log_pi, log_mu,
                               hp["gamma"], hp["lambda_"], hp["rho_bar"], hp["c_bar"],
                               hp["pg_rho_bar"])
    return sim, log_pi, log_mu, values, next_values, vs, adv, ratio


def np_impala_loss(params, obs, actions, vs, adv, hp):
    """−E[log π(a|x)·A] + c_v·½E[(v_s − V(x))²] − β·E[H] with v_s, A held fixed (§4.2)."""
    log_pi_all, values = np_network(params, obs)
    policy_loss = -np.mean(np_log_prob(log_pi_all, actions) * adv)
    value_loss = 0.5 * np.mean((vs - values) ** 2)
    entropy = np.mean(np_entropy(log_pi_all))
    total = policy_loss + hp["vf_coef"] * value_loss - hp["ent_coef"] * entropy
    return {"total_loss": total, "policy_loss": policy_loss, "value_loss": value_loss,
            "entropy": entropy}


def test_impala_learner_vtrace_matches_numpy_with_off_policy_ratios(impala_run):
    """Reference: ρ = π/μ from log π, log μ of the two NumPy networks, V-trace targets and
    policy-gradient advantages as explicit sums (Espeholt et al. 2018, eq. 1, with ρ̄, c̄, pg_ρ̄
    and traces cut at episode ends), compared with ``impala.vtrace_terms`` and with the ratio
    metrics of ``impala.learner_step``; ratios lie on both sides of every truncation level.
    Catches mutation 2 (log μ − log π in the learner or in ``estimators.vtrace``)."""
    pi_params, mu_params, traj, terms, _, metrics = impala_run
    hp = hp_floats(IMPALA_HP)
    pi, mu = to_numpy(pi_params), to_numpy(mu_params)
    sim, log_pi, log_mu, values, next_values, vs, adv, ratio = np_impala_reference(pi, mu, traj, hp)
    assert (sim["truncated"] & ~sim["terminated"]).sum() >= 1 and sim["terminated"].sum() >= 1
    for bar in (hp["rho_bar"], hp["c_bar"], hp["pg_rho_bar"]):
        assert 0.1 < np.mean(ratio > bar) < 0.9, (bar, np.mean(ratio > bar))
        assert np.min(np.abs(np.log(ratio) - np.log(bar))) > 1e-3  # no ratio sits on an edge
    np.testing.assert_allclose(traj.log_probs, log_mu, rtol=1e-5, atol=1e-5)  # the actors' μ
    np.testing.assert_allclose(terms["log_rhos"], log_pi - log_mu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(terms["values"], values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["next_values"], next_values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["vs"], vs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(terms["pg_advantages"], adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(metrics["rho_mean"]), ratio.mean(), rtol=1e-5)
    for name, bar in (("rho_clipped_fraction", "rho_bar"), ("c_clipped_fraction", "c_bar")):
        # a count over 24 samples as a float32 fraction (within an ulp or two of the float64 one,
        # however the program divides); one sample more or less would be off by 4 %
        np.testing.assert_allclose(float(metrics[name]), np.mean(ratio > hp[bar]), rtol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(float(metrics["approx_kl"]), np.mean(ratio - 1 - np.log(ratio)),
                               rtol=1e-4, atol=1e-6)
    # A flipped log ρ moves the targets by far more than the tolerance.
    flipped = np_impala_reference(pi, mu, traj, hp, flip=True)
    assert np.max(np.abs(flipped[5] - vs)) > 0.05 and np.max(np.abs(flipped[6] - adv)) > 0.05


def test_impala_learner_step_matches_numpy_sgd_step(impala_run):
    """Reference: the IMPALA loss (§4.2) in NumPy with the NumPy V-trace targets held fixed, its
    finite-difference gradient and one SGD step, against ``impala.learner_step``'s parameters and
    loss metrics. Catches mutation 2 at the learner's output (and a wrong sign or a missing stop-
    gradient on the V-trace targets)."""
    pi_params, mu_params, traj, _, stepped_params, metrics = impala_run
    hp = hp_floats(IMPALA_HP)
    pi, mu = to_numpy(pi_params), to_numpy(mu_params)
    sim, _, _, _, _, vs, adv, _ = np_impala_reference(pi, mu, traj, hp)
    actions = np.asarray(traj.actions)
    loss = lambda p: np_impala_loss(p, sim["obs"], actions, vs, adv, hp)  # noqa: E731
    want = loss(pi)
    for name in ("total_loss", "policy_loss", "value_loss", "entropy"):
        np.testing.assert_allclose(float(metrics[name]), want[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    grads = fd_grad(lambda p: loss(p)["total_loss"], pi)
    want_params = jax.tree.map(lambda p, g: p - hp["learning_rate"] * g, pi, grads)
    assert_trees_close(stepped_params, want_params, rtol=1e-4, atol=1e-5, what="params")
    grad_norm = np.sqrt(sum(np.sum(g ** 2) for g in jax.tree.leaves(grads)))
    np.testing.assert_allclose(float(metrics["grad_norm"]), grad_norm, rtol=1e-4)
    # With the flipped ratio the step goes elsewhere.
    flipped = np_impala_reference(pi, mu, traj, hp, flip=True)
    wrong = fd_grad(lambda p: np_impala_loss(p, sim["obs"], actions, flipped[5], flipped[6],
                                             hp)["total_loss"], pi)
    wrong_params = jax.tree.map(lambda p, g: p - hp["learning_rate"] * g, pi, wrong)
    assert tree_max_abs_diff(stepped_params, wrong_params) > 1e-3
