"""Multi-armed and linear contextual bandits as gymnax environments.

``BanditEnv`` (Bernoulli or Gaussian arms)
    A task is the vector of arm means ``params.means: float32[num_arms]`` (plus
    ``noise_std`` for Gaussian arms). Pulling arm ``a`` pays ``Bernoulli(means[a])`` as
    ``0.0``/``1.0`` or ``Normal(means[a], noise_std)``. Bandits have no state, so the
    observation is a constant ``float32[1]`` zero. Episodes never terminate and are truncated
    after ``max_steps_in_episode`` pulls (default 500, the DPT horizon). Task distribution:
    ``means ~ U(0, 1)`` i.i.d. per arm (DPT).

``LinearBanditEnv`` (linear contextual bandit)
    Every step shows a fresh context ``x_t ~ N(0, I_dim)`` as the observation
    ``float32[dim]``; pulling arm ``a`` pays ``<theta[a], x_t> + noise_std * N(0, 1)`` for the
    context ``x_t`` the agent saw when choosing ``a``. The task is
    ``params.theta: float32[num_arms, dim]`` with ``theta ~ N(0, I / dim)`` so expected rewards
    have unit variance. :func:`expected_rewards` gives ``theta @ x``.

Out-of-range actions are clipped to the nearest arm (JAX gather semantics).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from envs.base import TimeLimitEnvironment, check_horizon

__all__ = [
    "BanditEnv",
    "BanditParams",
    "BanditState",
    "GaussianBanditParams",
    "LinearBanditEnv",
    "LinearBanditParams",
    "LinearBanditState",
    "expected_rewards",
    "make_bandit",
    "make_linear_bandit",
]

_KINDS = ("bernoulli", "gaussian")


@struct.dataclass
class BanditState:
    """``time``: int32 pulls so far in this episode."""

    time: jax.Array


@struct.dataclass
class BanditParams:
    """Bernoulli task: ``means`` float32[num_arms] in [0, 1]; ``max_steps_in_episode``."""

    means: jax.Array
    max_steps_in_episode: Any


@struct.dataclass
class GaussianBanditParams:
    """Gaussian task: ``means`` float32[num_arms]; ``noise_std`` float32 reward noise std."""

    means: jax.Array
    noise_std: Any
    max_steps_in_episode: Any


@struct.dataclass
class LinearBanditState:
    """``context``: float32[dim] the context x_t shown now; ``time``: int32 steps so far."""

    context: jax.Array
    time: jax.Array


@struct.dataclass
class LinearBanditParams:
    """``theta``: float32[num_arms, dim]; ``noise_std``: float32; ``max_steps_in_episode``."""

    theta: jax.Array
    noise_std: Any
    max_steps_in_episode: Any


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class BanditEnv(TimeLimitEnvironment):
    """K-armed bandit with Bernoulli or Gaussian rewards; see the module docstring."""

    def __init__(
        self,
        num_arms: int = 5,
        kind: str = "bernoulli",
        horizon: int = 500,
        noise_std: float = 0.3,
    ):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.num_arms = _positive_int("num_arms", num_arms)
        self.kind = kind
        self.horizon = _positive_int("horizon", horizon)
        self.noise_std = float(noise_std)

    @property
    def name(self) -> str:
        return f"{self.kind.capitalize()}Bandit-{self.num_arms}"

    @property
    def num_actions(self) -> int:
        return self.num_arms

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_arms)

    def observation_space(self, params: Any = None) -> spaces.Box:
        """A constant float32[1] zero: bandits have no state."""
        return spaces.Box(0.0, 0.0, (1,), dtype=jnp.float32)

    @property
    def default_params(self) -> BanditParams | GaussianBanditParams:
        """Evenly spaced means ``(k + 0.5) / num_arms``; the best arm is the last one."""
        means = (jnp.arange(self.num_arms, dtype=jnp.float32) + 0.5) / self.num_arms
        return self._params(means)

    def _params(self, means: jax.Array) -> BanditParams | GaussianBanditParams:
        if self.kind == "gaussian":
            return GaussianBanditParams(
                means=means, noise_std=self.noise_std, max_steps_in_episode=self.horizon
            )
        return BanditParams(means=means, max_steps_in_episode=self.horizon)

    def validate_params(self, params: Any) -> None:
        """ValueError naming the field unless ``means`` is float[num_arms] (in [0, 1] for
        Bernoulli arms), ``noise_std >= 0`` and H >= 1."""
        check_horizon(params)
        means = np.asarray(params.means)
        if means.shape != (self.num_arms,) or not np.all(np.isfinite(means)):
            raise ValueError(f"means must be {self.num_arms} finite values, got {means.tolist()}")
        if self.kind == "bernoulli" and not np.all((0 <= means) & (means <= 1)):
            raise ValueError(f"means of Bernoulli arms must lie in [0, 1], got {means.tolist()}")
        if self.kind == "gaussian" and not np.asarray(params.noise_std) >= 0:
            raise ValueError(f"noise_std must be >= 0, got {params.noise_std!r}")

    def sample_params(self, key: jax.Array, params: Any = None) -> Any:
        """A task: ``means ~ U(0, 1)`` float32[num_arms]; other fields from ``params``."""
        base = self.default_params if params is None else params
        return base.replace(means=jax.random.uniform(key, (self.num_arms,), jnp.float32))

    def get_obs(self, state: BanditState, params: Any = None, key: Any = None) -> jax.Array:
        return jnp.zeros((1,), jnp.float32)

    def step_env(
        self, key: jax.Array, state: BanditState, action: jax.Array, params: Any
    ) -> tuple[jax.Array, BanditState, jax.Array, jax.Array, dict]:
        mean = params.means[action]
        if self.kind == "gaussian":
            reward = mean + params.noise_std * jax.random.normal(key, (), jnp.float32)
        else:
            reward = (jax.random.uniform(key, (), jnp.float32) < mean).astype(jnp.float32)
        state = BanditState(time=state.time + 1)
        return self.get_obs(state), state, reward.astype(jnp.float32), jnp.bool_(False), {}

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, BanditState]:
        state = BanditState(time=jnp.int32(0))
        return self.get_obs(state), state


def expected_rewards(obs: jax.Array, params: LinearBanditParams) -> jax.Array:
    """float32[num_arms]: ``theta @ obs``, the mean reward of each arm for context ``obs``."""
    chex.assert_rank(params.theta, 2)
    chex.assert_shape(obs, (params.theta.shape[1],))
    return params.theta @ obs


class LinearBanditEnv(TimeLimitEnvironment):
    """Linear contextual bandit with Gaussian contexts; see the module docstring."""

    def __init__(
        self, num_arms: int = 5, dim: int = 5, horizon: int = 500, noise_std: float = 0.3
    ):
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.num_arms = _positive_int("num_arms", num_arms)
        self.dim = _positive_int("dim", dim)
        self.horizon = _positive_int("horizon", horizon)
        self.noise_std = float(noise_std)

    @property
    def name(self) -> str:
        return f"LinearBandit-{self.num_arms}x{self.dim}"

    @property
    def num_actions(self) -> int:
        return self.num_arms

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_arms)

    def observation_space(self, params: Any = None) -> spaces.Box:
        """float32[dim] context, unbounded (standard normal)."""
        return spaces.Box(-jnp.inf, jnp.inf, (self.dim,), dtype=jnp.float32)

    @property
    def default_params(self) -> LinearBanditParams:
        """A fixed draw of the task distribution: ``sample_params(jax.random.key(0))``."""
        return self.sample_params(jax.random.key(0))

    def validate_params(self, params: LinearBanditParams) -> None:
        """ValueError naming the field unless ``theta`` is finite float[num_arms, dim],
        ``noise_std >= 0`` and H >= 1."""
        check_horizon(params)
        theta = np.asarray(params.theta)
        if theta.shape != (self.num_arms, self.dim) or not np.all(np.isfinite(theta)):
            raise ValueError(f"theta must be finite with shape {(self.num_arms, self.dim)}, got {theta.shape}")
        if not np.asarray(params.noise_std) >= 0:
            raise ValueError(f"noise_std must be >= 0, got {params.noise_std!r}")

    def sample_params(
        self, key: jax.Array, params: LinearBanditParams | None = None
    ) -> LinearBanditParams:
        """A task: ``theta ~ N(0, I / dim)`` float32[num_arms, dim]; ``noise_std`` and the
        horizon from ``params`` (the constructor's values if None)."""
        theta = jax.random.normal(key, (self.num_arms, self.dim), jnp.float32)
        theta = theta / jnp.sqrt(jnp.float32(self.dim))
        if params is None:
            return LinearBanditParams(
                theta=theta, noise_std=self.noise_std, max_steps_in_episode=self.horizon
            )
        return params.replace(theta=theta)

    def get_obs(self, state: LinearBanditState, params: Any = None, key: Any = None) -> jax.Array:
        return state.context

    def step_env(
        self, key: jax.Array, state: LinearBanditState, action: jax.Array, params: Any
    ) -> tuple[jax.Array, LinearBanditState, jax.Array, jax.Array, dict]:
        z = jax.random.normal(key, (self.dim + 1,), jnp.float32)  # [noise, next context]
        reward = jnp.dot(params.theta[action], state.context) + params.noise_std * z[0]
        state = LinearBanditState(context=z[1:], time=state.time + 1)
        return state.context, state, reward.astype(jnp.float32), jnp.bool_(False), {}

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, LinearBanditState]:
        # The same draw as ``step_env``'s, so that the shared step/reset key is drawn once.
        z = jax.random.normal(key, (self.dim + 1,), jnp.float32)
        state = LinearBanditState(context=z[1:], time=jnp.int32(0))
        return state.context, state


def make_bandit(kind: str = "bernoulli") -> tuple[BanditEnv, Any]:
    """``(env, default_params)`` for a 5-armed ``"bernoulli"`` or ``"gaussian"`` (std 0.3)
    bandit with horizon 500 (the DPT bandit setting)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown bandit kind {kind!r}; valid: {', '.join(_KINDS)}")
    env = BanditEnv(num_arms=5, kind=kind, horizon=500, noise_std=0.3)
    return env, env.default_params


def make_linear_bandit() -> tuple[LinearBanditEnv, LinearBanditParams]:
    """``(env, default_params)`` for a 5-arm, 5-dimensional linear contextual bandit,
    noise std 0.3, horizon 500."""
    env = LinearBanditEnv(num_arms=5, dim=5, horizon=500, noise_std=0.3)
    return env, env.default_params
