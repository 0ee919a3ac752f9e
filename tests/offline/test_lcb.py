"""LCB pessimism (jaxrl_icl.offline.lcb) against hand computations and brute force."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.darkroom import DarkRoom, all_goals, optimal_return, tabular_darkroom
from envs.tabular import TabularMDP
from jaxrl_icl.offline import lcb


def test_penalty_and_choice_match_the_formula_by_hand():
    # A contextual bandit with 2 contexts x 3 arms: K = 6 means under the union bound.
    visits = np.array([[4.0, 1.0, 0.0], [9.0, 16.0, 2.0]], np.float32)
    sums = np.array([[3.0, 1.0, 0.0], [6.0, 11.0, 2.0]], np.float32)
    delta = 0.1
    log_term = math.log(2 * 6 / delta)
    by_hand = [[math.sqrt(log_term / (2 * n)) if n else math.sqrt(log_term / 2) for n in row] for row in visits]
    counts = lcb.Counts(jnp.asarray(visits), jnp.asarray(sums))
    np.testing.assert_allclose(lcb.hoeffding_penalty(counts.visits, 6, delta), by_hand, rtol=1e-6)
    # log(120) = 4.787. Context 0: 0.75 - 0.774 = -0.024 beats 1.0 - 1.547 (arm 2 unseen).
    # Context 1: 0.667 - 0.516 = 0.151, 0.6875 - 0.387 = 0.301, 1.0 - 1.094 = -0.094: arm 1.
    policy = np.asarray(lcb.bandit_lcb(counts, delta))
    np.testing.assert_array_equal(policy, [[1, 0, 0], [0, 1, 0]])
    # Greedy takes the empirical means: arm 1 (1.0) in context 0, arm 2 (1.0) in context 1.
    np.testing.assert_array_equal(np.asarray(lcb.bandit_greedy(counts)), [[0, 1, 0], [0, 0, 1]])
    # BC: most frequent arm.
    np.testing.assert_array_equal(np.asarray(lcb.behaviour_cloning(counts.visits)), [[1, 0, 0], [0, 1, 0]])


def test_unseen_arms_never_chosen_and_empty_rows_uniform():
    counts = lcb.Counts(jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    for policy in (lcb.bandit_lcb(counts), lcb.bandit_greedy(counts), lcb.behaviour_cloning(counts.visits)):
        np.testing.assert_allclose(policy, [[0, 1, 0], [1 / 3, 1 / 3, 1 / 3]])


def test_ties_split_uniformly():
    counts = lcb.Counts(jnp.array([2.0, 2.0, 1.0]), jnp.array([1.0, 1.0, 0.5]))
    np.testing.assert_allclose(lcb.behaviour_cloning(counts.visits), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(lcb.bandit_greedy(counts), [1 / 3, 1 / 3, 1 / 3])


def test_mostly_expert_data_lcb_and_bc_pick_the_expert_arm_greedy_may_not():
    """90% expert pulls: LCB and BC choose the best arm in every instance; greedy is led
    astray by a lucky rarely pulled arm in some."""
    means = jax.random.uniform(jax.random.key(0), (200, 10))
    keys = jax.random.split(jax.random.key(1), 200)

    @jax.jit
    @jax.vmap
    def policies(key, m):
        counts = jax.tree.map(lambda x: x[0], lcb.mixture_bandit_counts(key, m, 0.9, (50,)))
        return lcb.bandit_lcb(counts), lcb.behaviour_cloning(counts.visits), lcb.bandit_greedy(counts)

    lcb_pi, bc_pi, greedy_pi = (np.asarray(pi) for pi in policies(keys, means))
    best = np.asarray(means.argmax(axis=-1))
    np.testing.assert_array_equal(lcb_pi.argmax(-1), best)
    np.testing.assert_array_equal(bc_pi.argmax(-1), best)
    assert np.all(lcb_pi.max(-1) == 1.0)
    assert np.mean(greedy_pi[np.arange(200), best] < 1.0) > 0.1


def test_huge_counts_every_method_finds_the_optimal_arm():
    means = jax.random.uniform(jax.random.key(2), (50, 8))
    best = jax.nn.one_hot(means.argmax(-1), 8)
    visits = 1e9 * (0.5 * best + 0.5 / 8)  # half expert, half uniform, expected counts
    counts = lcb.Counts(visits, visits * means)

    @jax.jit
    @jax.vmap
    def suboptimality(counts, means):
        policies = jnp.stack([lcb.bandit_lcb(counts), lcb.bandit_greedy(counts), lcb.behaviour_cloning(counts.visits)])
        return policies, jax.vmap(lcb.bandit_suboptimality, in_axes=(None, 0))(means, policies)

    policies, gaps = suboptimality(counts, means)
    np.testing.assert_array_equal(np.asarray(policies), np.broadcast_to(np.asarray(best)[:, None], policies.shape))
    np.testing.assert_allclose(gaps, 0.0, atol=1e-6)


def test_mixture_counts_sizes_and_expert_share():
    sizes = (10, 40, 100)
    means = jnp.array([[0.2, 0.9, 0.1], [0.8, 0.3, 0.5]])
    bandit = jax.jit(lcb.mixture_bandit_counts, static_argnums=3)
    counts = bandit(jax.random.key(3), means, 0.5, sizes)
    np.testing.assert_allclose(counts.visits.sum(axis=(1, 2)), sizes)
    assert np.all(np.diff(np.asarray(counts.visits), axis=0) >= 0)  # nested datasets
    expert = bandit(jax.random.key(3), means, 1.0, sizes)
    np.testing.assert_allclose(expert.visits[:, [0, 1], [1, 0]].sum(-1), sizes)  # only the best arms
    # MDP: every episode contributes H transitions; the expert-only stream uses only expert actions.
    env = TabularMDP(4, 3, 5)
    task = env.sample_params(jax.random.key(4))
    expert_policy = lcb.optimal_q(task.P, task.R, 5).argmax(-1)
    mdp = jax.jit(lcb.mixture_mdp_counts, static_argnums=6)(jax.random.key(5), task.P, task.R, task.init_dist,
                                                           expert_policy, 1.0, (3, 8))
    np.testing.assert_allclose(mdp.visits.sum(axis=(1, 2)), [15, 40])
    np.testing.assert_allclose(mdp.next_visits.sum(-1), mdp.visits)
    used = np.zeros((4, 3), bool)
    used[np.arange(4)[None, :].repeat(5, 0), np.asarray(expert_policy)] = True
    assert np.all(np.asarray(mdp.visits)[:, ~used] == 0)


def _random_counts(seed: int, num_states: int, num_actions: int, max_count: int) -> lcb.Counts:
    """Counts with some unseen pairs and rewards in [0, 1] (NumPy, no compilation)."""
    rng = np.random.default_rng(seed)
    visits = rng.integers(0, max_count, (num_states, num_actions)).astype(np.float32)
    sums = visits * rng.uniform(size=visits.shape).astype(np.float32)
    probs = rng.dirichlet(np.ones(num_states), (num_states, num_actions))
    nxt = np.round(visits[..., None] * probs).astype(np.float32)
    return lcb.Counts(jnp.asarray(visits), jnp.asarray(sums), jnp.asarray(nxt))


def _brute_force_pessimistic(counts: lcb.Counts, horizon: int, delta: float) -> np.ndarray:
    """Best value ``[S]`` over every deterministic non-stationary policy of the pessimistic
    model (``r_hat - b_h``, ``P_hat``; next-visit rows that do not sum to the visits leave the
    remaining mass with value 0) restricted to seen actions plus an action that ends the
    episode with reward 0. Written independently of the module, with NumPy loops."""
    visits, sums, nxt = (np.asarray(x, np.float64) for x in (counts.visits, counts.reward_sums, counts.next_visits))
    num_states, num_actions = visits.shape
    log_term = math.log(2 * num_states * num_actions * horizon / delta)
    choices = [[a for a in range(num_actions) if visits[s, a] > 0] + ["end"] for s in range(num_states)]
    best = np.full(num_states, -np.inf)
    for plan in itertools.product(*[itertools.product(*choices) for _ in range(horizon)]):
        value = np.zeros(num_states)
        for h in reversed(range(horizon)):
            new = np.zeros(num_states)
            for s in range(num_states):
                a = plan[h][s]
                if a == "end":
                    continue
                n = visits[s, a]
                width = (horizon - h) * math.sqrt(log_term / (2 * n))
                new[s] = sums[s, a] / n + nxt[s, a] @ value / n - width
            value = new
        best = np.maximum(best, value)
    return best


@pytest.mark.parametrize("seed", [0, 1])
def test_pessimistic_vi_equals_brute_force_on_the_pessimistic_model(seed):
    counts = _random_counts(seed, 3, 2, 12)
    policy, values = jax.jit(lcb.pessimistic_value_iteration, static_argnums=(1, 2))(counts, 2, 0.5)
    np.testing.assert_allclose(values[0], _brute_force_pessimistic(counts, 2, 0.5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(policy).sum(-1), 1.0)
    assert np.all(np.asarray(policy)[:, np.asarray(counts.visits) == 0] == 0)  # unseen pairs (seen states)


def test_pessimistic_vi_equals_plain_vi_with_huge_counts():
    env = TabularMDP(6, 3, 8)
    task = env.sample_params(jax.random.key(7))
    visits = jnp.full((6, 3), 1e12)
    counts = lcb.Counts(visits, visits * task.R, visits[..., None] * task.P)

    @jax.jit
    def solve(counts, task):
        pess, values = lcb.pessimistic_value_iteration(counts, 8)
        return pess, values, lcb.empirical_value_iteration(counts, 8), lcb.optimal_q(task.P, task.R, 8)

    pess, values, plain, q_star = solve(counts, task)
    np.testing.assert_array_equal(np.asarray(pess), np.asarray(plain))
    np.testing.assert_allclose(values[:-1], q_star.max(-1), rtol=1e-4)
    np.testing.assert_allclose(lcb.policy_value(task.P, task.R, task.init_dist, pess),
                               task.init_dist @ q_star[0].max(-1), rtol=1e-5)


def test_policy_value_matches_dark_room_optimal_return_for_every_goal():
    env = DarkRoom()
    goals = all_goals(env.size)

    def optimum(goal):
        task = tabular_darkroom(env, env.default_params.replace(goal=goal))
        q = lcb.optimal_q(task.P, task.R, env.horizon)
        greedy = jax.nn.one_hot(q.argmax(-1), 5)
        return task.init_dist @ q[0].max(-1), lcb.policy_value(task.P, task.R, task.init_dist, greedy)

    dp, value = jax.jit(jax.vmap(optimum))(goals)
    expected = jax.vmap(lambda g: optimal_return(g, jnp.array(env.start), env.horizon))(goals)
    np.testing.assert_allclose(dp, expected)
    np.testing.assert_allclose(value, expected)


def test_behaviour_cloning_most_frequent_action():
    visits = jnp.array([[5.0, 2.0, 7.0], [0.0, 0.0, 0.0], [3.0, 3.0, 1.0]])
    np.testing.assert_allclose(lcb.behaviour_cloning(visits),
                               [[0, 0, 1], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]])
