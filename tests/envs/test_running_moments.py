"""RunningMoments: merged statistics equal numpy's over the concatenated samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.running_moments import RunningMoments


@pytest.mark.parametrize("sizes", [(1,) * 30, (5, 1, 17, 2, 40), (64,)])
def test_merges_equal_numpy_over_the_concatenation(sizes):
    rng = np.random.default_rng(len(sizes))
    batches = [rng.normal([3.0, -1.0, 0.0], [2.0, 0.1, 5.0], size=(n, 3)).astype(np.float32) for n in sizes]
    moments = RunningMoments.create((3,))
    for batch in batches:
        moments = moments.merge(jnp.asarray(batch))
    data = np.concatenate(batches).astype(np.float64)
    assert float(moments.count) == len(data)
    np.testing.assert_allclose(moments.mean, data.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moments.var, data.var(0), rtol=1e-4, atol=1e-6)


def test_prior_count_weights_the_initial_moments():
    # A prior of count c at mean 0, variance 1 acts like c samples with those moments.
    batch = np.array([1.0, 2.0, 4.0], np.float32)
    got = RunningMoments.create((), count=2.0).merge(jnp.asarray(batch))
    n, c = 3, 2.0
    mean = batch.mean() * n / (n + c)
    second = (c * 1.0 + np.sum(batch.astype(np.float64) ** 2)) / (n + c)  # E[x^2] of prior and data
    np.testing.assert_allclose(float(got.mean), mean, rtol=1e-6)
    np.testing.assert_allclose(float(got.var), second - mean**2, rtol=1e-5)


def test_normalize_and_jit():
    moments = jax.jit(RunningMoments.merge)(RunningMoments.create((2,)), jnp.array([[0.0, 1.0], [2.0, 1.0]]))
    x = jnp.array([[3.0, 1.0], [-5.0, 0.0]])
    want = np.clip((np.asarray(x) - [1.0, 1.0]) / np.sqrt(np.array([1.0, 0.0]) + 1e-8), -10, 10)
    np.testing.assert_allclose(moments.normalize(x), want, rtol=1e-6)
    want = np.clip((np.asarray(x) - 1.0) / np.sqrt([2.0, 1.0]), -0.5, 0.5)
    np.testing.assert_allclose(moments.normalize(x, clip=0.5, eps=1.0), want, rtol=1e-6)
