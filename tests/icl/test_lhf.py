"""Learning-history filtering against hand computations on tiny return curves."""

import jax
import numpy as np
import pytest

from jaxrl_icl.icl import lhf

# Three histories of one task, R_max = 2:
#   rising [0, 1, 2]:  I = (1 + 2) / 4 = 0.75, S = 1,                       U = 1.75
#   dipping [2, 0, 1]: I = (1 + 2) / 4 = 0.75, S = 1 + mean(-2, 0) / 2 = 0.5, U = 1.25
#   flat [0, 0, 0]:    I = 0,                   S = 1,                       U = 1.0
CURVES = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])


def test_scores_match_hand_computation():
    np.testing.assert_allclose(lhf.improvement(CURVES, 2.0), [0.75, 0.75, 0.0])
    np.testing.assert_allclose(lhf.stability(CURVES, 2.0), [1.0, 0.5, 1.0])
    np.testing.assert_allclose(lhf.utility(CURVES, 2.0), [1.75, 1.25, 1.0])
    np.testing.assert_allclose(lhf.utility(CURVES, np.array([2.0, 2.0, 4.0]), lam=2.0), [2.75, 1.75, 2.0])
    with pytest.raises(ValueError, match="returns"):
        lhf.utility(CURVES[:, :1], 2.0)


def test_keep_probabilities_min_max_and_softmax():
    u = np.array([1.75, 1.25, 1.0])
    np.testing.assert_allclose(lhf.keep_probabilities(u), [1.0, 1 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(lhf.keep_probabilities(u, 0.5), np.exp([0.0, -4 / 3, -2.0]), rtol=1e-6)
    soft = np.exp(np.array([1.0, 1 / 3, 0.0]) / 0.5)
    np.testing.assert_allclose(lhf.keep_probabilities(u, 0.5), soft / soft.max(), rtol=1e-6)
    np.testing.assert_array_equal(lhf.keep_probabilities(np.ones((2, 3))), np.ones((2, 3)))


def _passes(uniform, probs):
    """Second implementation: loop over passes and histories until m are kept."""
    m, kept = len(probs), []
    for row in uniform:
        for i in range(m):
            if row[i] < probs[i] and len(kept) < m:
                kept.append(i)
    return kept


def test_filter_keeps_size_never_the_worst_and_matches_the_pass_loop():
    u = np.array([1.0, 1.75, 3.0, 1.25, 5.0, 4.0])  # task A: rows 0, 1, 3; task B: rows 2, 4, 5
    groups = lhf.task_groups(np.array([0, 0, 1, 0, 1, 1]))
    np.testing.assert_array_equal(groups, [[0, 1, 3], [2, 4, 5]])
    run = jax.jit(lambda k: lhf.filter_rows(k, u, groups))
    counts = np.zeros(6)
    for seed in range(300):
        key = jax.random.PRNGKey(seed)
        rows = np.asarray(run(key))
        assert rows.shape == (6,) and set(rows[:3]) <= {0, 1, 3} and set(rows[3:]) <= {2, 4, 5}
        assert 0 not in rows and 2 not in rows  # each task's worst
        counts += np.bincount(rows, minlength=6)
        if seed < 5:
            for g, k in enumerate(jax.random.split(key, 2)):
                probs = np.asarray(lhf.keep_probabilities(u[groups[g]]))
                want = groups[g][_passes(np.asarray(jax.random.uniform(k, (3, 3))), probs)]
                np.testing.assert_array_equal(rows[3 * g: 3 * g + 3], want)
    # Task A: probabilities (0, 1, 1/3) -> kept sequence r1, [r3 w.p. 1/3], r1, [r3 w.p. 1/3], ...
    # E[#r3 among 3] = 1/3 + 2/3 * 1/3 = 5/9.
    assert abs(counts[3] / 300 - 5 / 9) < 0.08


def test_softmax_filter_may_keep_the_worst():
    u = np.array([0.0, 1.0])
    filter_rows = jax.jit(lhf.filter_rows, static_argnums=3)  # compiled once for the 50 seeds
    rows = np.concatenate([np.asarray(filter_rows(jax.random.PRNGKey(s), u, np.array([[0, 1]]), 1.0))
                           for s in range(50)])
    assert 0 in rows and np.mean(rows == 0) < 0.5


def test_reweight_is_proportional_within_tasks_with_equal_task_shares():
    u = np.array([1.75, 7.0, 1.25, 1.0, 9.0])
    groups = np.array([[0, 2], [1, 4]])  # row 3 belongs to no task
    w = np.asarray(lhf.reweight(u, groups))
    np.testing.assert_allclose(w, [0.5, 0.0, 0.0, 0.0, 0.5])
    w = np.asarray(lhf.reweight(np.array([1.75, 1.25, 1.0, 2.0]), np.array([[0, 1, 2]])))
    np.testing.assert_allclose(w, [0.75, 0.25, 0.0, 0.0], rtol=1e-6)


def test_task_groups_needs_equal_counts():
    goals = np.array([[1, 2], [0, 0], [1, 2], [0, 0]])
    np.testing.assert_array_equal(lhf.task_groups(goals), [[1, 3], [0, 2]])
    with pytest.raises(ValueError, match="same number"):
        lhf.task_groups(np.array([0, 0, 1]))


def test_select_histories_applies_the_config():
    histories = {"reward": np.arange(6.0)[:, None] * np.ones((1, 3)), "id": np.arange(6)}
    task = np.array([0, 0, 0, 1, 1, 1])
    returns = np.concatenate([CURVES, CURVES[::-1]])  # worst rows: 2 (flat) and 3 (flat)
    same, w = lhf.select_histories(lhf.LHFConfig(), jax.random.PRNGKey(0), histories, task, returns, 2.0)
    assert w is None and np.array_equal(same["id"], histories["id"])
    kept, w = lhf.select_histories(lhf.LHFConfig("filter"), jax.random.PRNGKey(0), histories, task, returns, 2.0)
    assert w is None and len(kept["id"]) == 6 and not {2, 3} & set(kept["id"])
    np.testing.assert_array_equal(kept["reward"][:, 0], kept["id"])
    _, w = lhf.select_histories(lhf.LHFConfig("reweight"), jax.random.PRNGKey(0), histories, task, returns, 2.0)
    np.testing.assert_allclose(w, [0.375, 0.125, 0, 0, 0.125, 0.375], rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        lhf.LHFConfig(temperature=-1.0)
