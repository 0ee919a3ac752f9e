"""CartPole-v1 over a pool of tasks ``(pole half-length m, push force N)``, one drawn per episode.

A curriculum teacher proposes tasks; the student's parallel envs play them: every episode
draws its task uniformly from ``params.tasks`` at reset, so replacing ``params.tasks``
changes the episodes started afterwards (a running episode keeps its task). Dynamics,
reward and failure are gymnax's CartPole-v1 with ``length`` and ``force_mag`` set from the
task (``polemass_length`` kept consistent); the time limit is ``params.max_steps_in_episode``.

With ``fixed_length`` a failure (pole past 12 degrees or cart off the track) does not end
the episode: the system stays frozen where it failed and every later step pays 0 until the
time limit, so the return is CartPole's but every episode costs ``max_steps_in_episode``
env steps (as a walker stuck at an obstacle uses up its episode in Portelas et al. 2019).

``envs.make("cartpole-task-pool")`` builds it with one task, CartPole's own (0.5 m, 10 N);
``sample_params`` draws a pool of the same size log-uniformly in the env's
``length_range x force_range`` (0.1-1 m x 3-30 N by default, where the declared observation
space holds: far shorter poles or stronger pushes overshoot its angle bound in one step).
"""

from __future__ import annotations

from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from envs.base import check_horizon

__all__ = ["TaskPoolCartPole", "TaskPoolParams", "TaskPoolState", "make_task_pool_cartpole"]


@struct.dataclass
class TaskPoolParams:
    """``tasks`` float32[M, 2]: rows ``(pole half-length m, push force N)``; ``max_steps_in_episode``
    int: the time limit."""

    tasks: jax.Array
    max_steps_in_episode: int = 200


@struct.dataclass
class TaskPoolState:
    """The inner CartPole state, the task float32[2] its episode plays and bool[] ``fallen``
    (the pole has fallen or the cart left the track; only ever set with ``fixed_length``)."""

    inner: Any
    task: jax.Array
    fallen: jax.Array

    @property
    def time(self) -> jax.Array:
        """int32[] steps since the episode's reset."""
        return self.inner.time


class TaskPoolCartPole(environment.Environment):
    """CartPole-v1 whose every episode plays a task drawn uniformly from ``params.tasks`` at reset.

    Args:
      fixed_length: a failure freezes the system and pays 0 until the time limit instead of
        terminating the episode.
      length_range, force_range: ``(low, high)`` of :meth:`sample_params`'s log-uniform draws.
    """

    def __init__(self, fixed_length: bool = False, length_range: tuple[float, float] = (0.1, 1.0),
                 force_range: tuple[float, float] = (3.0, 30.0)) -> None:
        super().__init__()
        for name, (low, high) in (("length_range", length_range), ("force_range", force_range)):
            if not 0 < low < high:
                raise ValueError(f"{name} must be (low, high) with 0 < low < high, got {(low, high)}")
        self._cartpole = gymnax.environments.CartPole()
        self.fixed_length = fixed_length
        self.length_range, self.force_range = tuple(length_range), tuple(force_range)

    @property
    def default_params(self) -> TaskPoolParams:
        base = self._cartpole.default_params
        return TaskPoolParams(jnp.array([[base.length, base.force_mag]], jnp.float32))

    def sample_params(self, key: jax.Array, params: TaskPoolParams | None = None) -> TaskPoolParams:
        """A pool of ``len(params.tasks)`` tasks log-uniform in ``length_range x force_range``."""
        base = self.default_params if params is None else params
        log_low = jnp.log10(jnp.array([self.length_range[0], self.force_range[0]], jnp.float32))
        log_high = jnp.log10(jnp.array([self.length_range[1], self.force_range[1]], jnp.float32))
        log_tasks = jax.random.uniform(key, base.tasks.shape, jnp.float32, log_low, log_high)
        return base.replace(tasks=10.0**log_tasks)

    def validate_params(self, params: TaskPoolParams) -> None:
        """ValueError naming the field unless ``tasks`` is a non-empty [M, 2] of positive finite
        values and the horizon a positive int."""
        tasks = np.asarray(params.tasks)
        if tasks.ndim != 2 or tasks.shape[0] < 1 or tasks.shape[1] != 2:
            raise ValueError(f"tasks must be [M, 2] (half-length, force) with M >= 1, got shape {tasks.shape}")
        if not np.all(np.isfinite(tasks) & (tasks > 0)):
            raise ValueError(f"tasks must be positive and finite, got {tasks.tolist()}")
        check_horizon(params)

    def task_params(self, task: jax.Array, max_steps: int | jax.Array) -> Any:
        """gymnax CartPole params of ``task`` float32[2] with time limit ``max_steps``."""
        base = self._cartpole.default_params
        return base.replace(length=task[0], force_mag=task[1], polemass_length=base.masspole * task[0],
                            max_steps_in_episode=max_steps)

    def reset_env(self, key: jax.Array, params: TaskPoolParams) -> tuple[jax.Array, TaskPoolState]:
        k_task, k_reset = jax.random.split(key)
        task = params.tasks[jax.random.randint(k_task, (), 0, params.tasks.shape[0])]
        obs, inner = self._cartpole.reset_env(k_reset, self.task_params(task, params.max_steps_in_episode))
        return obs, TaskPoolState(inner, task, jnp.bool_(False))

    def step_env(
        self, key: jax.Array, state: TaskPoolState, action: jax.Array, params: TaskPoolParams
    ) -> tuple[jax.Array, TaskPoolState, jax.Array, jax.Array, dict[str, Any]]:
        inner_params = self.task_params(state.task, params.max_steps_in_episode)
        obs, inner, reward, failed, info = self._cartpole.step_env(key, state.inner, action, inner_params)
        if not self.fixed_length:
            return obs, TaskPoolState(inner, state.task, state.fallen), reward, failed, info
        frozen = state.inner.replace(time=state.inner.time + 1)
        inner = jax.tree.map(lambda f, n: jnp.where(state.fallen, f, n), frozen, inner)
        obs = jnp.where(state.fallen, self._cartpole.get_obs(frozen), obs)
        reward = jnp.where(state.fallen, 0.0, reward)
        return obs, TaskPoolState(inner, state.task, state.fallen | failed), reward, jnp.bool_(False), info

    def is_truncated(self, state: TaskPoolState, params: TaskPoolParams) -> jax.Array:
        return state.inner.time >= params.max_steps_in_episode

    def action_space(self, params: TaskPoolParams | None = None) -> Any:
        return self._cartpole.action_space(None)

    def observation_space(self, params: TaskPoolParams) -> Any:
        return self._cartpole.observation_space(self._cartpole.default_params)


def make_task_pool_cartpole(fixed_length: bool = False) -> tuple[TaskPoolCartPole, TaskPoolParams]:
    """``(env, default_params)``: one task, CartPole's own (0.5 m, 10 N); time limit 200."""
    env = TaskPoolCartPole(fixed_length)
    return env, env.default_params
