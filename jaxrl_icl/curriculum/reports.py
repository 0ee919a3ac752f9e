"""The ``(task, competence)`` reports every teacher's ``update`` receives, and how bad ones are skipped.

A report is valid when its competence and every task coordinate are finite. Teachers skip an
invalid report inside jit, without a host round trip: the state is left exactly as it was
except ``num_rejected`` int32[], which counts the skipped reports (so a run with a NaN or
inf competence equals the run without that report, and says how many it dropped).
Buffers are written through :func:`set_if`, which costs one row, not a copy of the buffer.
"""

from __future__ import annotations

from typing import TypeVar

import chex
import jax
import jax.numpy as jnp

State = TypeVar("State")


def check_report(task: jax.Array, competence: jax.Array, dim: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(task float32[dim], competence float32[], valid bool[])``; shapes checked with chex."""
    task = jnp.asarray(task, jnp.float32)
    competence = jnp.asarray(competence, jnp.float32)
    chex.assert_shape(task, (dim,))
    chex.assert_shape(competence, ())
    return task, competence, jnp.isfinite(competence) & jnp.all(jnp.isfinite(task))


def set_if(valid: jax.Array, buffer: jax.Array, index: jax.Array | tuple, value: jax.Array) -> jax.Array:
    """``buffer`` with ``buffer[index] = value`` when ``valid`` (bool[]), else unchanged."""
    return buffer.at[index].set(jnp.where(valid, value, buffer[index]))


def count_report(state: State, valid: jax.Array) -> State:
    """``state`` with ``count`` advanced by a valid report, ``num_rejected`` by an invalid one."""
    return state.replace(count=state.count + valid.astype(jnp.int32),
                         num_rejected=state.num_rejected + (~valid).astype(jnp.int32))
