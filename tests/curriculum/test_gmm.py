"""EM/AIC for Gaussian mixtures against known mixtures, sklearn and degenerate data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.curriculum import gmm as G

MEANS = np.array([[0.0, 0.0], [4.0, 4.0], [0.0, 5.0]])
COVS = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]], [[0.1, 0.0], [0.0, 0.3]]])
SIZES = (300, 400, 200)


def _mixture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [rng.multivariate_normal(m, c, n) for m, c, n in zip(MEANS, COVS, SIZES)]
    return np.concatenate(parts).astype(np.float32)


def _match(found: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Index of the found mean nearest to each true mean."""
    return np.argmin(((found[None, :, :] - true[:, None, :]) ** 2).sum(-1), axis=1)


def test_em_recovers_means_and_covariances():
    x = _mixture()
    mask = np.ones(len(x), bool)
    gmm, _ = G.fit_gmm(jax.random.key(0), x, mask, 3, 5)
    means, covs, weights = map(np.asarray, (gmm.means, gmm.covariances, gmm.weights))
    idx = _match(means[:3], MEANS)
    assert sorted(idx) == [0, 1, 2]
    np.testing.assert_allclose(means[idx], MEANS, atol=0.1)
    np.testing.assert_allclose(covs[idx], COVS, atol=0.08)
    np.testing.assert_allclose(weights[idx], np.array(SIZES) / sum(SIZES), atol=0.02)
    assert np.all(weights[3:] == 0)


def test_log_likelihood_non_decreasing_and_mask_ignores_padding():
    x = _mixture(1)
    pad = np.concatenate([x, np.full((50, 2), 100.0, np.float32)])
    mask = np.arange(len(pad)) < len(x)
    gmm = jax.jit(G.init_gmm, static_argnums=(3, 4))(jax.random.key(3), pad, mask, 4, 6)
    step = jax.jit(G.em_step)
    lls = []
    for _ in range(30):
        gmm, ll = step(gmm, pad, mask)
        lls.append(float(ll))
    assert np.all(np.diff(lls) >= -1e-4), lls
    # the padding rows never influenced the fit: same as fitting the valid rows alone
    direct = jax.jit(G.mean_log_likelihood)(gmm, x, np.ones(len(x), bool))
    np.testing.assert_allclose(lls[-1], direct, atol=1e-3)
    assert np.all(np.abs(np.asarray(gmm.means)) < 10)


@pytest.mark.slow
def test_aic_picks_true_k():
    x = _mixture(2)
    gmm, scores = G.select_gmm(jax.random.key(1), x, np.ones(len(x), bool), max_components=6,
                               num_inits=2, criterion="aic")
    assert int(gmm.num_components) == 3, scores
    assert scores.shape == (5,)
    # BIC's extra penalty only grows with k: it agrees on clear data
    n = len(x)
    ll = G.mean_log_likelihood(gmm, x, np.ones(n, bool))
    bic = G.information_criterion(ll, n, 3, 2, "bic")
    assert float(bic) - float(scores[1]) == pytest.approx(G.num_parameters(3, 2) * (np.log(n) - 2), rel=1e-4)


@functools.partial(jax.jit, static_argnums=2)
def _ll_aic_bic(gmm, x, k):
    """Mean log-likelihood, AIC and BIC of ``gmm`` on all of ``x`` (one compiled program)."""
    ll = G.mean_log_likelihood(gmm, x, jnp.ones(len(x), bool))
    return ll, G.information_criterion(ll, len(x), k, 2, "aic"), G.information_criterion(ll, len(x), k, 2, "bic")


def test_matches_sklearn():
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    x = _mixture(3)
    mask = np.ones(len(x), bool)
    restarts = jax.jit(jax.vmap(lambda key, k: G.fit_gmm(key, x, mask, k, 4, tol=1e-4, max_iter=200)[1],
                                in_axes=(0, None)))
    for k in (2, 3, 4):
        ll = np.asarray(restarts(jax.random.split(jax.random.key(k), 3), k)).max()
        ref = sklearn_mixture.GaussianMixture(k, covariance_type="full", tol=1e-4, max_iter=200,
                                              n_init=3, random_state=0).fit(x)
        assert float(ll) == pytest.approx(ref.score(x), abs=0.01)
        # the same parameters give the same log-likelihood and AIC
        as_ours = G.GaussianMixture(
            jnp.asarray(ref.weights_, jnp.float32), jnp.asarray(ref.means_, jnp.float32),
            jnp.asarray(ref.covariances_, jnp.float32), jnp.int32(k))
        ll_ref, aic, bic = _ll_aic_bic(as_ours, x, k)
        assert float(ll_ref) == pytest.approx(ref.score(x), abs=1e-4)
        assert float(aic) == pytest.approx(ref.aic(x), rel=1e-5)
        assert float(bic) == pytest.approx(ref.bic(x), rel=1e-5)
        assert G.num_parameters(k, 2) == ref._n_parameters()


@pytest.mark.parametrize("num_valid", [1, 3, 40])
def test_degenerate_data_is_finite(num_valid):
    x = np.full((40, 3), 0.5, np.float32)
    gmm, scores = G.select_gmm(jax.random.key(0), x, np.arange(40) < num_valid, max_components=5)
    for leaf in (gmm.weights, gmm.means, gmm.covariances, scores):
        assert np.all(np.isfinite(np.asarray(leaf)))
    heaviest = int(np.argmax(gmm.weights))
    np.testing.assert_allclose(gmm.means[heaviest], [0.5] * 3, atol=1e-5)
    assert float(jnp.sum(gmm.weights)) == pytest.approx(1.0, abs=1e-5)


def test_sample_component_moments():
    gmm = G.GaussianMixture(jnp.array([0.5, 0.5]), jnp.asarray(MEANS[:2], jnp.float32),
                            jnp.asarray(COVS[:2], jnp.float32), jnp.int32(2))
    draws = jax.vmap(lambda k: G.sample_component(k, gmm, 1))(jax.random.split(jax.random.key(0), 20000))
    np.testing.assert_allclose(draws.mean(0), MEANS[1], atol=0.03)
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), COVS[1], atol=0.03)


def test_proportional_choice_frequencies():
    gmm = G.placeholder_gmm(4, 2).replace(weights=jnp.array([0.3, 0.3, 0.4, 0.0]), num_components=jnp.int32(3))
    keys = jax.random.split(jax.random.key(0), 20000)
    picks = np.asarray(jax.vmap(lambda k: G.proportional_choice(k, gmm, jnp.array([1.0, 3.0, -2.0, 9.0])))(keys))
    np.testing.assert_allclose(np.bincount(picks, minlength=4) / len(picks), [0.25, 0.75, 0, 0], atol=0.015)
    zeros = np.asarray(jax.vmap(lambda k: G.proportional_choice(k, gmm, jnp.zeros(4)))(keys))
    np.testing.assert_allclose(np.bincount(zeros, minlength=4) / len(zeros), [1 / 3, 1 / 3, 1 / 3, 0], atol=0.015)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_ignored_like_masked_rows(bad):
    # oracle: the same fit with those rows masked out (their values then never matter)
    x = _mixture(4)[::5]
    rows = [3, 40, 41, 150]
    spoilt = x.copy()
    spoilt[rows, [0, 1, 0, 1]] = bad
    mask = np.ones(len(x), bool)
    masked = mask.copy()
    masked[rows] = False
    got, got_scores = G.select_gmm(jax.random.key(2), spoilt, mask, max_components=4)
    want, want_scores = G.select_gmm(jax.random.key(2), x, masked, max_components=4)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(got.means)))
    mean_ll = jax.jit(G.mean_log_likelihood)
    np.testing.assert_allclose(mean_ll(got, spoilt, mask), mean_ll(want, x, masked), rtol=1e-6)
