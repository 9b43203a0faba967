"""REINFORCE: the Gaussian "Concrete example" gradient by hand, Monte-Carlo returns and the
complete-episode mask against NumPy loops, baselines on a bandit (unbiased, lower variance), the
running-average baseline recursion, and a learning smoke test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pgjax
from pgjax import losses
from pgjax.algorithms import score_function, train_state, reinforce
from pgjax.config import hparams_as_arrays
from pgjax.networks import ActorCritic
from pgjax.rollout import Trajectory


def _trajectory(obs, actions, rewards, terminated, truncated, next_values=None, values=None):
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    shape = np.shape(rewards)
    zeros = np.zeros(shape)
    terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
    return Trajectory(obs=f32(obs), actions=jnp.asarray(actions), rewards=f32(rewards),
                      terminated=jnp.asarray(terminated), truncated=jnp.asarray(truncated),
                      log_probs=f32(zeros), values=f32(zeros if values is None else values),
                      next_obs=f32(obs), next_values=f32(zeros if next_values is None else next_values),
                      episode_done=jnp.asarray(terminated | truncated), episode_return=f32(zeros),
                      episode_length=jnp.zeros(shape, jnp.int32))


# ---------------------------------------------------------------------------------------------
# REINFORCE with a Gaussian policy of fixed σ (Sutton & Barto 2018, §13.7): θ ← θ + α G_t (A_t − μ(S_t))/σ² ∇μ(S_t)


@pytest.mark.parametrize("ent_coef", [0.0, 0.3])
def test_gaussian_score_function_gradient_matches_concrete_example(ent_coef):
    # μ(s) = Kᵀ e_s + b with one-hot features, so ∇_K μ_d(s) = e_s ⊗ e_d; σ = exp(log_std)
    rng = np.random.default_rng(0)
    num_states, dim, T, B = 5, 2, 6, 3
    network = ActorCritic(action_dim=dim, discrete=False, torso="onehot",
                          feature_args=(("num_states", num_states),))
    obs = rng.integers(0, num_states, size=(T, B, 1)).astype(np.float32)
    shapes = jax.eval_shape(network.init, jax.random.key(0), jnp.asarray(obs))
    leaves, treedef = jax.tree.flatten(shapes)
    params = jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=l.shape), jnp.float32) for l in leaves])
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])
    kernel, bias, log_std = p["policy_head"]["kernel"], p["policy_head"]["bias"], p["log_std"]
    features = np.eye(num_states)[obs[..., 0].astype(int)]   # [T, B, S]
    mu = features @ kernel + bias
    sigma2 = np.exp(2 * log_std)
    actions = mu + np.sqrt(sigma2) * rng.normal(size=(T, B, dim))
    returns = rng.normal(size=(T, B)) * 10
    mask = (rng.uniform(size=(T, B)) < 0.7).astype(np.float64)
    traj = _trajectory(obs, jnp.asarray(actions, jnp.float32), np.zeros((T, B)), np.zeros((T, B)),
                       np.zeros((T, B)))
    hparams = reinforce.Hparams(ent_coef=ent_coef)
    grads = jax.jit(jax.grad(lambda q: score_function.score_function_loss(
        q, network, traj, jnp.asarray(returns, jnp.float32), jnp.zeros((T, B)),
        jnp.asarray(mask, jnp.float32), hparams)[0]))(params)["params"]

    m = mask / mask.sum()
    score_mu = (actions - mu) / sigma2                          # ∂ log π / ∂μ
    weighted = (m * returns)[..., None] * score_mu              # [T, B, D]
    expected_kernel = -np.einsum("tbs,tbd->sd", features, weighted)
    expected_bias = -weighted.sum((0, 1))
    score_log_std = (actions - mu) ** 2 / sigma2 - 1.0          # ∂ log π / ∂ log σ
    expected_log_std = -np.einsum("tb,tbd->d", m * returns, score_log_std) - ent_coef
    np.testing.assert_allclose(grads["policy_head"]["kernel"], expected_kernel, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["policy_head"]["bias"], expected_bias, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["log_std"], expected_log_std, rtol=1e-4, atol=1e-5)


PENDULUM_FEATURES, PENDULUM_LR, PENDULUM_GAMMA, BASELINE_DECAY = 6, 1e-3, 0.9, 0.3


@pytest.fixture(scope="module")
def pendulum_updates():
    """Three REINFORCE updates (running-average baseline, plain SGD) on Pendulum with a linear
    Gaussian policy on random-projection features; for each: (state before, state after, metrics,
    the rollout the update saw — ``train_state.collect`` on the same state reproduces it)."""
    config = reinforce.Config(env_id="Pendulum-v1", baseline="running_average", torso="random_projection",
                              feature_args=(("num_features", PENDULUM_FEATURES), ("seed", 3)),
                              env_overrides=(("max_steps_in_episode", 40),), num_envs=2,
                              rollout_length=40, total_steps=80, optimizer="sgd", log_std_init=-0.5)
    hparams = hparams_as_arrays(reinforce.Hparams(learning_rate=PENDULUM_LR, gamma=PENDULUM_GAMMA,
                                                  max_grad_norm=1e9, baseline_decay=BASELINE_DECAY))
    state = jax.jit(lambda k: reinforce.init(config, hparams, k))(jax.random.key(0))
    step = jax.jit(lambda s: (reinforce.update(config, s), train_state.collect(config, s)[1]))
    out = []
    for _ in range(3):
        (new_state, metrics), traj = step(state)
        out.append((state, new_state, metrics, traj))
        state = new_state
    return out


def test_reinforce_update_on_pendulum_is_the_concrete_example_step(pendulum_updates):
    """Each update moves the policy head by α·mean_t[(G_t − b)(A_t − μ(S_t))/σ² ∇μ(S_t)], b the
    running baseline before the update (b = 0 at the first)."""
    projection = np.asarray(jax.random.normal(jax.random.key(3), (3, PENDULUM_FEATURES)), np.float64)
    projection /= np.sqrt(3)
    gamma, lr = PENDULUM_GAMMA, PENDULUM_LR
    for k, (state, new_state, metrics, traj) in enumerate(pendulum_updates):
        features = np.asarray(traj.obs, np.float64) @ projection          # [T, N, F]
        p = jax.tree.map(lambda x: np.asarray(x, np.float64), state.params["params"])
        mu = features @ p["policy_head"]["kernel"] + p["policy_head"]["bias"]
        sigma2 = np.exp(2 * p["log_std"])
        rewards, done = np.asarray(traj.rewards, np.float64), np.asarray(traj.episode_done)
        assert done[-1].all() and done.sum() == 2  # one truncated 40-step episode per env
        returns = np.zeros_like(rewards)
        for n in range(rewards.shape[1]):
            g = 0.0
            for t in reversed(range(rewards.shape[0])):
                g = rewards[t, n] + (0.0 if done[t, n] else gamma * g)  # no bootstrap without a critic
                returns[t, n] = g
        np.testing.assert_allclose(metrics["return_mean"], returns.mean(), rtol=1e-4)
        b = float(state.extra["running_baseline"])
        if k == 0:
            assert b == 0.0
        psi = returns - b
        weighted = psi[..., None] * (np.asarray(traj.actions, np.float64) - mu) / sigma2 / psi.size
        expected_kernel = p["policy_head"]["kernel"] + lr * np.einsum("tnf,tnd->fd", features, weighted)
        expected_bias = p["policy_head"]["bias"] + lr * weighted.sum((0, 1))
        new = new_state.params["params"]["policy_head"]
        assert np.abs(expected_kernel - p["policy_head"]["kernel"]).max() > 1e-3  # a real step
        np.testing.assert_allclose(new["kernel"], expected_kernel, rtol=1e-4, atol=1e-6, err_msg=f"update {k}")
        np.testing.assert_allclose(new["bias"], expected_bias, rtol=1e-4, atol=1e-6, err_msg=f"update {k}")


def test_running_average_baseline_is_updated_after_the_step(pendulum_updates):
    b = 0.0
    for state, new_state, metrics, _ in pendulum_updates:
        assert metrics["valid_fraction"] == 1.0
        # the step used the baseline from *before* this update's returns (the program's float32
        # recursion, with 0.3 rounded to float32, against this float64 one: a few ulps apart,
        # measured up to 4e-7 relative, hence 1e-5 as below)
        np.testing.assert_allclose(metrics["baseline_mean"], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.extra["running_baseline"], b, rtol=1e-5, atol=1e-6)
        b = b + BASELINE_DECAY * (float(metrics["return_mean"]) - b)
        np.testing.assert_allclose(new_state.extra["running_baseline"], b, rtol=1e-5)
    assert b < -10.0  # Pendulum returns are negative


# ---------------------------------------------------------------------------------------------
# returns and the complete-episode mask


def _np_returns(rewards, bootstrap, terminated, truncated, gamma):
    T, B = rewards.shape
    out = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            g, scale = 0.0, 1.0
            for j in range(t, T):
                g += scale * rewards[j, b]
                if terminated[j, b]:
                    break
                if truncated[j, b] or j == T - 1:
                    g += scale * gamma * bootstrap[j, b]
                    break
                scale *= gamma
            out[t, b] = g
    return out


def _np_mask(done):
    T, B = done.shape
    return np.array([[float(done[t:, b].any()) for b in range(B)] for t in range(T)])


@pytest.mark.parametrize("baseline", ["learned", "none", "running_average"])
def test_returns_and_mask_match_numpy_loops(baseline):
    rng = np.random.default_rng(4)
    T, B = 8, 4
    terminated = np.zeros((T, B), bool)
    truncated = np.zeros((T, B), bool)
    terminated[2, 0] = terminated[6, 0] = True   # two complete episodes, then an open one
    truncated[4, 1] = True                       # a time limit, then an open episode
    terminated[1, 2] = truncated[5, 2] = True    # a termination then a truncation
    # column 3: no episode ends inside the segment
    rewards = rng.normal(size=(T, B))
    next_values = rng.normal(size=(T, B)) * 5
    traj = _trajectory(np.zeros((T, B, 1)), np.zeros((T, B), np.int32), rewards, terminated, truncated,
                       next_values=next_values)
    config = reinforce.Config(env_id="CartPole-v1", baseline=baseline, num_envs=B, rollout_length=T,
                              total_steps=T * B)
    gamma = 0.9
    returns, mask = reinforce.returns_and_mask(config, traj, gamma)
    bootstrap = next_values if baseline == "learned" else np.zeros((T, B))
    expected = _np_returns(rewards, bootstrap, terminated, truncated, gamma)
    np.testing.assert_allclose(np.asarray(returns), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(mask), _np_mask(terminated | truncated))
    np.testing.assert_array_equal(np.asarray(mask)[:, 3], 0.0)
    np.testing.assert_array_equal(np.asarray(mask)[:, 0], [1, 1, 1, 1, 1, 1, 1, 0])
    # the truncated episode of column 1: bootstrapped from V(final obs) only with a learned critic
    g_plain = sum(gamma**k * rewards[k, 1] for k in range(5))
    bonus = gamma**5 * next_values[4, 1]
    np.testing.assert_allclose(float(returns[0, 1]), g_plain + (bonus if baseline == "learned" else 0.0),
                               rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# baselines on a 5-armed bandit


def test_baselines_keep_the_gradient_unbiased_and_a_learned_one_cuts_variance():
    k, n = 5, 20_000
    logits = jnp.asarray([0.5, -0.3, 0.0, 0.8, -1.0])
    arm_means = np.arange(1.0, 6.0) + 10.0          # large offset: no-baseline variance is large
    probs = np.asarray(jax.nn.softmax(logits), np.float64)
    true_grad = probs * (arm_means - probs @ arm_means)  # ∇_h E[r] for a softmax policy

    def sample(key, size):
        a_key, r_key = jax.random.split(key)
        actions = jax.random.categorical(a_key, logits, shape=(size,))
        rewards = jnp.asarray(arm_means, jnp.float32)[actions] + jax.random.normal(r_key, (size,))
        return actions, rewards

    actions, rewards = sample(jax.random.key(0), n)
    # the "learned" state value: V_w regressed on the rewards of a separate batch by SGD
    _, fit_rewards = sample(jax.random.key(1), 2_000)
    w = jnp.asarray(0.0)
    value_grad = jax.jit(jax.grad(lambda w: losses.value_loss(jnp.broadcast_to(w, fit_rewards.shape),
                                                                fit_rewards)))
    for _ in range(100):
        w = w - 0.2 * value_grad(w)
    learned = float(w)
    assert abs(learned - probs @ arm_means) < 0.2

    def per_sample_gradient(a, psi):
        # ∇_h of −L^{PG} for one sample: Ψ·∇ log π(a)
        loss = lambda h: losses.policy_gradient_loss(jax.nn.log_softmax(h)[a][None], psi[None])
        return -jax.grad(loss)(logits)

    grads = jax.jit(jax.vmap(per_sample_gradient))
    estimates = {name: np.asarray(grads(actions, rewards - b), np.float64)
                 for name, b in [("none", 0.0), ("constant", float(probs @ arm_means)), ("learned", learned)]}
    for name, g in estimates.items():
        mean, se = g.mean(0), g.std(0) / np.sqrt(n)
        assert np.all(np.abs(mean - true_grad) < 4 * se), (name, mean, true_grad, se)
    for other in ("constant", "learned"):  # paired: the same samples, only Ψ differs
        diff = estimates["none"] - estimates[other]
        assert np.all(np.abs(diff.mean(0)) < 4 * diff.std(0) / np.sqrt(n) + 1e-12), other
    variance = {name: np.trace(np.cov(g.T)) for name, g in estimates.items()}
    assert variance["learned"] < variance["none"] / 10, variance
    assert variance["constant"] < variance["none"] / 10, variance


# ---------------------------------------------------------------------------------------------
# loss_reduction="sum": Sutton & Barto's per-episode sum of step updates


def _corridor_state(config, policy_bias, value_bias):
    state = reinforce.init(config, hparams_as_arrays(reinforce.Hparams(
        learning_rate=0.01, critic_learning_rate=0.05, max_grad_norm=1e9, gamma=1.0)),
        jax.random.key(3))
    p = state.params["params"]
    p = {**p, "policy_head": {**p["policy_head"], "bias": jnp.asarray(policy_bias, jnp.float32)},
         "value_head": {**p["value_head"], "bias": jnp.asarray([value_bias], jnp.float32)}}
    return state.replace(params={"params": p})


def test_sum_reduction_is_the_textbook_sum_of_step_updates():
    """ShortCorridor (every observation is [1], which one-hot features with num_states=1 map to
    the zero vector, so the policy is softmax(b_π) and the baseline is the scalar b_v) with plain
    SGD: one update must move b_π by α^θ Σ_t (G_t − b_v)(e_{A_t} − π) and b_v by α^w Σ_t (G_t − b_v)
    over the steps whose episode ends in the segment (S&B 2018, §13.4 box, γ = 1; the default
    mean reduction divides this by their number). Reference: NumPy loops over the trajectory."""
    config = reinforce.Config(env_id="ShortCorridor-v0", baseline="learned", torso="onehot",
                              feature_args=(("num_states", 1),), optimizer="sgd", num_envs=2,
                              rollout_length=40, total_steps=80, loss_reduction="sum")
    policy_bias, value_bias = np.array([0.2, -0.1]), -4.0
    state = _corridor_state(config, policy_bias, value_bias)
    _, traj = jax.jit(train_state.collect, static_argnums=0)(config, state)  # update's rollout key
    new_state, _ = jax.jit(reinforce.update, static_argnums=0)(config, state)
    rewards, done = np.asarray(traj.rewards, np.float64), np.asarray(traj.episode_done)
    actions = np.asarray(traj.actions)
    T, B = rewards.shape
    probs = np.exp(policy_bias) / np.exp(policy_bias).sum()
    d_policy, d_value, count = np.zeros(2), 0.0, 0
    for b in range(B):
        g, complete = 0.0, False
        for t in reversed(range(T)):
            if done[t, b]:
                g, complete = 0.0, True
            g += rewards[t, b]
            if complete:
                d_policy += (g - value_bias) * (np.eye(2)[actions[t, b]] - probs)
                d_value += g - value_bias
                count += 1
    assert 0 < count < T * B  # some steps complete, some are masked
    p = new_state.params["params"]
    np.testing.assert_allclose(np.asarray(p["policy_head"]["bias"]) - policy_bias,
                               0.01 * d_policy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(p["value_head"]["bias"][0]) - value_bias,
                               0.05 * d_value, rtol=1e-4, atol=1e-6)
    assert float(new_state.hparams.vf_coef) == 1.0  # the scaling does not leak into the state


# ---------------------------------------------------------------------------------------------
# learning smoke test


def test_reinforce_with_learned_baseline_learns_cartpole():
    config = reinforce.Config(env_id="CartPole-v1", baseline="learned",
                              env_overrides=(("max_steps_in_episode", 200),), num_envs=8,
                              rollout_length=200, total_steps=1600 * 40)
    hparams = hparams_as_arrays(reinforce.Hparams(learning_rate=3e-3, critic_learning_rate=3e-3))
    train = jax.jit(pgjax.make_train(config))
    for seed in (0, 1):
        _, metrics = train(jax.random.key(seed), hparams)
        returns = np.asarray(metrics["episode_return"])
        early, late = np.nanmean(returns[:3]), np.nanmean(returns[-10:])
        print("early", early, "late", late)
        assert early < 40, early          # a random policy lasts ~22 steps
        assert late > 100 and late > 3 * early, (early, late)
