"""Record D4RL-style datasets from JAX environments: a policy's rollouts, or a learner's own
rollouts (its learning history), as the six D4RL arrays.

Rollouts run in ``num_envs`` environments at once for ``num_steps`` steps (one jitted
``lax.scan``), then each environment's stream becomes consecutive episodes. Where the env
reports the true successor of an episode's last step (``info["final_observation"]``, as this
toolkit's envs do) every step is kept; otherwise successors are built as
``d4rl.qlearning_dataset`` does (:func:`~jaxrl_icl.offline.dataset.qlearning_transitions`).
The end of the recording cuts each stream with a timeout.

Continuous actions are stored divided by ``action_scale`` (the env's symmetric bound), so the
offline algorithms see actions in ``[-1, 1]`` as in D4RL; multiply by it to act in the env.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_icl.offline.dataset import episode_bounds, qlearning_transitions
from jaxrl_icl.rl.collect import finished_episode_returns

# (policy_params, key, obs [num_envs, ...]) -> env actions [num_envs, ...]; the params are an
# argument of the jitted rollout, so one compiled rollout serves every snapshot of a learner
Policy = Callable[[Any, jax.Array, jax.Array], jax.Array]


def streams_to_arrays(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                      truncated: np.ndarray, next_obs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """D4RL arrays from step-major recordings ``[T, E, ...]`` of ``E`` environment streams.

    Streams are laid out one after another; each stream's last step gets a timeout unless it
    is terminal. Without ``next_obs`` successors follow ``qlearning_transitions`` (steps cut
    by a timeout are dropped). Observations are flattened to ``[N, obs]``.
    """
    t, e = rewards.shape
    major = lambda x: np.swapaxes(np.asarray(x), 0, 1).reshape(t * e, *np.asarray(x).shape[2:])
    terminals = major(terminated).astype(bool)
    timeouts = major(truncated).astype(bool)
    stream_end = np.zeros((e, t), bool)
    stream_end[:, -1] = True
    timeouts |= stream_end.reshape(-1) & ~terminals
    arrays = {
        "observations": major(obs).reshape(t * e, -1).astype(np.float32),
        "actions": major(actions),
        "rewards": major(rewards).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }
    if next_obs is None:
        return qlearning_transitions(arrays, source="recording")
    arrays["next_observations"] = major(next_obs).reshape(t * e, -1).astype(np.float32)
    return arrays


@functools.lru_cache(maxsize=32)
def _rollout_fn(env: Any, policy: Policy, num_envs: int, num_steps: int) -> Callable:
    """Jitted ``(key, env_params, policy_params) -> (obs, action, reward, terminated, truncated,
    final_obs)``, each step-major ``[T, E, ...]``; cached per env, policy and sizes."""
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    @jax.jit
    def run(key, env_params, policy_params):
        key, k_reset = jax.random.split(key)
        obs, state = reset(jax.random.split(k_reset, num_envs), env_params)

        def body(carry, _):
            obs, state, key = carry
            key, k_act, k_step = jax.random.split(key, 3)
            action = policy(policy_params, k_act, obs)
            next_obs, state, reward, terminated, truncated, info = step(
                jax.random.split(k_step, num_envs), state, action, env_params)
            final = info.get("final_observation", next_obs)
            return (next_obs, state, key), (obs, action, reward, terminated, truncated, final)

        return jax.lax.scan(body, (obs, state, key), None, num_steps)[1]

    return run


def _rollout(key, env, env_params, policy, policy_params, num_envs, num_steps):
    return jax.device_get(_rollout_fn(env, policy, num_envs, num_steps)(key, env_params, policy_params))


def record_rollouts(key: jax.Array, env: Any, env_params: Any, policy: Policy, policy_params: Any = None, *,
                    num_envs: int, num_steps: int, action_scale: float | np.ndarray = 1.0) -> dict[str, np.ndarray]:
    """Run ``policy`` in ``num_envs`` envs for ``num_steps`` steps; the D4RL arrays of all of it.

    ``policy(policy_params, key, obs [num_envs, ...]) -> env actions [num_envs, ...]``; stored actions are
    ``action / action_scale`` for continuous spaces (integer actions are stored as they are).
    """
    obs, action, reward, terminated, truncated, final = _rollout(key, env, env_params, policy, policy_params,
                                                                 num_envs, num_steps)
    has_final = _reports_final_observation(env, env_params)
    return streams_to_arrays(obs, scale_actions(action, action_scale), reward, terminated, truncated,
                             final if has_final else None)


def scale_actions(action: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """Env actions as stored: continuous ones divided by ``scale`` (float32), integer ones as
    they are."""
    action = np.asarray(action)
    if np.issubdtype(action.dtype, np.floating):
        return (action / np.asarray(scale, np.float32)).astype(np.float32)
    return action


def _reports_final_observation(env: Any, env_params: Any) -> bool:
    """Whether ``env.step``'s info carries ``final_observation`` (checked on one abstract step)."""
    def one(key):
        _, state = env.reset(key, env_params)
        action = env.action_space(env_params).sample(key)
        return env.step(key, state, action, env_params)[-1]

    return "final_observation" in jax.eval_shape(one, jax.random.PRNGKey(0))


def episode_returns(arrays: dict[str, np.ndarray], max_episode_steps: int | None = None) -> np.ndarray:
    """Undiscounted returns [E] of the episodes of D4RL ``arrays``. With ``max_episode_steps``
    only complete episodes count: those ending in a terminal state or lasting the env's limit
    (not those cut short by the end of a recording stream)."""
    starts, ends = episode_bounds(arrays["terminals"], arrays["timeouts"])
    csum = np.concatenate([[0.0], np.cumsum(arrays["rewards"], dtype=np.float64)])
    returns = csum[ends] - csum[starts]
    if max_episode_steps is None:
        return returns
    complete = np.asarray(arrays["terminals"], bool)[ends - 1] | (ends - starts >= max_episode_steps)
    return returns[complete]


def complete_episode_returns(reward: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Returns [K] of every complete episode of step-major recordings ``reward``, ``done``
    ``[T, E]`` (``done = terminated | truncated``), stream after stream; the unfinished tail of
    each stream is left out."""
    return np.concatenate([finished_episode_returns(r[None], d[None])[0]
                           for r, d in zip(np.asarray(reward).T, np.asarray(done).T)])


def reference_return(key: jax.Array, env: Any, env_params: Any, policy: Policy, policy_params: Any = None, *,
                     num_episodes: int, max_episode_steps: int) -> float:
    """Mean undiscounted return of ``policy`` over ``num_episodes`` complete episodes (one per
    env, each its first episode) of an env whose episodes end within ``max_episode_steps``."""
    _, _, reward, terminated, truncated, _ = _rollout(key, env, env_params, policy, policy_params, num_episodes,
                                                      max_episode_steps)
    done = np.asarray(terminated) | np.asarray(truncated)  # [T, E]
    if not done.any(axis=0).all():
        raise ValueError(f"an episode did not end within max_episode_steps={max_episode_steps}")
    first_end = np.argmax(done, axis=0)
    in_first = np.arange(done.shape[0])[:, None] <= first_end[None, :]
    return float(np.mean(np.sum(np.where(in_first, np.asarray(reward, np.float64), 0.0), axis=0)))


def uniform_policy(env: Any, env_params: Any) -> Policy:
    """A policy drawing uniformly from the env's action space (the ``random`` quality)."""
    space = env.action_space(env_params)

    def act(params: Any, key: jax.Array, obs: jax.Array) -> jax.Array:
        del params
        return jax.vmap(space.sample)(jax.random.split(key, obs.shape[0]))

    return act


def epsilon_optimal_policy(optimal_action: Callable[[jax.Array, Any], jax.Array], num_actions: int) -> Policy:
    """The policy ``(env_params, epsilon)``-parameterised: in each env, with probability
    ``epsilon`` an action uniform over ``num_actions``, else ``optimal_action(obs, env_params)``
    (int32). ``epsilon = 1`` is the uniform policy and ``0`` the optimal one, so one compiled
    rollout serves every quality and task (the task is read from ``env_params``)."""

    def act(params: tuple[Any, jax.Array], key: jax.Array, obs: jax.Array) -> jax.Array:
        env_params, epsilon = params
        k_explore, k_action = jax.random.split(key)
        explore = jax.random.uniform(k_explore, obs.shape[:1]) < epsilon
        uniform = jax.random.randint(k_action, obs.shape[:1], 0, num_actions, dtype=jnp.int32)
        optimal = jax.vmap(optimal_action, in_axes=(0, None))(obs, env_params).astype(jnp.int32)
        return jnp.where(explore, uniform, optimal)

    return act


def action_scale(env: Any, env_params: Any) -> np.ndarray:
    """The symmetric bound of a continuous action space (``high``; checks ``low == -high``)."""
    space = env.action_space(env_params)
    low, high = np.broadcast_arrays(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32))
    if not np.allclose(low, -high):
        raise ValueError(f"action space bounds [{low}, {high}] are not symmetric; rescale the env's actions first")
    return high
