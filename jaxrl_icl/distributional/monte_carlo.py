"""Monte Carlo evaluation of policies on a tabular MDP, and empirical risk measures.

The MDP is ``P: float[S, A, S]``, ``R: float[S, A]`` (deterministic reward of taking ``a`` in
``s``) and ``init_dist: float[S]`` as in :mod:`envs.tabular`. An episode starts at
``s_0 ~ init_dist`` and runs exactly ``horizon`` steps; its return is
``G_0 = sum_{t < horizon} gamma^t r_t`` (float32). Every episode is one ``lax.scan``, and the
``num_episodes`` episodes are ``jax.vmap``-ed, all in one jitted call.

Two kinds of policy:

* Markov: ``int[S]`` (stationary actions), ``int[H, S]`` (action at step ``t`` in state ``s``)
  or ``float[S, A]`` (stationary action probabilities); :func:`mc_returns`.
* Stock-augmented: a :class:`~jaxrl_icl.distributional.stock.StockResult` whose
  ``policy[t, s, i]`` is the action at step ``t`` in state ``s`` with stock ``stock_grid[i]``;
  :func:`mc_stock_returns`. The stock starts at ``c_0`` and follows
  ``c_{t+1} = (c_t + r_t) / gamma``; at each step it is looked up on the grid by the *nearest*
  grid point (ties to the lower one; stocks beyond the grid use the end point). For
  ``gamma = 1``, integer rewards, an integer ``c_0`` and an integer grid covering the reachable
  stocks this is exact, the setting where the backward induction is exact too.
"""

from __future__ import annotations

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np

from envs.tabular import TabularParams, validate_mdp
from jaxrl_icl.distributional.categorical import check_support
from jaxrl_icl.distributional.stock import StockResult

__all__ = ["cvar", "mc_returns", "mc_stock_returns", "nearest_index", "threshold_probability"]


def nearest_index(grid: jax.Array, c: jax.Array) -> jax.Array:
    """``int32[...]``, index of the point of the increasing ``grid: float[C]`` nearest ``c``
    (ties to the lower index; values beyond the ends map to the end points)."""
    upper = jnp.clip(jnp.searchsorted(grid, c), 1, grid.shape[0] - 1)
    lower = upper - 1
    return jnp.where(c - grid[lower] <= grid[upper] - c, lower, upper).astype(jnp.int32)


def _sample(key: jax.Array, probs: jax.Array) -> jax.Array:
    """int32 index drawn from the probability row ``probs: float32[n]``."""
    return jax.random.categorical(key, jnp.log(probs)).astype(jnp.int32)


@partial(jax.jit, static_argnames=("horizon", "num_episodes"))
def _markov(key, P, R, init, pi, gamma, horizon, num_episodes):
    """``pi: float32[H, S, A]`` action probabilities per step; returns ``(G_0 [N], s_t [N, H])``."""

    def episode(key):
        s0_key, key = jax.random.split(key)

        def step(carry, xs):
            s, g, disc = carry
            pi_t, k = xs
            a_key, s_key = jax.random.split(k)
            a = _sample(a_key, pi_t[s])
            r = R[s, a]
            return (_sample(s_key, P[s, a]), g + disc * r, disc * gamma), s

        carry = (_sample(s0_key, init), jnp.float32(0.0), jnp.float32(1.0))
        (_, g, _), states = jax.lax.scan(step, carry, (pi, jax.random.split(key, horizon)))
        return g, states

    return jax.vmap(episode)(jax.random.split(key, num_episodes))


@partial(jax.jit, static_argnames=("num_episodes",))
def _stock(key, P, R, init, policy, grid, c0, gamma, num_episodes):
    """``policy: int32[H, S, C]``; returns ``(G_0 [N], s_t [N, H])``."""
    horizon = policy.shape[0]

    def episode(key):
        s0_key, key = jax.random.split(key)

        def step(carry, xs):
            s, c, g, disc = carry
            policy_t, k = xs
            a = policy_t[s, nearest_index(grid, c)]
            r = R[s, a]
            return (_sample(k, P[s, a]), (c + r) / gamma, g + disc * r, disc * gamma), s

        carry = (_sample(s0_key, init), c0, jnp.float32(0.0), jnp.float32(1.0))
        (_, _, g, _), states = jax.lax.scan(step, carry, (policy, jax.random.split(key, horizon)))
        return g, states

    return jax.vmap(episode)(jax.random.split(key, num_episodes))


def _check_common(P, R, init_dist, num_episodes, gamma, stock: bool) -> tuple[int, int]:
    """Validate the MDP (concrete arrays), ``num_episodes`` and ``gamma``; returns ``(S, A)``."""
    validate_mdp(TabularParams(P, R, init_dist, 1))
    if not isinstance(num_episodes, (int, np.integer)) or isinstance(num_episodes, bool) \
            or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    # The stock recursion divides by gamma, so it needs gamma > 0.
    ok = np.ndim(gamma) == 0 and (0.0 < float(gamma) if stock else 0.0 <= float(gamma))
    if not ok or float(gamma) > 1.0:
        raise ValueError(f"gamma must be a scalar in {'(0' if stock else '[0'}, 1], got {gamma!r}")
    return np.shape(P)[0], np.shape(P)[1]


def mc_returns(
    key: jax.Array,
    P,
    R,
    init_dist,
    policy,
    horizon: int,
    num_episodes: int,
    gamma: float = 1.0,
    *,
    with_states: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """``float32[num_episodes]``: sampled returns ``G_0`` of a Markov ``policy`` over
    ``horizon`` steps (see the module docstring). With ``with_states``, also the visited
    states ``int32[num_episodes, horizon]`` (``s_0 .. s_{H-1}``).

    ``policy``: ``int[S]``, ``int[horizon, S]`` actions, or ``float[S, A]`` probabilities.
    Raises ``ValueError`` naming the argument for malformed input, before any compute.
    """
    S, A = _check_common(P, R, init_dist, num_episodes, gamma, stock=False)
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    policy = np.asarray(policy)
    if np.issubdtype(policy.dtype, np.integer) and policy.shape in ((S,), (horizon, S)):
        if np.any(policy < 0) or np.any(policy >= A):
            raise ValueError(f"policy actions must lie in [0, {A})")
        pi = np.eye(A, dtype=np.float32)[np.broadcast_to(policy, (horizon, S))]
    elif np.issubdtype(policy.dtype, np.floating) and policy.shape == (S, A):
        if not np.all(np.isfinite(policy)) or np.any(policy < 0) \
                or np.any(np.abs(policy.sum(-1) - 1.0) > 1e-5):
            raise ValueError("policy probabilities must be finite, nonnegative, rows summing to 1")
        pi = np.broadcast_to(policy.astype(np.float32), (horizon, S, A))
    else:
        raise ValueError(
            f"policy must be int actions of shape {(S,)} or {(horizon, S)}, or float "
            f"probabilities of shape {(S, A)}; got {policy.shape} ({policy.dtype})"
        )
    out = _markov(key, jnp.asarray(P, jnp.float32), jnp.asarray(R, jnp.float32),
                  jnp.asarray(init_dist, jnp.float32), jnp.asarray(pi), jnp.float32(gamma),
                  int(horizon), int(num_episodes))
    return out if with_states else out[0]


def mc_stock_returns(
    key: jax.Array,
    P,
    R,
    init_dist,
    result: StockResult,
    c0: float,
    num_episodes: int,
    gamma: float = 1.0,
    *,
    with_states: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """``float32[num_episodes]``: sampled returns ``G_0`` of the stock-augmented policy
    ``result.policy`` (unbatched, ``int[H, S, C]``) from initial stock ``c0`` over ``H`` steps.
    With ``with_states``, also the visited states ``int32[num_episodes, H]``.

    ``gamma`` must be the discount the policy was computed with (it drives the stock update).
    Raises ``ValueError`` naming the argument for malformed input, before any compute.
    """
    S, A = _check_common(P, R, init_dist, num_episodes, gamma, stock=True)
    check_support(result.stock_grid, "result.stock_grid")
    C = np.shape(result.stock_grid)[0]
    policy = np.asarray(result.policy)
    if policy.ndim != 3 or policy.shape[1:] != (S, C):
        raise ValueError(
            f"result.policy must have shape [H, S, C] = [H, {S}, {C}] (unbatched), got "
            f"{policy.shape}"
        )
    if not np.issubdtype(policy.dtype, np.integer) or np.any(policy < 0) or np.any(policy >= A):
        raise ValueError(f"result.policy must hold int actions in [0, {A})")
    if np.ndim(c0) != 0 or not np.isfinite(c0):
        raise ValueError(f"c0 must be a finite scalar, got {c0!r}")
    out = _stock(key, jnp.asarray(P, jnp.float32), jnp.asarray(R, jnp.float32),
                 jnp.asarray(init_dist, jnp.float32), jnp.asarray(policy, jnp.int32),
                 jnp.asarray(result.stock_grid, jnp.float32), jnp.float32(c0),
                 jnp.float32(gamma), int(num_episodes))
    return out if with_states else out[0]


def cvar(returns: jax.Array, alpha: float) -> jax.Array:
    """Empirical lower-tail ``CVaR_alpha``: ``(1 / alpha) int_0^alpha F^{-1}(u) du`` of the
    empirical law of ``returns: float[N]`` (mean of the lowest ``alpha N`` samples, the
    boundary sample weighted fractionally). float32 scalar; ``alpha`` in ``(0, 1]``."""
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    chex.assert_rank(returns, 1)
    x = jnp.sort(jnp.asarray(returns, jnp.float32))
    mass = float(alpha) * x.shape[0]
    weights = jnp.clip(mass - jnp.arange(x.shape[0], dtype=jnp.float32), 0.0, 1.0)
    return jnp.sum(weights * x) / mass


def threshold_probability(returns: jax.Array, threshold: float) -> jax.Array:
    """float32 scalar, the fraction of ``returns: float[N]`` that are ``>= threshold``."""
    chex.assert_rank(returns, 1)
    return jnp.mean(jnp.asarray(returns) >= threshold, dtype=jnp.float32)
