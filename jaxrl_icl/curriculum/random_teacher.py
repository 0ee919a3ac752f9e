"""Random teacher: every task uniform in the task box (the baseline of Portelas et al. 2019)."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_icl.curriculum.box import uniform_in_box, validate_box
from jaxrl_icl.config import require_types


@dataclasses.dataclass(frozen=True)
class RandomConfig:
    """Uniform task sampling.

    Attributes:
      low: lower corner of the task box.
      high: upper corner of the task box (``low < high`` in every dimension).
    """

    low: tuple[float, ...] = (0.0, 0.0)
    high: tuple[float, ...] = (1.0, 1.0)

    def __post_init__(self) -> None:
        require_types(self)
        validate_box(self)


@struct.dataclass
class RandomState:
    """Attributes: config (static); count: int32[] tasks reported through :func:`update`."""

    config: RandomConfig = struct.field(pytree_node=False)
    count: jax.Array


def init(key: jax.Array, config: RandomConfig) -> RandomState:
    """Fresh state (``key`` is unused: the teacher keeps no randomness of its own)."""
    del key
    return RandomState(config, jnp.int32(0))


def sample(key: jax.Array, state: RandomState) -> tuple[jax.Array, RandomState]:
    """A task uniform in the box: ``(float32[d], state)``."""
    return uniform_in_box(key, state.config.low, state.config.high), state


def update(state: RandomState, task: jax.Array, competence: jax.Array) -> RandomState:
    """Count the episode; the sampling distribution never changes."""
    chex.assert_shape(task, (len(state.config.low),))
    chex.assert_shape(competence, ())
    return state.replace(count=state.count + 1)
