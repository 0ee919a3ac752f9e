"""A fixed-capacity replay buffer as a pytree ring buffer (jittable, vmappable over seeds).

The buffer holds any pytree of transitions: every leaf of ``buffer.data`` has a leading
``[capacity]`` axis. Items are written in order at ``position`` (wrapping around, the
oldest overwritten first); entries ``0 .. size - 1`` are valid, so uniform sampling draws
indices in ``[0, size)``::

    buffer = replay_init({"obs": jnp.zeros(4), "action": jnp.int32(0)}, capacity=10_000)
    buffer = replay_add(buffer, batch)            # leaves [n, ...], n <= capacity
    sample = replay_sample(buffer, key, 128)      # leaves [128, ...]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["ReplayBuffer", "replay_add", "replay_init", "replay_sample"]


@struct.dataclass
class ReplayBuffer:
    """Ring-buffer state.

    Attributes:
      data: pytree of arrays, each ``[capacity, ...]``; entries past ``size`` are zeros.
      position: int32 scalar, index the next item is written to.
      size: int32 scalar, number of valid entries (``<= capacity``).
    """

    data: Any
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        """Number of entries the buffer holds (static)."""
        return jax.tree.leaves(self.data)[0].shape[0]


def replay_init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example`` (a pytree of arrays or scalars).

    Each leaf of ``data`` is zeros ``[capacity, *leaf.shape]`` with the leaf's dtype.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity: must be a positive int, got {capacity!r}")
    if not jax.tree.leaves(example):
        raise ValueError("example: needs at least one array leaf")
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example
    )
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def _check_items(buffer: ReplayBuffer, items: Any) -> int:
    """Shapes/dtypes of ``items`` (leaves ``[n, ...]``) against the buffer; returns ``n``."""
    buffer_leaves, buffer_def = jax.tree_util.tree_flatten_with_path(buffer.data)
    item_leaves, item_def = jax.tree_util.tree_flatten(items)
    if item_def != buffer_def:
        raise ValueError(f"items: tree structure {item_def} differs from the buffer's {buffer_def}")
    sizes = set()
    for (path, stored), item in zip(buffer_leaves, item_leaves):
        name = "items" + jax.tree_util.keystr(path)
        item = jnp.asarray(item)
        if item.ndim < 1 or item.shape[1:] != stored.shape[1:] or item.dtype != stored.dtype:
            raise ValueError(
                f"{name}: expected [n, {', '.join(map(str, stored.shape[1:]))}] {stored.dtype}, "
                f"got {item.shape} {item.dtype}"
            )
        sizes.add(item.shape[0])
    if len(sizes) != 1:
        raise ValueError(f"items: leaves disagree on the number of items: {sorted(sizes)}")
    n = sizes.pop()
    if not 1 <= n <= buffer.capacity:
        raise ValueError(f"items: must hold 1 to capacity={buffer.capacity} items, got {n}")
    return n


def replay_add(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Write ``n`` items (leaves ``[n, ...]``, ``1 <= n <= capacity``) in order.

    Item ``i`` goes to index ``(position + i) % capacity``; ``position`` advances by ``n``
    (mod capacity) and ``size`` by ``n`` up to ``capacity``. Shapes and dtypes must match
    the buffer's (ValueError naming the leaf otherwise).
    """
    n = _check_items(buffer, items)
    index = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % buffer.capacity
    data = jax.tree.map(lambda stored, item: stored.at[index].set(item), buffer.data, items)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % buffer.capacity,
        size=jnp.minimum(buffer.size + n, buffer.capacity),
    )


def replay_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` entries drawn uniformly with replacement from the ``size`` valid ones.

    Returns a pytree like ``data`` with leaves ``[batch_size, ...]``. The buffer must hold
    at least one item: on an empty buffer every draw is the zero-filled entry 0 (the
    caller gates its use, e.g. DQN's ``learning_starts``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive int, got {batch_size!r}")
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda stored: stored[index], buffer.data)
