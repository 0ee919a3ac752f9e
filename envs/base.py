"""A gymnax base class for environments whose episodes end only at the time limit.

gymnax's ``Environment.step`` splits the step key in two and computes a full reset with
its own randomness on every step, then selects it where the episode ended. When an
episode can end only by truncation (``state.time`` reaching the limit, never by a
random event), the step and the reset may share one key: exactly one of the two results
is kept, chosen by a flag that does not depend on the shared random numbers, so each
output still has its correct law. XLA then computes identical random draws once, which
halves the random-number cost of cheap environments (bandits, tabular MDPs).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment


def check_horizon(params: Any) -> None:
    """ValueError unless ``params.max_steps_in_episode`` is a positive integer (concrete)."""
    horizon = np.asarray(params.max_steps_in_episode)
    if horizon.shape != () or not np.issubdtype(horizon.dtype, np.integer) or horizon < 1:
        raise ValueError(f"max_steps_in_episode must be a positive int, got {params.max_steps_in_episode!r}")


class TimeLimitEnvironment(environment.Environment):
    """gymnax ``Environment`` whose ``step_env`` never terminates (``terminated`` is False).

    Subclasses draw their step and reset randomness with the same calls (same shape and
    distribution) so that the shared key lets XLA compute it once.
    """

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self, key: jax.Array, state: Any, action: Any, params: Any = None
    ) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """gymnax ``step`` with auto-reset on truncation, one key for step and reset."""
        if params is None:
            params = self.default_params
        obs_st, state_st, reward, terminated, info = self.step_env(key, state, action, params)
        truncated = self.is_truncated(state_st, params)
        obs_re, state_re = self.reset_env(key, params)
        state = jax.tree.map(lambda r, s: jax.lax.select(truncated, r, s), state_re, state_st)
        obs = jax.tree.map(lambda r, s: jax.lax.select(truncated, r, s), obs_re, obs_st)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
        return obs, state, reward, jnp.zeros_like(truncated), truncated, info
