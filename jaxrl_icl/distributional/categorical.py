"""Categorical return distributions on a fixed support and the Cramér (L2) projection.

A categorical distribution is ``probs: float32[..., m]`` on a strictly increasing support
``z: float32[m]`` (returns, in reward units). The Cramér projection of an arbitrary weighted atom
set onto the support first clips each atom into ``[z_1, z_m]`` and then splits its weight between
the two neighbouring support points in proportion to proximity (the triangular "hat" functions).
Inside the support this keeps the total mass and the mean; it is the projection of
``rlax.categorical_l2_project``, written here for arbitrary atom sets (mixtures) and as a matrix
(:func:`project_matrix`) so that a whole distributional Bellman backup is one contraction.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["categorical_mean", "categorical_project", "check_support", "project_matrix"]


def check_support(support, name: str = "support") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``support`` is a 1-D, finite, strictly
    increasing array with at least two points. Shape checks always run; value checks need a
    concrete array and are skipped under tracing."""
    shape = np.shape(support)
    if len(shape) != 1 or shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 points, got shape {shape}")
    if isinstance(support, jax.core.Tracer):
        return
    z = np.asarray(support, np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} has non-finite entries")
    if np.any(np.diff(z) <= 0):
        i = int(np.argmax(np.diff(z) <= 0))
        raise ValueError(
            f"{name} must be strictly increasing; {name}[{i}] = {z[i]} >= {name}[{i + 1}] = "
            f"{z[i + 1]}"
        )


def project_matrix(atoms: jax.Array, support: jax.Array) -> jax.Array:
    """``H: float32[..., n, m]``, the weight ``H[..., i, j]`` that atom ``atoms[..., i]`` puts on
    support point ``support[j]`` under the Cramér projection (each row sums to 1).

    ``atoms: float[..., n]`` (any leading shape), ``support: float[m]`` strictly increasing.
    Atoms outside ``[support[0], support[-1]]`` go entirely to the nearest end point. The
    projection of weights ``w[..., n]`` is ``einsum('...i,...ij->...j', w, H)``.
    """
    chex.assert_rank(support, 1)
    z = jnp.asarray(support, jnp.float32)
    x = jnp.clip(jnp.asarray(atoms, jnp.float32), z[0], z[-1])[..., None]  # [..., n, 1]
    # Neighbours of each support point; the outer ones are placeholders one unit away, so the
    # end points get weight 1 for atoms clipped onto them.
    left = jnp.concatenate([z[:1] - 1.0, z[:-1]])
    right = jnp.concatenate([z[1:], z[-1:] + 1.0])
    rising = (x - left) / (z - left)
    falling = (right - x) / (right - z)
    return jnp.clip(jnp.where(x <= z, rising, falling), 0.0, 1.0)


def categorical_project(atoms: jax.Array, weights: jax.Array, support: jax.Array) -> jax.Array:
    """``probs: float32[..., m]``, the Cramér projection of the weighted atoms onto ``support``.

    ``atoms, weights: float[..., n]`` with the same shape (weights nonnegative; they need not
    sum to one, the total is kept); ``support: float[m]`` strictly increasing.
    """
    chex.assert_equal_shape([atoms, weights])
    H = project_matrix(atoms, support)
    return jnp.einsum("...i,...ij->...j", jnp.asarray(weights, jnp.float32), H)


def categorical_mean(probs: jax.Array, support: jax.Array) -> jax.Array:
    """``float32[...]``, the mean of ``probs: float[..., m]`` on ``support: float[m]``."""
    return jnp.asarray(probs, jnp.float32) @ jnp.asarray(support, jnp.float32)
