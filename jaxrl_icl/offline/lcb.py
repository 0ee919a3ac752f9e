"""Pessimism by lower confidence bounds (LCB) on tabular data, and its baselines.

Rashidinejad, Zhu, Ma, Jiao, Russell (2021), "Bridging Offline Reinforcement Learning and
Imitation Learning: A Tale of Pessimism" (arXiv 2103.12021): from a fixed dataset, act greedily
on the empirical mean *minus* a count-based confidence penalty. With expert-heavy data the
penalty steers towards the actions the data repeats (as behaviour cloning does); with uniform
data it shrinks towards the empirical greedy choice; so one algorithm works across data
compositions.

A dataset here is its sufficient statistics, one :class:`Counts` table: visits ``n(s, a)``,
summed rewards and successor counts. A multi-armed bandit is a table with a single row
(``[A]``), a contextual bandit one row per context (``[S, A]``); :func:`count_transitions`
builds a table from transition arrays (e.g. the discrete observations of an offline dataset).

Every policy is a table of action probabilities whose rows sum to one: ``[..., A]`` for
bandits, ``[H, S, A]`` (non-stationary, step ``h`` first) for finite-horizon MDPs. Ties between
maximisers are split uniformly (:func:`uniform_argmax`), so a policy's value is the exact
expectation over tie-breaking; actions never seen in the data are never chosen where some
action was seen (their empirical mean is undefined), and a state with no data gets the
uniform policy.

Penalties (rewards in ``[0, 1]``, confidence ``1 - delta``, Hoeffding's inequality with a
union bound over the ``K`` estimated means):

* bandits, :func:`bandit_lcb`: ``b(a) = sqrt(log(2 K / delta) / (2 n(a)))`` with ``K = |A|`` for
  a multi-armed bandit (the paper's Algorithm 1) and ``K = S |A|`` for a contextual bandit (its
  contextual-bandit LCB, the same rule per context);
* finite-horizon MDPs, :func:`pessimistic_value_iteration`: ``b_h(s, a) = (H - h) sqrt(log(2 S
  |A| H / delta) / (2 n(s, a)))``, the Hoeffding width of ``r + V_{h+1}(s')`` whose range is
  ``[0, H - h]`` (the paper's VI-LCB with this penalty; see the function for what differs).

The algorithm boxes were not at hand when this was written: the forms above follow the
paper's construction (empirical mean minus a Hoeffding-type ``sqrt(log(.) / n)`` width), with
our own constants; the analysis constants of the paper's MDP penalty and its data splitting
are left out (``penalty_scale`` multiplies every penalty to study the constant).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "Counts",
    "bandit_greedy",
    "bandit_lcb",
    "bandit_suboptimality",
    "behaviour_cloning",
    "count_transitions",
    "empirical_value_iteration",
    "hoeffding_penalty",
    "mixture_bandit_counts",
    "mixture_mdp_counts",
    "optimal_q",
    "pessimistic_value_iteration",
    "policy_value",
    "uniform_argmax",
]


@struct.dataclass
class Counts:
    """Sufficient statistics of a tabular dataset (add leading axes for a batch).

    ``visits: float32[..., A]``: ``n(s, a)``, transitions that took ``a`` in ``s`` (``[A]`` for
    a multi-armed bandit, ``[S, A]`` otherwise). ``reward_sums``: same shape, their summed
    rewards. ``next_visits: float32[S, A, S]``: successor counts ``n(s, a, s')`` (MDPs only;
    ``None`` for bandits).
    """

    visits: jax.Array
    reward_sums: jax.Array
    next_visits: jax.Array | None = None


def count_transitions(
    states: jax.Array,
    actions: jax.Array,
    rewards: jax.Array,
    next_states: jax.Array | None,
    num_states: int,
    num_actions: int,
    weights: jax.Array | None = None,
) -> Counts:
    """:class:`Counts` (``[S, A]`` tables) of transitions ``int32 states [N]``, ``int32
    actions [N]``, ``float rewards [N]`` and, for MDPs, ``int32 next_states [N]`` (``None``:
    no ``next_visits``). ``weights: float [N]`` counts each transition that many times
    (0 drops it); default 1."""
    chex.assert_equal_shape([states, actions, rewards])
    w = jnp.ones(states.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    visits = jnp.zeros((num_states, num_actions), jnp.float32).at[states, actions].add(w)
    sums = jnp.zeros((num_states, num_actions), jnp.float32).at[states, actions].add(w * rewards)
    nxt = None
    if next_states is not None:
        nxt = jnp.zeros((num_states, num_actions, num_states), jnp.float32)
        nxt = nxt.at[states, actions, next_states].add(w)
    return Counts(visits, sums, nxt)


def uniform_argmax(values: jax.Array, valid: jax.Array) -> jax.Array:
    """float32 ``[..., A]`` probabilities, uniform over the maximisers of ``values [..., A]``
    among the ``valid`` (bool, same shape) entries; uniform over all ``A`` in a row with no
    valid entry."""
    masked = jnp.where(valid, values, -jnp.inf)
    best = valid & (masked == masked.max(axis=-1, keepdims=True))
    best = jnp.where(valid.any(axis=-1, keepdims=True), best, True).astype(jnp.float32)
    return best / best.sum(axis=-1, keepdims=True)


def hoeffding_penalty(visits: jax.Array, num_means: int, delta: float, value_range: jax.Array | float = 1.0
                      ) -> jax.Array:
    """float32 ``[...]``: ``value_range * sqrt(log(2 num_means / delta) / (2 max(n, 1)))``.

    The half-width of a two-sided Hoeffding interval at confidence ``1 - delta / num_means``
    for a mean of ``n = visits`` samples in an interval of length ``value_range``; a union
    bound makes all ``num_means`` intervals hold together with probability ``1 - delta``.
    (Unvisited entries get the ``n = 1`` width; the policies here never choose them.)
    """
    log_term = math.log(2.0 * num_means / delta)
    return value_range * jnp.sqrt(log_term / (2.0 * jnp.maximum(visits, 1.0)))


def _empirical_mean(counts: Counts) -> jax.Array:
    """``reward_sums / visits`` where visited, 0 elsewhere."""
    return counts.reward_sums / jnp.maximum(counts.visits, 1.0)


def bandit_lcb(counts: Counts, delta: float = 0.1, penalty_scale: float = 1.0) -> jax.Array:
    """LCB policy ``float32 [..., A]`` of a (contextual) bandit dataset (``counts.visits``
    ``[A]`` or ``[S, A]``): per row, uniform over the maximisers of ``r_hat(a) - penalty_scale *
    b(a)`` among the arms seen in that row, with ``b`` the Hoeffding width for all
    ``K = visits.size`` means (:func:`hoeffding_penalty`). Rewards must lie in ``[0, 1]``.

    The paper's LCB for multi-armed bandits (Algorithm 1) and for contextual bandits (the same
    rule per context), with unseen arms excluded from the argmax.
    """
    penalty = hoeffding_penalty(counts.visits, counts.visits.size, delta)
    return uniform_argmax(_empirical_mean(counts) - penalty_scale * penalty, counts.visits > 0)


def bandit_greedy(counts: Counts) -> jax.Array:
    """Greedy on empirical means (no penalty), ``float32 [..., A]``: :func:`bandit_lcb` with
    ``penalty_scale = 0``."""
    return bandit_lcb(counts, penalty_scale=0.0)


def behaviour_cloning(visits: jax.Array) -> jax.Array:
    """Most frequent action per row of ``visits [..., A]``, ``float32 [..., A]``: uniform over
    the most frequent ones, and over all actions in a row with no data."""
    return uniform_argmax(visits, visits > 0)


def bandit_suboptimality(means: jax.Array, policy: jax.Array, context_probs: jax.Array | None = None) -> jax.Array:
    """float32: ``E_s[max_a mu(s, a) - sum_a pi(a | s) mu(s, a)]`` for true mean rewards
    ``means [..., A]`` (``[A]`` or ``[S, A]``) and ``policy`` of the same shape; contexts
    weighted by ``context_probs [S]`` (uniform if None)."""
    chex.assert_equal_shape([means, policy])
    gap = means.max(axis=-1) - (policy * means).sum(axis=-1)
    if gap.ndim == 0:
        return gap
    weights = jnp.full(gap.shape, 1.0 / gap.size) if context_probs is None else context_probs
    return jnp.sum(weights * gap)


def pessimistic_value_iteration(
    counts: Counts, horizon: int, delta: float = 0.1, penalty_scale: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """VI-LCB: finite-horizon value iteration on the empirical model with a count penalty.

    Args:
      counts: ``visits``, ``reward_sums`` ``[S, A]`` and ``next_visits [S, A, S]`` pooled over
        the steps of the episodes (the dynamics do not depend on ``h``); rewards in ``[0, 1]``.
      horizon: ``H`` (steps per episode).
      delta: confidence level of the penalty.
      penalty_scale: multiplies the penalty; 0 gives plain value iteration on the empirical
        model (:func:`empirical_value_iteration`).

    Returns:
      ``(policy float32 [H, S, A], values float32 [H + 1, S])``. Backward from ``V_H = 0``:
      ``Q_h(s, a) = r_hat(s, a) + P_hat(s, a) . V_{h+1} - penalty_scale * b_h(s, a)`` with
      ``b_h = (H - h) sqrt(log(2 S A H / delta) / (2 n(s, a)))``; ``pi_h(s)`` uniform over the
      maximisers of ``Q_h(s, .)`` among the actions seen in ``s`` (uniform over all actions at
      a state with no data); ``V_h(s) = max(0, max_a Q_h(s, a))`` (0 at a state with no data).

    The floor at 0, the lowest possible value, keeps a negative pessimistic value from making
    an unvisited state look better than a visited one; it is the same as planning in the
    pessimistic model with an extra action that ends the episode with reward 0. Departures
    from the paper's VI-LCB as we know it (written for discounted MDPs, with the data split
    into independent parts, one per iteration, for the analysis): the horizon is finite (one
    backup per step), and every backup uses all the data.
    """
    visits = counts.visits
    num_states, num_actions = visits.shape
    chex.assert_shape(counts.next_visits, (num_states, num_actions, num_states))
    seen = visits > 0
    r_hat = _empirical_mean(counts)
    p_hat = counts.next_visits / jnp.maximum(visits, 1.0)[..., None]
    width = hoeffding_penalty(visits, num_states * num_actions * horizon, delta)

    def backup(next_value: jax.Array, steps_left: jax.Array) -> tuple[jax.Array, tuple]:
        q = r_hat + p_hat @ next_value - penalty_scale * steps_left * width
        policy = uniform_argmax(q, seen)
        value = jnp.maximum(jnp.where(seen, q, -jnp.inf).max(axis=-1), 0.0)
        return value, (policy, value)

    steps_left = jnp.arange(1, horizon + 1, dtype=jnp.float32)  # H - h for h = H-1, ..., 0
    _, (policies, values) = jax.lax.scan(backup, jnp.zeros(num_states, jnp.float32), steps_left)
    values = jnp.concatenate([values[::-1], jnp.zeros((1, num_states), jnp.float32)])
    return policies[::-1], values


def empirical_value_iteration(counts: Counts, horizon: int) -> jax.Array:
    """Plain value iteration on the empirical model (no penalty), ``policy float32 [H, S, A]``;
    unseen actions are not chosen and a state with no data gets the uniform policy."""
    return pessimistic_value_iteration(counts, horizon, penalty_scale=0.0)[0]


def optimal_q(P: jax.Array, R: jax.Array, horizon: int) -> jax.Array:
    """float32 ``Q* [H, S, A]`` of the finite-horizon MDP ``P [S, A, S]``, ``R [S, A]``:
    ``Q*_h = R + P . max_a Q*_{h+1}`` backward from ``Q*_H = 0`` (step ``h`` first)."""

    def backup(next_value: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        q = R + P @ next_value
        return q.max(axis=-1), q

    _, qs = jax.lax.scan(backup, jnp.zeros(P.shape[0], jnp.float32), None, length=horizon)
    return qs[::-1]


def policy_value(P: jax.Array, R: jax.Array, init_dist: jax.Array, policy: jax.Array) -> jax.Array:
    """float32: exact expected return ``E[sum_h r_h]`` of ``policy [H, S, A]`` (probabilities)
    in the MDP ``P [S, A, S]``, ``R [S, A]`` from ``s_0 ~ init_dist [S]``."""
    chex.assert_rank(policy, 3)

    def backup(next_value: jax.Array, pi: jax.Array) -> tuple[jax.Array, None]:
        return jnp.sum(pi * (R + P @ next_value), axis=-1), None

    value, _ = jax.lax.scan(backup, jnp.zeros(P.shape[0], jnp.float32), policy, reverse=True)
    return init_dist @ value


def _stream_layout(sizes: tuple[int, ...], expert_fraction: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For a stream of ``sizes[-1]`` episodes: ``(expert bool [N], bucket int32 [N])``.

    Episode ``i`` follows the expert iff ``floor((i + 1) f) > floor(i f)``, so every prefix of
    ``n`` episodes holds exactly ``floor(f n)`` expert ones, spread evenly; ``bucket[i]`` is the
    index of the first size with ``i < sizes[j]``.
    """
    i = jnp.arange(sizes[-1], dtype=jnp.float32)
    expert = jnp.floor((i + 1) * expert_fraction) > jnp.floor(i * expert_fraction)
    bucket = jnp.searchsorted(jnp.asarray(sizes), jnp.arange(sizes[-1]), side="right").astype(jnp.int32)
    return expert, bucket


def _check_sizes(sizes: tuple[int, ...]) -> None:
    if not sizes or any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
        raise ValueError(f"sizes must be positive and strictly increasing, got {sizes}")


def mixture_bandit_counts(
    key: jax.Array, means: jax.Array, expert_fraction: jax.Array, sizes: tuple[int, ...]
) -> Counts:
    """:class:`Counts` ``[len(sizes), *means.shape]`` of the first ``n`` pulls, for each ``n``
    in ``sizes`` (increasing), of one stream of pulls of the Bernoulli (contextual) bandit with
    mean rewards ``means [A]`` or ``[S, A]``: contexts uniform; pulls that follow the expert
    (``floor(f n)`` of the first ``n``, spread evenly) take the best arm of their context (the
    first maximiser), the others a uniformly random arm. Jittable in ``expert_fraction``."""
    _check_sizes(sizes)
    table = means if means.ndim == 2 else means[None]
    num_states, num_actions = table.shape
    s_key, a_key, r_key = jax.random.split(key, 3)
    expert, bucket = _stream_layout(sizes, expert_fraction)
    states = jax.random.randint(s_key, (sizes[-1],), 0, num_states)
    uniform = jax.random.randint(a_key, (sizes[-1],), 0, num_actions)
    actions = jnp.where(expert, table.argmax(axis=-1)[states], uniform)
    rewards = jax.random.bernoulli(r_key, table[states, actions]).astype(jnp.float32)
    rows = len(sizes) * num_states
    counts = count_transitions(bucket * num_states + states, actions, rewards, None, rows, num_actions)
    prefix = lambda x: jnp.cumsum(x.reshape(len(sizes), num_states, num_actions), axis=0).reshape(  # noqa: E731
        len(sizes), *means.shape)
    return jax.tree.map(prefix, counts)


def mixture_mdp_counts(
    key: jax.Array,
    P: jax.Array,
    R: jax.Array,
    init_dist: jax.Array,
    expert_policy: jax.Array,
    expert_fraction: jax.Array,
    sizes: tuple[int, ...],
) -> Counts:
    """:class:`Counts` ``[len(sizes), S, A(, S)]`` of the first ``n`` episodes, for each ``n``
    in ``sizes`` (increasing), of one stream of episodes of the MDP ``P [S, A, S]``, ``R [S, A]``
    (means in ``[0, 1]``) from ``init_dist [S]``, pooled over steps. Episodes that follow the
    expert (``floor(f n)`` of the first ``n``, spread evenly) act by ``expert_policy int32
    [H, S]``, the others take uniformly random actions. Observed rewards are ``Bernoulli(R(s,
    a))`` (deterministic where ``R`` is 0 or 1). Jittable in ``expert_fraction``."""
    _check_sizes(sizes)
    num_states, num_actions = R.shape
    num = sizes[-1]
    expert, bucket = _stream_layout(sizes, expert_fraction)
    rows = len(sizes) * num_states
    init_key, key = jax.random.split(key)
    states = jax.random.choice(init_key, num_states, (num,), p=init_dist)
    cum_P = jnp.cumsum(P, axis=-1)

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, None]:
        states, totals = carry
        step_key, expert_actions = inputs
        a_key, r_key, s_key = jax.random.split(step_key, 3)
        uniform = jax.random.randint(a_key, (num,), 0, num_actions)
        actions = jnp.where(expert, expert_actions[states], uniform)
        rewards = jax.random.bernoulli(r_key, R[states, actions]).astype(jnp.float32)
        # inverse CDF with the draw scaled into (0, total]: zero-probability states are never drawn
        cdf = cum_P[states, actions]
        u = cdf[:, -1] * (1.0 - jax.random.uniform(s_key, (num,)))
        next_states = jnp.sum(cdf < u[:, None], axis=-1).astype(jnp.int32)
        row = bucket * num_states + states
        totals = Counts(totals.visits.at[row, actions].add(1.0), totals.reward_sums.at[row, actions].add(rewards),
                        totals.next_visits.at[row, actions, next_states].add(1.0))
        return (next_states, totals), None

    zeros = Counts(jnp.zeros((rows, num_actions)), jnp.zeros((rows, num_actions)),
                   jnp.zeros((rows, num_actions, num_states)))
    (_, totals), _ = jax.lax.scan(step, (states, zeros), (jax.random.split(key, expert_policy.shape[0]), expert_policy))
    prefix = lambda x: jnp.cumsum(x.reshape(len(sizes), num_states, *x.shape[1:]), axis=0)  # noqa: E731
    return jax.tree.map(prefix, totals)
