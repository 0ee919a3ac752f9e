"""Action selection from scores: random-tie argmax and epsilon-greedy.

One implementation for DQN, DηN, tabular Q-learning and the bandit baselines.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["epsilon_greedy", "random_argmax"]


def random_argmax(key: jax.Array, values: jax.Array) -> jax.Array:
    """int32 ``[...]`` index of a maximum of ``values [..., n]`` over the last axis, uniform
    over ties (``+inf`` allowed; ties broken independently for each leading index)."""
    logits = jnp.where(values == values.max(axis=-1, keepdims=True), 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def epsilon_greedy(
    explore_key: jax.Array,
    action_key: jax.Array,
    scores: jax.Array,
    epsilon: jax.Array | float,
    tie_key: jax.Array | None = None,
) -> jax.Array:
    """int32 ``[...]`` actions for ``scores [..., num_actions]``: with probability ``epsilon``
    (independently per leading index) a uniformly random action, otherwise a greedy one.

    Args:
      explore_key: draws who explores (``uniform < epsilon``; ``epsilon = 0`` never does).
      action_key: draws the random actions.
      scores: float ``[..., num_actions]``, larger is better.
      epsilon: float scalar in ``[0, 1]`` (may be traced).
      tie_key: None breaks greedy ties towards the lowest index (``argmax``); a key breaks
        them uniformly at random (:func:`random_argmax`).
    """
    if tie_key is None:
        greedy = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    else:
        greedy = random_argmax(tie_key, scores)
    random_action = jax.random.randint(action_key, greedy.shape, 0, scores.shape[-1], jnp.int32)
    explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
    return jnp.where(explore, random_action, greedy)
