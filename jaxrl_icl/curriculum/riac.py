"""RIAC teacher (Baranes & Oudeyer 2009) as the reference code of Portelas et al. (2019) runs it.

A tree of axis-aligned regions covers the task box. Every node, the root and the parents
included, keeps its last ``max_region_size + 1`` ``(task, competence)`` pairs, receives every
reported task that falls inside it and is a sampling candidate. A node's absolute learning
progress (ALP) compares the two halves of its newest ``min(n, max_region_size)`` pairs:
``|mean of the older half - mean of the newer half|`` (the older half takes the odd one),
0 for ``n <= 2``.

Split: when a report fills a leaf (``max_region_size + 1`` pairs), ``nb_split_attempts`` cuts
are drawn, each a dimension uniform at random and a position uniform in the leaf, redrawn
until both children hold at least ``min_child_pairs`` pairs (a child takes the pairs whose
coordinate is ``<=`` the cut; the other child the rest). A cut is valid when both children's
sides are at least ``min_dims_range_ratio`` of the box's extent; its score is
``|ALP(child 1) - ALP(child 2)|`` and the last valid cut of highest score is made (any valid
cut is accepted, score 0 included). The children keep their share of the leaf's pairs, in
order, and the leaf becomes a parent that keeps its own buffer. With no valid cut the leaf
forgets its ``int(discard_ratio * max_region_size)`` oldest pairs. There is no cap on the
number of regions: the node arrays have a fixed capacity, by default the most nodes the split rule can create.

Reference quirk: the reference gives the two new children the ALPs of the *last attempted*
cut (valid or not), not of the cut it made; they keep them until a report lands in them.
``children_alp_of_last_attempt`` (default True, as the reference) reproduces it; False gives
them the ALPs of their own pairs.

Sampling, one mode per task: with probability ``mutation_ratio`` (10%) a node chosen with
probability proportional to its ALP, its lowest-competence pair (the oldest on ties), that
task plus N(0, ``mutation_std``) noise clipped to the node (1e-5 inside its faces); with
probability ``random_task_ratio`` (20%) uniform in the box; otherwise (70%) a node chosen by
ALP and a task uniform inside it. Nodes are chosen uniformly while every ALP is 0; before the
first report the mutation mode is uniform in the box.

Differences from the reference: a cut position is drawn directly from its distribution
conditioned on the population rule (the same distribution as redrawing until the rule holds,
with no loop), and a leaf where no cut can satisfy the population rule counts as having no
valid cut (the reference loops forever there). A task outside the box is stored nowhere
(as in the reference) but counted. A report with a non-finite task or competence is skipped
and counted in ``num_rejected`` (:mod:`jaxrl_icl.curriculum.reports`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_icl.config import ConfigError, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.curriculum.box import validate_box
from jaxrl_icl.curriculum.branch import update_if
from jaxrl_icl.curriculum.reports import check_report, count_report


@dataclasses.dataclass(frozen=True)
class RIACConfig:
    """RIAC hyper-parameters (defaults: the reference code's).

    Attributes:
      low: lower corner of the task box.
      high: upper corner of the task box (``low < high`` in every dimension).
      max_region_size: a leaf holding more pairs than this tries to split; every node keeps
        ``max_region_size + 1`` pairs and its ALP looks at the newest ``max_region_size``.
      min_child_pairs: fewest pairs each child of a cut must hold (reference: max_region_size / 20).
      min_dims_range_ratio: smallest side of a child, as a fraction of the box's extent.
      nb_split_attempts: cuts drawn per split.
      discard_ratio: a full leaf with no valid cut forgets its ``int(discard_ratio * max_region_size)``
        oldest pairs.
      random_task_ratio: probability of a task uniform in the box.
      mutation_ratio: probability of a mutated lowest-competence task.
      mutation_std: standard deviation of that mutation, in task units.
      children_alp_of_last_attempt: reference quirk (see the module docstring).
      max_nodes: capacity of the node arrays; 0 means the most nodes the split rule can create,
        ``2 * floor(1 / min_dims_range_ratio) ** d - 1`` (449 in 2-D), which is never exceeded.
        A smaller capacity, once full, turns further splits into discards, counted in the
        state's ``num_refused_splits``.
    """

    low: tuple[float, ...] = (0.0, 0.0)
    high: tuple[float, ...] = (1.0, 1.0)
    max_region_size: int = 200
    min_child_pairs: int = 10
    min_dims_range_ratio: float = 1 / 15
    nb_split_attempts: int = 50
    discard_ratio: float = 0.25
    random_task_ratio: float = 0.2
    mutation_ratio: float = 0.1
    mutation_std: float = 0.1
    children_alp_of_last_attempt: bool = True
    max_nodes: int = 0

    def __post_init__(self) -> None:
        require_types(self)
        validate_box(self)
        for name in ("max_region_size", "min_child_pairs", "nb_split_attempts"):
            require_positive(self, name)
        if not 0 < self.min_dims_range_ratio <= 0.5:
            raise ConfigError("min_dims_range_ratio", f"must be in (0, 0.5], got {self.min_dims_range_ratio}")
        require_in(self, "discard_ratio", 0.0, 1.0)
        require_in(self, "random_task_ratio", 0.0, 1.0)
        require_in(self, "mutation_ratio", 0.0, 1.0 - self.random_task_ratio)
        require_nonnegative(self, "mutation_std")
        require_nonnegative(self, "max_nodes")

    @property
    def node_capacity(self) -> int:
        """Length of the node arrays: ``max_nodes``, or the split rule's bound when it is 0."""
        if self.max_nodes:
            return self.max_nodes
        per_dim = math.floor(1 / self.min_dims_range_ratio + 1e-9)
        return 2 * per_dim ** len(self.low) - 1


@struct.dataclass
class RIACState:
    """Teacher state, fixed capacity (N = ``config.node_capacity``, B = max_region_size + 1).

    Node 0 is the root; a split appends two children. Each node's pairs are a ring buffer:
    the next pair goes to slot ``head``, the newest ``size`` slots before it hold pairs.

    Attributes:
      config: the (static) config.
      count: int32[] valid reports so far.
      num_rejected: int32[] reports skipped as non-finite.
      num_outside: int32[] valid reports whose task lies outside the box (stored nowhere).
      num_refused_splits: int32[] splits not made because the node arrays were full.
      num_nodes: int32[] nodes in use (slots ``< num_nodes``).
      is_leaf: bool[N] whether a node has no children.
      low, high: float32[N, d] node corners.
      tasks: float32[N, B, d] each node's stored tasks.
      rewards: float32[N, B] their competences.
      head: int32[N] each node's next ring slot.
      size: int32[N] pairs each node holds.
      alp: float32[N] each node's ALP (what sampling weighs).
      key: PRNG key for the split attempts.
    """

    config: RIACConfig = struct.field(pytree_node=False)
    count: jax.Array
    num_rejected: jax.Array
    num_outside: jax.Array
    num_refused_splits: jax.Array
    num_nodes: jax.Array
    is_leaf: jax.Array
    low: jax.Array
    high: jax.Array
    tasks: jax.Array
    rewards: jax.Array
    head: jax.Array
    size: jax.Array
    alp: jax.Array
    key: jax.Array


def init(key: jax.Array, config: RIACConfig) -> RIACState:
    """The root, the whole box, with no pairs."""
    d, n, b = len(config.low), config.node_capacity, config.max_region_size + 1
    zero = jnp.int32(0)
    return RIACState(
        config=config, count=zero, num_rejected=zero, num_outside=zero, num_refused_splits=zero,
        num_nodes=jnp.int32(1), is_leaf=jnp.ones((n,), bool),
        low=jnp.broadcast_to(jnp.asarray(config.low, jnp.float32), (n, d)),
        high=jnp.broadcast_to(jnp.asarray(config.high, jnp.float32), (n, d)),
        tasks=jnp.zeros((n, b, d), jnp.float32), rewards=jnp.zeros((n, b), jnp.float32),
        head=jnp.zeros((n,), jnp.int32), size=jnp.zeros((n,), jnp.int32), alp=jnp.zeros((n,), jnp.float32),
        key=key,
    )


def _ages(head: jax.Array, size: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array]:
    """``(age int32[..., B], held bool[..., B])``: each slot's age (0 = newest) and whether it holds a pair."""
    age = (head[..., None] - 1 - jnp.arange(capacity)) % capacity
    return age, age < size[..., None]


def _halves_alp(rewards: jax.Array, rank: jax.Array, n: jax.Array, window: int) -> jax.Array:
    """ALP from each pair's ``rank`` (0 = newest) among ``n`` pairs; ranks ``>= n`` are ignored.

    The newest ``min(n, window) // 2`` pairs are the newer half, the next ones up to ``min(n, window)``
    the older half; 0 when ``n <= 2``. Shapes: ``rewards`` [..., B], ``rank`` [..., B], ``n`` [...].
    """
    w = jnp.minimum(n, window)[..., None]
    half = w // 2
    newer = (rank < half).astype(jnp.float32)
    older = ((rank >= half) & (rank < w)).astype(jnp.float32)
    mean_new = jnp.sum(newer * rewards, -1) / jnp.maximum(jnp.sum(newer, -1), 1)
    mean_old = jnp.sum(older * rewards, -1) / jnp.maximum(jnp.sum(older, -1), 1)
    return jnp.where(n > 2, jnp.abs(mean_old - mean_new), 0.0)


def _ring_alp(rewards: jax.Array, head: jax.Array, size: jax.Array, window: int) -> jax.Array:
    """ALP of ring buffers: ``rewards`` float32[..., B], ``head`` and ``size`` int32[...] -> float32[...]."""
    age, held = _ages(head, size, rewards.shape[-1])
    return _halves_alp(rewards, jnp.where(held, age, jnp.iinfo(jnp.int32).max), size, window)


def _max_containing(cfg: RIACConfig) -> int:
    """The most nodes one task can lie in: ``2^d`` leaves (a point on faces and corners) with their paths.

    A split along dimension j shortens the side by at least ``min_dims_range_ratio`` of the box's
    extent, so a root-to-leaf path makes at most ``floor(1 / min_dims_range_ratio) - 1`` splits per
    dimension (one more node of slack for rounding).
    """
    d = len(cfg.low)
    path = 2 + d * (math.floor(1 / cfg.min_dims_range_ratio + 1e-9) - 1)
    return min(cfg.node_capacity, 2 ** d * path)


def subset_alp(rewards: jax.Array, age: jax.Array, masks: jax.Array, window: int) -> jax.Array:
    """ALP of subsets of one node's pairs: float32[S] for ``masks`` bool[S, B].

    ``rewards`` float32[B] and ``age`` int32[B] (0 = newest) of the node's slots; a subset keeps
    the pairs' order.
    """
    order = jnp.argsort(age)
    m = masks[:, order]
    rank = jnp.where(m, jnp.cumsum(m, axis=-1) - 1, jnp.iinfo(jnp.int32).max)
    return _halves_alp(rewards[order], rank, jnp.sum(m, -1), window)


def _proportional(u: jax.Array, weights: jax.Array) -> jax.Array:
    """Index drawn with probability proportional to ``weights`` float32[..., K] (>= 0, some > 0) from
    ``u`` float32[...] uniform in [0, 1): the inverse of the cumulative weights."""
    cumulative = jnp.cumsum(weights, axis=-1)
    below = cumulative <= (u * cumulative[..., -1])[..., None]
    return jnp.minimum(jnp.sum(below, axis=-1), weights.shape[-1] - 1)


def sample(key: jax.Array, state: RIACState) -> tuple[jax.Array, RIACState]:
    """Next task float32[d] in the box; the state is unchanged. One normal draw feeds every mode."""
    cfg = state.config
    d = len(cfg.low)
    z = jax.random.normal(key, (2 + 3 * d,))
    noise, u = z[:d], jax.scipy.special.ndtr(z[d:])  # N(0, 1) and U(0, 1) coordinates
    # a node in use, with probability proportional to its ALP (uniform while every ALP is 0)
    active = jnp.arange(state.alp.shape[0]) < state.num_nodes
    weights = jnp.where(active, state.alp, 0.0)
    node = _proportional(u[0], jnp.where(jnp.sum(weights) > 0, weights, active.astype(jnp.float32)))
    lo, hi = state.low[node], state.high[node]
    inside = lo + u[2:2 + d] * (hi - lo)
    box_low, box_high = jnp.asarray(cfg.low, jnp.float32), jnp.asarray(cfg.high, jnp.float32)
    uniform = box_low + u[2 + d:] * (box_high - box_low)
    # the lowest-competence pair of the node, the oldest on ties
    age, held = _ages(state.head[node], state.size[node], state.rewards.shape[1])
    reward = jnp.where(held, state.rewards[node], jnp.inf)
    worst = jnp.argmax(jnp.where(reward == jnp.min(reward), age, -1))
    mutated = state.tasks[node, worst] + cfg.mutation_std * noise
    mutated = jnp.where(state.size[node] > 0, jnp.clip(mutated, lo + 1e-5, hi - 1e-5), inside)
    mutated = jnp.where(state.count > 0, mutated, uniform)
    task = jnp.where(u[1] < cfg.mutation_ratio, mutated,
                     jnp.where(u[1] < cfg.mutation_ratio + cfg.random_task_ratio, uniform, inside))
    return jnp.clip(task, box_low, box_high), state


def _split(state: RIACState, node: jax.Array) -> RIACState:
    """Split the full leaf ``node`` by the best of ``nb_split_attempts`` cuts, or forget its oldest pairs."""
    cfg = state.config
    num_attempts, m = cfg.nb_split_attempts, cfg.min_child_pairs
    key, k_cuts = jax.random.split(state.key)
    lo, hi = state.low[node], state.high[node]
    tasks, rewards, n = state.tasks[node], state.rewards[node], state.size[node]
    age, held = _ages(state.head[node], n, tasks.shape[0])
    # Cut positions of dimension j that leave >= m pairs on each side: [s_j[m - 1], s_j[n - m]) over the
    # sorted coordinates s_j. A uniform (dimension, position in the leaf) drawn until the rule holds
    # is this: dimension j with probability proportional to the interval's share of the leaf's side.
    s = jnp.sort(jnp.where(held[:, None], tasks, jnp.inf), axis=0)  # [B, d]
    start = s[m - 1]
    length = jnp.where(n >= 2 * m, jnp.maximum(s[jnp.maximum(n - m, 0)] - start, 0.0), 0.0)
    weight = length / (hi - lo)
    feasible = jnp.sum(weight) > 0
    u = jax.random.uniform(k_cuts, (2, num_attempts))
    dims = _proportional(u[0], jnp.broadcast_to(jnp.where(feasible, weight, 1.0), (num_attempts, len(weight))))
    cuts = start[dims] + u[1] * length[dims]
    box = jnp.asarray(cfg.high, jnp.float32) - jnp.asarray(cfg.low, jnp.float32)
    min_side = cfg.min_dims_range_ratio * box[dims]
    valid = feasible & (cuts - lo[dims] >= min_side) & (hi[dims] - cuts >= min_side)
    first = held[None, :] & (tasks[:, dims].T <= cuts[:, None])  # [A, B]
    second = held[None, :] & ~first
    alp_first = subset_alp(rewards, age, first, cfg.max_region_size)
    alp_second = subset_alp(rewards, age, second, cfg.max_region_size)
    score = jnp.where(valid, jnp.abs(alp_first - alp_second), -1.0)
    best = num_attempts - 1 - jnp.argmax(score[::-1])  # the last of the highest scores, as ``>=`` keeps
    do_split = valid[best]
    ok = do_split & (state.num_nodes + 2 <= state.alp.shape[0])
    a = num_attempts - 1 if cfg.children_alp_of_last_attempt else best
    children = jnp.stack([state.num_nodes, state.num_nodes + 1])
    dim, cut = dims[best], cuts[best]
    # the children's buffers: their share of the leaf's pairs, oldest first
    order = jnp.argsort(-age)
    members = jnp.stack([first[best], second[best]])[:, order]  # [2, B]
    slot = jnp.where(members, jnp.cumsum(members, -1) - 1, tasks.shape[0])  # out of range: dropped
    child_size = jnp.sum(members, -1).astype(jnp.int32)

    def put(buffer: jax.Array, new: jax.Array) -> jax.Array:
        """``buffer`` with the children's rows set to ``new`` when the split is made."""
        return buffer.at[children].set(jnp.where(ok, new, buffer.at[children].get(mode="clip")), mode="drop")

    def fill(values: jax.Array) -> jax.Array:
        return jax.vmap(lambda at: jnp.zeros_like(values).at[at].set(values[order], mode="drop"))(slot)

    discard = int(cfg.discard_ratio * cfg.max_region_size)
    return state.replace(
        key=key,
        num_nodes=state.num_nodes + 2 * ok.astype(jnp.int32),
        num_refused_splits=state.num_refused_splits + (do_split & ~ok).astype(jnp.int32),
        is_leaf=put(state.is_leaf, jnp.ones(2, bool)).at[node].set(~ok),
        low=put(state.low, jnp.stack([lo, lo.at[dim].set(cut)])),
        high=put(state.high, jnp.stack([hi.at[dim].set(cut), hi])),
        tasks=put(state.tasks, fill(tasks)),
        rewards=put(state.rewards, fill(rewards)),
        head=put(state.head, child_size % tasks.shape[0]),
        size=put(state.size, child_size).at[node].add(jnp.where(ok, 0, -discard)),
        alp=put(state.alp, jnp.stack([alp_first[a], alp_second[a]])),
    )


def update(state: RIACState, task: jax.Array, competence: jax.Array) -> RIACState:
    """Store ``(task, competence)`` in every node containing ``task``, split a full leaf, refresh their ALPs.

    ``task`` float32[d], ``competence`` float32[]. A non-finite report leaves the state as it
    was but for ``num_rejected``."""
    cfg = state.config
    task, competence, valid = check_report(task, competence, len(cfg.low))
    n, b = state.alp.shape[0], cfg.max_region_size + 1
    active = jnp.arange(n) < state.num_nodes
    contains = valid & active & jnp.all((state.low <= task) & (task <= state.high), axis=-1)
    rows = jnp.arange(n)
    state = count_report(state.replace(
        tasks=state.tasks.at[rows, state.head].set(
            jnp.where(contains[:, None], task, state.tasks[rows, state.head])),
        rewards=state.rewards.at[rows, state.head].set(
            jnp.where(contains, competence, state.rewards[rows, state.head])),
        head=jnp.where(contains, (state.head + 1) % b, state.head),
        size=jnp.where(contains, jnp.minimum(state.size + 1, b), state.size),
        num_outside=state.num_outside + (valid & ~contains[0]).astype(jnp.int32),
    ), valid)
    full = contains & state.is_leaf & (state.size > cfg.max_region_size)
    state = update_if(jnp.any(full), _split, state, jnp.argmax(full))
    # refresh the ALPs of the nodes the report reached (at most ``_max_containing`` of them)
    at = jnp.nonzero(contains, size=_max_containing(cfg), fill_value=n)[0]
    rewards, head, size = (x.at[at].get(mode="fill", fill_value=0) for x in (state.rewards, state.head, state.size))
    alp = _ring_alp(rewards, head, size, cfg.max_region_size)
    return state.replace(alp=state.alp.at[at].set(alp, mode="drop"))
