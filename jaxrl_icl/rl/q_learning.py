"""Tabular Q-learning with a decaying epsilon-greedy policy, as one ``make_train`` closure.

For environments with a finite, integer observation: a ``Discrete(n)`` state index (the
tabular MDPs) or an integer ``Box`` with finite bounds (grid positions such as Dark Room's
``int32[2]`` ``(x, y)``, indexed row-major: ``x * size + y``). The Q-table
``float32[num_states, num_actions]`` lives in the runner state.

One ``update`` is one episode: every one of the ``num_envs`` parallel environments is reset
and stepped for ``horizon = env_params.max_steps_in_episode`` steps (read once, statically,
from the params given to :func:`make_train`). For environments that end only at the time
limit (all grid and tabular envs here) that is exactly one episode per env; if an env
terminates early, it auto-resets and keeps learning for the rest of the update, but
``episode_return`` counts only the first episode. The ``num_envs`` transitions of a step
update the one shared table one after another (a ``lax.scan`` over envs), so the result is
plain sequential Q-learning. Targets bootstrap on truncation (from the true final
observation) and not on termination.

Epsilon decays linearly from ``epsilon_start`` to ``epsilon_end`` over the first
``epsilon_decay_episodes`` episodes and then stays at ``epsilon_end``. Greedy choices break
ties uniformly at random, so an all-zero table explores like a random walk.

Vmappable over seeds and tasks::

    env, _ = envs.make("darkroom-9x9")
    params = jax.vmap(lambda g: env.default_params.replace(goal=g))(all_goals(9))
    trainer = make_train(QLearningConfig(), env)
    state, metrics = jax.jit(jax.vmap(trainer))(jax.random.split(key, 81), params)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.spaces import exact_dtype, is_discrete, state_encoder
from jaxrl_icl.config import require_in, require_positive, require_types
from jaxrl_icl.rl.action_selection import epsilon_greedy
from jaxrl_icl.trainer import Trainer

__all__ = [
    "QLearningConfig",
    "QLearningState",
    "epsilon_schedule",
    "make_train",
]


@dataclasses.dataclass(frozen=True)
class QLearningConfig:
    """Tabular Q-learning hyperparameters.

    Attributes:
      num_episodes: episodes per env, i.e. updates in a full run.
      num_envs: parallel environments sharing one Q-table (per seed/task).
      lr: step size alpha of the update Q(s, a) += alpha * (target - Q(s, a)).
      gamma: discount factor of the targets.
      epsilon_start: exploration rate of the first episode.
      epsilon_end: exploration rate once the decay is over.
      epsilon_decay_episodes: episodes over which epsilon decays linearly to epsilon_end.
      q_init: initial value of every Q-table entry (> 0 is optimistic).
      record_history: also return every env step (learning histories).
    """

    num_episodes: int = 1000
    num_envs: int = 1
    lr: float = 0.1
    gamma: float = 0.9
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_episodes: int = 500
    q_init: float = 0.0
    record_history: bool = False

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_episodes", "num_envs", "epsilon_decay_episodes"):
            require_positive(self, name)
        require_in(self, "lr", 0.0, 1.0)
        require_positive(self, "lr")
        require_in(self, "gamma", 0.0, 1.0)
        require_in(self, "epsilon_start", 0.0, 1.0)
        require_in(self, "epsilon_end", 0.0, 1.0)


@struct.dataclass
class QLearningState:
    """Runner state of one seed/task.

    ``q``: float32[num_states, num_actions]; ``env_params``: the task; ``key``: PRNG key;
    ``episode``: int32 episodes (updates) done.
    """

    q: jax.Array
    env_params: Any
    key: jax.Array
    episode: jax.Array


def epsilon_schedule(config: QLearningConfig, episode: jax.Array) -> jax.Array:
    """float32 exploration rate of episode ``episode`` (0-based): linear decay, then flat."""
    frac = jnp.minimum(jnp.asarray(episode, jnp.float32) / config.epsilon_decay_episodes, 1.0)
    return jnp.float32(config.epsilon_start + frac * (config.epsilon_end - config.epsilon_start))


def _spaces(env: Any, params: Any) -> tuple[Callable, int, np.dtype, int, np.dtype, int]:
    """``(encode, num_states, obs_dtype, num_actions, action_dtype, horizon)`` for ``env``."""
    encode, num_states, obs_dtype = state_encoder(env.observation_space(params))
    action_space = env.action_space(params)
    if not is_discrete(action_space):
        raise ValueError(f"action_space: tabular Q-learning needs a Discrete space, got {action_space!r}")
    num_actions = int(action_space.n)
    horizon = getattr(params, "max_steps_in_episode", None)
    if horizon is None or np.ndim(horizon) != 0 or int(horizon) < 1:
        raise ValueError(f"env_params.max_steps_in_episode: need a positive scalar horizon, got {horizon!r}")
    return encode, num_states, obs_dtype, num_actions, exact_dtype(action_space), int(horizon)


def make_train(config: QLearningConfig, env: Any, env_params: Any = None) -> Trainer:
    """Build tabular Q-learning for ``env``.

    Args:
      config: hyperparameters.
      env: a gymnax-API env with a finite integer observation space (see
        :func:`envs.spaces.state_encoder`) and a ``Discrete`` action space.
      env_params: params from which the spaces and the horizon (steps per update, a
        concrete scalar ``max_steps_in_episode``) are read (default ``env.default_params``).
        Params given to the trainer must have the same spaces and horizon.

    Returns:
      A ``Trainer``: ``init(key, env_params) -> QLearningState``; ``update(state, env_params) ->
      (state, metrics)`` with float32 scalars ``episode_return`` (mean over envs of the
      return of the update's first episode) and ``epsilon``; with ``record_history`` also
      ``history/obs`` ``[horizon, num_envs, *obs_shape]`` (narrowest exact int dtype),
      ``history/action`` ``[horizon, num_envs]`` (narrowest int), ``history/reward`` float32,
      ``history/terminated`` and ``history/truncated`` bool, all ``[horizon, num_envs]``;
      step ``t`` is ``(obs_t, action_t, reward_t, ...)``, the action taken at ``obs_t`` and
      its outcome.

    Raises:
      TypeError for a config of another class; ValueError naming the space or field that
      does not fit.
    """
    if not isinstance(config, QLearningConfig):
        raise TypeError(f"config must be a QLearningConfig, got {type(config).__name__}")
    space_params = env.default_params if env_params is None else env_params
    encode, num_states, obs_dtype, num_actions, action_dtype, horizon = _spaces(env, space_params)
    num_envs = config.num_envs
    batched_reset = jax.vmap(env.reset, in_axes=(0, None))
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    batched_encode = jax.vmap(encode)

    def init(key: jax.Array, env_params: Any) -> QLearningState:
        q = jnp.full((num_states, num_actions), config.q_init, jnp.float32)
        return QLearningState(q=q, env_params=env_params, key=key, episode=jnp.int32(0))

    def td_update(q: jax.Array, transition: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        s, a, r, terminated, s_next = transition
        bootstrap = jnp.where(terminated, 0.0, config.gamma * q[s_next].max())
        q = q.at[s, a].add(config.lr * (r + bootstrap - q[s, a]))
        return q, None

    def act(key: jax.Array, q_row: jax.Array, epsilon: jax.Array) -> jax.Array:
        """int32 epsilon-greedy action for ``q_row [num_actions]``, greedy ties broken at random."""
        explore_key, random_key, tie_key = jax.random.split(key, 3)
        return epsilon_greedy(explore_key, random_key, q_row, epsilon, tie_key)

    def update(state: QLearningState, _env_params: Any) -> tuple[QLearningState, dict[str, jax.Array]]:
        """One episode per env; the task is ``state.env_params`` (set by ``init``), not the argument."""
        key, reset_key, rollout_key = jax.random.split(state.key, 3)
        epsilon = epsilon_schedule(config, state.episode)
        params = state.env_params
        obs, env_state = batched_reset(jax.random.split(reset_key, num_envs), params)

        def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, tuple]:
            q, obs, env_state, alive = carry
            act_key, env_key = jax.random.split(step_key)
            s = batched_encode(obs)
            act_keys = jax.random.split(act_key, num_envs)
            action = jax.vmap(act, in_axes=(0, 0, None))(act_keys, q[s], epsilon)
            next_obs, env_state, reward, terminated, truncated, info = batched_step(
                jax.random.split(env_key, num_envs), env_state, action, params
            )
            s_next = batched_encode(info["final_observation"])
            q, _ = jax.lax.scan(td_update, q, (s, action, reward, terminated, s_next))
            first_episode_reward = jnp.where(alive, reward, 0.0)
            alive = alive & ~(terminated | truncated)
            out = (obs, action, reward, terminated, truncated, first_episode_reward)
            return (q, next_obs, env_state, alive), out

        carry = (state.q, obs, env_state, jnp.ones((num_envs,), bool))
        (q, _, _, _), traj = jax.lax.scan(step, carry, jax.random.split(rollout_key, horizon))
        obs_t, action_t, reward_t, terminated_t, truncated_t, first_t = traj
        metrics = {"episode_return": first_t.sum(axis=0).mean(), "epsilon": epsilon}
        if config.record_history:
            metrics["history/obs"] = obs_t.astype(obs_dtype)
            metrics["history/action"] = action_t.astype(action_dtype)
            metrics["history/reward"] = reward_t.astype(jnp.float32)
            metrics["history/terminated"] = terminated_t.astype(bool)
            metrics["history/truncated"] = truncated_t.astype(bool)
        return state.replace(q=q, key=key, episode=state.episode + 1), metrics

    return Trainer(
        init=init, update=update, num_updates=config.num_episodes,
        env_steps_per_update=horizon * num_envs,
    )

