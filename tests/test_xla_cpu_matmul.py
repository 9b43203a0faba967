"""pgjax._xla_cpu.matmul: a dense layer's product whose weight gradient XLA:CPU runs as an ordinary matmul.

The references are computed another way: the gradients by hand in NumPy (∂W = xᵀ·∂y, ∂x = ∂y·Wᵀ),
the forward-over-reverse product (what TRPO's Fisher-vector products use) by plain autodiff of
``x @ w``. The last test checks the point of the module: no weight-gradient dot contracting the
batch axes is left in the compiled gradient (it fails if the transpose is not kept behind the
optimisation barrier: tried once).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pgjax._xla_cpu.matmul import dense_dot_general, matmul

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 5)).astype(np.float32)
W = RNG.normal(size=(5, 3)).astype(np.float32)
COT = RNG.normal(size=(32, 3)).astype(np.float32)  # ∂L/∂y for L = Σ y ⊙ COT


def test_value_and_gradients_match_numpy():
    y, vjp = jax.vjp(matmul, X, W)
    np.testing.assert_allclose(y, X @ W, rtol=1e-5, atol=1e-5)
    dx, dw = vjp(jnp.asarray(COT))
    np.testing.assert_allclose(dw, X.T @ COT, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, COT @ W.T, rtol=1e-5, atol=1e-5)


def test_forward_over_reverse_and_vmap_match_plain_autodiff():
    def loss(product):
        return lambda w: jnp.sum(jnp.tanh(product(jnp.asarray(X), w)) ** 2)
    plain, ours = loss(lambda x, w: x @ w), loss(matmul)
    tangent = jnp.asarray(RNG.normal(size=W.shape).astype(np.float32))
    hvp = lambda f: jax.jvp(jax.grad(f), (jnp.asarray(W),), (tangent,))[1]  # noqa: E731
    np.testing.assert_allclose(hvp(ours), hvp(plain), rtol=1e-4, atol=1e-5)
    weights = jnp.stack([jnp.asarray(W), 2 * jnp.asarray(W)])
    np.testing.assert_allclose(jax.vmap(jax.grad(ours))(weights),
                               jax.vmap(jax.grad(plain))(weights), rtol=1e-5, atol=1e-5)


def test_dense_layer_with_leading_axes_matches_flax_default():
    """[T, N, F] inputs (a recurrent unroll, a rollout) flatten to rows and back."""
    x = jnp.asarray(RNG.normal(size=(4, 6, 5)).astype(np.float32))
    ours, plain = nn.Dense(3, dot_general=dense_dot_general), nn.Dense(3)
    params = plain.init(jax.random.key(0), x)
    np.testing.assert_allclose(ours.apply(params, x), plain.apply(params, x), rtol=1e-5, atol=1e-5)
    grad = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2))(params)  # noqa: E731
    for a, b in zip(jax.tree.leaves(grad(ours)), jax.tree.leaves(grad(plain))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_weight_gradient_has_no_batch_contracting_dot():
    """x is an argument, as in training (a constant x would be transposed at compile time)."""
    loss = lambda w, x: jnp.sum(jnp.tanh(matmul(x, w)) ** 2)  # noqa: E731
    plain = lambda w, x: jnp.sum(jnp.tanh(x @ w) ** 2)  # noqa: E731
    hlo = lambda f: jax.jit(jax.grad(f)).lower(jnp.asarray(W), jnp.asarray(X)).compile().as_text()  # noqa: E731
    assert "lhs_contracting_dims={0}" in hlo(plain)  # what plain autodiff leaves on XLA:CPU
    assert "lhs_contracting_dims={0}" not in hlo(loss)
