"""pgjax's estimators, losses and distributions against rlax, where rlax has a counterpart.

rlax is an optional test dependency (``pip install -e ".[compare]"``); without it this module is
skipped. The conventions differ (docs/coming-from-rlax.md), so each comparison maps pgjax's
inputs onto rlax's:

- pgjax is time-major ``[T, *batch]``; rlax takes one trajectory ``[T]``: vmap over the batch axis.
- pgjax keeps ``next_values[t] = V(s'_t)`` (the pre-reset final observation where an episode
  ended), ``discounts = γ·(1 − terminated)`` and ``dones = terminated | truncated`` apart. rlax's
  GAE and V-trace bootstrap from the *next row's* value, and its recursions cut nothing but a zero
  discount. The mapping that keeps a truncation correct:

  * a per-step ``λ_t = λ·(1 − dones_t)`` stops every trace / n-step sum at an episode end
    (rlax accepts a vector λ in lambda_returns, GAE, n-step and V-trace);
  * GAE and V-trace: the bootstrap of V(final observation) is folded into the reward,
    ``r'_t = r_t + discounts_t·(next_values_t − values_{t+1})``, with ``values_T = next_values_{T−1}``.
    Inside an episode of a real rollout ``next_values_t == values_{t+1}`` so the fold is 0; at a
    termination the discount is 0; only a truncation changes the reward;
  * lambda_returns, n-step: rlax takes the bootstrap values per step (``v_t``), so
    ``v_t = next_values`` needs no fold;
  * discounted_returns has neither a vector λ nor per-step bootstraps: each episode piece of the
    segment is its own rlax trajectory (right-aligned in a ``[T]`` array so that all pieces vmap),
    bootstrapping from V(final observation) at a truncation or the segment's end and from 0 at a
    termination (its discount is 0).

The random segments have terminations AND truncations in mid-trajectory in every column, and the
values are consistent as in a real rollout (``next_values[t] == values[t+1]`` inside an episode,
V(final observation) at an episode end). ``test_*_naive_mapping_differs`` show that the mapping
matters: treating a truncation as a termination, or ignoring it, disagrees with pgjax.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

try:
    with warnings.catch_warnings():  # tfp-nightly's jax backend uses deprecated jax internals
        warnings.simplefilter("ignore", DeprecationWarning)
        import rlax
except ModuleNotFoundError:
    pytest.skip("rlax is not installed (pip install -e '.[compare]')", allow_module_level=True)
except Exception as error:  # noqa: BLE001 - rlax pulls distrax and an unpinned tfp-nightly
    pytest.skip(f"rlax does not import next to this jax: {type(error).__name__}: {error}",
                allow_module_level=True)

from pgjax import estimators, losses  # noqa: E402
from pgjax.distributions import Categorical, DiagGaussian  # noqa: E402

# rlax.softmax / gaussian_diagonal / categorical_kl_divergence warn that they will move to distrax
pytestmark = pytest.mark.filterwarnings("ignore:Rlax .* will be deprecated")

T, N = 23, 6
GAMMA = 0.97
TOL = dict(rtol=1e-5, atol=1e-5)  # float32 throughout


def make_segment(seed: int, t: int = T, n: int = N) -> dict[str, np.ndarray]:
    """A rollout-like segment ``[t, n]`` (float32): terminations and truncations in every column."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(t, n))
    u = rng.random(size=(t, n))
    terminated = u < 0.08
    truncated = (u >= 0.08) & (u < 0.16)
    terminated[5], truncated[5] = True, False          # every column has both, mid-segment
    terminated[12], truncated[12] = False, True
    terminated[13], truncated[13] = False, False
    dones = terminated | truncated
    values = rng.normal(size=(t, n))                    # V(s_t)
    final_values = rng.normal(size=(t, n))              # V(final observation) at an episode end
    next_values = np.concatenate([values[1:], rng.normal(size=(1, n))], axis=0)
    next_values = np.where(dones, final_values, next_values)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return dict(rewards=f32(rewards), values=f32(values), next_values=f32(next_values),
                discounts=f32(GAMMA * (1.0 - terminated)), dones=f32(dones),
                terminated=f32(terminated), truncated=f32(truncated),
                log_rhos=f32(0.6 * rng.normal(size=(t, n))))


def folded(seg):
    """rlax's ``values[0..T]`` and the rewards with the truncation bootstrap folded in."""
    values_ext = np.concatenate([seg["values"], seg["next_values"][-1:]], axis=0)  # [T+1, N]
    rewards = seg["rewards"] + seg["discounts"] * (seg["next_values"] - values_ext[1:])
    return values_ext, rewards


def over_batch(fn, *args):
    """Apply an rlax function of single ``[T]`` trajectories to every column of ``[T, N]``
    (scalar arguments are shared)."""
    in_axes = tuple(1 if np.ndim(a) >= 2 else None for a in args)
    return jax.vmap(fn, in_axes=in_axes, out_axes=1)(*args)


SEEDS = [0, 1, 2]


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **TOL)


# ----------------------------------------------------------------------------------------------
# Estimators
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lam", [0.0, 0.9, 1.0])
def test_gae(seed, lam):
    s = make_segment(seed)
    ours = estimators.gae(s["rewards"], s["values"], s["next_values"], s["discounts"], s["dones"],
                          lam)
    values_ext, rewards = folded(s)
    theirs = over_batch(rlax.truncated_generalized_advantage_estimation,
                        rewards, s["discounts"], lam * (1.0 - s["dones"]), values_ext)
    assert_close(ours, theirs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_lambda_returns(seed, lam):
    s = make_segment(seed)
    ours = estimators.lambda_returns(s["rewards"], s["next_values"], s["discounts"], s["dones"], lam)
    theirs = over_batch(rlax.lambda_returns, s["rewards"], s["discounts"], s["next_values"],
                        lam * (1.0 - s["dones"]))
    assert_close(ours, theirs)


def episode_pieces(dones_column):
    """(start, end) of each episode piece of one column; the segment's last row ends one."""
    ends = [t for t in range(len(dones_column)) if dones_column[t] or t == len(dones_column) - 1]
    starts = [0] + [e + 1 for e in ends[:-1]]
    return list(zip(starts, ends))


@pytest.mark.parametrize("seed", SEEDS)
def test_discounted_returns(seed):
    s = make_segment(seed)
    ours = estimators.discounted_returns(s["rewards"], s["next_values"], s["discounts"], s["dones"])
    # every episode piece becomes one rlax trajectory, right-aligned in [T] so that all vmap
    pieces = [(col, start, end) for col in range(N) for start, end in episode_pieces(s["dones"][:, col])]
    r = np.zeros((len(pieces), T), np.float32)
    d = np.zeros((len(pieces), T), np.float32)
    bootstrap = np.zeros(len(pieces), np.float32)
    for i, (col, start, end) in enumerate(pieces):
        length = end - start + 1
        r[i, T - length:] = s["rewards"][start:end + 1, col]
        d[i, T - length:] = s["discounts"][start:end + 1, col]
        bootstrap[i] = s["next_values"][end, col]  # V(final obs); its discount is 0 if terminal
    out = np.asarray(jax.vmap(rlax.discounted_returns)(r, d, bootstrap))
    theirs = np.zeros((T, N), np.float32)
    for i, (col, start, end) in enumerate(pieces):
        theirs[start:end + 1, col] = out[i, T - (end - start + 1):]
    assert len(pieces) > 3 * N  # the segments really are cut into several episodes
    assert_close(ours, theirs)
    # the same, as rlax.lambda_returns with λ_t = 1 − dones_t (no splitting needed)
    alt = over_batch(rlax.lambda_returns, s["rewards"], s["discounts"], s["next_values"],
                     1.0 - s["dones"])
    assert_close(ours, alt)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 5, T])
def test_n_step_returns(seed, n):
    s = make_segment(seed)
    ours = estimators.n_step_returns(s["rewards"], s["next_values"], s["discounts"], s["dones"], n)
    theirs = over_batch(lambda r, d, v, lam: rlax.n_step_bootstrapped_returns(r, d, v, n, lam),
                        s["rewards"], s["discounts"], s["next_values"], 1.0 - s["dones"])
    assert_close(ours, theirs)


@pytest.mark.parametrize("seed", SEEDS)
def test_td_errors(seed):
    s = make_segment(seed)
    ours = estimators.td_errors(s["rewards"], s["values"], s["next_values"], s["discounts"])
    td = jax.vmap(jax.vmap(rlax.td_learning))  # rlax.td_learning is per scalar transition
    assert_close(ours, td(s["values"], s["rewards"], s["discounts"], s["next_values"]))


def rlax_vtrace(s, lam, rho_bar, pg_rho_bar):
    values_ext, rewards = folded(s)

    def one(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_t):
        return rlax.vtrace_td_error_and_advantage(
            v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_t, clip_rho_threshold=rho_bar,
            clip_pg_rho_threshold=pg_rho_bar)

    out = over_batch(one, s["values"], values_ext[1:], rewards, s["discounts"],
                     np.exp(s["log_rhos"]), lam * (1.0 - s["dones"]))
    return out.errors + s["values"], out.pg_advantage


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rho_bar,pg_rho_bar", [(1.0, 1.0), (1.5, 0.8)])
def test_vtrace(seed, rho_bar, pg_rho_bar):
    """λ = 1, c̄ = 1 (rlax fixes c̄ = 1): targets and policy-gradient advantages agree."""
    s = make_segment(seed)
    vs, pg = estimators.vtrace(s["rewards"], s["values"], s["next_values"], s["discounts"],
                               s["dones"], s["log_rhos"], lambda_=1.0, rho_bar=rho_bar, c_bar=1.0,
                               pg_rho_bar=pg_rho_bar)
    vs_rlax, pg_rlax = rlax_vtrace(s, 1.0, rho_bar, pg_rho_bar)
    assert_close(vs, vs_rlax)
    assert_close(pg, pg_rlax)


@pytest.mark.parametrize("seed", SEEDS)
def test_vtrace_lambda_below_one(seed):
    """λ < 1: the targets v_s still agree. The policy-gradient advantages differ by design: pgjax
    bootstraps q_s = r_s + γ_s·v_{s+1} (Espeholt et al. 2018, §4.2), rlax from the λ-mixture
    λ·v_{s+1} + (1 − λ)·V(x_{s+1}). The difference is exactly
    min(pg_ρ̄, ρ_s)·γ_s·(1 − λ)·(v_{s+1} − V(x_{s+1})) inside an episode, and 0 at its end."""
    s = make_segment(seed)
    lam, pg_rho_bar = 0.8, 1.0
    vs, pg = estimators.vtrace(s["rewards"], s["values"], s["next_values"], s["discounts"],
                               s["dones"], s["log_rhos"], lambda_=lam, pg_rho_bar=pg_rho_bar)
    vs_rlax, pg_rlax = rlax_vtrace(s, lam, 1.0, pg_rho_bar)
    assert_close(vs, vs_rlax)
    cont = 1.0 - s["dones"]
    cont[-1] = 0.0
    vs_next = np.concatenate([np.asarray(vs)[1:], np.zeros((1, N), np.float32)])
    v_next = np.concatenate([s["values"][1:], np.zeros((1, N), np.float32)])
    expected_gap = (np.minimum(pg_rho_bar, np.exp(s["log_rhos"])) * s["discounts"] * (1 - lam)
                    * cont * (vs_next - v_next))
    assert np.abs(expected_gap).max() > 1e-2  # the two really differ here
    assert_close(np.asarray(pg) - np.asarray(pg_rlax), expected_gap)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lam", [0.6, 1.0])
def test_vtrace_without_clipping_is_importance_corrected_td_errors(seed, lam):
    """rlax's per-decision importance-sampled errors are V-trace's ``vs − values`` with
    ρ̄ = c̄ = ∞. rlax cuts a trace only at a zero discount, so here every episode end is a
    termination (``dones = terminated``) and V(s') is the next row's value."""
    try:
        from rlax._src.multistep import importance_corrected_td_errors
    except ImportError:
        pytest.skip("this rlax has no importance_corrected_td_errors")
    s = make_segment(seed)
    values_ext = np.concatenate([s["values"], s["next_values"][-1:]], axis=0)
    vs, _ = estimators.vtrace(s["rewards"], s["values"], values_ext[1:], s["discounts"],
                              s["terminated"], s["log_rhos"], lambda_=lam, rho_bar=jnp.inf,
                              c_bar=jnp.inf)
    theirs = over_batch(importance_corrected_td_errors, s["rewards"], s["discounts"],
                        np.exp(s["log_rhos"]), lam, values_ext)
    assert_close(vs - s["values"], theirs)


def test_gae_naive_mapping_differs():
    """The classic bugs: a truncation mapped as a termination (discount 0, no fold), or not cut
    at all, disagree with pgjax exactly at and before truncations, and only there."""
    s = make_segment(0)
    ours = np.asarray(estimators.gae(s["rewards"], s["values"], s["next_values"], s["discounts"],
                                     s["dones"], 0.95))
    values_ext = np.concatenate([s["values"], s["next_values"][-1:]], axis=0)
    as_terminal = over_batch(rlax.truncated_generalized_advantage_estimation, s["rewards"],
                             GAMMA * (1.0 - s["dones"]), 0.95, values_ext)
    not_cut = over_batch(rlax.truncated_generalized_advantage_estimation, s["rewards"],
                         s["discounts"], 0.95, values_ext)
    for wrong in (as_terminal, not_cut):
        differs = ~np.isclose(ours, np.asarray(wrong), **TOL)
        assert differs[12].all()  # every column is truncated at row 12
        for col in range(N):      # after a column's last truncation the three agree
            last = np.flatnonzero(s["truncated"][:, col]).max()
            assert not differs[last + 1:, col].any()


# ----------------------------------------------------------------------------------------------
# Losses and distributions
# ----------------------------------------------------------------------------------------------

def make_policy_batch(seed, b=64, a=5):
    rng = np.random.default_rng(100 + seed)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return dict(logits=f32(rng.normal(size=(b, a))), old_logits=f32(rng.normal(size=(b, a))),
                actions=rng.integers(0, a, size=b).astype(np.int32),
                advantages=f32(rng.normal(size=b)), values=f32(rng.normal(size=b)),
                targets=f32(rng.normal(size=b)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip_eps", [0.1, 0.2])
def test_ppo_clip_loss(seed, clip_eps):
    """pgjax takes log-probabilities, rlax the ratios; value and gradient w.r.t. the new
    log-probabilities agree (old logits far from the new ones, so many ratios are clipped)."""
    p = make_policy_batch(seed)
    old_log_probs = Categorical(logits=p["old_logits"]).log_prob(p["actions"])

    def ours(logits):
        return losses.ppo_clip_loss(Categorical(logits=logits).log_prob(p["actions"]),
                                    old_log_probs, p["advantages"], clip_eps)

    def theirs(logits):
        ratio = jnp.exp(Categorical(logits=logits).log_prob(p["actions"]) - old_log_probs)
        return rlax.clipped_surrogate_pg_loss(ratio, p["advantages"], clip_eps)

    assert_close(ours(p["logits"]), theirs(p["logits"]))
    assert_close(jax.grad(ours)(p["logits"]), jax.grad(theirs)(p["logits"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_policy_gradient_loss(seed):
    p = make_policy_batch(seed)
    ones = jnp.ones_like(p["advantages"])

    def ours(logits):
        return losses.policy_gradient_loss(Categorical(logits=logits).log_prob(p["actions"]),
                                           p["advantages"])

    def theirs(logits):
        return rlax.policy_gradient_loss(logits, p["actions"], p["advantages"], ones)

    assert_close(ours(p["logits"]), theirs(p["logits"]))
    assert_close(jax.grad(ours)(p["logits"]), jax.grad(theirs)(p["logits"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_policy_gradient_loss_with_signed_weights(seed):
    """rlax's weights of either sign go into pgjax's advantages (its mask only selects steps)."""
    p = make_policy_batch(seed)
    weights = jnp.asarray(np.random.default_rng(seed).normal(size=p["advantages"].shape),
                          jnp.float32)
    assert bool((weights < 0).any())

    def ours(logits):
        return losses.policy_gradient_loss(Categorical(logits=logits).log_prob(p["actions"]),
                                           p["advantages"] * weights)

    def theirs(logits):
        return rlax.policy_gradient_loss(logits, p["actions"], p["advantages"], weights)

    assert_close(ours(p["logits"]), theirs(p["logits"]))
    assert_close(jax.grad(ours)(p["logits"]), jax.grad(theirs)(p["logits"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_entropy_is_minus_rlax_entropy_loss(seed):
    """pgjax returns +H (a bonus to subtract), rlax's entropy_loss −H (a loss to add)."""
    p = make_policy_batch(seed)
    ones = jnp.ones(p["logits"].shape[0])

    def ours(logits):
        return losses.entropy(Categorical(logits=logits))

    def theirs(logits):
        return rlax.entropy_loss(logits, ones)

    assert_close(ours(p["logits"]), -theirs(p["logits"]))
    assert_close(jax.grad(ours)(p["logits"]), -jax.grad(theirs)(p["logits"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_is_mean_l2_loss(seed):
    p = make_policy_batch(seed)
    assert_close(losses.value_loss(p["values"], p["targets"]),
                 jnp.mean(rlax.l2_loss(p["values"], p["targets"])))
    assert_close(jax.grad(losses.value_loss)(p["values"], p["targets"]),
                 jax.grad(lambda v: jnp.mean(rlax.l2_loss(v, p["targets"])))(p["values"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_categorical(seed):
    p = make_policy_batch(seed)
    new, old = Categorical(logits=p["logits"]), Categorical(logits=p["old_logits"])
    softmax = rlax.softmax()
    assert_close(new.log_prob(p["actions"]), softmax.logprob(p["actions"], p["logits"]))
    assert_close(new.entropy(), softmax.entropy(p["logits"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kl = rlax.categorical_kl_divergence(p["old_logits"], p["logits"])  # KL[old ‖ new]
    assert_close(old.kl(new), kl)
    assert_close(losses.mean_kl(old, new), jnp.mean(kl))


@pytest.mark.parametrize("seed", SEEDS)
def test_diag_gaussian(seed):
    rng = np.random.default_rng(200 + seed)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    mean, mean2, actions = (f32(rng.normal(size=(32, 3))) for _ in range(3))
    log_std, log_std2 = f32(0.3 * rng.normal(size=(32, 3))), f32(0.3 * rng.normal(size=(32, 3)))
    gaussian = rlax.gaussian_diagonal()
    ours = DiagGaussian(mean, log_std)
    assert_close(ours.log_prob(actions), gaussian.logprob(actions, mean, jnp.exp(log_std)))
    assert_close(ours.entropy(), gaussian.entropy(mean, jnp.exp(log_std)))
    assert_close(ours.kl(DiagGaussian(mean2, log_std2)),
                 gaussian.kl(mean, jnp.exp(log_std), mean2, jnp.exp(log_std2)))
