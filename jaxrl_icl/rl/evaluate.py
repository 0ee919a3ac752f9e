"""Policy evaluation by rollouts in the environment: deterministic policies ``obs -> action``
(:func:`policy_returns`, continuous or discrete) and greedy ones, for tabular and network
policies.

A policy is given as ``scores(obs) -> float[num_actions]`` (Q-values, logits, any values
whose argmax is the action): a Q-table read through the state encoder
(:func:`tabular_scores`), or a network's ``lambda obs: network.apply(params, obs)``. Every
function here is pure and traceable: jit it, and vmap it over tasks, seeds or parameters::

    scores = tabular_scores(env, env_params, q)
    returns = jax.jit(lambda k: greedy_returns(k, env, env_params, scores, 100, horizon))(key)
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from envs.spaces import state_encoder

__all__ = ["greedy_episode_return", "greedy_returns", "policy_episode_return", "policy_returns", "tabular_scores"]

ScoresFn = Callable[[jax.Array], jax.Array]


def tabular_scores(env: Any, env_params: Any, q: jax.Array) -> ScoresFn:
    """``obs -> q[s(obs)]`` for a table ``q`` ``float[num_states, num_actions]`` indexed like
    :func:`envs.spaces.state_encoder` of ``env``'s observation space."""
    encode, num_states, _ = state_encoder(env.observation_space(env_params))
    chex.assert_shape(q, (num_states, None))
    return lambda obs: q[encode(obs)]


def policy_episode_return(
    key: jax.Array, env: Any, env_params: Any, act: Callable[[jax.Array], jax.Array], num_steps: int
) -> jax.Array:
    """float32 return of the first episode of the deterministic policy ``act(obs) -> action``
    (any action the env takes: an int, or a continuous vector).

    Resets with ``key``'s first half, then runs ``num_steps`` steps (at least one episode's
    worth; a shorter episode's later rewards are masked out) on keys split from its second
    half.
    """
    reset_key, rollout_key = jax.random.split(key)
    obs, env_state = env.reset(reset_key, env_params)

    def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, None]:
        obs, env_state, alive, total = carry
        obs, env_state, reward, terminated, truncated, _ = env.step(step_key, env_state, act(obs), env_params)
        total = total + jnp.where(alive, reward, 0.0).astype(jnp.float32)
        return (obs, env_state, alive & ~(terminated | truncated), total), None

    carry = (obs, env_state, jnp.bool_(True), jnp.float32(0.0))
    (_, _, _, total), _ = jax.lax.scan(step, carry, jax.random.split(rollout_key, num_steps))
    return total


def policy_returns(
    key: jax.Array, env: Any, env_params: Any, act: Callable[[jax.Array], jax.Array], num_episodes: int,
    num_steps: int,
) -> jax.Array:
    """float32 ``[num_episodes]``: :func:`policy_episode_return` from each of
    ``jax.random.split(key, num_episodes)`` (independent resets and env randomness)."""
    episode = lambda k: policy_episode_return(k, env, env_params, act, num_steps)  # noqa: E731
    return jax.vmap(episode)(jax.random.split(key, num_episodes))


def greedy_episode_return(
    key: jax.Array, env: Any, env_params: Any, scores: ScoresFn, num_steps: int
) -> jax.Array:
    """float32 return of the first episode of the greedy policy ``argmax_a scores(obs)[a]``
    (:func:`policy_episode_return`). Ties go to the lowest action index, so a deterministic
    env gives a deterministic return."""
    act = lambda obs: jnp.argmax(scores(obs), axis=-1).astype(jnp.int32)  # noqa: E731
    return policy_episode_return(key, env, env_params, act, num_steps)


def greedy_returns(
    key: jax.Array, env: Any, env_params: Any, scores: ScoresFn, num_episodes: int, num_steps: int
) -> jax.Array:
    """float32 ``[num_episodes]``: :func:`greedy_episode_return` from each of
    ``jax.random.split(key, num_episodes)`` (independent resets and env randomness)."""
    episode = lambda k: greedy_episode_return(k, env, env_params, scores, num_steps)  # noqa: E731
    return jax.vmap(episode)(jax.random.split(key, num_episodes))
