"""The math layer's one error family (pgjax.errors): every public function of the estimators,
losses, distributions, diagnostics and trust-region modules refuses a bad shape, rank or dtype
with a :class:`~pgjax.errors.ShapeError` or :class:`~pgjax.errors.DtypeError` that names the
function and the argument, never a bare ``AssertionError`` (chex) or an error from inside JAX."""

from __future__ import annotations

import doctest
import inspect
import pickle

import jax
import jax.numpy as jnp
import pytest

from pgjax import diagnostics, errors, estimators, losses, trust_region
from pgjax.distributions import Categorical, DiagGaussian
from pgjax.errors import (ArgumentError, ArgumentTypeError, ArgumentValueError, DtypeError,
                          ShapeError)

T, B = 5, 3
F = jnp.zeros((T, B))                  # a good per-step array
WIDE = jnp.zeros((T, B + 1))           # the wrong shape
DEEP = jnp.zeros((T, B, 1))            # the wrong rank
INT = jnp.zeros((T, B), jnp.int32)     # the wrong dtype
SCALAR = jnp.float32(1.0)
CAT = Categorical(jnp.zeros((T, B, 4)))
GAUSS = DiagGaussian(jnp.zeros((T, B, 2)), jnp.zeros(2))
ACTIONS = jnp.zeros((T, B), jnp.int32)
KEY = jax.random.key(0)
PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}


def _kl_of(params):
    return jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2)


# (public name, call, error class, .function, .argument)
CASES = [
    # estimators: shape, rank, dtype and the scalar-only hyperparameters
    ("discounted_returns", lambda: estimators.discounted_returns(F, WIDE, F, F), ShapeError,
     "discounted_returns", "next_values"),
    ("discounted_returns", lambda: estimators.discounted_returns(F, F, F, DEEP), ShapeError,
     "discounted_returns", "dones"),
    ("discounted_returns", lambda: estimators.discounted_returns(SCALAR, SCALAR, SCALAR, SCALAR),
     ShapeError, "discounted_returns", "rewards"),
    ("discounted_returns", lambda: estimators.discounted_returns(INT, F, F, F), DtypeError,
     "discounted_returns", "rewards"),
    ("discounted_returns", lambda: estimators.discounted_returns(F, F, F, jnp.zeros((T, B), complex)),
     DtypeError, "discounted_returns", "dones"),
    ("lambda_returns", lambda: estimators.lambda_returns(F, F, F, F, jnp.zeros(T)), ShapeError,
     "lambda_returns", "lambda_"),
    ("lambda_returns", lambda: estimators.lambda_returns(F, F, INT, F, 0.9), DtypeError,
     "lambda_returns", "discounts"),
    ("n_step_returns", lambda: estimators.n_step_returns(F, DEEP, F, F, 2), ShapeError,
     "n_step_returns", "next_values"),
    ("n_step_returns", lambda: estimators.n_step_returns(F, INT, F, F, 2), DtypeError,
     "n_step_returns", "next_values"),
    ("td_errors", lambda: estimators.td_errors(F, WIDE, F, F), ShapeError, "td_errors", "values"),
    ("td_errors", lambda: estimators.td_errors(F, F, F, INT), DtypeError, "td_errors", "discounts"),
    ("gae", lambda: estimators.gae(F, F, F, jnp.zeros(B), F, 0.9), ShapeError, "gae", "discounts"),
    ("gae", lambda: estimators.gae(F, INT, F, F, F, 0.9), DtypeError, "gae", "values"),
    ("vtrace", lambda: estimators.vtrace(F, F, F, F, F, WIDE), ShapeError, "vtrace", "log_rhos"),
    ("vtrace", lambda: estimators.vtrace(F, F, F, F, F, F, c_bar=jnp.ones(2)), ShapeError,
     "vtrace", "c_bar"),
    ("vtrace", lambda: estimators.vtrace(F, F, F, F, F, INT), DtypeError, "vtrace", "log_rhos"),
    ("explained_variance", lambda: estimators.explained_variance(F, WIDE), ShapeError,
     "explained_variance", "targets"),
    ("explained_variance", lambda: estimators.explained_variance(INT, F), DtypeError,
     "explained_variance", "predictions"),
    # losses: shape, rank (a [B] against [B, 1] would broadcast), dtype, mask, scalar ε
    ("policy_gradient_loss", lambda: losses.policy_gradient_loss(F, DEEP), ShapeError,
     "policy_gradient_loss", "advantages"),
    ("policy_gradient_loss", lambda: losses.policy_gradient_loss(INT, F), DtypeError,
     "policy_gradient_loss", "log_probs"),
    ("ppo_clip_loss", lambda: losses.ppo_clip_loss(F, F, F, 0.2, mask=WIDE), ShapeError,
     "ppo_clip_loss", "mask"),
    ("ppo_clip_loss", lambda: losses.ppo_clip_loss(F, F, F, jnp.full(2, 0.2)), ShapeError,
     "ppo_clip_loss", "clip_eps"),
    ("ppo_clip_loss", lambda: losses.ppo_clip_loss(F, INT, F, 0.2), DtypeError, "ppo_clip_loss",
     "old_log_probs"),
    ("ppo_kl_penalty_loss", lambda: losses.ppo_kl_penalty_loss(F, F, WIDE, 1.0), ShapeError,
     "ppo_kl_penalty_loss", "advantages"),
    ("ppo_kl_penalty_loss", lambda: losses.ppo_kl_penalty_loss(F, F, F, jnp.ones(2)), ShapeError,
     "ppo_kl_penalty_loss", "beta"),
    ("ppo_kl_penalty_loss", lambda: losses.ppo_kl_penalty_loss(INT, F, F, 1.0), DtypeError,
     "ppo_kl_penalty_loss", "log_probs"),
    ("importance_sampled_surrogate", lambda: losses.importance_sampled_surrogate(F, F, WIDE),
     ShapeError, "importance_sampled_surrogate", "advantages"),
    ("importance_sampled_surrogate", lambda: losses.importance_sampled_surrogate(F, F, INT),
     DtypeError, "importance_sampled_surrogate", "advantages"),
    ("value_loss", lambda: losses.value_loss(F, F, DEEP, 0.2), ShapeError, "value_loss",
     "old_values"),
    ("value_loss", lambda: losses.value_loss(F, INT), DtypeError, "value_loss", "targets"),
    ("entropy", lambda: losses.entropy(CAT, mask=F[0]), ShapeError, "entropy", "mask"),
    ("entropy", lambda: losses.entropy(Categorical(INT[..., None])), DtypeError,
     "Categorical.entropy", "logits"),
    ("mean_kl", lambda: losses.mean_kl(CAT, Categorical(jnp.zeros((T, B, 5)))), ShapeError,
     "Categorical.kl", "other_logits"),
    ("mean_kl", lambda: losses.mean_kl(GAUSS, GAUSS, mask=WIDE), ShapeError, "mean_kl", "mask"),
    ("mean_kl", lambda: losses.mean_kl(GAUSS, DiagGaussian(jnp.zeros((T, B, 2), jnp.int32),
                                                            jnp.zeros(2))),
     DtypeError, "DiagGaussian.kl", "mean"),
    ("approx_kl", lambda: losses.approx_kl(F, WIDE), ShapeError, "approx_kl", "old_log_probs"),
    ("approx_kl", lambda: losses.approx_kl(INT, F), DtypeError, "approx_kl", "log_probs"),
    ("clip_fraction", lambda: losses.clip_fraction(F, F, 0.2, mask=DEEP), ShapeError,
     "clip_fraction", "mask"),
    ("clip_fraction", lambda: losses.clip_fraction(F, INT, 0.2), DtypeError, "clip_fraction",
     "old_log_probs"),
    ("masked_mean", lambda: losses.masked_mean(F, mask=WIDE), ShapeError, "masked_mean", "mask"),
    ("masked_mean", lambda: losses.masked_mean(INT), DtypeError, "masked_mean", "x"),
    # distributions
    ("Categorical.log_prob", lambda: CAT.log_prob(ACTIONS[0]), ShapeError, "Categorical.log_prob",
     "actions"),
    ("Categorical.log_prob", lambda: CAT.log_prob(F), DtypeError, "Categorical.log_prob", "actions"),
    ("Categorical.entropy", lambda: Categorical(SCALAR).entropy(), ShapeError,
     "Categorical.entropy", "logits"),
    ("Categorical.sample", lambda: Categorical(SCALAR).sample(KEY), ShapeError,
     "Categorical.sample", "logits"),
    ("Categorical.sample", lambda: Categorical(INT).sample(KEY), DtypeError,
     "Categorical.sample", "logits"),
    ("Categorical.mode", lambda: Categorical(SCALAR).mode(), ShapeError, "Categorical.mode",
     "logits"),
    ("Categorical.kl", lambda: CAT.kl(Categorical(jnp.zeros((T, 1, 4)))), ShapeError,
     "Categorical.kl", "other_logits"),
    ("DiagGaussian.log_prob", lambda: GAUSS.log_prob(F), ShapeError, "DiagGaussian.log_prob",
     "actions"),
    ("DiagGaussian.log_prob", lambda: GAUSS.log_prob(jnp.zeros((T, B, 2), jnp.int32)), DtypeError,
     "DiagGaussian.log_prob", "actions"),
    ("DiagGaussian.entropy", lambda: DiagGaussian(F, jnp.zeros(4)).entropy(), ShapeError,
     "DiagGaussian.entropy", "log_std"),
    ("DiagGaussian.sample", lambda: DiagGaussian(SCALAR, SCALAR).sample(KEY), ShapeError,
     "DiagGaussian.sample", "mean"),
    ("DiagGaussian.mode", lambda: DiagGaussian(F, INT).mode(), DtypeError, "DiagGaussian.mode",
     "log_std"),
    ("DiagGaussian.kl", lambda: GAUSS.kl(DiagGaussian(F, jnp.zeros(B))), ShapeError,
     "DiagGaussian.kl", "other_mean"),
    # diagnostics
    ("gradient_statistics", lambda: diagnostics.gradient_statistics({"a": jnp.zeros((4, 2)),
                                                                     "b": jnp.zeros((3, 2))}),
     ShapeError, "gradient_statistics", "grads"),
    ("gradient_statistics", lambda: diagnostics.gradient_statistics(jnp.zeros((1, 2))), ShapeError,
     "gradient_statistics", "grads"),
    ("split_groups", lambda: diagnostics.split_groups(F, 2, axis=1), ShapeError, "split_groups",
     "tree"),
    ("split_groups", lambda: diagnostics.split_groups(F, 1, axis=2), ShapeError, "split_groups",
     "tree"),
    ("group_gradients", lambda: diagnostics.group_gradients(
        lambda p, g: jnp.sum(p * g), jnp.ones(2), jnp.ones((3, 2)), weights=jnp.ones(2)),
     ShapeError, "group_gradients", "weights"),
    ("share_weights", lambda: diagnostics.share_weights(F, axis=2), ShapeError, "share_weights",
     "mask"),
    # trust region
    ("fisher_vector_product", lambda: trust_region.fisher_vector_product(
        _kl_of, PARAMS, {"w": jnp.ones((3, 2)), "b": jnp.ones(3)}), ShapeError,
     "fisher_vector_product", "vector"),
    ("fisher_vector_product", lambda: trust_region.fisher_vector_product(
        _kl_of, PARAMS, {"w": jnp.ones((2, 3))}), ShapeError, "fisher_vector_product", "vector"),
    ("backtracking_line_search", lambda: trust_region.backtracking_line_search(
        _kl_of, _kl_of, PARAMS, {"w": jnp.ones(6), "b": jnp.ones(3)}, 0.01), ShapeError,
     "backtracking_line_search", "full_step"),
    ("backtracking_line_search", lambda: trust_region.backtracking_line_search(
        _kl_of, _kl_of, PARAMS, PARAMS, jnp.ones(2)), ShapeError, "backtracking_line_search",
     "max_kl"),
]

# public functions with nothing to refuse: conjugate_gradient takes a function and one vector
# (any pytree); tree_vdot is optax's
NO_ARRAY_CONTRACT = {"conjugate_gradient", "tree_vdot"}


def _public_functions():
    names = set()
    for module in (estimators, losses):
        names |= set(module.__all__)
    for cls in (Categorical, DiagGaussian):
        names |= {f"{cls.__name__}.{m}" for m, member in vars(cls).items()
                  if not m.startswith("_") and inspect.isfunction(member)}
    for module in (diagnostics, trust_region):
        names |= {n for n, obj in vars(module).items() if not n.startswith("_")
                  and inspect.isfunction(obj) and obj.__module__ == module.__name__}
    return names - NO_ARRAY_CONTRACT


def test_every_public_math_function_has_a_bad_input_case():
    covered = {name for name, *_ in CASES}
    missing = _public_functions() - covered
    assert not missing, f"add a bad-shape case for: {sorted(missing)}"
    # ... and one with a bad dtype wherever the function takes float arrays
    dtype_covered = {name for name, _, kind, *_ in CASES if kind is DtypeError}
    no_float_argument = {"Categorical.mode", "Categorical.kl", "DiagGaussian.entropy",
                         "DiagGaussian.sample", "DiagGaussian.kl", "gradient_statistics",
                         "split_groups", "group_gradients", "share_weights",
                         "fisher_vector_product", "backtracking_line_search", "Categorical.entropy",
                         "mean_kl", "entropy"}
    assert _public_functions() - no_float_argument - dtype_covered == set()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[2].__name__}-{c[4]}" for c in CASES])
def test_bad_shapes_ranks_and_dtypes_raise_the_family(case):
    _, call, kind, function, argument = case
    with pytest.raises(ArgumentError) as info:
        call()
    error = info.value
    assert type(error) is kind, type(error)
    assert not isinstance(error, AssertionError)
    assert (error.function, error.argument) == (function, argument)
    message = str(error)
    assert message.startswith(f"{function}: ") and argument in message and "\n" not in message


def test_the_family_keeps_the_builtin_bases():
    # code that catches ValueError / TypeError keeps working; ArgumentError catches all of it
    assert issubclass(ShapeError, ArgumentValueError) and issubclass(ShapeError, ValueError)
    assert issubclass(DtypeError, ArgumentTypeError) and issubclass(DtypeError, TypeError)
    for cls in (ShapeError, DtypeError, ArgumentValueError, ArgumentTypeError):
        assert issubclass(cls, ArgumentError) and not issubclass(cls, AssertionError)
    with pytest.raises(ValueError, match="gae: values"):
        estimators.gae(F, WIDE, F, F, F, 0.9)
    with pytest.raises(TypeError, match="gae: values"):
        estimators.gae(F, INT, F, F, F, 0.9)


def test_errors_are_raised_while_tracing_under_jit_and_vmap():
    with pytest.raises(ShapeError, match="gae: lambda_ must have") as info:
        jax.jit(estimators.gae)(F, F, F, F, F, jnp.zeros(T))
    assert info.value.argument == "lambda_"
    with pytest.raises(DtypeError, match="value_loss: values"):
        jax.vmap(losses.value_loss)(INT, F)


def test_errors_survive_pickling():
    # e.g. raised in a worker process and re-raised in the parent
    error = pickle.loads(pickle.dumps(ShapeError("gae", "values", "gae: values must ...")))
    assert type(error) is ShapeError
    assert (error.function, error.argument, str(error)) == ("gae", "values", "gae: values must ...")


def test_the_errors_module_example_runs():
    tests = [t for t in doctest.DocTestFinder().find(errors) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted >= 1 and failed == 0
