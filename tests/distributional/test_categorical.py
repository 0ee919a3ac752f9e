"""Cramér projection against a brute-force loop and rlax; mass and mean preservation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.distributional import categorical_project, check_support, project_matrix


def _brute_force(atoms, weights, support):
    """Loop over atoms: clip, then split the weight between the two neighbouring points."""
    out = np.zeros(len(support))
    for x, w in zip(atoms, weights):
        x = min(max(x, support[0]), support[-1])
        j = np.searchsorted(support, x, side="right") - 1  # support[j] <= x
        if j >= len(support) - 1:
            out[-1] += w
            continue
        frac = (x - support[j]) / (support[j + 1] - support[j])
        out[j] += w * (1 - frac)
        out[j + 1] += w * frac
    return out


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_on_irregular_support(seed):
    rng = np.random.default_rng(seed)
    support = np.sort(rng.uniform(-3, 5, 9)) + np.arange(9) * 0.01
    atoms = rng.uniform(-5, 7, 40)  # some outside the support
    atoms[:3] = support[[0, 4, 8]]  # exactly on support points
    weights = rng.uniform(0, 1, 40)
    got = categorical_project(jnp.array(atoms), jnp.array(weights), jnp.array(support))
    np.testing.assert_allclose(got, _brute_force(atoms, weights, support), atol=1e-5)


def test_batched_shape_and_project_matrix_rows_sum_to_one():
    rng = np.random.default_rng(0)
    support = jnp.linspace(-1.0, 1.0, 7)
    atoms = jnp.array(rng.uniform(-2, 2, (4, 3, 11)), jnp.float32)
    H = project_matrix(atoms, support)
    assert H.shape == (4, 3, 11, 7)
    np.testing.assert_allclose(H.sum(-1), 1.0, atol=1e-6)
    weights = jnp.array(rng.uniform(0, 1, (4, 3, 11)), jnp.float32)
    got = categorical_project(atoms, weights, support)
    for idx in np.ndindex(4, 3):
        ref = _brute_force(np.asarray(atoms[idx]), np.asarray(weights[idx]), np.asarray(support))
        np.testing.assert_allclose(got[idx], ref, atol=1e-5)


def test_preserves_mass_and_mean_inside_support():
    rng = np.random.default_rng(1)
    support = jnp.linspace(0.0, 10.0, 21)
    atoms = jnp.array(rng.uniform(0, 10, 100), jnp.float32)
    weights = jnp.array(rng.dirichlet(np.ones(100)), jnp.float32)
    probs = categorical_project(atoms, weights, support)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs @ support, atoms @ weights, atol=1e-4)


def test_matches_rlax():
    rlax = pytest.importorskip("rlax")
    rng = np.random.default_rng(2)
    z_p = jnp.array(rng.uniform(-2, 12, 31), jnp.float32)
    probs = jnp.array(rng.dirichlet(np.ones(31)), jnp.float32)

    @jax.jit  # one compiled program for both projections
    def ours_and_rlax(z_p, probs):
        z_q = jnp.linspace(0.0, 10.0, 11)
        return categorical_project(z_p, probs, z_q), rlax.categorical_l2_project(z_p, probs, z_q)

    np.testing.assert_allclose(*ours_and_rlax(z_p, probs), atol=1e-5)


@pytest.mark.parametrize(
    "support, match",
    [([0.0, 1.0, 1.0], "strictly increasing"), ([[0.0, 1.0]], "1-D"), ([0.0], "at least 2"),
     ([0.0, np.nan], "non-finite")],
)
def test_bad_support_rejected(support, match):
    with pytest.raises(ValueError, match=match):
        check_support(np.array(support))
