"""Quantile return distributions, the quantile projection and the quantile(-Huber) loss.

A quantile distribution with ``m`` quantiles is ``theta: float32[..., m]``: the uniform mixture
of Diracs at the locations ``theta``, which stand for the quantiles at the midpoint levels
``tau_i = (2 i - 1) / (2 m)``, ``i = 1..m`` (:func:`quantile_levels`). The quantile projection of
any weighted atom set (e.g. a mixture of quantile distributions) takes its ``tau_i``-quantiles,
``F^{-1}(tau) = min {x : F(x) >= tau}``; it is the W1-closest ``m``-quantile distribution.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

__all__ = ["quantile_levels", "quantile_project", "quantile_regression_loss"]


def quantile_levels(num_quantiles: int) -> jax.Array:
    """``float32[m]``, the midpoint levels ``(2 i - 1) / (2 m)`` for ``i = 1..m``."""
    if not isinstance(num_quantiles, int) or isinstance(num_quantiles, bool) or num_quantiles < 1:
        raise ValueError(f"num_quantiles must be a positive int, got {num_quantiles!r}")
    return (jnp.arange(num_quantiles, dtype=jnp.float32) + 0.5) / num_quantiles


def quantile_project(atoms: jax.Array, weights: jax.Array, num_quantiles: int) -> jax.Array:
    """``theta: float32[..., m]``, the ``tau_i``-quantiles of the weighted atom set.

    ``atoms, weights: float[..., n]`` with the same shape; weights are nonnegative and are
    normalised by their sum (atoms of weight zero are never chosen). Cost ``O(n log n)`` per
    leading index (one sort).
    """
    chex.assert_equal_shape([atoms, weights])
    taus = quantile_levels(num_quantiles)
    order = jnp.argsort(atoms, axis=-1)
    x = jnp.take_along_axis(jnp.asarray(atoms, jnp.float32), order, axis=-1)
    w = jnp.take_along_axis(jnp.asarray(weights, jnp.float32), order, axis=-1)
    cdf = jnp.cumsum(w, axis=-1)
    cdf = cdf / cdf[..., -1:]
    # First index whose CDF reaches tau.
    first = jnp.vectorize(lambda c: jnp.searchsorted(c, taus, side="left"), signature="(n)->(m)")
    idx = first(cdf)  # [..., m]
    idx = jnp.minimum(idx, x.shape[-1] - 1)
    return jnp.take_along_axis(x, idx, axis=-1)


def _huber(x: jax.Array, k: float) -> jax.Array:
    """``0.5 x^2`` for ``|x| <= k``, ``k (|x| - k / 2)`` beyond (elementwise)."""
    a = jnp.abs(x)
    return jnp.where(a <= k, 0.5 * x**2, k * (a - 0.5 * k))


def quantile_regression_loss(
    pred: jax.Array,
    taus: jax.Array,
    target: jax.Array,
    target_weights: jax.Array | None = None,
    huber_param: float = 0.0,
) -> jax.Array:
    """Scalar (Huber) quantile-regression loss of predicted quantiles against target atoms.

    ``pred: float[m]`` locations at levels ``taus: float[m]``; ``target: float[n]`` atoms with
    ``target_weights: float[n]`` (uniform ``1/n`` if None). With ``delta_ij = target_j - pred_i``
    the loss is ``sum_i sum_j w_j |tau_i - 1{delta_ij < 0}| rho(delta_ij)``, ``rho = |.|`` if
    ``huber_param == 0`` else the Huber function with threshold ``huber_param`` (not divided by
    it), matching ``rlax.quantile_regression_loss``. Gradients do not flow into the target.
    """
    chex.assert_rank([pred, taus, target], 1)
    chex.assert_equal_shape([pred, taus])
    if huber_param < 0:
        raise ValueError(f"huber_param must be >= 0, got {huber_param}")
    target = jax.lax.stop_gradient(target)
    if target_weights is None:
        target_weights = jnp.full(target.shape, 1.0 / target.shape[0], jnp.float32)
    chex.assert_equal_shape([target, target_weights])
    delta = target[None, :] - pred[:, None]
    weight = jnp.abs(taus[:, None] - (delta < 0).astype(jnp.float32))
    rho = jnp.abs(delta) if huber_param == 0 else _huber(delta, huber_param)
    return jnp.sum(weight * rho * target_weights[None, :])
