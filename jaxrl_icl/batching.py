"""Batching that picks the faster form per backend: one after another on CPU, in parallel elsewhere.

On XLA's CPU backend a ``jax.vmap`` over many small, loop-heavy problems (EM fits, dynamic
programs) is often slower than running them one at a time: the batched buffers fall out of
cache, and a batched ``while_loop`` runs until its slowest member is done. On GPUs and TPUs the
batch is what fills the device. These helpers choose by ``jax.default_backend()`` at trace time,
so results are the same either way (up to float summation order).
"""

from __future__ import annotations

from typing import Any, Callable

import jax


def sequential_on_cpu() -> bool:
    """Whether :func:`map_batch` and :func:`batch_function` run batches one item at a time."""
    return jax.default_backend() == "cpu"


def map_batch(fn: Callable[..., Any], *xs: Any) -> Any:
    """``fn`` over the leading axis of every leaf of ``xs``: ``lax.map`` on CPU, ``vmap`` elsewhere."""
    if sequential_on_cpu():
        return jax.lax.map(lambda args: fn(*args), xs)
    return jax.vmap(fn)(*xs)


def batch_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose ``jax.vmap`` runs the batch one item at a time on CPU
    (``jax.custom_batching.sequential_vmap``) and as a plain ``vmap`` elsewhere."""
    return jax.custom_batching.sequential_vmap(fn) if sequential_on_cpu() else fn
