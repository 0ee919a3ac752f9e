"""Oracle teacher for the toy task space (:mod:`envs.curriculum_toy`): it knows the rules.

The teacher mirrors the toy competence grid: the toy env's reward is the trained cube's
counter / 100, so each reported ``(task, competence)`` sets the counter of ``task``'s cube
to ``round(100 * competence)``, and the mirror equals the env's grid exactly. Sampling
picks a cube uniformly among those that are unlocked (an episode there would raise the
counter) and not yet mastered (counter <= 75), and a task uniform inside it (kept 1% of a
side away from the cube's borders); when no such cube is left, a cube uniform over all.
It is the hand-made upper reference of Portelas et al. (2019), not a general teacher.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from envs import curriculum_toy as toy
from jaxrl_icl.config import require_positive, require_types
from jaxrl_icl.curriculum.reports import check_report, count_report, set_if


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    """The toy grid the oracle mirrors (the task box is ``[0, 1]^nb_dims``).

    Attributes:
      nb_dims: dimensions of the task space.
      nb_cubes: cubes per dimension.
    """

    nb_dims: int = 2
    nb_cubes: int = 10

    def __post_init__(self) -> None:
        require_types(self)
        require_positive(self, "nb_dims")
        require_positive(self, "nb_cubes")

    @property
    def low(self) -> tuple[float, ...]:
        """Lower corner of the task box."""
        return (0.0,) * self.nb_dims

    @property
    def high(self) -> tuple[float, ...]:
        """Upper corner of the task box."""
        return (1.0,) * self.nb_dims


@struct.dataclass
class OracleState:
    """Attributes: config (static); grid: the mirrored :class:`envs.curriculum_toy.ToyState`;
    count: int32[] valid reports so far; num_rejected: int32[] reports skipped as non-finite
    (:mod:`jaxrl_icl.curriculum.reports`)."""

    config: OracleConfig = struct.field(pytree_node=False)
    grid: toy.ToyState
    count: jax.Array
    num_rejected: jax.Array


def init(key: jax.Array, config: OracleConfig) -> OracleState:
    """A mirror of a fresh grid (``key`` is unused)."""
    del key
    return OracleState(config, toy.init(config.nb_dims, config.nb_cubes), jnp.int32(0), jnp.int32(0))


def sample(key: jax.Array, state: OracleState) -> tuple[jax.Array, OracleState]:
    """A task float32[nb_dims] in an unlocked, unmastered cube; the state is unchanged."""
    cfg = state.config
    k_cube, k_inside = jax.random.split(key)
    frontier = (toy.unlocked(state.grid) & ~toy.mastered(state.grid)).reshape(-1)
    frontier = jnp.where(jnp.any(frontier), frontier, True)
    flat = jax.random.categorical(k_cube, jnp.where(frontier, 0.0, -jnp.inf))
    cube = jnp.stack(jnp.unravel_index(flat, state.grid.competence.shape)).astype(jnp.float32)
    inside = jax.random.uniform(k_inside, (cfg.nb_dims,), minval=0.01, maxval=0.99)
    return (cube + inside) / cfg.nb_cubes, state


def update(state: OracleState, task: jax.Array, competence: jax.Array) -> OracleState:
    """Set the mirrored counter of ``task``'s cube (float32[nb_dims]) to ``100 * competence`` (float32[]).

    A non-finite report is skipped and counted in ``num_rejected``."""
    cfg = state.config
    task, competence, valid = check_report(task, competence, cfg.nb_dims)
    cube = tuple(toy.cube_index(jnp.where(valid, task, 0.0), cfg.nb_cubes))
    counter = jnp.round(jnp.where(valid, competence, 0.0) * toy.MAX_COMPETENCE).astype(jnp.int32)
    grid = toy.ToyState(set_if(valid, state.grid.competence, cube, counter))
    return count_report(state.replace(grid=grid), valid)
