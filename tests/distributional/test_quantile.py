"""Quantile projection against numpy quantiles; QR loss against rlax and hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.distributional import quantile_levels, quantile_project, quantile_regression_loss


def test_levels_are_midpoints_and_bad_count_rejected():
    np.testing.assert_allclose(quantile_levels(4), [0.125, 0.375, 0.625, 0.875])
    with pytest.raises(ValueError, match="num_quantiles"):
        quantile_levels(0)


def test_projection_of_weighted_atoms_is_inverse_cdf():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=50)
    weights = rng.uniform(0, 1, 50)
    weights[::7] = 0.0  # zero-weight atoms must never be chosen
    got = np.asarray(quantile_project(jnp.array(atoms), jnp.array(weights), 10))
    order = np.argsort(atoms)
    cdf = np.cumsum(weights[order]) / weights.sum()
    for tau, q in zip(np.asarray(quantile_levels(10)), got):
        expected = atoms[order][np.argmax(cdf >= tau - 1e-6)]
        assert q == pytest.approx(expected, abs=1e-6)


def test_projection_of_mixture_of_quantile_distributions():
    # Mixture 1/2 {0, 1} + 1/2 {2, 3} (two-quantile laws) is uniform on {0, 1, 2, 3}.
    atoms = jnp.array([0.0, 1.0, 2.0, 3.0])
    weights = jnp.full((4,), 0.25)
    np.testing.assert_allclose(quantile_project(atoms, weights, 4), atoms)
    # Levels 1/4, 3/4 fall exactly on CDF steps: min {x : F(x) >= tau} is 0 and 2.
    np.testing.assert_allclose(quantile_project(atoms, weights, 2), [0.0, 2.0])


def test_loss_hand_computed():
    # pred at tau = 1/4, 3/4 is (0, 1); target atoms (0.5, 0.2), uniform weights.
    pred, taus, target = jnp.array([0.0, 1.0]), jnp.array([0.25, 0.75]), jnp.array([0.5, 0.2])
    # delta[0] = (0.5, 0.2) >= 0 -> weight 1/4; delta[1] = (-0.5, -0.8) < 0 -> weight 1/4.
    expected = 0.5 * (0.25 * (0.5 + 0.2) + 0.25 * (0.5 + 0.8))
    assert float(quantile_regression_loss(pred, taus, target)) == pytest.approx(expected)
    # Huber, k = 0.6: rho(0.5) = 0.125, rho(0.2) = 0.02, rho(0.8) = 0.6 * (0.8 - 0.3) = 0.3.
    expected = 0.5 * 0.25 * (0.125 + 0.02 + 0.125 + 0.3)
    got = quantile_regression_loss(pred, taus, target, huber_param=0.6)
    assert float(got) == pytest.approx(expected)


@pytest.mark.parametrize("huber_param", [0.0, 1.0])
def test_loss_matches_rlax(huber_param):
    rlax = pytest.importorskip("rlax")
    rng = np.random.default_rng(3)
    pred = jnp.array(rng.normal(size=8), jnp.float32)
    target = jnp.array(rng.normal(size=13) * 2, jnp.float32)

    @jax.jit  # one compiled program for both losses and both gradients
    def losses_and_grads(pred, target):
        taus = quantile_levels(8)
        ours = quantile_regression_loss(pred, taus, target, huber_param=huber_param)
        ref = rlax.quantile_regression_loss(pred, taus, target, huber_param)
        g_ours = jax.grad(quantile_regression_loss)(pred, taus, target, None, huber_param)
        g_ref = jax.grad(rlax.quantile_regression_loss)(pred, taus, target, huber_param)
        return ours, ref, g_ours, g_ref

    ours, ref, g_ours, g_ref = losses_and_grads(pred, target)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-5, atol=1e-7)


def test_minimiser_of_loss_is_the_projection():
    # Gradient descent on the QR loss towards a weighted atom set reaches its quantiles.
    rng = np.random.default_rng(4)
    target = jnp.array(rng.normal(size=41), jnp.float32)
    taus = quantile_levels(5)
    grad = jax.jit(jax.grad(quantile_regression_loss))
    pred = jnp.zeros(5)
    for _ in range(3000):
        pred = pred - 0.01 * grad(pred, taus, target)
    expected = quantile_project(target, jnp.ones(41), 5)
    np.testing.assert_allclose(pred, expected, atol=0.03)
