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
``(c + r) / gamma`` by linear interpolation between grid points and by linear extrapolation along
the end segments beyond the grid ends. For a utility that is affine on each side of 0 (all four
above) every ``W_t``, ``t >= 1``, is affine in the stock below ``lo`` and above ``hi``, where
``[lo, hi]`` spans 0 and minus every discounted partial return ``G_t`` (``t >= 1``) that some
policy collects with positive probability from some state: the stocks where ``W_t`` can bend.
The grid is extended internally at its end spacings until its second point lies below ``lo``
and its second-to-last above ``hi`` (this costs compute in proportion to ``(hi - lo) /
spacing``), so every read beyond it is exact; results are reported on the given grid. Hence
with ``gamma = 1``, integer rewards and an integer grid, every value on the grid is exact,
wherever the grid lies; otherwise reads between grid points are interpolated, an approximation
whose error shrinks with the spacing. The MDP is given as in :mod:`.dp` (``P [S, A, S]``,
``R [S, A]`` or reward atoms with ``reward_probs``, optional leading batch axis); it must be
concrete (not traced), since the internal grid is sized from it.
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


def _cvar(alpha: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.minimum(x, 0.0) / alpha


def cvar_utility(alpha: float) -> Utility:
    """``f(x) = min(x, 0) / alpha`` for the lower-tail ``CVaR_alpha``, ``alpha`` in ``(0, 1]``.

    A :class:`jax.tree_util.Partial` with ``alpha`` as its leaf, so one compiled backward
    induction serves every ``alpha``.
    """
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    return jax.tree_util.Partial(_cvar, np.float32(alpha))


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


def _read(x: jax.Array, grid: jax.Array, w: jax.Array) -> jax.Array:
    """``w: float[C]`` (values on the increasing ``grid: float[C]``) at the points ``x``: linear
    interpolation inside the grid, linear extrapolation along the end segments outside it."""
    below = w[0] + (x - grid[0]) * (w[1] - w[0]) / (grid[1] - grid[0])
    above = w[-1] + (x - grid[-1]) * (w[-1] - w[-2]) / (grid[-1] - grid[-2])
    return jnp.where(x < grid[0], below, jnp.where(x > grid[-1], above, jnp.interp(x, grid, w)))


def _bend_range(P, r_atoms, r_probs, gamma: float, horizon: int) -> tuple[float, float]:
    """``(lo, hi)``: 0 and minus every discounted partial return ``G_t``, ``1 <= t < H``, that
    some policy collects with positive probability from some state (of any MDP in the batch),
    by max-plus / min-plus backward induction over the supports of ``P`` and the rewards."""
    S, A, K = np.shape(r_atoms)[-3:]
    support = np.asarray(P).reshape(-1, S, A, S) > 0  # [B, S, A, S']
    r = np.asarray(r_atoms, np.float64).reshape(-1, S, A, K)
    possible = np.asarray(r_probs).reshape(-1, S, A, K) > 0
    r_hi, r_lo = np.where(possible, r, -np.inf).max(-1), np.where(possible, r, np.inf).min(-1)
    g_hi = g_lo = np.zeros((support.shape[0], S))
    lo = hi = 0.0
    for _ in range(horizon - 1):  # G_{H-1}, ..., G_1
        g_hi = (r_hi + gamma * np.where(support, g_hi[:, None, None], -np.inf).max(-1)).max(-1)
        g_lo = (r_lo + gamma * np.where(support, g_lo[:, None, None], np.inf).min(-1)).min(-1)
        lo, hi = min(lo, -float(g_hi.max())), max(hi, -float(g_lo.min()))
    return lo, hi


def _pad_grid(grid, lo: float, hi: float) -> tuple[np.ndarray, int]:
    """``(padded float32[C'], n)``: ``grid`` extended at its end spacings until its second point
    lies below ``lo`` and its second-to-last above ``hi``; ``grid = padded[n : n + C]``."""
    z = np.asarray(grid, np.float64)
    d_lo, d_hi = z[1] - z[0], z[-1] - z[-2]
    n_lo = int(np.floor((z[1] - lo) / d_lo)) + 1 if z[1] >= lo else 0
    n_hi = int(np.floor((hi - z[-2]) / d_hi)) + 1 if z[-2] <= hi else 0
    below = z[0] - d_lo * np.arange(n_lo, 0, -1)
    above = z[-1] + d_hi * np.arange(1, n_hi + 1)
    return np.concatenate([below, z, above]).astype(np.float32), n_lo


@partial(jax.jit, static_argnames=("horizon", "keep"))
def _backward(P, r_atoms, r_probs, gamma, grid, utility, horizon, keep):
    """Backward induction on the padded ``grid``; the result is sliced to ``grid[keep[0]:
    keep[1]]`` (the caller's grid)."""
    read = jax.vmap(_read, in_axes=(None, None, 0))  # W[s'] read at shared points

    def step(W_next, _):
        c_next = (grid + r_atoms[..., None]) / gamma  # [S, A, K, C]
        W_at = read(c_next, grid, W_next)  # [S', S, A, K, C]
        q = jnp.einsum("sat,tsakc,sak->sac", P, W_at, r_probs)
        return q.max(axis=1), (q, jnp.argmax(q, axis=1).astype(jnp.int32))

    W_H = jnp.broadcast_to(utility(gamma**horizon * grid), (P.shape[0], grid.shape[0]))
    _, (q, policy) = jax.lax.scan(step, W_H, None, length=horizon, reverse=True)
    values = jnp.concatenate([q.max(axis=2), W_H[None]], axis=0)
    kept = slice(*keep)
    return StockResult(grid[kept], values[..., kept], q[..., kept], policy[..., kept])


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
    module's, or your own; a plain function is a static argument of the compiled function, so
    reuse the same object to avoid recompiling; a :class:`jax.tree_util.Partial` such as
    :func:`cvar_utility`'s passes its arguments traced).
    """
    if np.ndim(gamma) != 0 or (_is_concrete(gamma) and not 0.0 < float(gamma) <= 1.0):
        raise ValueError(f"gamma must be a scalar in (0, 1] for stock augmentation, got {gamma}")
    _check_count("horizon", horizon)
    check_support(stock_grid, "stock_grid")
    if not callable(utility):
        raise ValueError(f"utility must be callable, got {type(utility).__name__}")
    if not _is_concrete(P, R, reward_probs, gamma, stock_grid):
        raise ValueError(
            "stock_backward_induction needs concrete P, R, reward_probs, gamma and stock_grid "
            "(the internal grid is sized from the reachable returns); call it outside jit/vmap"
        )
    batched, P, r_atoms, r_probs, _ = _prepare(P, R, reward_probs, None, gamma)
    padded, start = _pad_grid(stock_grid, *_bend_range(P, r_atoms, r_probs, float(gamma), horizon))
    if not isinstance(utility, jax.tree_util.Partial):
        utility = jax.tree_util.Partial(utility)
    keep = (start, start + np.shape(stock_grid)[0])
    fn = partial(_backward, horizon=int(horizon), keep=keep)
    if batched:
        fn = jax.vmap(fn, in_axes=(0, 0, 0, None, None, None))
    return fn(P, r_atoms, r_probs, jnp.float32(gamma), jnp.asarray(padded), utility)


def stock_value(result: StockResult, c0) -> jax.Array:
    """``float32[..., S]``, ``W_0(s, c0)`` read on the grid (``c0`` a scalar): interpolated
    between grid points, extrapolated along the end segments beyond the grid ends (exact there
    when the grid's second and second-to-last points lie beyond the module docstring's
    ``[lo, hi]``)."""
    read = jnp.vectorize(lambda grid, w: _read(c0, grid, w), signature="(c),(c)->()")
    return read(result.stock_grid[..., None, :], result.values[..., 0, :, :])


def optimal_cvar(result: StockResult) -> tuple[jax.Array, jax.Array]:
    """``(cvar, c0)``, both ``float32[..., S]``: ``max_{c_0 on the grid} -c_0 + W_0(s, c_0)``,
    the optimal lower-tail ``CVaR_alpha`` of ``G_0`` from each state, and its maximising ``c_0``
    (``-c_0`` is the value-at-risk of the optimal policy). ``result`` must come from
    :func:`cvar_utility`. When the values on the grid are exact (e.g. ``gamma = 1``, integer
    rewards, an integer grid), this is the best Rockafellar-Uryasev objective over the grid's
    ``c_0``: never above the optimal CVaR, and equal to it when the grid contains minus the
    value-at-risk of an optimal policy, e.g. when it covers ``[-max G_0, -min G_0]``.
    """
    grid = result.stock_grid[..., None, :]
    objective = -grid + result.values[..., 0, :, :]  # [..., S, C]
    best = jnp.argmax(objective, axis=-1)
    cvar = jnp.take_along_axis(objective, best[..., None], axis=-1)[..., 0]
    c0 = jnp.take_along_axis(jnp.broadcast_to(grid, objective.shape), best[..., None], -1)
    return cvar, c0[..., 0]
