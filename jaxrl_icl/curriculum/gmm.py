"""Gaussian mixtures with full covariances, fitted by EM in JAX on a masked, fixed-size buffer.

All shapes are static so everything jits and vmaps: data is ``x float32[n, d]`` with a
validity ``mask bool[n]`` (padding rows, and rows with a non-finite value, are ignored), and a mixture always holds
``max_components`` slots of which the first ``num_components`` are active (inactive slots
have weight exactly 0 and an identity covariance). :func:`select_gmm` fits every
``k = min_components..max_components`` with ``num_inits`` k-means-initialised restarts in one
jitted call (one ``vmap`` on accelerators; on CPU one fit after another, each with exactly k
slots and each EM running to its own convergence) and keeps the lowest AIC (or BIC),
counting free parameters as scikit-learn does for full covariances.

Numerics follow scikit-learn's ``GaussianMixture``: ``reg_covar`` (1e-6) is added to every
covariance diagonal, component masses get ``10 * eps`` so empty components stay finite, and
the E-step works in log space with log-sum-exp. Degenerate data (all points equal, fewer
points than components) gives finite parameters, never NaN.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import chex
import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import logsumexp

from jaxrl_icl.batching import sequential_on_cpu
from jaxrl_icl.linalg import cholesky, solve_lower

_EPS_MASS = 10 * float(jnp.finfo(jnp.float32).eps)


@struct.dataclass
class GaussianMixture:
    """A mixture with ``K = max_components`` slots in ``d`` dimensions.

    Attributes:
      weights: float32[K], sum 1 over active slots, 0 on inactive ones.
      means: float32[K, d].
      covariances: float32[K, d, d], symmetric positive definite (identity when inactive).
      num_components: int32[], active slots are ``arange(K) < num_components``.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    num_components: jax.Array

    @property
    def active(self) -> jax.Array:
        """bool[K]: which slots are components of the mixture."""
        return jnp.arange(self.weights.shape[-1]) < self.num_components


def num_parameters(num_components: int | jax.Array, dim: int) -> int | jax.Array:
    """Free parameters of a full-covariance mixture: ``k * (d(d+1)/2 + d + 1) - 1`` (sklearn)."""
    return num_components * (dim * (dim + 1) // 2 + dim + 1) - 1


def information_criterion(
    mean_log_likelihood: jax.Array,
    num_points: jax.Array,
    num_components: jax.Array,
    dim: int,
    criterion: Literal["aic", "bic"] = "aic",
) -> jax.Array:
    """AIC ``-2 n mean_ll + 2 p`` or BIC ``-2 n mean_ll + p log n`` (p = :func:`num_parameters`)."""
    p = num_parameters(num_components, dim)
    fit = -2.0 * mean_log_likelihood * num_points
    if criterion == "aic":
        return fit + 2.0 * p
    if criterion == "bic":
        return fit + p * jnp.log(num_points)
    raise ValueError(f"criterion: must be 'aic' or 'bic', got {criterion!r}")


def _log_probs_kn(gmm: GaussianMixture, xt: jax.Array) -> jax.Array:
    """``log w_k + log N(x_i | mu_k, Sigma_k)`` as float32[K, n] from points ``xt`` float32[d, n].

    Works with the inverse Cholesky factor ``L^-1`` of each covariance (``d x d``), and keeps
    the points on the minor axis: XLA's CPU backend runs these broadcast-and-sum forms several
    times faster than batched ``d x d`` matrix products.
    """
    d = xt.shape[0]
    chol = cholesky(gmm.covariances)  # [K, d, d]
    inv_chol = solve_lower(chol, jnp.broadcast_to(jnp.eye(d, dtype=chol.dtype), chol.shape))
    diff = xt[None, :, :] - gmm.means[:, :, None]  # [K, d, n]
    z = jnp.sum(inv_chol[:, :, :, None] * diff[:, None, :, :], axis=2)  # [K, d, n]
    maha = jnp.sum(z**2, axis=1)  # [K, n]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # [K]
    log_gauss = -0.5 * (d * math.log(2 * math.pi) + log_det[:, None] + maha)
    log_w = jnp.where(gmm.active, jnp.log(jnp.where(gmm.active, gmm.weights, 1.0)), -jnp.inf)
    return log_gauss + log_w[:, None]


def component_log_probs(gmm: GaussianMixture, x: jax.Array) -> jax.Array:
    """``log w_k + log N(x_i | mu_k, Sigma_k)``: float32[n, K] (``-inf`` for inactive slots)."""
    return _log_probs_kn(gmm, x.T).T


def log_likelihood(gmm: GaussianMixture, x: jax.Array) -> jax.Array:
    """Per-point log density ``log p(x_i)``: float32[n] for ``x`` float32[n, d]."""
    return logsumexp(component_log_probs(gmm, x), axis=-1)


def mean_log_likelihood(gmm: GaussianMixture, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of :func:`log_likelihood` over the valid rows (``mask``), float32[]."""
    x, mask = _as_data(x, mask)
    ll = log_likelihood(gmm, x)
    n = jnp.maximum(jnp.sum(mask), 1)
    return jnp.sum(jnp.where(mask, ll, 0.0)) / n


def _as_data(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(float32[n, d], bool[n])`` after checking the shapes agree; a row with a non-finite
    value leaves the mask and is zeroed, so it cannot reach any sum (masked EM)."""
    x, mask = jnp.asarray(x, jnp.float32), jnp.asarray(mask, bool)
    chex.assert_rank(x, 2)
    chex.assert_shape(mask, x.shape[:1])
    finite = jnp.all(jnp.isfinite(x), axis=-1)
    # a branch, not a bare where: on finite data the EM program (and its rounding) is unchanged
    return jax.lax.cond(jnp.all(finite), lambda: (x, mask),
                        lambda: (jnp.where(finite[:, None], x, 0.0), mask & finite))


def _m_step(
    xt: jax.Array, resp: jax.Array, active: jax.Array, num_components: jax.Array, reg_covar: float
) -> GaussianMixture:
    """Weights, means and covariances from points ``xt`` [d, n] and responsibilities ``resp``
    [K, n] (0 on padding); points on the minor axis, as in :func:`_log_probs_kn`."""
    d = xt.shape[0]
    nk = jnp.sum(resp, axis=1) + _EPS_MASS  # [K]
    means = jnp.sum(resp[:, None, :] * xt[None, :, :], axis=-1) / nk[:, None]  # [K, d]
    diff = xt[None, :, :] - means[:, :, None]  # [K, d, n]
    weighted = resp[:, None, :] * diff
    cov = jnp.sum(weighted[:, :, None, :] * diff[:, None, :, :], axis=-1) / nk[:, None, None]
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2)) + reg_covar * jnp.eye(d)
    cov = jnp.where(active[:, None, None], cov, jnp.eye(d))
    means = jnp.where(active[:, None], means, 0.0)
    weights = jnp.where(active, nk, 0.0)
    weights = weights / jnp.sum(weights)
    return GaussianMixture(weights, means, cov, num_components)


def em_step(
    gmm: GaussianMixture, x: jax.Array, mask: jax.Array, reg_covar: float = 1e-6
) -> tuple[GaussianMixture, jax.Array]:
    """One EM iteration: ``(new_gmm, mean log-likelihood of the data under the old gmm)``.

    Args:
      gmm: current mixture (``K`` slots, ``d`` dims).
      x: float32[n, d] data; mask: bool[n] valid rows.
      reg_covar: added to every covariance diagonal.
    """
    x, mask = _as_data(x, mask)
    xt = x.T  # [d, n]
    log_probs = _log_probs_kn(gmm, xt)  # [K, n]
    # log-sum-exp by hand so the exponentials serve both the normaliser and the responsibilities
    top = jax.lax.stop_gradient(jnp.max(log_probs, axis=0))  # finite: >= 1 active slot
    unnorm = jnp.exp(log_probs - top[None, :])
    total = jnp.sum(unnorm, axis=0)
    log_norm = top + jnp.log(total)  # [n]
    resp = unnorm / total[None, :] * mask[None, :]
    n = jnp.maximum(jnp.sum(mask), 1)
    mean_ll = jnp.sum(jnp.where(mask, log_norm, 0.0)) / n
    return _m_step(xt, resp, gmm.active, gmm.num_components, reg_covar), mean_ll


def init_gmm(
    key: jax.Array,
    x: jax.Array,
    mask: jax.Array,
    num_components: jax.Array | int,
    max_components: int,
    reg_covar: float = 1e-6,
    kmeans_iters: int = 10,
) -> GaussianMixture:
    """k-means initialisation (as sklearn's default): random distinct centres, Lloyd steps, M-step.

    Args:
      key: PRNG key. x: float32[n, d]; mask: bool[n].
      num_components: active components k (traced int allowed), ``1 <= k <= max_components``.
      max_components: static number of slots K.
    """
    x, mask = _as_data(x, mask)
    n = x.shape[0]
    active = jnp.arange(max_components) < num_components
    # Gumbel top-K over valid rows = K distinct valid points when there are enough of them.
    scores = jnp.where(mask, jax.random.gumbel(key, (n,)), -jnp.inf)
    if n >= max_components:
        idx = jax.lax.top_k(scores, max_components)[1]
    else:
        idx = jnp.argsort(-scores)[jnp.arange(max_components) % n]
    centres = x[idx]

    def assign(c: jax.Array) -> jax.Array:
        dist = jnp.sum((x[:, None, :] - c[None, :, :]) ** 2, axis=-1)  # [n, K]
        dist = jnp.where(active[None, :], dist, jnp.inf)
        return jax.nn.one_hot(jnp.argmin(dist, axis=-1), max_components) * mask[:, None]

    def lloyd(c: jax.Array, _: None) -> tuple[jax.Array, None]:
        onehot = assign(c)
        counts = jnp.sum(onehot, axis=0)
        new = onehot.T @ x / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where(counts[:, None] > 0, new, c), None

    centres, _ = jax.lax.scan(lloyd, centres, None, length=kmeans_iters)
    return _m_step(x.T, assign(centres).T, active, jnp.asarray(num_components, jnp.int32), reg_covar)


@functools.partial(jax.jit, static_argnames=("max_components", "max_iter", "tol", "reg_covar"))
def fit_gmm(
    key: jax.Array,
    x: jax.Array,
    mask: jax.Array,
    num_components: jax.Array | int,
    max_components: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> tuple[GaussianMixture, jax.Array]:
    """EM from a k-means start until the mean log-likelihood gains less than ``tol`` (or ``max_iter``).

    Returns:
      ``(gmm, mean_ll)``: the fitted mixture and its mean log-likelihood on the valid rows.
    """
    gmm = init_gmm(key, x, mask, num_components, max_components, reg_covar)

    def cond(carry: tuple) -> jax.Array:
        _, prev, cur, it = carry
        return (it < max_iter) & ~(jnp.abs(cur - prev) < tol)

    def body(carry: tuple) -> tuple:
        g, _, cur, it = carry
        new, ll = em_step(g, x, mask, reg_covar)
        return new, cur, ll, it + 1

    start = (gmm, jnp.float32(-jnp.inf), jnp.float32(jnp.inf), jnp.int32(0))
    gmm, _, _, _ = jax.lax.while_loop(cond, body, start)
    return gmm, mean_log_likelihood(gmm, x, mask)


@functools.partial(jax.jit, static_argnames=(
    "min_components", "max_components", "num_inits", "criterion", "max_iter", "tol", "reg_covar"))
def select_gmm(
    key: jax.Array,
    x: jax.Array,
    mask: jax.Array,
    *,
    min_components: int = 2,
    max_components: int = 10,
    num_inits: int = 1,
    criterion: Literal["aic", "bic"] = "aic",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> tuple[GaussianMixture, jax.Array]:
    """Fit k = min..max components (``num_inits`` restarts each) in one call; keep the best.

    The best restart of each k is the one with the highest log-likelihood; among ks the
    lowest ``criterion`` wins.

    Args:
      key: PRNG key. x: float32[n, d]; mask: bool[n] valid rows.

    Returns:
      ``(gmm, scores)``: the selected mixture (``max_components`` slots) and the criterion
      of each k, float32[max_components - min_components + 1].
    """
    if not 1 <= min_components <= max_components:
        raise ValueError(f"min_components: need 1 <= min_components <= max_components, got "
                         f"{min_components}, {max_components}")
    if num_inits < 1:
        raise ValueError(f"num_inits: must be >= 1, got {num_inits}")
    x, mask = _as_data(x, mask)
    ks = jnp.arange(min_components, max_components + 1, dtype=jnp.int32)
    keys = jax.random.split(key, (ks.shape[0], num_inits))

    def fit(k_key: jax.Array, k: jax.Array | int, slots: int) -> tuple[GaussianMixture, jax.Array]:
        gmm, ll = fit_gmm(k_key, x, mask, k, slots, max_iter=max_iter, tol=tol, reg_covar=reg_covar)
        return _pad_slots(gmm, max_components), ll

    if sequential_on_cpu():
        # One k after another (restarts of one k one after another too), each EM to its own
        # convergence, in one fit program with max_components slots traced once: about 2x the
        # vmap's throughput on CPU. One program per k with exactly k slots refits ~15% faster
        # but compiles ~4x longer (a jitted ALP-GMM update: ~47 s vs ~11 s on a 2-core CPU).
        def fit_k(k_keys: jax.Array, k: jax.Array) -> tuple[GaussianMixture, jax.Array]:
            return jax.lax.map(functools.partial(fit, k=k, slots=max_components), k_keys)

        gmms, lls = jax.lax.map(lambda args: fit_k(*args), (keys, ks))  # leaves [num_ks, num_inits, ...]
    else:
        gmms, lls = jax.vmap(jax.vmap(functools.partial(fit, slots=max_components), in_axes=(0, None)))(keys, ks)
    best_init = jnp.argmax(lls, axis=1)
    gmms, lls = jax.tree.map(lambda a: jnp.take_along_axis(
        a, best_init.reshape((-1, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0], (gmms, lls))
    n = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
    scores = information_criterion(lls, n, ks, x.shape[-1], criterion)
    best = jnp.argmin(scores)
    return jax.tree.map(lambda a: a[best], gmms), scores


def _pad_slots(gmm: GaussianMixture, slots: int) -> GaussianMixture:
    """``gmm`` with inactive slots appended up to ``slots`` (weight 0, mean 0, identity covariance)."""
    extra = slots - gmm.weights.shape[-1]
    d = gmm.means.shape[-1]
    return GaussianMixture(
        jnp.pad(gmm.weights, (0, extra)),
        jnp.pad(gmm.means, ((0, extra), (0, 0))),
        jnp.concatenate([gmm.covariances, jnp.broadcast_to(jnp.eye(d, dtype=gmm.covariances.dtype), (extra, d, d))]),
        gmm.num_components,
    )


def sample_component(key: jax.Array, gmm: GaussianMixture, component: jax.Array) -> jax.Array:
    """One draw from Gaussian ``component`` of ``gmm``: float32[d]."""
    chol = cholesky(gmm.covariances[component])
    return gmm.means[component] + chol @ jax.random.normal(key, gmm.means.shape[-1:])


def proportional_choice(key: jax.Array, gmm: GaussianMixture, values: jax.Array) -> jax.Array:
    """An active component drawn with probability proportional to ``max(values, 0)`` float32[K].

    Uniform over the active components when every active value is <= 0. Returns int32[].
    """
    v = jnp.where(gmm.active, jnp.maximum(values, 0.0), 0.0)
    total = jnp.sum(v)
    probs = jnp.where(total > 0, v / jnp.where(total > 0, total, 1.0),
                      gmm.active / jnp.sum(gmm.active))
    logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def placeholder_gmm(max_components: int, dim: int) -> GaussianMixture:
    """A valid 1-component standard normal in ``max_components`` slots (state before a first fit)."""
    weights = jnp.zeros(max_components).at[0].set(1.0)
    covs = jnp.broadcast_to(jnp.eye(dim), (max_components, dim, dim))
    return GaussianMixture(weights, jnp.zeros((max_components, dim)), covs, jnp.int32(1))
