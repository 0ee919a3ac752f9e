"""Learning-history filtering (LHF): score each learning history by how well it learns, then
keep (or up-weight) the good ones before Algorithm Distillation pretraining.

A history of one task has per-episode returns ``R_1 .. R_n`` and the task has a maximum
return ``R_max > 0``. Its score is the utility ``U = Improvement + lambda * Stability`` with

* ``Improvement = (mean R + (max R - min R)) / (2 R_max)``: a high level and a wide range;
* ``Stability = 1 + mean_i min(R_{i+1} - R_i, 0) / R_max``: 1 for a curve that never drops,
  less for one that falls back (the mean runs over all ``n - 1`` successive differences,
  the rises counting as 0).

Within each task (environment), histories are compared through their keep probability: the
min-max-normalised ``U`` (the best history 1, the worst 0; all 1 when every ``U`` is equal),
or with a ``temperature`` the softmax of the normalised ``U`` divided by its largest entry,
``exp((u - 1) / temperature)`` (the best 1, the worst ``exp(-1 / temperature) > 0``).
Normalising first makes the temperature mean the same in every task.

* :func:`filter_rows` keeps each history with its probability in passes over the task's
  histories, pass after pass, until as many were kept as there were: the set keeps its size,
  good histories may appear several times and (min-max) the worst never does.
* :func:`reweight` gives each history a sampling probability proportional to its keep
  probability, every task keeping an equal share.

All of it is pure ``jax.numpy`` over arrays (``filter_rows`` jittable with a key); only
:func:`task_groups`, which reads task ids, and :func:`select_histories`, which applies an
:class:`LHFConfig` to a history dict, run on the host. Example (histories of several goals,
``goal [N, 2]``, per-episode returns ``[N, n]``, optimum ``r_max [N]``)::

    groups = task_groups(goal)                            # [G, m] rows of each task
    u = utility(returns, r_max)                           # [N]
    rows = filter_rows(key, u, groups)                    # [G * m] rows to keep
    filtered = {k: v[np.asarray(rows)] for k, v in histories.items()}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_icl.config import require_nonnegative, require_types

__all__ = [
    "LHFConfig",
    "filter_rows",
    "improvement",
    "keep_probabilities",
    "reweight",
    "select_histories",
    "stability",
    "task_groups",
    "utility",
]


@dataclasses.dataclass(frozen=True)
class LHFConfig:
    """Learning-history filtering of a pretraining set.

    Attributes:
      method: ``"none"`` (every history once, uniform sampling), ``"filter"`` (:func:`filter_rows`)
        or ``"reweight"`` (:func:`reweight`).
      lam: weight of Stability in ``U`` (the paper's best: 1; 0.5 and 2 are as good).
      temperature: 0 for min-max keep probabilities, else the softmax temperature (the paper
        tries 0.0625 .. 1).
    """

    method: Literal["none", "filter", "reweight"] = "none"
    lam: float = 1.0
    temperature: float = 0.0

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("lam", "temperature"):
            require_nonnegative(self, name)


def _check_returns(returns: jax.Array, r_max) -> tuple[jax.Array, jax.Array]:
    """float32 ``returns [N, n]`` (n >= 2) and ``r_max`` broadcast to ``[N]``."""
    returns = jnp.asarray(returns, jnp.float32)
    if returns.ndim != 2 or returns.shape[1] < 2:
        raise ValueError(f"returns: need [num_histories, num_episodes >= 2], got shape {returns.shape}")
    r_max = jnp.broadcast_to(jnp.asarray(r_max, jnp.float32), returns.shape[:1])
    return returns, r_max


def improvement(returns: jax.Array, r_max) -> jax.Array:
    """``(mean R + (max R - min R)) / (2 R_max)`` per history, float32 ``[N]``.

    Args:
      returns: per-episode returns ``[N, n]`` (n >= 2) in episode order.
      r_max: the task's maximum return, a positive scalar or ``[N]``.
    """
    returns, r_max = _check_returns(returns, r_max)
    spread = returns.max(axis=1) - returns.min(axis=1)
    return (returns.mean(axis=1) + spread) / (2.0 * r_max)


def stability(returns: jax.Array, r_max) -> jax.Array:
    """``1 + mean_i min(R_{i+1} - R_i, 0) / R_max`` per history, float32 ``[N]`` (at most 1)."""
    returns, r_max = _check_returns(returns, r_max)
    drops = jnp.minimum(jnp.diff(returns, axis=1), 0.0)
    return 1.0 + drops.mean(axis=1) / r_max


def utility(returns: jax.Array, r_max, lam: float = 1.0) -> jax.Array:
    """``U = improvement + lam * stability`` per history, float32 ``[N]`` (the paper's lambda 1)."""
    return improvement(returns, r_max) + lam * stability(returns, r_max)


def keep_probabilities(u: jax.Array, temperature: float | None = None) -> jax.Array:
    """Keep probabilities ``[..., m]`` of the ``m`` histories of a task from their ``u [..., m]``.

    ``temperature=None``: min-max normalisation ``(u - min) / (max - min)`` (all ones when the
    ``u`` are equal). Otherwise ``exp((v - 1) / temperature)`` for the normalised ``v``: the
    softmax of ``v / temperature`` scaled so that its largest entry is 1. Either way the best
    history has probability 1, so every pass of :func:`filter_rows` keeps at least one.
    """
    u = jnp.asarray(u, jnp.float32)
    lo, hi = u.min(axis=-1, keepdims=True), u.max(axis=-1, keepdims=True)
    span = hi - lo
    v = jnp.where(span > 0, (u - lo) / jnp.where(span > 0, span, 1.0), 1.0)
    if temperature is None:
        return v
    if temperature <= 0:
        raise ValueError(f"temperature: must be positive, got {temperature}")
    return jnp.exp((v - 1.0) / temperature)


def _filter_task(key: jax.Array, probs: jax.Array) -> jax.Array:
    """int32 ``[m]`` positions kept from one task's ``probs [m]`` (max 1), see :func:`filter_rows`."""
    m = probs.shape[0]
    # Each pass keeps the probability-1 history, so m passes always fill the m slots.
    kept = (jax.random.uniform(key, (m, m)) < probs).reshape(-1)  # pass-major, history order within a pass
    return (jnp.nonzero(kept, size=m)[0] % m).astype(jnp.int32)


def filter_rows(key: jax.Array, u: jax.Array, groups: jax.Array, temperature: float | None = None) -> jax.Array:
    """Rows of the filtered history set, int32 ``[G * m]`` (task after task), jittable.

    Within each task, passes go over its histories in order, keeping each with its
    :func:`keep_probabilities` entry, until ``m`` are kept (the last pass stops there). The set
    keeps its size and its per-task counts; with min-max probabilities the best history of a
    task is kept in every pass and the worst never.

    Args:
      key: PRNG key.
      u: utilities ``[N]`` of all histories (:func:`utility`).
      groups: int ``[G, m]`` rows of ``u`` belonging to each of ``G`` tasks (:func:`task_groups`).
      temperature: None for min-max probabilities, else the softmax temperature.
    """
    groups = jnp.asarray(groups, jnp.int32)
    probs = keep_probabilities(jnp.asarray(u)[groups], temperature)
    positions = jax.vmap(_filter_task)(jax.random.split(key, groups.shape[0]), probs)
    return jnp.take_along_axis(groups, positions, axis=1).reshape(-1)


def reweight(u: jax.Array, groups: jax.Array, temperature: float | None = None) -> jax.Array:
    """Sampling probabilities float32 ``[N]`` (summing to 1) proportional to the keep
    probabilities within each task, each of the ``G`` tasks holding ``1 / G`` in total.

    Rows in no group get 0. Args as in :func:`filter_rows`.
    """
    groups = jnp.asarray(groups, jnp.int32)
    probs = keep_probabilities(jnp.asarray(u)[groups], temperature)
    probs = probs / probs.sum(axis=1, keepdims=True) / groups.shape[0]
    return jnp.zeros(jnp.shape(u), jnp.float32).at[groups.reshape(-1)].set(probs.reshape(-1))


def task_groups(task: np.ndarray) -> np.ndarray:
    """int32 ``[G, m]``: the rows of each distinct task in ``task [N, ...]`` (e.g. goals
    ``[N, 2]``), tasks in sorted order, rows ascending. ValueError unless every task has the
    same number ``m`` of histories."""
    task = np.asarray(task).reshape(len(task), -1)
    _, inverse, counts = np.unique(task, axis=0, return_inverse=True, return_counts=True)
    if counts.min() != counts.max():
        raise ValueError(f"task: tasks hold between {counts.min()} and {counts.max()} histories; "
                         "filtering needs the same number per task")
    return np.argsort(inverse.reshape(-1), kind="stable").reshape(len(counts), -1).astype(np.int32)


# select_histories runs each step as one compiled program, not op by op.
_utility = jax.jit(utility, static_argnames="lam")
_reweight = jax.jit(reweight, static_argnames="temperature")
_filter_rows = jax.jit(filter_rows, static_argnames="temperature")


def select_histories(
    config: LHFConfig, key: jax.Array, histories: Mapping[str, Any], task: np.ndarray, returns: np.ndarray, r_max
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``(histories, sampling probabilities [N'] or None)`` after ``config``.

    Args:
      config: the method and its settings.
      key: PRNG key of the filter.
      histories: arrays ``[N, ...]``, one history per row.
      task: ``[N, ...]`` task of each history (e.g. its goal), :func:`task_groups`.
      returns: per-episode returns ``[N, n]``.
      r_max: maximum return of each history's task, scalar or ``[N]``.

    ``"none"`` returns the histories unchanged and None (uniform); ``"filter"`` the filtered
    rows (same size) and None; ``"reweight"`` the histories unchanged and their probabilities.
    """
    histories = {k: np.asarray(v) for k, v in histories.items()}
    if config.method == "none":
        return histories, None
    u = _utility(returns, r_max, lam=config.lam)
    groups = task_groups(task)
    temperature = config.temperature or None
    if config.method == "reweight":
        return histories, np.asarray(_reweight(u, groups, temperature=temperature))
    rows = np.asarray(_filter_rows(key, u, groups, temperature=temperature))
    return {k: v[rows] for k, v in histories.items()}, None
