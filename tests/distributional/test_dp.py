"""Distributional DP against closed forms, trajectory enumeration and ordinary numpy DP."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.tabular import TabularMDP
from jaxrl_icl.distributional import (
    CategoricalRep,
    QuantileRep,
    categorical_mean,
    policy_evaluation,
    policy_iteration,
    value_iteration,
)


def _random_mdp(seed, S=5, A=3):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A)).astype(np.float32)
    R = rng.uniform(0, 1, (S, A)).astype(np.float32)
    return P, R


def _numpy_vi(P, R, gamma, iters=2000):
    P, R = np.float64(P), np.float64(R)
    V = np.zeros(P.shape[0])
    for _ in range(iters):
        V = (R + gamma * P @ V).max(axis=1)
    Q = R + gamma * P @ V
    return Q.argmax(axis=1), Q.max(axis=1)


def test_policy_evaluation_mean_solves_linear_system():
    P, R = _random_mdp(0)
    rng = np.random.default_rng(1)
    pi = rng.dirichlet(np.ones(3), size=5).astype(np.float32)
    gamma = 0.9
    # Reward distribution: R +/- 0.5 with probs 0.3 / 0.7 (mean R + 0.2).
    atoms = np.stack([R - 0.5, R + 0.5], axis=-1)
    probs = np.broadcast_to(np.array([0.3, 0.7], np.float32), atoms.shape)
    r_pi = np.einsum("sa,sa->s", pi, R + 0.2)
    P_pi = np.einsum("sa,sat->st", pi, P)
    V = np.linalg.solve(np.eye(5) - gamma * np.float64(P_pi), r_pi)
    support = jnp.linspace(-5.0, 15.0, 81)  # covers [-0.5, 1.5] / (1 - gamma)
    res = policy_evaluation(P, atoms, pi, gamma, CategoricalRep(support), reward_probs=probs)
    assert bool(res.converged)
    assert res.dist.shape == (5, 3, 81) and res.state_dist.shape == (5, 81)
    np.testing.assert_allclose(res.state_dist.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(categorical_mean(res.state_dist, support), V, atol=2e-3)
    Q = R + 0.2 + gamma * P @ V
    np.testing.assert_allclose(categorical_mean(res.dist, support), Q, atol=2e-3)


def _enumerated_law(P, R, pi, H, s0):
    """Exact law of the H-step undiscounted return from s0: enumerate all trajectories."""
    S, A = R.shape
    law = {}
    for traj in itertools.product(range(A), range(S), repeat=H):
        s, prob, ret = s0, 1.0, 0.0
        for a, s_next in zip(traj[::2], traj[1::2]):
            prob *= pi[s, a] * P[s, a, s_next]
            ret += R[s, a]
            s = s_next
        law[ret] = law.get(ret, 0.0) + prob
    return law


def test_gamma_one_integer_rewards_finite_horizon_is_exact():
    rng = np.random.default_rng(2)
    S, A, H = 3, 2, 3
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.integers(0, 3, (S, A)).astype(np.float64)
    pi = rng.dirichlet(np.ones(A), size=S)
    support = jnp.arange(0.0, 2 * H + 1)
    res = policy_evaluation(
        P.astype(np.float32), R.astype(np.float32), pi.astype(np.float32), 1.0,
        CategoricalRep(support), num_iterations=H,
    )
    assert int(res.num_iterations) == H
    for s0 in range(S):
        expected = np.zeros(len(support))
        for ret, prob in _enumerated_law(P, R, pi, H, s0).items():
            expected[int(ret)] += prob
        np.testing.assert_allclose(res.state_dist[s0], expected, atol=1e-5)


def test_absorbing_terminal_gamma_one_converges_to_geometric_law():
    # State 0: reward 1, then terminal (state 1, absorbing, reward 0) w.p. 1/2, else stay.
    P = np.array([[[0.5, 0.5]], [[0.0, 1.0]]], np.float32)
    R = np.array([[1.0], [0.0]], np.float32)
    support = jnp.arange(0.0, 41.0)
    res = policy_evaluation(P, R, np.zeros(2, np.int32), 1.0, CategoricalRep(support), tol=1e-7)
    assert bool(res.converged) and not bool(res.support_clipped)  # tail beyond 40: 2^-40
    k = np.arange(1, 30)
    np.testing.assert_allclose(res.state_dist[0, 1:30], 0.5**k, atol=1e-6)
    assert float(res.state_dist[0, 0]) == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(res.state_dist[1], np.eye(41)[0], atol=1e-7)


def _deterministic_mdp(seed, S=6, A=2):
    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, S, (S, A))
    P = np.eye(S, dtype=np.float32)[nxt]
    R = rng.integers(0, 4, (S, A)).astype(np.float32)
    pol = rng.integers(0, A, S).astype(np.int32)
    return P, R, pol


def test_deterministic_mdp_gamma_one_gives_point_mass_at_value():
    P, R, pol = _deterministic_mdp(3)
    H = 5
    V = np.zeros(6)
    for _ in range(H):
        V = R[np.arange(6), pol] + P[np.arange(6), pol] @ V
    support = jnp.arange(0.0, 3 * H + 1)
    res = policy_evaluation(P, R, pol, 1.0, CategoricalRep(support), num_iterations=H)
    np.testing.assert_allclose(res.state_dist, np.eye(len(support))[V.astype(int)], atol=1e-6)


def test_deterministic_mdp_quantiles_all_equal_value():
    P, R, pol = _deterministic_mdp(4)
    gamma = 0.8
    P_pi, r_pi = P[np.arange(6), pol], R[np.arange(6), pol]
    V = np.linalg.solve(np.eye(6) - gamma * np.float64(P_pi), r_pi)
    res = policy_evaluation(P, R, pol, gamma, QuantileRep(8), tol=1e-6)
    assert bool(res.converged)
    np.testing.assert_allclose(res.state_dist, np.broadcast_to(V[:, None], (6, 8)), atol=1e-4)
    # Control: all quantiles equal the optimal value.
    policy, V_star = _numpy_vi(P, R, gamma)
    res = value_iteration(P, R, gamma, QuantileRep(4))
    np.testing.assert_array_equal(res.policy, policy)
    np.testing.assert_allclose(res.state_dist, np.broadcast_to(V_star[:, None], (6, 4)), atol=1e-4)


def test_bernoulli_rewards_half_discount_give_uniform_0_2():
    P = np.ones((1, 1, 1), np.float32)
    atoms = np.array([[[0.0, 1.0]]], np.float32)
    probs = np.full((1, 1, 2), 0.5, np.float32)
    support = jnp.linspace(0.0, 2.0, 101)
    res = policy_evaluation(
        P, atoms, np.zeros(1, np.int32), 0.5, CategoricalRep(support), reward_probs=probs
    )
    cdf = np.cumsum(np.asarray(res.state_dist[0]))
    assert np.max(np.abs(cdf - np.asarray(support) / 2)) < 0.02
    res = policy_evaluation(
        P, atoms, np.zeros(1, np.int32), 0.5, QuantileRep(16), reward_probs=probs
    )
    taus = (np.arange(16) + 0.5) / 16
    # Quantile DP is not exact here; its fixed point lies within one quantile cell (2 / m).
    assert np.max(np.abs(np.asarray(res.state_dist[0]) - 2 * taus)) < 2 / 16


def test_value_iteration_mean_matches_numpy_vi_and_batch_matches_loop():
    env = TabularMDP(num_states=6, num_actions=3)
    params = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), 4))
    gamma = 0.9
    rep = CategoricalRep(jnp.linspace(0.0, 10.0, 101))
    batch = value_iteration(params.P, params.R, gamma, rep)
    assert batch.dist.shape == (4, 6, 3, 101)
    pi_batch = policy_iteration(params.P, params.R, gamma, rep)
    outer = jax.jit(jax.vmap(lambda P, R: value_iteration(P, R, gamma, rep)))(params.P, params.R)
    np.testing.assert_allclose(outer.dist, batch.dist, atol=1e-5)  # stops within tol = 1e-6
    for b in range(4):
        P, R = np.asarray(params.P[b]), np.asarray(params.R[b])
        policy, V = _numpy_vi(P, R, gamma)
        single = value_iteration(P, R, gamma, rep)
        np.testing.assert_array_equal(single.policy, policy)
        np.testing.assert_allclose(categorical_mean(single.state_dist, rep.support), V, atol=2e-3)
        np.testing.assert_array_equal(batch.policy[b], single.policy)
        # each stops within tol = 1e-6 of its fixed point; the summation order may differ
        np.testing.assert_allclose(batch.dist[b], single.dist, atol=1e-5)
        np.testing.assert_array_equal(pi_batch.policy[b], policy)
        assert bool(pi_batch.converged[b])


def test_fixed_iteration_count_is_finite_horizon_backward_induction():
    P, R = _random_mdp(5)
    rep = CategoricalRep(jnp.linspace(0.0, 4.0, 81))
    res = value_iteration(P, R, 1.0, rep, num_iterations=3)
    V = np.zeros(5)
    for _ in range(3):
        Q = np.float64(R) + np.float64(P) @ V
        V = Q.max(axis=1)
    np.testing.assert_allclose(categorical_mean(res.dist, rep.support), Q, atol=1e-4)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda P, R, z, g: (P * 1.1, R, z, g), "P rows must sum to 1"),
        (lambda P, R, z, g: (P.at[0, 0].set(jnp.array([1.5, -0.5, 0, 0, 0])), R, z, g),
         "P has negative probabilities"),
        (lambda P, R, z, g: (P, R, z[::-1], g), "support must be strictly increasing"),
        (lambda P, R, z, g: (P, R, z, 1.5), "gamma must lie in"),
        (lambda P, R, z, g: (P, R, z, -0.1), "gamma must lie in"),
        (lambda P, R, z, g: (P, R[:, :2], z, g), "R must have shape"),
        (lambda P, R, z, g: (P, R.at[0, 0].set(jnp.nan), z, g), "R has non-finite"),
    ],
)
def test_bad_input_rejected_naming_the_field(change, match):
    P, R = (jnp.asarray(x) for x in _random_mdp(6))
    P, R, z, g = change(P, R, jnp.linspace(0.0, 10.0, 11), 0.9)
    with pytest.raises(ValueError, match=match):
        value_iteration(P, R, g, CategoricalRep(z))


def test_bad_reward_probs_policy_and_counts_rejected():
    P, R = _random_mdp(7)
    rep = CategoricalRep(jnp.linspace(0.0, 10.0, 11))
    atoms = np.stack([R, R], -1)
    with pytest.raises(ValueError, match="reward_probs rows must sum to 1"):
        value_iteration(P, atoms, 0.9, rep, reward_probs=np.full_like(atoms, 0.6))
    with pytest.raises(ValueError, match="reward_probs must have the shape"):
        value_iteration(P, atoms, 0.9, rep, reward_probs=np.ones_like(R))
    with pytest.raises(ValueError, match="policy actions"):
        policy_evaluation(P, R, np.full(5, 3, np.int32), 0.9, rep)
    with pytest.raises(ValueError, match="policy must be"):
        policy_evaluation(P, R, np.zeros(4, np.int32), 0.9, rep)
    with pytest.raises(ValueError, match="num_iterations"):
        value_iteration(P, R, 0.9, rep, num_iterations=0)
    with pytest.raises(ValueError, match="num_quantiles"):
        value_iteration(P, R, 0.9, QuantileRep(0))
    bad = np.stack([P, P])
    bad[1, 2, 1] *= 2
    with pytest.raises(ValueError, match=r"batch element 1"):
        value_iteration(bad, np.stack([R, R]), 0.9, rep)


def _hat_weights(x, z):
    """float64[m]: weight of the atom ``x`` on each point of ``z`` (linear interpolation of the
    unit vectors, with ``x`` clipped into the support): the Cramér projection of one atom."""
    x = np.clip(x, z[0], z[-1])
    return np.array([np.interp(x, z, e) for e in np.eye(len(z))])


def _dense_backup(P, atoms, probs, pi, gamma, z, table):
    """One projected distributional Bellman backup, in float64 by explicit loops (oracle)."""
    P, atoms, probs, pi, z, table = map(np.float64, (P, atoms, probs, pi, z, table))
    next_law = np.einsum("sat,tm->sam", P, np.einsum("tb,tbm->tm", pi, table))
    out = np.zeros_like(table)
    S, A, K = atoms.shape
    for s, a, k, j in itertools.product(range(S), range(A), range(K), range(len(z))):
        out[s, a] += probs[s, a, k] * next_law[s, a, j] * _hat_weights(atoms[s, a, k] + gamma * z[j], z)
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.45, 0.9, 1.0])
def test_sparse_categorical_backup_equals_dense_projection(gamma):
    # Non-uniform support, rewards that push atoms past both ends, and atoms exactly on support
    # points (gamma = 1 with integer rewards): one step of policy evaluation from a random table
    # is the dense-projection backup.
    rng = np.random.default_rng(7)
    S, A, K = 4, 2, 3
    z = np.sort(rng.choice(np.arange(-6, 7), size=9, replace=False)).astype(np.float32)
    P = rng.dirichlet(np.ones(S), size=(S, A)).astype(np.float32)
    atoms = rng.integers(-8, 9, size=(S, A, K)).astype(np.float32)
    atoms[0, 0] += 0.37  # off-grid atoms too
    probs = rng.dirichlet(np.ones(K), size=(S, A)).astype(np.float32)
    pi = rng.dirichlet(np.ones(A), size=S).astype(np.float32)
    table = rng.dirichlet(np.ones(len(z)), size=(S, A)).astype(np.float32)
    from jaxrl_icl.distributional.dp import _make_backup

    # one compiled program for the set-up and the backup
    backup = jax.jit(lambda z, P, atoms, probs, gamma, table, pi:
                     _make_backup(CategoricalRep(z), P, atoms, probs, gamma)(table, pi)[0])
    ours = np.asarray(backup(z, P, atoms, probs, np.float32(gamma), table, pi))
    np.testing.assert_allclose(ours, _dense_backup(P, atoms, probs, pi, gamma, z, table), atol=1e-6)
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-6)


def test_sparse_backup_matches_rlax_categorical_l2_project():
    # Deterministic rewards: the backup of (s, a) is rlax's projection of the shifted atoms
    # r(s, a) + gamma z with the next-state law as probabilities.
    rlax = pytest.importorskip("rlax")
    P, R = _random_mdp(11, S=6, A=3)
    gamma = 0.8
    rng = np.random.default_rng(2)
    table = jnp.asarray(rng.dirichlet(np.ones(13), size=(6, 3)), jnp.float32)
    from jaxrl_icl.distributional.dp import _make_backup

    @jax.jit  # one compiled program for both sides
    def ours_and_rlax(P, R, table, actions):
        z = jnp.linspace(0.0, 3.0, 13)
        pi = jax.nn.one_hot(actions, 3)
        ours = _make_backup(CategoricalRep(z), P, R[..., None], jnp.ones((6, 3, 1)), jnp.float32(gamma))(table, pi)[0]
        next_law = jnp.einsum("sat,tm->sam", P, jnp.einsum("tb,tbm->tm", pi, table))
        shifted = R[..., None] + gamma * z
        project = jax.vmap(jax.vmap(rlax.categorical_l2_project, (0, 0, None)), (0, 0, None))
        return ours, project(shifted, next_law, z)

    ours, want = ours_and_rlax(P, R, table, rng.integers(0, 3, 6))
    np.testing.assert_allclose(ours, want, atol=1e-6)


# ----------------------------------------------------------------------------- honest flags


def _recurrent_mdp():
    """Two states swapping forever with reward 1 (every return is infinite at gamma = 1)."""
    P = np.array([[[0.0, 1.0], [0.5, 0.5]], [[1.0, 0.0], [0.5, 0.5]]], np.float32)
    return P, np.ones((2, 2), np.float32)


def test_gamma_one_without_horizon_on_diverging_returns_is_not_converged():
    # The projected iteration settles on the support's top end only because every backup
    # clips: the table stops changing, but it is not the (infinite) return law.
    P, R = _recurrent_mdp()
    rep = CategoricalRep(jnp.linspace(0.0, 10.0, 11))
    for res in (value_iteration(P, R, 1.0, rep),
                policy_evaluation(P, R, np.zeros(2, np.int32), 1.0, rep),
                policy_iteration(P, R, 1.0, rep)):
        np.testing.assert_allclose(categorical_mean(res.state_dist, rep.support), 10.0, atol=1e-5)
        assert bool(res.support_clipped) and not bool(res.converged)


def test_support_too_narrow_for_the_returns_is_flagged():
    # gamma = 0.9, rewards in [1, 2]: returns in [10, 20]; on [0, 5] the mean sticks at 5.
    P, R = _random_mdp(8)
    R = 1.0 + R
    rep = CategoricalRep(jnp.linspace(0.0, 5.0, 21))
    res = value_iteration(P, R, 0.9, rep)
    np.testing.assert_allclose(categorical_mean(res.state_dist, rep.support), 5.0, atol=1e-4)
    assert bool(res.support_clipped) and not bool(res.converged)
    # The same MDP on a support that holds the returns: converged, nothing clipped.
    res = value_iteration(P, R, 0.9, CategoricalRep(jnp.linspace(0.0, 20.0, 81)))
    assert bool(res.converged) and not bool(res.support_clipped)
    # Batched: one flag per MDP.
    res = value_iteration(np.stack([P, P]), np.stack([R, R - 1.0]), 0.9, rep)
    np.testing.assert_array_equal(res.support_clipped, [True, True])
    res = value_iteration(np.stack([P, P]), np.stack([R - 1.0, R - 1.0]), 0.9,
                          CategoricalRep(jnp.linspace(0.0, 10.0, 41)))
    np.testing.assert_array_equal(res.support_clipped, [False, False])
    np.testing.assert_array_equal(res.converged, [True, True])


def test_clipping_on_the_way_counts_for_a_horizon_but_not_for_the_fixed_point():
    # State 0 pays 10 and moves to state 1, which pays -1 forever; gamma = 0.9. The returns
    # are 1 and -10, inside [-10, 5], but the one-step law of state 0 (10) is not.
    P = np.array([[[0.0, 1.0]], [[0.0, 1.0]]], np.float32)
    R = np.array([[10.0], [-1.0]], np.float32)
    rep = CategoricalRep(jnp.linspace(-10.0, 5.0, 16))
    res = policy_evaluation(P, R, np.zeros(2, np.int32), 0.9, rep, tol=1e-7)
    assert bool(res.converged) and not bool(res.support_clipped)
    np.testing.assert_allclose(categorical_mean(res.state_dist, rep.support), [1.0, -10.0], atol=1e-4)
    for horizon in (1, 3):
        res = policy_evaluation(P, R, np.zeros(2, np.int32), 0.9, rep, num_iterations=horizon)
        assert bool(res.support_clipped) and not bool(res.converged)


def test_policy_iteration_with_diverging_evaluation_is_not_converged():
    # Quantile evaluation at gamma = 1 without absorption never settles (the quantiles grow by
    # one per backup): the policy is stable, but the evaluation it rests on did not converge.
    P, R = _recurrent_mdp()
    res = policy_iteration(P, R, 1.0, QuantileRep(4), max_iterations=50)
    assert not bool(res.converged) and not bool(res.support_clipped)
    res = policy_iteration(P, R, 0.5, QuantileRep(4))  # returns 2: every evaluation converges
    assert bool(res.converged)
    np.testing.assert_allclose(res.state_dist, 2.0, atol=1e-4)
