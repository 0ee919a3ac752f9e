"""Evaluating offline policies in gymnasium's MuJoCo envs on the host.

A policy trained on a real D4RL or Minari MuJoCo file (``hopper-medium-v2.hdf5``,
``mujoco/hopper/medium-v0``) has no JAX env to be evaluated in; it runs in the matching
gymnasium env (``Hopper-v5``, ``HalfCheetah-v5``, ``Walker2d-v5``: observations 11 / 17 / 17,
actions 3 / 6 / 6, D4RL's sizes) on the host, one jitted policy call per step for every
episode (and seed) at once. :class:`HostEvaluator` has the interface of
:func:`jaxrl_icl.offline.evaluate.make_evaluator`'s ``evaluate(key, params) -> mean return``,
but is called between jitted training chunks, not inside jit.

gymnasium is imported only when an evaluator is built; it needs the optional extra
``offline`` (``pip install -e ".[offline]"``: gymnasium, mujoco, imageio).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_icl.offline.dataset import ObsNormalizer
from jaxrl_icl.offline.evaluate import env_policy

# D4RL robot name -> the gymnasium MuJoCo env its policies are evaluated in
GYMNASIUM_MUJOCO = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}

_D4RL_NAME = re.compile(r"^(hopper|halfcheetah|walker2d)-[a-z-]+-v\d+$")  # hopper-medium-v2
_MINARI_ID = re.compile(r"^mujoco/(hopper|halfcheetah|walker2d)/[a-z-]+-v\d+$")  # mujoco/hopper/medium-v0


def gymnasium_env_id(name: str) -> str | None:
    """The gymnasium MuJoCo env for a D4RL dataset name (``hopper-medium-v2``), a Minari id
    (``mujoco/hopper/medium-v0``) or a gymnasium id itself (``Hopper-v5``); None for anything
    else (a JAX env of ``envs.make``, such as ``brax:hopper``)."""
    if name in GYMNASIUM_MUJOCO.values():
        return name
    match = _D4RL_NAME.match(name.lower()) or _MINARI_ID.match(name.lower())
    return GYMNASIUM_MUJOCO[match.group(1)] if match else None


def _gymnasium():
    try:
        import gymnasium
        import gymnasium.envs.mujoco  # noqa: F401  (needs mujoco and imageio)
    except ImportError as err:
        raise ImportError(f"host evaluation in gymnasium's MuJoCo envs needs gymnasium, mujoco and imageio ({err}): "
                          'pip install -e ".[offline]"') from err
    return gymnasium


def episode_seeds(key: jax.Array, num_episodes: int) -> np.ndarray:
    """int64 [num_episodes]: the gymnasium reset seed of each evaluation episode drawn from ``key``."""
    return np.asarray(jax.random.randint(key, (num_episodes,), 0, 2**31 - 1), np.int64)


class HostEvaluator:
    """Mean return of a deterministic policy over ``num_episodes`` episodes of a gymnasium env.

    ``policy(params, obs [obs]) -> action [act]`` takes float32 observations normalised by
    ``normalizer`` and returns actions in the dataset's units, multiplied by
    ``action_scale`` before they reach the env. Episode ``i`` of an evaluation with ``key``
    resets with seed ``episode_seeds(key, num_episodes)[i]`` and lasts until it terminates,
    is truncated by the env's time limit, or reaches ``max_episode_steps`` steps (None: the
    env's limit, 1000 for the MuJoCo tasks). The policy is jitted once and called once per
    step for all episodes (and seeds) together.

    Attributes:
      obs_dim, action_dim: the env's flat observation and action sizes.
      max_episode_steps: the step limit in force.
    """

    def __init__(self, env_id: str, policy: Callable[[Any, jax.Array], jax.Array], *, num_episodes: int,
                 max_episode_steps: int | None = None, normalizer: ObsNormalizer | None = None,
                 action_scale: float = 1.0):
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        self._gym = _gymnasium()
        self.env_id = env_id
        self._envs: list[Any] = [self._gym.make(env_id)]
        limit = self._envs[0].spec.max_episode_steps
        self.max_episode_steps = int(max_episode_steps or limit or 0)
        if self.max_episode_steps < 1:
            raise ValueError(f"{env_id} has no time limit; pass max_episode_steps")
        self.num_episodes = num_episodes
        self.obs_dim = int(np.prod(self._envs[0].observation_space.shape))
        self.action_dim = int(np.prod(self._envs[0].action_space.shape))

        act = env_policy(policy, normalizer, action_scale)
        # params [S, ...], obs [S, E, obs] -> actions [S, E, act]
        self._act = jax.jit(jax.vmap(lambda params, obs: jax.vmap(lambda o: act(params, o))(obs)))

    def __call__(self, key: jax.Array, params: Any) -> np.float32:
        """Mean return over the episodes (float32), for one seed's ``params``."""
        params = jax.tree.map(lambda x: jnp.asarray(x)[None], params)
        return self.evaluate_seeds(jnp.asarray(key)[None], params)[0]

    def evaluate_seeds(self, keys: jax.Array, params: Any) -> np.ndarray:
        """float32 [S]: the mean return of each of ``S`` seeds' ``params`` (leading axis ``S``
        on every leaf), seed ``s`` evaluated with ``keys[s]``; all ``S * num_episodes``
        episodes run in lockstep."""
        num_seeds = len(keys)
        seeds = np.stack([episode_seeds(k, self.num_episodes) for k in keys])  # [S, E]
        while len(self._envs) < seeds.size:
            self._envs.append(self._gym.make(self.env_id))
        envs = self._envs[:seeds.size]
        obs = np.stack([env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds.reshape(-1))])
        returns = np.zeros(seeds.size, np.float64)
        alive = np.ones(seeds.size, bool)
        for _ in range(self.max_episode_steps):
            actions = np.asarray(self._act(params, jnp.asarray(
                obs.reshape(num_seeds, self.num_episodes, -1), jnp.float32))).reshape(seeds.size, -1)
            for i in np.flatnonzero(alive):
                obs[i], reward, terminated, truncated, _ = envs[i].step(actions[i])
                returns[i] += reward
                alive[i] = not (terminated or truncated)
            if not alive.any():
                break
        return returns.reshape(num_seeds, self.num_episodes).mean(axis=1).astype(np.float32)
