"""Token layouts for in-context RL over learning histories (inputs to the causal transformer).

Two layouts of a history ``(obs [B, T, ...], actions [B, T] int, rewards [B, T])``, where
step ``t`` is: observe ``obs[t]``, take ``actions[t]``, receive ``rewards[t]``:

* **step** (XLand-100B AD): one token per step, ``concat(onehot(a_{t-1}), r_{t-1}, obs_t)``
  of size ``A + 1 + obs_dim``; step 0 has an all-zero action one-hot and reward 0. The
  output at token ``t`` predicts ``a_t``. A linear input layer on a one-hot is an action
  embedding, so the transformer's input projection plays the role of ``emb(a)``.
* **triplet** (earlier AD code): three tokens per step, ``obs_t, a_t, r_t``, each of size
  ``3 + obs_dim + A + 1`` = [type one-hot (obs, action, reward) | obs slot | action one-hot
  slot | reward slot], other slots zero, so one linear layer acts as three separate
  embeddings. The output at the observation token ``3t`` predicts ``a_t``.

Each sequence function returns ``(tokens, action_positions)`` with ``action_positions``
int32 ``[T]``: ``outputs[:, action_positions[t]]`` are the logits for ``actions[:, t]``.
The single-token functions build the same tokens one at a time for cached rollouts.
Observations are flattened; actions must lie in ``[0, num_actions)`` (checked when the
values are concrete, i.e. outside ``jit``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

STEP_TOKENS_PER_STEP = 1
TRIPLET_TOKENS_PER_STEP = 3


def step_token_dim(obs_dim: int, num_actions: int) -> int:
    """Features per token of the one-token-per-step layout."""
    return num_actions + 1 + obs_dim


def triplet_token_dim(obs_dim: int, num_actions: int) -> int:
    """Features per token of the three-tokens-per-step layout."""
    return 3 + obs_dim + num_actions + 1


def _check_history(observations, actions, rewards, num_actions: int) -> None:
    if num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    if actions.ndim != 2:
        raise ValueError(f"actions: expected [B, T], got shape {actions.shape}")
    if rewards.shape != actions.shape:
        raise ValueError(f"rewards: shape {rewards.shape} must equal actions shape {actions.shape}")
    if observations.ndim < 2 or observations.shape[:2] != actions.shape:
        raise ValueError(f"observations: shape {observations.shape} must start with [B, T] = {actions.shape}")
    _check_actions(actions, num_actions, allow_none=False)


def _check_actions(actions, num_actions: int, *, allow_none: bool) -> None:
    """Integer dtype always; value range when the values are known (not under tracing)."""
    if not jnp.issubdtype(actions.dtype, jnp.integer):
        raise ValueError(f"actions: must be integers, got dtype {actions.dtype}")
    if isinstance(actions, jax.core.Tracer):
        return
    values = np.asarray(actions)
    low = -1 if allow_none else 0
    if values.size and (values.min() < low or values.max() >= num_actions):
        raise ValueError(
            f"actions: values must be in [{low}, {num_actions}), got range [{values.min()}, {values.max()}]"
        )


def _flat_obs(observations: jax.Array, batch_dims: int) -> jax.Array:
    shape = observations.shape[:batch_dims]
    return observations.reshape(*shape, math.prod(observations.shape[batch_dims:])).astype(jnp.float32)


# ----------------------------------------------------------------------------- one token per step


def step_token(obs: jax.Array, prev_action: jax.Array, prev_reward: jax.Array, num_actions: int) -> jax.Array:
    """Token ``[B, A + 1 + obs_dim]`` for observation ``obs [B, ...]`` after ``prev_action [B]``
    (int; ``-1`` = no previous action, at the start of a history) and ``prev_reward [B]``."""
    _check_actions(prev_action, num_actions, allow_none=True)
    if prev_action.shape != prev_reward.shape or obs.shape[:1] != prev_action.shape:
        raise ValueError(f"step_token: obs {obs.shape}, prev_action {prev_action.shape}, prev_reward "
                         f"{prev_reward.shape} must share the batch axis")
    return jnp.concatenate(
        [jax.nn.one_hot(prev_action, num_actions), prev_reward[..., None].astype(jnp.float32), _flat_obs(obs, 1)],
        axis=-1,
    )


def step_tokens(
    observations: jax.Array, actions: jax.Array, rewards: jax.Array, num_actions: int
) -> tuple[jax.Array, jax.Array]:
    """One token per step: ``(tokens [B, T, A + 1 + obs_dim] float32, action_positions [T])``.

    Token ``t`` holds ``(a_{t-1}, r_{t-1}, o_t)`` and its output predicts ``a_t`` (position ``t``).
    """
    _check_history(observations, actions, rewards, num_actions)
    batch = actions.shape[0]
    prev_actions = jnp.concatenate([jnp.full((batch, 1), -1, actions.dtype), actions[:, :-1]], axis=1)
    prev_rewards = jnp.concatenate([jnp.zeros((batch, 1), jnp.float32), rewards[:, :-1].astype(jnp.float32)], axis=1)
    tokens = jnp.concatenate(
        [jax.nn.one_hot(prev_actions, num_actions), prev_rewards[..., None], _flat_obs(observations, 2)], axis=-1
    )
    return tokens, jnp.arange(actions.shape[1], dtype=jnp.int32)


# ----------------------------------------------------------------------------- three tokens per step


def _triplet(kind: int, obs_part: jax.Array, action_part: jax.Array, reward_part: jax.Array) -> jax.Array:
    """``[..., 3 + obs_dim + A + 1]`` = type one-hot ``kind`` | obs | action one-hot | reward."""
    type_part = jnp.broadcast_to(jax.nn.one_hot(kind, 3), (*obs_part.shape[:-1], 3))
    return jnp.concatenate([type_part, obs_part, action_part, reward_part], axis=-1)


def triplet_obs_token(obs: jax.Array, num_actions: int) -> jax.Array:
    """Observation token ``[B, triplet_token_dim]`` for ``obs [B, ...]``."""
    flat = _flat_obs(obs, 1)
    zeros = jnp.zeros(flat.shape[:-1], jnp.float32)
    return _triplet(0, flat, jnp.zeros((*zeros.shape, num_actions)), zeros[..., None])


def triplet_action_token(action: jax.Array, obs_dim: int, num_actions: int) -> jax.Array:
    """Action token ``[B, triplet_token_dim]`` for ``action [B]`` int."""
    _check_actions(action, num_actions, allow_none=False)
    zeros = jnp.zeros(action.shape, jnp.float32)
    return _triplet(1, jnp.zeros((*action.shape, obs_dim)), jax.nn.one_hot(action, num_actions), zeros[..., None])


def triplet_reward_token(reward: jax.Array, obs_dim: int, num_actions: int) -> jax.Array:
    """Reward token ``[B, triplet_token_dim]`` for ``reward [B]``."""
    reward = reward.astype(jnp.float32)
    return _triplet(
        2, jnp.zeros((*reward.shape, obs_dim)), jnp.zeros((*reward.shape, num_actions)), reward[..., None]
    )


def triplet_tokens(
    observations: jax.Array, actions: jax.Array, rewards: jax.Array, num_actions: int
) -> tuple[jax.Array, jax.Array]:
    """Three tokens per step: ``(tokens [B, 3T, 3 + obs_dim + A + 1] float32, action_positions [T])``.

    Tokens ``3t, 3t+1, 3t+2`` are ``o_t, a_t, r_t``; the output at ``3t`` predicts ``a_t``.
    """
    _check_history(observations, actions, rewards, num_actions)
    batch, length = actions.shape
    flat = _flat_obs(observations, 2)
    obs_dim = flat.shape[-1]
    obs_tok = triplet_obs_token(flat.reshape(batch * length, obs_dim), num_actions)
    act_tok = triplet_action_token(actions.reshape(-1), obs_dim, num_actions)
    rew_tok = triplet_reward_token(rewards.reshape(-1), obs_dim, num_actions)
    tokens = jnp.stack([obs_tok, act_tok, rew_tok], axis=1)  # [B*T, 3, D]
    tokens = tokens.reshape(batch, TRIPLET_TOKENS_PER_STEP * length, tokens.shape[-1])
    return tokens, TRIPLET_TOKENS_PER_STEP * jnp.arange(length, dtype=jnp.int32)


def action_logits(outputs: jax.Array, action_positions: jax.Array) -> jax.Array:
    """The outputs ``[B, T, d_out]`` that predict each step's action, from ``outputs [B, L, d_out]``."""
    return outputs[:, action_positions]
