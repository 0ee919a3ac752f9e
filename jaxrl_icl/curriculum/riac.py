"""RIAC teacher (Baranes & Oudeyer 2009, as a baseline in Portelas et al. 2019), fixed capacity.

The task box is split into axis-aligned regions, each keeping its last ``max_region_size + 1``
``(task, competence)`` pairs. A region's absolute learning progress (ALP) is
``|mean competence of its newer half - mean of its older half|``. When a region holds more
than ``max_region_size`` pairs it tries ``nb_split_attempts`` random cuts (random dimension,
random position leaving both sides at least ``min_dims_range_ratio`` of the box's extent)
and keeps the cut maximising ``n_left * n_right * |ALP_left - ALP_right|`` if that is > 0.
Sampling: with probability ``random_task_ratio`` uniform in the box, else a region chosen
with probability proportional to its ALP (uniform over regions if all are 0), and a task
uniform inside it.

Simplifications of the reference code, which grows a tree on the host: at most
``max_regions`` regions (leaves only; a full region that cannot split forgets its oldest
pair), and no "low-competence task plus noise" sampling mode (its share goes to the
ALP-proportional mode).

A report with a non-finite task or competence is skipped and counted in ``num_rejected``
(:mod:`jaxrl_icl.curriculum.reports`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_icl.config import ConfigError, require_in, require_positive, require_types
from jaxrl_icl.curriculum.box import uniform_in_box, validate_box
from jaxrl_icl.curriculum.reports import check_report, count_report, set_if


@dataclasses.dataclass(frozen=True)
class RIACConfig:
    """RIAC hyper-parameters.

    Attributes:
      low: lower corner of the task box.
      high: upper corner of the task box (``low < high`` in every dimension).
      max_region_size: a region holding more pairs than this tries to split.
      max_regions: fixed capacity of the region list.
      nb_split_attempts: random cuts tried per split.
      min_dims_range_ratio: smallest side of a child region, as a fraction of the box's extent.
      random_task_ratio: probability of a uniform task.
    """

    low: tuple[float, ...] = (0.0, 0.0)
    high: tuple[float, ...] = (1.0, 1.0)
    max_region_size: int = 200
    max_regions: int = 64
    nb_split_attempts: int = 50
    min_dims_range_ratio: float = 1 / 6
    random_task_ratio: float = 0.2

    def __post_init__(self) -> None:
        require_types(self)
        validate_box(self)
        for name in ("max_region_size", "max_regions", "nb_split_attempts"):
            require_positive(self, name)
        if not 0 < self.min_dims_range_ratio < 0.5:
            raise ConfigError("min_dims_range_ratio", f"must be in (0, 0.5), got {self.min_dims_range_ratio}")
        require_in(self, "random_task_ratio", 0.0, 1.0)


@struct.dataclass
class RIACState:
    """Teacher state, fixed capacity (R = max_regions, B = max_region_size + 1).

    Attributes:
      config: the (static) config.
      count: int32[] valid reports so far.
      num_rejected: int32[] reports skipped as non-finite.
      num_regions: int32[] regions in use (slots ``< num_regions``).
      region_low, region_high: float32[R, d] region corners.
      tasks: float32[R, B, d] each region's stored tasks.
      rewards: float32[R, B] their competences.
      times: int32[R, B] when each pair was reported (-1 for an empty slot).
      alp: float32[R] each region's ALP.
      key: PRNG key for the split attempts.
    """

    config: RIACConfig = struct.field(pytree_node=False)
    count: jax.Array
    num_rejected: jax.Array
    num_regions: jax.Array
    region_low: jax.Array
    region_high: jax.Array
    tasks: jax.Array
    rewards: jax.Array
    times: jax.Array
    alp: jax.Array
    key: jax.Array


def init(key: jax.Array, config: RIACConfig) -> RIACState:
    """One region, the whole box, with no pairs."""
    d, r, b = len(config.low), config.max_regions, config.max_region_size + 1
    return RIACState(
        config=config, count=jnp.int32(0), num_rejected=jnp.int32(0), num_regions=jnp.int32(1),
        region_low=jnp.broadcast_to(jnp.asarray(config.low, jnp.float32), (r, d)),
        region_high=jnp.broadcast_to(jnp.asarray(config.high, jnp.float32), (r, d)),
        tasks=jnp.zeros((r, b, d), jnp.float32), rewards=jnp.zeros((r, b), jnp.float32),
        times=jnp.full((r, b), -1, jnp.int32), alp=jnp.zeros((r,), jnp.float32), key=key,
    )


def region_alp(rewards: jax.Array, times: jax.Array, masks: jax.Array) -> jax.Array:
    """ALP of subsets of one region's pairs: float32[S] for ``masks`` bool[S, B].

    ``rewards`` float32[B] and ``times`` int32[B]; the older half (by time) of each subset is
    compared with the newer half; 0 for subsets with fewer than 2 pairs.
    """
    order = jnp.argsort(times)
    r, m = rewards[order], masks[:, order].astype(jnp.float32)
    n = jnp.sum(m, axis=-1, keepdims=True)
    rank = jnp.cumsum(m, axis=-1) - 1
    old = m * (rank < n // 2)
    new = m - old
    mean_old = jnp.sum(old * r, -1) / jnp.maximum(jnp.sum(old, -1), 1)
    mean_new = jnp.sum(new * r, -1) / jnp.maximum(jnp.sum(new, -1), 1)
    return jnp.where(n[:, 0] >= 2, jnp.abs(mean_new - mean_old), 0.0)


def sample(key: jax.Array, state: RIACState) -> tuple[jax.Array, RIACState]:
    """Next task float32[d] in the box; the state is unchanged."""
    cfg = state.config
    k_uniform, k_coin, k_region, k_inside = jax.random.split(key, 4)
    active = jnp.arange(cfg.max_regions) < state.num_regions
    weights = jnp.where(active, state.alp, 0.0)
    weights = jnp.where(jnp.sum(weights) > 0, weights, active.astype(jnp.float32))
    logits = jnp.where(weights > 0, jnp.log(jnp.where(weights > 0, weights, 1.0)), -jnp.inf)
    region = jax.random.categorical(k_region, logits)
    inside = jax.random.uniform(k_inside, (len(cfg.low),), minval=state.region_low[region],
                                maxval=state.region_high[region])
    uniform = uniform_in_box(k_uniform, cfg.low, cfg.high)
    return jnp.where(jax.random.uniform(k_coin) < cfg.random_task_ratio, uniform, inside), state


def _split(state: RIACState, region: jax.Array) -> RIACState:
    """Try ``nb_split_attempts`` random cuts of ``region``; apply the best one if its quality > 0."""
    cfg = state.config
    d = len(cfg.low)
    key, k_dim, k_pos = jax.random.split(state.key, 3)
    min_side = cfg.min_dims_range_ratio * (jnp.asarray(cfg.high) - jnp.asarray(cfg.low))
    lo, hi = state.region_low[region], state.region_high[region]
    dims = jax.random.randint(k_dim, (cfg.nb_split_attempts,), 0, d)
    frac = jax.random.uniform(k_pos, (cfg.nb_split_attempts,))
    cut = lo[dims] + min_side[dims] + frac * (hi[dims] - lo[dims] - 2 * min_side[dims])
    wide_enough = hi[dims] - lo[dims] >= 2 * min_side[dims]
    tasks, rewards, times = state.tasks[region], state.rewards[region], state.times[region]
    stored = times >= 0
    left = stored[None, :] & (tasks[:, dims].T < cut[:, None])  # [S, B]
    right = stored[None, :] & ~left
    n_left, n_right = jnp.sum(left, -1), jnp.sum(right, -1)
    alp_left, alp_right = region_alp(rewards, times, left), region_alp(rewards, times, right)
    quality = jnp.where(wide_enough, n_left * n_right * jnp.abs(alp_left - alp_right), 0.0)
    best = jnp.argmax(quality)
    do_split = (quality[best] > 0) & (state.num_regions < cfg.max_regions)
    dim, where = dims[best], cut[best]
    new = state.num_regions
    split_state = state.replace(
        num_regions=state.num_regions + 1,
        region_low=state.region_low.at[new].set(lo.at[dim].set(where)),
        region_high=state.region_high.at[region, dim].set(where).at[new].set(hi),
        tasks=state.tasks.at[new].set(tasks),
        rewards=state.rewards.at[new].set(rewards),
        times=state.times.at[region].set(jnp.where(left[best], times, -1)).at[new].set(
            jnp.where(right[best], times, -1)),
        alp=state.alp.at[region].set(alp_left[best]).at[new].set(alp_right[best]),
    )
    chosen = jax.tree.map(lambda a, b: jnp.where(do_split, a, b), split_state, state)
    return chosen.replace(key=key)


def update(state: RIACState, task: jax.Array, competence: jax.Array) -> RIACState:
    """Store ``(task, competence)`` in its region, refresh the region's ALP, split if it is full.

    A non-finite report leaves the state as it was but for ``num_rejected``."""
    cfg = state.config
    task, competence, valid = check_report(task, competence, len(cfg.low))
    active = jnp.arange(cfg.max_regions) < state.num_regions
    inside = active & jnp.all((state.region_low <= task) & (task <= state.region_high), axis=-1)
    # a task outside every region (outside the box) goes to the region nearest to it
    gap = jnp.sum(jnp.maximum(state.region_low - task, 0) + jnp.maximum(task - state.region_high, 0), -1)
    region = jnp.where(jnp.any(inside), jnp.argmax(inside), jnp.argmin(jnp.where(active, gap, jnp.inf)))
    slot = jnp.argmin(state.times[region])  # an empty slot (-1) first, else the oldest pair
    times = set_if(valid, state.times, (region, slot), state.count)
    rewards = set_if(valid, state.rewards, (region, slot), competence)
    alp = region_alp(rewards[region], times[region], (times[region] >= 0)[None, :])[0]
    state = count_report(state.replace(
        times=times, rewards=rewards, tasks=set_if(valid, state.tasks, (region, slot), task),
        alp=set_if(valid, state.alp, region, alp),
    ), valid)
    full = valid & (jnp.sum(state.times[region] >= 0) > cfg.max_region_size)
    return jax.lax.cond(full, _split, lambda s, _: s, state, region)
