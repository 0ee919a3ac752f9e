"""Random finite MDPs with explicit transition and reward tables.

A task is ``TabularParams``: ``P: float32[S, A, S]`` with ``P[s, a, s'] = Pr(s' | s, a)``,
``R: float32[S, A]`` the (deterministic) reward for taking ``a`` in ``s``, ``init_dist:
float32[S]`` the start-state law, and ``max_steps_in_episode``. The observation is the state
index, an ``int32`` scalar (``Discrete(S)`` space). Episodes never terminate and are truncated
after ``max_steps_in_episode`` steps. These are the arrays the distributional
dynamic-programming code consumes; :func:`validate_mdp` checks them (outside ``jit``).

Sampling a state from a probability row uses the inverse CDF with the uniform draw scaled into
``(0, total]``, so states of probability zero are never drawn.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from envs.base import TimeLimitEnvironment, check_horizon

__all__ = ["TabularMDP", "TabularParams", "TabularState", "make_random_mdp", "validate_mdp"]

_ATOL = 1e-5  # tolerance on probability rows summing to one (float32)


@struct.dataclass
class TabularState:
    """``state``: int32 current state index; ``time``: int32 steps taken in this episode."""

    state: jax.Array
    time: jax.Array


@struct.dataclass
class TabularParams:
    """``P`` float32[S, A, S], ``R`` float32[S, A], ``init_dist`` float32[S], horizon."""

    P: jax.Array
    R: jax.Array
    init_dist: jax.Array
    max_steps_in_episode: Any


def _sample_index(key: jax.Array, probs: jax.Array) -> jax.Array:
    """int32 index drawn from the nonnegative row ``probs`` (float32[S]); zero rows excluded."""
    cdf = jnp.cumsum(probs)
    u = cdf[-1] * (1.0 - jax.random.uniform(key, (), jnp.float32))  # in (0, cdf[-1]]
    return jnp.sum(cdf < u).astype(jnp.int32)


@partial(jax.jit, static_argnums=(1, 2))
def _random_tables(key: jax.Array, num_states: int, num_actions: int) -> tuple[jax.Array, ...]:
    """``(P [S, A, S], R [S, A], init_dist [S])``: Dirichlet(1) rows, U(0, 1) rewards, uniform.

    A Dirichlet(1, ..., 1) row is a row of i.i.d. Exponential(1) draws divided by its sum.
    """
    p_key, r_key = jax.random.split(key)
    E = jax.random.exponential(p_key, (num_states, num_actions, num_states), jnp.float32)
    P = E / E.sum(axis=-1, keepdims=True)
    R = jax.random.uniform(r_key, (num_states, num_actions), jnp.float32)
    return P, R, jnp.full((num_states,), 1.0 / num_states, jnp.float32)


def validate_mdp(
    params: TabularParams, num_states: int | None = None, num_actions: int | None = None
) -> None:
    """Raise ``ValueError`` naming the field unless ``params`` is a well-formed finite MDP.

    Checks: ``P`` is ``[S, A, S]``, ``R`` is ``[S, A]`` and ``init_dist`` is ``[S]`` (and match
    ``num_states``/``num_actions`` when given); all entries finite; probabilities nonnegative;
    every ``P[s, a]`` row and ``init_dist`` sum to one within 1e-5. Needs concrete arrays.
    """
    P = np.asarray(params.P)
    R = np.asarray(params.R)
    init = np.asarray(params.init_dist)
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P must have shape [S, A, S], got {P.shape}")
    S, A = P.shape[:2]
    if num_states is not None and S != num_states:
        raise ValueError(f"P has {S} states but the environment has {num_states}")
    if num_actions is not None and A != num_actions:
        raise ValueError(f"P has {A} actions but the environment has {num_actions}")
    if R.shape != (S, A):
        raise ValueError(f"R must have shape [S, A] = {(S, A)} to match P, got {R.shape}")
    if init.shape != (S,):
        raise ValueError(f"init_dist must have shape [S] = {(S,)} to match P, got {init.shape}")
    for name, arr in (("P", P), ("R", R), ("init_dist", init)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} has non-finite entries")
    for name, arr in (("P", P), ("init_dist", init)):
        if np.any(arr < 0):
            idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
            raise ValueError(
                f"{name} has negative probabilities, e.g. {name}{list(idx)} = {arr[idx]}"
            )
        sums = np.atleast_1d(arr.sum(axis=-1))
        bad = np.argwhere(np.abs(sums - 1.0) > _ATOL)
        if bad.size:
            row = [int(i) for i in bad[0]] if arr.ndim > 1 else []
            raise ValueError(
                f"{name} rows must sum to 1; {name}{row} sums to {float(sums[tuple(bad[0])]):.6g}"
            )


class TabularMDP(TimeLimitEnvironment):
    """Finite MDP with ``num_states`` states and ``num_actions`` actions; see module docstring.

    ``seed`` fixes ``default_params``: the task ``sample_params(jax.random.key(seed))``.
    """

    def __init__(
        self, num_states: int = 10, num_actions: int = 3, horizon: int = 50, seed: int = 0
    ):
        sizes = {"num_states": num_states, "num_actions": num_actions, "horizon": horizon}
        for name, value in sizes.items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_states = int(num_states)
        self._num_actions = int(num_actions)
        self.horizon = int(horizon)
        self.seed = int(seed)

    @property
    def name(self) -> str:
        return f"TabularMDP-{self.num_states}x{self._num_actions}"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params: Any = None) -> spaces.Discrete:
        """int32 scalar state index in ``[0, num_states)``."""
        return spaces.Discrete(self.num_states)

    @property
    def default_params(self) -> TabularParams:
        """The fixed task ``sample_params(jax.random.key(self.seed))``."""
        P, R, init = _random_tables(jax.random.key(self.seed), self.num_states, self._num_actions)
        return TabularParams(P=P, R=R, init_dist=init, max_steps_in_episode=self.horizon)

    def sample_params(self, key: jax.Array, params: TabularParams | None = None) -> TabularParams:
        """A task: each ``P[s, a]`` ~ Dirichlet(1, ..., 1), ``R ~ U(0, 1)``, uniform
        ``init_dist``; ``max_steps_in_episode`` from ``params`` (the horizon if None)."""
        P, R, init = _random_tables(key, self.num_states, self._num_actions)
        horizon = self.horizon if params is None else params.max_steps_in_episode
        return TabularParams(P=P, R=R, init_dist=init, max_steps_in_episode=horizon)

    def validate_params(self, params: TabularParams) -> None:
        """ValueError naming the field unless ``params`` is a well-formed MDP of this size."""
        validate_mdp(params, self.num_states, self._num_actions)
        check_horizon(params)

    def get_obs(self, state: TabularState, params: Any = None, key: Any = None) -> jax.Array:
        return state.state

    def step_env(
        self, key: jax.Array, state: TabularState, action: jax.Array, params: TabularParams
    ) -> tuple[jax.Array, TabularState, jax.Array, jax.Array, dict]:
        reward = params.R[state.state, action].astype(jnp.float32)
        next_state = _sample_index(key, params.P[state.state, action])
        state = TabularState(state=next_state, time=state.time + 1)
        return next_state, state, reward, jnp.bool_(False), {}

    def reset_env(self, key: jax.Array, params: TabularParams) -> tuple[jax.Array, TabularState]:
        state = TabularState(state=_sample_index(key, params.init_dist), time=jnp.int32(0))
        return state.state, state


def make_random_mdp(
    num_states: int = 10, num_actions: int = 3, horizon: int = 50, seed: int = 0
) -> tuple[TabularMDP, TabularParams]:
    """``(env, default_params)``: a fixed (seeded) random MDP, 10 states, 3 actions, H = 50."""
    env = TabularMDP(num_states, num_actions, horizon, seed)
    params = env.default_params
    validate_mdp(params, env.num_states, env.num_actions)
    return env, params
