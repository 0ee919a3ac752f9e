"""Random teacher: every task uniform in the task box (the baseline of Portelas et al. 2019)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_icl.config import require_types
from jaxrl_icl.curriculum.box import uniform_in_box, validate_box
from jaxrl_icl.curriculum.reports import check_report, count_report


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
    """Attributes: config (static); count: int32[] valid reports through :func:`update`;
    num_rejected: int32[] reports skipped as non-finite (:mod:`jaxrl_icl.curriculum.reports`)."""

    config: RandomConfig = struct.field(pytree_node=False)
    count: jax.Array
    num_rejected: jax.Array


def init(key: jax.Array, config: RandomConfig) -> RandomState:
    """Fresh state (``key`` is unused: the teacher keeps no randomness of its own)."""
    del key
    return RandomState(config, jnp.int32(0), jnp.int32(0))


def sample(key: jax.Array, state: RandomState) -> tuple[jax.Array, RandomState]:
    """A task uniform in the box: ``(float32[d], state)``."""
    return uniform_in_box(key, state.config.low, state.config.high), state


def update(state: RandomState, task: jax.Array, competence: jax.Array) -> RandomState:
    """Count the report (a non-finite one in ``num_rejected``); the sampling distribution never changes."""
    _, _, valid = check_report(task, competence, len(state.config.low))
    return count_report(state, valid)
