"""jaxrl_icl.linalg against LAPACK-backed JAX and NumPy (second implementations).

The LAPACK calls here are unbatched and run one at a time, which never hangs; the
module exists because batched, concurrent ones can (see its docstring).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.linalg import cholesky, orthogonal, orthonormal_columns, solve_lower


@pytest.mark.parametrize("shape", [(64, 64), (4, 64), (64, 5), (3, 4, 6)])
@pytest.mark.parametrize("scale", [1.0, np.sqrt(2.0)])
def test_orthogonal_equals_jax_initializer(shape, scale):
    key = jax.random.key(3)
    ours = orthogonal(scale)(key, shape, jnp.float32)
    ref = jax.nn.initializers.orthogonal(scale)(key, shape, jnp.float32)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_orthonormal_columns_is_the_positive_diagonal_qr():
    a = np.random.default_rng(0).normal(size=(30, 12)).astype(np.float32)
    q = np.asarray(orthonormal_columns(jnp.asarray(a)))
    np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-5)
    r = q.T @ a
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-4)  # a = q r with r upper triangular
    assert np.all(np.diag(r) > 0)


def test_orthonormal_columns_rejects_wide_input():
    with pytest.raises(ValueError, match="rows >= columns"):
        orthonormal_columns(jnp.ones((2, 3)))


def _spd(rng, batch, d):
    m = rng.normal(size=(*batch, d, d))
    return (m @ np.swapaxes(m, -1, -2) + d * np.eye(d)).astype(np.float32)


@pytest.mark.parametrize("batch,d", [((), 1), ((), 5), ((7,), 3), ((2, 4), 6)])
def test_cholesky_and_solve_match_numpy(batch, d):
    rng = np.random.default_rng(d)
    a = _spd(rng, batch, d)
    low = np.asarray(jax.jit(cholesky)(a))
    np.testing.assert_allclose(low, np.linalg.cholesky(a.astype(np.float64)), rtol=1e-4, atol=1e-4)
    b = rng.normal(size=(*batch, d, 4)).astype(np.float32)
    x = np.asarray(jax.jit(solve_lower)(low, b))
    np.testing.assert_allclose(low @ x, b, atol=1e-4)


def test_cholesky_of_indefinite_matrix_is_nan_like_lapack():
    assert np.isnan(np.asarray(cholesky(jnp.asarray([[1.0, 2.0], [2.0, 1.0]])))).any()


def test_batched_concurrent_inits_finish():
    """The hang this module avoids: two independent vmapped orthogonal inits in one program."""
    init = orthogonal(1.0)

    @jax.jit
    def two_nets(keys):
        a = jax.vmap(lambda k: init(k, (64, 64)))(keys)
        b = jax.vmap(lambda k: init(jax.random.fold_in(k, 1), (64, 64)))(keys)
        return a.sum() + b.sum()

    assert np.isfinite(float(two_nets(jax.random.split(jax.random.key(0), 256))))


def _lapack_calls(fn, *args) -> set[str]:
    import re

    text = jax.jit(fn).lower(*args).compile().as_text()
    return {t for t in re.findall(r'custom_call_target="([^"]+)"', text) if "lapack" in t or "blas" in t}


@pytest.mark.slow
def test_vmapped_library_programs_reach_no_lapack_kernel():
    """PPO's network init (two orthogonal MLPs) and GMM model selection, vmapped over seeds."""
    import envs
    from jaxrl_icl.curriculum import gmm as G
    from jaxrl_icl.rl import ppo

    env, params = envs.make("darkroom-9x9")
    train = ppo.make_train(ppo.PPOConfig(num_envs=2, num_steps=8, total_timesteps=16, num_minibatches=2), env, params)
    keys = jax.random.split(jax.random.key(0), 4)
    assert _lapack_calls(jax.vmap(train, in_axes=(0, None)), keys, params) == set()

    x = jnp.asarray(np.random.default_rng(0).normal(size=(40, 3)), jnp.float32)
    select = jax.vmap(lambda k: G.select_gmm(k, x, jnp.ones(40, bool), max_components=4, max_iter=5)[0].means)
    assert _lapack_calls(select, keys) == set()
