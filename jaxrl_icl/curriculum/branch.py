"""A conditional state update that stays a real branch under ``vmap`` (teacher refits and splits).

``jax.lax.cond`` on a batched predicate becomes a select that runs both branches for every
member of the batch, so a rare, costly update (a GMM refit, a region split) would run on every
call once the teacher state is vmapped over seeds, e.g. ``jax.vmap(init)`` driven from a host
loop. :func:`update_if` runs it in one real branch taken when *any* member is due, each member
keeping the update only if it is due itself.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp

State = TypeVar("State")


def _where(pred: jax.Array, new: State, old: State) -> State:
    """Leafwise ``new if pred else old`` for pytrees batched on a leading axis (``pred`` bool[B])."""
    return jax.tree.map(lambda a, b: jnp.where(pred.reshape(pred.shape + (1,) * (a.ndim - 1)), a, b), new, old)


@functools.cache
def _update_if(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The custom-batched ``(pred, state, *args) -> fn(state, *args) if pred else state`` of ``fn``."""

    @jax.custom_batching.custom_vmap
    def update_if(pred: jax.Array, state: Any, *args: Any) -> Any:
        return jax.lax.cond(pred, fn, lambda s, *_: s, state, *args)

    @update_if.def_vmap
    def batched_rule(axis_size: int, in_batched: list, pred: jax.Array, state: Any, *args: Any) -> tuple[Any, Any]:
        def batched(x: jax.Array, is_batched: bool) -> jax.Array:
            return x if is_batched else jnp.broadcast_to(x, (axis_size, *x.shape))

        pred = batched(pred, in_batched[0])
        state = jax.tree.map(batched, state, in_batched[1])
        args = jax.tree.map(batched, args, tuple(in_batched[2:]))
        out = jax.lax.cond(jnp.any(pred), lambda s: _where(pred, jax.vmap(fn)(s, *args), s), lambda s: s, state)
        return out, jax.tree.map(lambda _: True, out)

    return update_if


def update_if(pred: jax.Array, fn: Callable[..., State], state: State, *args: Any) -> State:
    """``fn(state, *args)`` when ``pred`` (bool[]), else ``state``; a real branch, also under ``vmap``.

    ``fn``, a module-level function (its batch rule is built once per function), returns a
    state of the same structure.
    """
    return _update_if(fn)(pred, state, *args)
