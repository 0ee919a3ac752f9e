"""LAPACK-free linear algebra for the small matrices the toolkit factorises.

Why this exists: jaxlib 0.10's CPU LAPACK kernels (``qr``/``orgqr`` behind orthogonal
initialisers, ``potrf`` behind ``cholesky``, ``trsm`` behind ``solve_triangular``) split a
batch over XLA's intra-op thread pool and block a pool thread until the pieces finish.
When XLA runs as many such kernels concurrently as the pool has threads (two on a
2-core machine: e.g. the vmapped orthogonal inits of an actor and a critic), every
thread waits for work queued behind it and the program hangs forever at 0% CPU. The
functions here compute the same results with plain ``lax`` loops and matrix products,
so nothing in the toolkit reaches those kernels. They are meant for small matrices
(network layers, GMM covariances); cost is O(n^3) like LAPACK but without blocking.

* :func:`orthogonal`: drop-in for ``flax.linen.initializers.orthogonal`` (same draws,
  same values up to float rounding);
* :func:`orthonormal_columns`: the Q of a QR decomposition with a positive R diagonal;
* :func:`cholesky` and :func:`solve_lower`: for symmetric positive-definite ``[..., d, d]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_HI = jax.lax.Precision.HIGHEST


def orthonormal_columns(a: jax.Array) -> jax.Array:
    """Q ``[m, n]`` of ``a = Q R`` with ``R``'s diagonal positive, for ``a [m, n]``, ``m >= n``.

    Classical Gram-Schmidt with one re-orthogonalisation pass per column ("twice is
    enough"), so ``Q^T Q = I`` to float rounding for well-conditioned ``a``.
    """
    m, n = a.shape
    if m < n:
        raise ValueError(f"orthonormal_columns: need rows >= columns, got shape {a.shape}")

    def add_column(j, q):
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        for _ in range(2):  # columns >= j of q are still zero, so they project out nothing
            v = v - jnp.dot(q, jnp.dot(q.T, v, precision=_HI), precision=_HI)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return jax.lax.fori_loop(0, n, add_column, jnp.zeros_like(a))


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """Initializer of (scaled) Haar-random orthogonal matrices, as ``jax.nn.initializers.orthogonal``.

    Draws the same Gaussian matrix from ``key`` as JAX's initializer and orthonormalises it
    with :func:`orthonormal_columns` instead of LAPACK, so for the same key and shape the
    result equals JAX's to float rounding.
    """

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer needs a shape of rank >= 2, got {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
        q = orthonormal_columns(z)
        q = q.T if n_rows < n_cols else q  # [n_rows, n_cols]
        q = q.reshape(tuple(np.delete(shape, column_axis)) + (n_cols,))
        return jnp.asarray(scale, dtype) * jnp.moveaxis(q, -1, column_axis)

    return init


def cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor ``L`` (``a = L L^T``) of symmetric positive-definite ``a [..., d, d]``.

    Column by column (Cholesky-Crout); a non-positive pivot gives NaN, as LAPACK-backed
    ``jnp.linalg.cholesky`` does.
    """
    d = a.shape[-1]
    if a.shape[-2] != d:
        raise ValueError(f"cholesky: need square matrices, got shape {a.shape}")
    rows = jnp.arange(d)

    def add_column(j, low):
        a_col = jax.lax.dynamic_index_in_dim(a, j, axis=-1, keepdims=False)  # [..., d]
        low_row = jax.lax.dynamic_index_in_dim(low, j, axis=-2, keepdims=False)  # [..., d]
        col = a_col - jnp.einsum("...ik,...k->...i", low, low_row, precision=_HI)
        pivot = jnp.sqrt(jax.lax.dynamic_index_in_dim(col, j, axis=-1))  # [..., 1]
        col = jnp.where(rows > j, col / pivot, jnp.where(rows == j, pivot, 0.0))
        return jax.lax.dynamic_update_index_in_dim(low, col, j, axis=-1)

    return jax.lax.fori_loop(0, d, add_column, jnp.zeros_like(a))


def solve_lower(low: jax.Array, b: jax.Array) -> jax.Array:
    """``x`` with ``low @ x = b`` for lower-triangular ``low [..., d, d]`` and ``b [..., d, k]``.

    Forward substitution, one row at a time.
    """
    d = low.shape[-1]
    if low.shape[-2] != d or b.shape[-2] != d:
        raise ValueError(f"solve_lower: low {low.shape} must be [..., d, d] and b {b.shape} [..., d, k]")

    def add_row(i, x):
        low_row = jax.lax.dynamic_index_in_dim(low, i, axis=-2, keepdims=False)  # [..., d]
        b_row = jax.lax.dynamic_index_in_dim(b, i, axis=-2, keepdims=False)  # [..., k]
        # rows >= i of x are still zero, so the product only sums over earlier rows
        partial = jnp.einsum("...j,...jk->...k", low_row, x, precision=_HI)
        diag = jax.lax.dynamic_index_in_dim(low_row, i, axis=-1)  # [..., 1]
        return jax.lax.dynamic_update_index_in_dim(x, (b_row - partial) / diag, i, axis=-2)

    shape = jnp.broadcast_shapes(low.shape[:-2], b.shape[:-2]) + b.shape[-2:]
    return jax.lax.fori_loop(0, d, add_row, jnp.zeros(shape, jnp.result_type(low, b)))
