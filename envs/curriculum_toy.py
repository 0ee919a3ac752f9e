"""The toy task space of Portelas et al. (2019) for comparing curriculum teachers.

Not a gymnax environment: there is no observation or action, only a pure competence model
that a teacher queries one task at a time. The task space ``[0, 1]^n`` is cut into
``nb_cubes`` hypercubes per dimension; each cube holds a competence counter in 0..100.
An episode on task ``p`` lands in one cube, whose counter rises by 1 (capped at 100) when
the cube is the origin cube (all indices 0) or when at least one of its "previous"
neighbours (every index equal or one lower, clipped at 0, not the cube itself) has
competence >= 75. The episode's reward is the cube's counter / 100 after the update.
The score is the percentage of cubes with competence > 75.

A task ``p`` maps to cube ``min(floor(p * nb_cubes), nb_cubes - 1)`` per dimension (so
``p = 1`` is in the last cube); tasks are expected in ``[0, 1]^n`` and teachers clip to
their box, out-of-range values are clipped to the border cubes.

Everything is jittable and vmappable (many independent competence grids at once)::

    state = init(nb_dims=2, nb_cubes=10)
    state, reward = episode(state, jnp.array([0.05, 0.02]))
    percent = score(state)
"""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

MAX_COMPETENCE = 100
UNLOCK_COMPETENCE = 75  # a neighbour unlocks a cube at competence >= 75
MASTERED_COMPETENCE = 75  # a cube counts as mastered at competence > 75


@struct.dataclass
class ToyState:
    """Competence of every cube: int32[nb_cubes] * nb_dims, values in 0..100."""

    competence: jax.Array


def init(nb_dims: int = 2, nb_cubes: int = 10) -> ToyState:
    """All cubes at competence 0; ValueError naming the argument when not >= 1."""
    for name, value in (("nb_dims", nb_dims), ("nb_cubes", nb_cubes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a positive int, got {value!r}")
    return ToyState(jnp.zeros((nb_cubes,) * nb_dims, jnp.int32))


def cube_index(task: jax.Array, nb_cubes: int) -> jax.Array:
    """Cube of ``task`` float32[nb_dims] in ``[0, 1]^n``: int32[nb_dims] in 0..nb_cubes-1."""
    idx = jnp.floor(jnp.asarray(task, jnp.float32) * nb_cubes).astype(jnp.int32)
    return jnp.clip(idx, 0, nb_cubes - 1)


def _previous_offsets(nb_dims: int) -> np.ndarray:
    """int32[2^n - 1, n]: every 0/1 offset vector except all zeros."""
    return np.array(list(itertools.product((0, 1), repeat=nb_dims))[1:], np.int32).reshape(-1, nb_dims)


def _is_unlocked(comp: jax.Array, idx: jax.Array) -> jax.Array:
    """Whether cube ``idx`` int[nb_dims] trains: the origin, or a previous neighbour at >= 75."""
    neighbours = jnp.maximum(idx[None, :] - _previous_offsets(comp.ndim), 0)  # [2^n - 1, n]
    is_self = jnp.all(neighbours == idx[None, :], axis=-1)
    neighbour_comp = comp[tuple(neighbours.T)]
    return jnp.all(idx == 0) | jnp.any((neighbour_comp >= UNLOCK_COMPETENCE) & ~is_self)


def episode(state: ToyState, task: jax.Array) -> tuple[ToyState, jax.Array]:
    """Play one episode on ``task`` float32[nb_dims]: ``(new_state, reward float32[])``, reward in [0, 1]."""
    comp = state.competence
    chex.assert_shape(task, (comp.ndim,))
    idx = cube_index(task, comp.shape[0])
    cell = tuple(idx)
    new_value = jnp.where(_is_unlocked(comp, idx), jnp.minimum(comp[cell] + 1, MAX_COMPETENCE), comp[cell])
    new_state = ToyState(comp.at[cell].set(new_value))
    return new_state, new_value.astype(jnp.float32) / MAX_COMPETENCE


def unlocked(state: ToyState) -> jax.Array:
    """Which cubes an episode would train: bool[nb_cubes] * nb_dims (the origin, or a previous
    neighbour at competence >= 75)."""
    comp = state.competence
    idx = jnp.indices(comp.shape).reshape(comp.ndim, -1).T  # [cubes, n]
    return jax.vmap(lambda i: _is_unlocked(comp, i))(idx).reshape(comp.shape)


def mastered(state: ToyState) -> jax.Array:
    """Which cubes count as mastered (competence > 75): bool[nb_cubes] * nb_dims."""
    return state.competence > MASTERED_COMPETENCE


def score(state: ToyState) -> jax.Array:
    """Percentage (0..100) of cubes with competence > 75, float32[]."""
    return 100.0 * jnp.mean(mastered(state))
