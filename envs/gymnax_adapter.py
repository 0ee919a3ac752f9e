"""gymnax environments with a task distribution: ``make_gymnax("CartPole-v1") -> (env, params)``.

gymnax >= 1.0 environments already have this project's API; the adapter only adds
``sample_params(key) -> params``. A gymnax environment is a single task, so ``sample_params``
returns the default params (as arrays, so ``jax.vmap(env.sample_params)(keys)`` gives a batch
of identical tasks). Everything else (``reset``, ``step``, spaces, ``step_env``, ...) is the
wrapped environment's own method, so transitions are bitwise those of ``gymnax.make``.
"""

from __future__ import annotations

from typing import Any

import gymnax
import jax
import jax.numpy as jnp

__all__ = ["GymnaxAdapter", "make_gymnax"]


class GymnaxAdapter:
    """A gymnax environment plus ``sample_params``; all other attributes are the wrapped env's.

    Hashable (by identity) and stateless like the wrapped environment, so it can be passed as a
    static argument to ``jax.jit``.
    """

    def __init__(self, env: Any):
        self._env = env

    @property
    def unwrapped(self) -> Any:
        """The wrapped gymnax environment."""
        return self._env

    def sample_params(self, key: jax.Array) -> Any:
        """Draw a task: always the default params (gymnax envs are single-task).

        Leaves are returned as arrays so that a vmapped call yields a batch of params.
        """
        del key
        return jax.tree.map(jnp.asarray, self._env.default_params)

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not yet set (e.g. during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._env, name)

    def __repr__(self) -> str:
        return f"GymnaxAdapter({self._env.name})"


def make_gymnax(env_id: str, **env_kwargs: Any) -> tuple[GymnaxAdapter, Any]:
    """Build gymnax environment ``env_id`` (e.g. ``"CartPole-v1"``) and its default params.

    ``env_kwargs`` go to the gymnax constructor. Raises ``ValueError`` listing
    ``gymnax.registered_envs`` for an unknown id.
    """
    if env_id not in gymnax.registered_envs:
        raise ValueError(
            f"unknown gymnax environment id {env_id!r}; known: {', '.join(gymnax.registered_envs)}"
        )
    env, params = gymnax.make(env_id, **env_kwargs)
    return GymnaxAdapter(env), params
