"""Environment wrappers with the gymnax API, so they compose and ``jax.vmap`` over keys/params.

- :class:`EpisodeStats`: running and last-finished episode return/length in ``info``.
- :class:`ObsNorm`: observations normalised by running mean/variance, clipped.
- :class:`Flatten`: observations flattened to float32[n] with a matching ``Box`` space.

A wrapper's ``reset``/``step`` call the wrapped env's (auto-reset included); attributes it does
not define (``default_params``, ``sample_params``, ``action_space``, ``num_actions``, ...) come
from the wrapped env. Methods that take the wrapped env's *state* (``step_env``, ``reset_env``,
``is_truncated``, ...) are not forwarded, because the wrapper's state is a different type.

Importing this module does not import gymnax (whose ``__init__`` loads matplotlib); the
``Box`` spaces the wrappers report are built on demand.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.running_moments import RunningMoments
from envs.spaces import is_box

__all__ = [
    "EpisodeStats",
    "EpisodeStatsState",
    "Flatten",
    "ObsNorm",
    "ObsNormState",
    "Wrapper",
]

_STATE_METHODS = frozenset(
    {"step_env", "reset_env", "observe", "get_obs", "is_truncated", "is_terminal",
     "is_terminated", "discount", "state_space"}
)


class Wrapper:
    """Base class: forwards ``reset``/``step`` and stateless attributes to ``env``.

    Hashable by identity, so it can be a static argument of ``jax.jit``.
    """

    def __init__(self, env: Any):
        self._env = env

    @property
    def unwrapped(self) -> Any:
        """The innermost environment."""
        return getattr(self._env, "unwrapped", self._env)

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not yet set (e.g. during unpickling): avoid infinite recursion
            raise AttributeError(name)
        if name in _STATE_METHODS:
            raise AttributeError(
                f"{type(self).__name__} does not forward {name!r}: it takes the wrapped "
                "env's state, which differs from this wrapper's state"
            )
        return getattr(self._env, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._env!r})"

    def _params(self, params: Any) -> Any:
        return self._env.default_params if params is None else params


# ----------------------------------------------------------------------------- EpisodeStats


@struct.dataclass
class EpisodeStatsState:
    """``episode_return`` float32 / ``episode_length`` int32: the running episode so far;
    ``returned_episode_return`` / ``returned_episode_length``: the last finished episode
    (0 before any); ``done_episodes`` int32: finished episodes since ``reset``."""

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array
    returned_episode_return: jax.Array
    returned_episode_length: jax.Array
    done_episodes: jax.Array


class EpisodeStats(Wrapper):
    """Track episode returns and lengths across auto-resets.

    ``step`` adds to ``info``: ``returned_episode_returns`` (float32) and
    ``returned_episode_lengths`` (int32), the return and length of the most recently finished
    episode (an episode ending at this step reports its full return here, and the next episode
    starts from 0); ``returned_episode`` (bool): an episode ended at this step
    (``terminated | truncated``); ``done_episodes`` (int32): episodes finished since ``reset``.
    """

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, EpisodeStatsState]:
        obs, env_state = self._env.reset(key, self._params(params))
        zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return obs, EpisodeStatsState(env_state, zero_f, zero_i, zero_f, zero_i, zero_i)

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self, key: jax.Array, state: EpisodeStatsState, action: Any, params: Any = None
    ) -> tuple[Any, EpisodeStatsState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, self._params(params)
        )
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + jnp.asarray(reward, jnp.float32)
        episode_length = state.episode_length + 1
        returned_return = jnp.where(done, episode_return, state.returned_episode_return)
        returned_length = jnp.where(done, episode_length, state.returned_episode_length)
        state = EpisodeStatsState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            returned_episode_return=returned_return,
            returned_episode_length=returned_length,
            done_episodes=state.done_episodes + done.astype(jnp.int32),
        )
        info = {
            **info,
            "returned_episode_returns": returned_return,
            "returned_episode_lengths": returned_length,
            "returned_episode": done,
            "done_episodes": state.done_episodes,
        }
        return obs, state, reward, terminated, truncated, info


# ----------------------------------------------------------------------------- ObsNorm


@struct.dataclass
class ObsNormState:
    """``moments``: :class:`~envs.running_moments.RunningMoments` of the observations seen
    since ``reset`` (``count`` float32, ``mean`` and population ``var`` float32[obs_shape])."""

    env_state: Any
    moments: RunningMoments


def _observe(state: ObsNormState, obs: jax.Array) -> ObsNormState:
    return state.replace(moments=state.moments.merge(obs[None]))


class ObsNorm(Wrapper):
    """Normalise observations by their running mean and variance, then clip.

    Every observation handed to the agent (from ``reset`` and from every ``step``, so after an
    auto-reset the first observation of the new episode) updates the statistics first; the
    returned observation is ``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` as float32.
    ``info["final_observation"]`` is normalised with the same statistics but not counted.

    Statistics live in the wrapper state, so they are per environment instance: under
    ``jax.vmap`` every vmapped env keeps its own statistics (they are not pooled over the
    batch), and ``reset`` starts them afresh. Requires a ``Box`` observation space.
    """

    def __init__(self, env: Any, clip: float = 10.0, eps: float = 1e-8):
        super().__init__(env)
        if not clip > 0:
            raise ValueError(f"ObsNorm: clip must be > 0, got {clip}")
        if not eps > 0:
            raise ValueError(f"ObsNorm: eps must be > 0, got {eps}")
        space = env.observation_space(env.default_params)
        if not is_box(space):
            raise ValueError(f"ObsNorm: needs a Box observation space, got {space!r}")
        self.clip = float(clip)
        self.eps = float(eps)
        self._obs_shape = tuple(space.shape)

    def observation_space(self, params: Any = None) -> Any:
        from gymnax.environments import spaces

        return spaces.Box(-self.clip, self.clip, self._obs_shape, jnp.float32)

    def _normalise(self, state: ObsNormState, obs: jax.Array) -> jax.Array:
        return state.moments.normalize(obs, self.clip, self.eps)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, ObsNormState]:
        obs, env_state = self._env.reset(key, self._params(params))
        obs = jnp.asarray(obs, jnp.float32)
        state = _observe(ObsNormState(env_state, RunningMoments.create(self._obs_shape)), obs)
        return self._normalise(state, obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self, key: jax.Array, state: ObsNormState, action: Any, params: Any = None
    ) -> tuple[jax.Array, ObsNormState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, self._params(params)
        )
        obs = jnp.asarray(obs, jnp.float32)
        state = _observe(state.replace(env_state=env_state), obs)
        info = {**info}
        if "final_observation" in info:
            final = jnp.asarray(info["final_observation"], jnp.float32)
            info["final_observation"] = self._normalise(state, final)
        return self._normalise(state, obs), state, reward, terminated, truncated, info


# ----------------------------------------------------------------------------- Flatten


class Flatten(Wrapper):
    """Flatten observations to float32[prod(obs_shape)]; ``observation_space`` is the matching
    ``Box`` (bounds broadcast to the observation shape and flattened). Requires a ``Box``
    observation space."""

    def __init__(self, env: Any):
        super().__init__(env)
        space = env.observation_space(env.default_params)
        if not is_box(space):
            raise ValueError(f"Flatten: needs a Box observation space, got {space!r}")

    def observation_space(self, params: Any = None) -> Any:
        from gymnax.environments import spaces

        space = self._env.observation_space(self._params(params))
        size = int(np.prod(space.shape))

        def flat(bound: Any) -> jax.Array:
            return jnp.broadcast_to(jnp.asarray(bound, jnp.float32), space.shape).reshape(size)

        return spaces.Box(flat(space.low), flat(space.high), (size,), jnp.float32)

    @staticmethod
    def _flat(obs: Any) -> jax.Array:
        return jnp.asarray(obs, jnp.float32).reshape(-1)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, Any]:
        obs, state = self._env.reset(key, self._params(params))
        return self._flat(obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self, key: jax.Array, state: Any, action: Any, params: Any = None
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, self._params(params)
        )
        info = {**info}
        if "final_observation" in info:
            info["final_observation"] = self._flat(info["final_observation"])
        return self._flat(obs), state, reward, terminated, truncated, info
