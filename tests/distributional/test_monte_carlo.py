"""Monte Carlo evaluation against DP values (within stated sampling error) and the empirical
risk measures against numpy oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.cliffwalk import START, cliffwalk_mdp, make_cliffwalk
from jaxrl_icl.distributional import (
    cvar,
    cvar_utility,
    expectation_utility,
    homeostatic_utility,
    mc_returns,
    mc_stock_returns,
    nearest_index,
    optimal_cvar,
    stock_backward_induction,
    stock_value,
    threshold_probability,
    threshold_utility,
)

N = 20000


def _cvar_oracle(x, alpha):
    """Sort, take whole samples while they fit in alpha N, then a fraction of the next one."""
    x = np.sort(np.asarray(x, np.float64))
    budget, total = alpha * len(x), 0.0
    for v in x:
        take = min(1.0, budget)
        if take <= 0:
            break
        total += take * v
        budget -= take
    return total / (alpha * len(x))


def _cvar_se(g, alpha):
    """Asymptotic standard error of the empirical CVaR: sd(min(G - VaR, 0)) / (alpha sqrt(N))."""
    var = np.quantile(g, alpha)
    return np.std(np.minimum(g - var, 0.0)) / (alpha * np.sqrt(len(g)))


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.25, 0.333, 1.0])
def test_cvar_matches_sorting_oracle(alpha):
    rng = np.random.default_rng(0)
    for x in (rng.normal(size=997), rng.integers(-3, 3, 500).astype(np.float32)):
        np.testing.assert_allclose(cvar(jnp.asarray(x, jnp.float32), alpha),
                                   _cvar_oracle(x, alpha), rtol=1e-5, atol=1e-5)
    assert float(cvar(jnp.arange(10.0), 1.0)) == pytest.approx(4.5)


def test_threshold_probability_and_nearest_index():
    x = jnp.array([-2.0, 0.0, 1.0, 3.0])
    assert float(threshold_probability(x, 0.0)) == 0.75
    grid = jnp.array([-1.0, 0.0, 2.0])
    c = jnp.array([-5.0, -0.5, 0.9, 1.0, 1.1, 7.0])
    brute = np.argmin(np.abs(np.asarray(grid)[None] - np.asarray(c)[:, None]), axis=1)
    np.testing.assert_array_equal(nearest_index(grid, c), brute)


def _random_mdp(seed=0, S=5, A=3):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S) * 0.5, size=(S, A)).astype(np.float32)
    R = rng.integers(-2, 3, (S, A)).astype(np.float32)
    init = np.full(S, 1.0 / S, np.float32)
    return P, R, init


def test_markov_policy_mean_matches_backward_induction():
    P, R, init = _random_mdp(1)
    H, gamma, S = 6, 0.9, P.shape[0]
    V, policy = np.zeros(S), []
    for _ in range(H):
        Q = R + gamma * P @ V
        V = Q.max(axis=1)
        policy.insert(0, Q.argmax(axis=1))
    g = np.asarray(mc_returns(jax.random.key(0), P, R, init, np.stack(policy), H, N, gamma))
    assert abs(g.mean() - init @ V) <= 4 * g.std() / np.sqrt(N)
    # A stochastic stationary policy against exact policy evaluation.
    pi = np.full((S, 3), 1 / 3, np.float32)
    V = np.zeros(S)
    for _ in range(H):
        V = (pi * (R + gamma * P @ V)).sum(axis=1)
    g = np.asarray(mc_returns(jax.random.key(1), P, R, init, pi, H, N, gamma))
    assert abs(g.mean() - init @ V) <= 4 * g.std() / np.sqrt(N)


def _check_objectives(P, R, init, H, grid, s0, key):
    """MC of each stock policy agrees with its DP objective value within 4 standard errors."""
    keys = jax.random.split(key, 4)
    # the read-outs jitted: one compiled program each instead of one per eager op
    value_at = jax.jit(lambda res, c0: stock_value(res, c0)[s0])
    cvar_at = jax.jit(lambda res: [x[s0] for x in optimal_cvar(res)])
    empirical_cvar = jax.jit(cvar, static_argnums=1)
    # Expectation: W_0(s0, 0) is the optimal mean return.
    res = stock_backward_induction(P, R, 1.0, H, grid, expectation_utility)
    g = np.asarray(mc_stock_returns(keys[0], P, R, init, res, 0.0, N))
    assert abs(g.mean() - float(value_at(res, 0.0))) <= 4 * g.std() / np.sqrt(N) + 1e-4
    # CVaR_alpha: the policy's empirical CVaR is the optimal CVaR, and E f(c0* + G) = W_0.
    for alpha in (0.1, 0.5):
        res = stock_backward_induction(P, R, 1.0, H, grid, cvar_utility(alpha))
        best, c0 = map(float, cvar_at(res))
        g = np.asarray(mc_stock_returns(keys[1], P, R, init, res, c0, N))
        assert abs(float(empirical_cvar(g, alpha)) - best) <= 4 * _cvar_se(g, alpha) + 0.05
        u = np.minimum(c0 + g, 0.0) / alpha
        w0 = float(value_at(res, c0))
        assert abs(u.mean() - w0) <= 4 * u.std() / np.sqrt(N) + 1e-4
    # Threshold probability and homeostatic deviation at a level inside the return range.
    level = float(np.round(np.quantile(g, 0.5)))
    res = stock_backward_induction(P, R, 1.0, H, grid, threshold_utility)
    g = np.asarray(mc_stock_returns(keys[2], P, R, init, res, -level, N))
    p, p_dp = float(jax.jit(threshold_probability)(g, level)), float(value_at(res, -level))
    assert abs(p - p_dp) <= 4 * np.sqrt(p_dp * (1 - p_dp) / N) + 1e-4
    res = stock_backward_induction(P, R, 1.0, H, grid, homeostatic_utility)
    g = np.asarray(mc_stock_returns(keys[3], P, R, init, res, -level, N))
    dev = -np.abs(g - level)
    assert abs(dev.mean() - float(value_at(res, -level))) <= 4 * dev.std() / np.sqrt(N) + 1e-4


def test_stock_policies_match_dp_on_random_mdp():
    P, R, _ = _random_mdp(2)
    H, s0 = 5, 3
    init = np.eye(P.shape[0], dtype=np.float32)[s0]  # DP values are per start state
    grid = jnp.arange(-4.0 * H, 4.0 * H + 1)  # integer stocks cover every c0 + partial return
    _check_objectives(P, R, init, H, grid, s0, jax.random.key(3))


@pytest.mark.slow
def test_stock_policies_match_dp_on_cliffwalk():
    _, params = make_cliffwalk()
    m = cliffwalk_mdp(params)
    H = 14
    lo = -41 * (H // 2)
    _check_objectives(m.P, m.R, m.init_dist, H, jnp.arange(lo - 1.0, -lo + 2.0), START,
                      jax.random.key(4))


def test_bad_inputs_rejected():
    P, R, init = _random_mdp()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="policy"):
        mc_returns(key, P, R, init, np.full(5, 3), 4, 10)  # action 3 of 3
    with pytest.raises(ValueError, match="policy"):
        mc_returns(key, P, R, init, np.zeros((2, 5), np.float32), 4, 10)
    with pytest.raises(ValueError, match="num_episodes"):
        mc_returns(key, P, R, init, np.zeros(5, np.int32), 4, 0)
    with pytest.raises(ValueError, match="horizon"):
        mc_returns(key, P, R, init, np.zeros(5, np.int32), 0, 10)
    with pytest.raises(ValueError, match="P"):
        mc_returns(key, P * 2, R, init, np.zeros(5, np.int32), 4, 10)
    res = stock_backward_induction(P, R, 1.0, 3, jnp.arange(-9.0, 10.0), expectation_utility)
    with pytest.raises(ValueError, match="gamma"):
        mc_stock_returns(key, P, R, init, res, 0.0, 10, gamma=0.0)
    with pytest.raises(ValueError, match="c0"):
        mc_stock_returns(key, P, R, init, res, float("nan"), 10)
    with pytest.raises(ValueError, match="result.policy"):
        P4, R4, init4 = _random_mdp(S=4)  # one state fewer than the policy table
        mc_stock_returns(key, P4, R4, init4, res, 0.0, 10)
    with pytest.raises(ValueError, match="alpha"):
        cvar(jnp.zeros(4), 0.0)
