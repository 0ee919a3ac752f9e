"""Stock augmentation and utility objectives on finite-horizon MDPs (Pires et al. 2025).

The augmented state is ``(s, c)`` with the stock ``c_{t+1} = (c_t + r_t) / gamma``, so that
``gamma^t (c_t + G_t) = c_0 + G_0`` along every trajectory (``G_t`` the discounted return from
step ``t`` to the horizon ``H``). An objective is a utility ``f`` of ``c_0 + G_0``; the optimum
over all history-dependent policies of ``E f(c_0 + G_0)`` is reached by a Markov policy on
``(s, c)``, found by backward induction

    W_H(s, c) = f(gamma^H c),
    Q_t(s, a, c) = E_{r, s'} W_{t+1}(s', (c + r) / gamma),   W_t = max_a Q_t,

where ``Q_t(s, a, c) = E f(gamma^t (c + G_t(s, c, a)))`` under the optimal continuation. For the
positively homogeneous utilities below the factor ``gamma^t`` does not change the argmax, so the
policy is ``a* = argmax_a E f(c + G(s, c, a))``, the greedy policy on the augmented state.

Utilities (elementwise ``f(x)``; ``c_0`` the initial stock):

* expectation ``f(x) = x``: ``W_0(s, c_0) = c_0 + V(s)``, ordinary value iteration;
* CVaR_alpha (lower tail) ``f(x) = min(x, 0) / alpha``: ``CVaR_alpha(G_0) = max_{c_0} -c_0 +
  W_0(s, c_0)`` (Rockafellar-Uryasev), see :func:`optimal_cvar`;
* homeostatic regulation ``f(x) = -|x|`` with ``c_0 = -target``;
* threshold probability ``f(x) = 1{x >= 0}`` with ``c_0 = -threshold``: ``W_0 = Pr(G_0 >= thr)``.

The stock lives on a grid ``stock_grid: float[C]`` (strictly increasing). ``W_{t+1}`` is read at
``(c + r) / gamma`` by linear interpolation, clamped at the grid ends. This is exact when every
such point lies on the grid, e.g. integer rewards, ``gamma = 1`` and an integer grid covering
``[min c_0 + H min r, max c_0 + H max r]``; otherwise it is an approximation whose error shrinks
with the grid spacing (and clamping is wrong outside the grid, so make it cover the reachable
stocks). The MDP is given as in :mod:`.dp` (``P [S, A, S]``, ``R [S, A]`` or reward atoms with
``reward_probs``, optional leading batch axis).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_icl.distributional.categorical import check_support
from jaxrl_icl.distributional.dp import _check_count, _is_concrete, _prepare

__all__ = [
    "StockResult",
    "cvar_utility",
    "expectation_utility",
    "homeostatic_utility",
    "optimal_cvar",
    "stock_backward_induction",
    "stock_value",
    "threshold_utility",
]

Utility = Callable[[jax.Array], jax.Array]


def expectation_utility(x: jax.Array) -> jax.Array:
    """``f(x) = x`` (risk-neutral)."""
    return x


def homeostatic_utility(x: jax.Array) -> jax.Array:
    """``f(x) = -|x|``; with ``c_0 = -target`` it penalises ``|G_0 - target|``."""
    return -jnp.abs(x)


def threshold_utility(x: jax.Array) -> jax.Array:
    """``f(x) = 1{x >= 0}``; with ``c_0 = -threshold`` it is ``Pr(G_0 >= threshold)``."""
    return (x >= 0).astype(jnp.float32)


def _cvar(alpha: float, x: jax.Array) -> jax.Array:
    return jnp.minimum(x, 0.0) / alpha


def cvar_utility(alpha: float) -> Utility:
    """``f(x) = min(x, 0) / alpha`` for the lower-tail ``CVaR_alpha``, ``alpha`` in ``(0, 1]``."""
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    return partial(_cvar, float(alpha))


@struct.dataclass
class StockResult:
    """Backward induction on ``(s, c)`` (a leading ``B`` on every field for a batch of MDPs).

    ``stock_grid: float32[C]``; ``values: float32[H + 1, S, C]``, ``W_t(s, c)`` on the grid
    (the optimal ``E f(c_0 + G_0)`` from step ``t``); ``q: float32[H, S, A, C]``;
    ``policy: int32[H, S, C]``, the optimal action at step ``t`` in state ``s`` with stock
    ``c`` (first maximiser on ties).
    """

    stock_grid: jax.Array
    values: jax.Array
    q: jax.Array
    policy: jax.Array


@partial(jax.jit, static_argnames=("horizon", "utility"))
def _backward(P, r_atoms, r_probs, gamma, grid, horizon, utility):
    interp = jax.vmap(jnp.interp, in_axes=(None, None, 0))  # W[s'] read at shared points

    def step(W_next, _):
        c_next = (grid + r_atoms[..., None]) / gamma  # [S, A, K, C]
        W_at = interp(c_next, grid, W_next)  # [S', S, A, K, C]
        q = jnp.einsum("sat,tsakc,sak->sac", P, W_at, r_probs)
        return q.max(axis=1), (q, jnp.argmax(q, axis=1).astype(jnp.int32))

    W_H = jnp.broadcast_to(utility(gamma**horizon * grid), (P.shape[0], grid.shape[0]))
    _, (q, policy) = jax.lax.scan(step, W_H, None, length=horizon, reverse=True)
    return StockResult(grid, jnp.concatenate([q.max(axis=2), W_H[None]], axis=0), q, policy)


def stock_backward_induction(
    P,
    R,
    gamma,
    horizon: int,
    stock_grid,
    utility: Utility,
    *,
    reward_probs=None,
) -> StockResult:
    """Optimal ``E f(c_0 + G_0)`` over ``horizon`` steps for every start ``(s, c_0)`` on the
    grid, by backward induction on the stock-augmented state; see the module docstring.

    ``gamma`` in ``(0, 1]``; ``utility`` a jax-traceable elementwise function (one of this
    module's, or your own; it is a static argument of the compiled function, so reuse the same
    object to avoid recompiling).
    """
    if np.ndim(gamma) != 0 or (_is_concrete(gamma) and not 0.0 < float(gamma) <= 1.0):
        raise ValueError(f"gamma must be a scalar in (0, 1] for stock augmentation, got {gamma}")
    _check_count("horizon", horizon)
    check_support(stock_grid, "stock_grid")
    if not callable(utility):
        raise ValueError(f"utility must be callable, got {type(utility).__name__}")
    batched, P, r_atoms, r_probs, _ = _prepare(P, R, reward_probs, None, gamma)
    fn = partial(_backward, horizon=int(horizon), utility=utility)
    if batched:
        fn = jax.vmap(fn, in_axes=(0, 0, 0, None, None))
    return fn(P, r_atoms, r_probs, jnp.float32(gamma), jnp.asarray(stock_grid, jnp.float32))


def stock_value(result: StockResult, c0) -> jax.Array:
    """``float32[..., S]``, ``W_0(s, c0)`` interpolated on the grid (``c0`` a scalar)."""
    read = jnp.vectorize(lambda grid, w: jnp.interp(c0, grid, w), signature="(c),(c)->()")
    return read(result.stock_grid[..., None, :], result.values[..., 0, :, :])


def optimal_cvar(result: StockResult) -> tuple[jax.Array, jax.Array]:
    """``(cvar, c0)``, both ``float32[..., S]``: ``max_{c_0 on the grid} -c_0 + W_0(s, c_0)``,
    the optimal lower-tail ``CVaR_alpha`` of ``G_0`` from each state, and its maximising ``c_0``
    (``-c_0`` is the value-at-risk of the optimal policy). ``result`` must come from
    :func:`cvar_utility`; exact when the grid contains ``-b`` for the optimal quantile ``b``
    (e.g. integer rewards and an integer grid covering ``[-H max r, H max r]``, gamma = 1).
    """
    grid = result.stock_grid[..., None, :]
    objective = -grid + result.values[..., 0, :, :]  # [..., S, C]
    best = jnp.argmax(objective, axis=-1)
    cvar = jnp.take_along_axis(objective, best[..., None], axis=-1)[..., 0]
    c0 = jnp.take_along_axis(jnp.broadcast_to(grid, objective.shape), best[..., None], -1)
    return cvar, c0[..., 0]
