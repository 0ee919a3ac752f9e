"""Space helpers shared by the algorithms and wrappers: kind tests, exact dtypes, encoders.

Spaces are recognised by duck typing (a ``Discrete`` space has ``n``; a ``Box`` has ``low``,
``high`` and ``shape``), so nothing here imports gymnax: importing gymnax runs its
``__init__``, which loads every gymnax environment and, through bsuite's Catch, matplotlib.

- :func:`is_discrete`, :func:`is_box`: what kind of space it is.
- :func:`smallest_int_dtype`, :func:`exact_dtype`: the narrowest dtype that holds every
  value of a range or of a space exactly (for compact learning histories).
- :func:`feature_encoder`: observations as a network input, float32[obs_dim] (one-hot or
  flattened).
- :func:`state_encoder`: finite integer observations as a tabular state index.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["exact_dtype", "feature_encoder", "is_box", "is_discrete", "smallest_int_dtype", "state_encoder"]

_INT_DTYPES = (np.int8, np.int16, np.int32, np.int64)


def is_discrete(space: Any) -> bool:
    """Whether ``space`` is a ``Discrete(n)`` space (values ``0 .. n - 1``)."""
    return hasattr(space, "n") and not hasattr(space, "low")


def is_box(space: Any) -> bool:
    """Whether ``space`` is a ``Box`` (arrays of ``shape`` between ``low`` and ``high``)."""
    return all(hasattr(space, name) for name in ("low", "high", "shape", "dtype"))


def smallest_int_dtype(low: Any, high: Any, fallback: Any = None) -> np.dtype:
    """The narrowest signed integer dtype (int8 .. int64) holding every value in ``[low, high]``.

    ``low``/``high`` are scalars or arrays (their min/max is used). Returns
    ``np.dtype(fallback)`` when no integer dtype holds the range (infinite or NaN bounds
    included); without a fallback that is a ValueError naming the range.
    """
    lo, hi = np.min(np.asarray(low)), np.max(np.asarray(high))
    for dtype in _INT_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    if fallback is None:
        raise ValueError(f"no integer dtype holds [{lo}, {hi}]")
    return np.dtype(fallback)


def exact_dtype(space: Any) -> np.dtype:
    """The narrowest dtype holding every value of ``space`` exactly.

    ``Discrete(n)``: the narrowest int for ``[0, n - 1]``; an integer ``Box``: the narrowest
    int for its bounds; otherwise (or when the bounds fit no integer dtype) ``space.dtype``.
    """
    if is_discrete(space):
        return smallest_int_dtype(0, space.n - 1, space.dtype)
    if np.issubdtype(np.dtype(space.dtype), np.integer):
        return smallest_int_dtype(space.low, space.high, space.dtype)
    return np.dtype(space.dtype)


def feature_encoder(space: Any) -> tuple[int, Callable[[jax.Array], jax.Array]] | None:
    """``(obs_dim, encode)`` turning observations into a network input, or None.

    ``encode(obs [..., *space.shape]) -> float32 [..., obs_dim]``: one-hot for ``Discrete(n)``
    (``obs_dim = n``, ``obs`` integer ``[...]``), flattened and cast for a ``Box``
    (``obs_dim = prod(shape)``). None for any other space, so the caller can name itself and
    the field in its error.
    """
    if is_discrete(space):
        obs_dim = int(space.n)

        def one_hot(obs: jax.Array) -> jax.Array:
            return jax.nn.one_hot(obs, obs_dim)

        return obs_dim, one_hot
    if is_box(space):
        obs_ndim = len(space.shape)
        obs_dim = int(np.prod(space.shape))

        def flatten(obs: jax.Array) -> jax.Array:
            return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (obs_dim,)).astype(jnp.float32)

        return obs_dim, flatten
    return None


def state_encoder(space: Any) -> tuple[Callable[[jax.Array], jax.Array], int, np.dtype]:
    """``(encode, num_states, obs_dtype)`` for a finite integer observation space.

    ``encode(obs) -> int32`` state index in ``[0, num_states)``: the obs itself for
    ``Discrete(n)``; for an integer ``Box`` with finite bounds ``low``/``high`` the row-major
    index of ``obs - low`` in the grid of shape ``high - low + 1`` (``x * size + y`` for a
    square grid position ``(x, y)``). ``obs_dtype`` is the narrowest signed integer dtype that
    holds every observation exactly (for learning histories).

    Raises:
      ValueError naming ``observation_space`` for any other space.
    """
    if is_discrete(space):
        n = int(space.n)
        return (lambda obs: jnp.asarray(obs, jnp.int32).reshape(())), n, smallest_int_dtype(0, n - 1)
    if not is_box(space) or not np.issubdtype(np.dtype(space.dtype), np.integer):
        raise ValueError(
            f"observation_space: a tabular state index needs a Discrete or integer Box space, got {space!r}"
        )
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low), shape).ravel()
    high = np.broadcast_to(np.asarray(space.high), shape).ravel()
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high >= low)):
        raise ValueError(f"observation_space: needs finite bounds with high >= low, got {low} .. {high}")
    dims = (high - low + 1).astype(np.int64)
    num_states = int(np.prod(dims))
    if num_states > 2**31 - 1:
        raise ValueError(f"observation_space: {num_states} states do not fit an int32 index")
    strides = np.cumprod(np.concatenate([dims[1:], [1]])[::-1])[::-1].astype(np.int32)
    low_j, strides_j = jnp.asarray(low, jnp.int32), jnp.asarray(strides)
    dtype = smallest_int_dtype(int(low.min()), int(high.max()))

    def encode(obs: jax.Array) -> jax.Array:
        chex.assert_shape(obs, shape)
        return jnp.sum((jnp.ravel(obs).astype(jnp.int32) - low_j) * strides_j).astype(jnp.int32)

    return encode, num_states, dtype
