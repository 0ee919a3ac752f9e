"""Stock-augmented objectives against brute force over all history-dependent policies."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.distributional import (
    cvar_utility,
    expectation_utility,
    homeostatic_utility,
    optimal_cvar,
    stock_backward_induction,
    stock_value,
    threshold_utility,
)


def _laws(P, R, s, steps):
    """Return laws (dict return -> prob, gamma = 1) of every deterministic history-dependent
    policy from state ``s`` over ``steps`` steps: each subtree picks its own policy."""
    if steps == 0:
        return [{0.0: 1.0}]
    S, A = R.shape
    out = []
    for a in range(A):
        for combo in itertools.product(*(_laws(P, R, t, steps - 1) for t in range(S))):
            law = {}
            for t, sub in enumerate(combo):
                for g, p in sub.items():
                    key = float(R[s, a] + g)
                    law[key] = law.get(key, 0.0) + P[s, a, t] * p
            out.append(law)
    return out


def _cvar(law, alpha):
    """Lower-tail CVaR: (1/alpha) * integral_0^alpha F^{-1}(u) du."""
    total, used = 0.0, 0.0
    for g in sorted(law):
        take = min(law[g], alpha - used)
        if take <= 0:
            break
        total += take * g
        used += take
    return total / alpha


def _tree(seed, S, A):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.integers(0, 3, (S, A)).astype(np.float64)
    return P, R


CASES = [(0, 2, 2, 3), (1, 3, 2, 2), (2, 2, 3, 2)]  # seed, S, A, H


@pytest.mark.parametrize("seed, S, A, H", CASES)
def test_cvar_equals_brute_force_over_history_dependent_policies(seed, S, A, H):
    P, R = _tree(seed, S, A)
    grid = jnp.arange(-2.0 * H, 2.0 * H + 1)  # integer stocks cover every c_0 + partial return
    laws = {s: _laws(P, R, s, H) for s in range(S)}
    for alpha in (0.1, 0.35, 0.7, 1.0):
        res = stock_backward_induction(
            P.astype(np.float32), R.astype(np.float32), 1.0, H, grid, cvar_utility(alpha)
        )
        cvar, _ = optimal_cvar(res)
        expected = [max(_cvar(law, alpha) for law in laws[s]) for s in range(S)]
        np.testing.assert_allclose(cvar, expected, atol=1e-4, err_msg=f"alpha={alpha}")


@pytest.mark.parametrize("seed, S, A, H", CASES[:2])
def test_threshold_and_homeostatic_equal_brute_force(seed, S, A, H):
    P, R = _tree(seed, S, A)
    Pf, Rf = P.astype(np.float32), R.astype(np.float32)
    grid = jnp.arange(-2.0 * H, 2.0 * H + 1)
    laws = {s: _laws(P, R, s, H) for s in range(S)}
    thresh = stock_backward_induction(Pf, Rf, 1.0, H, grid, threshold_utility)
    homeo = stock_backward_induction(Pf, Rf, 1.0, H, grid, homeostatic_utility)
    for level in range(1, 2 * H):
        prob = [max(sum(p for g, p in law.items() if g >= level) for law in laws[s])
                for s in range(S)]
        np.testing.assert_allclose(stock_value(thresh, -float(level)), prob, atol=1e-5)
        dev = [max(-sum(p * abs(g - level) for g, p in law.items()) for law in laws[s])
               for s in range(S)]
        np.testing.assert_allclose(stock_value(homeo, -float(level)), dev, atol=1e-5)


def test_expectation_utility_is_value_iteration():
    rng = np.random.default_rng(3)
    S, A, H, gamma = 4, 3, 4, 0.9
    P = rng.dirichlet(np.ones(S), size=(S, A)).astype(np.float32)
    R = rng.uniform(0, 1, (S, A)).astype(np.float32)
    grid = jnp.linspace(-2.0, 20.0, 221)
    i0 = int(np.argmin(np.abs(np.asarray(grid))))  # grid point 0
    res = stock_backward_induction(P, R, gamma, H, grid, expectation_utility)
    V, policies, Qs = np.zeros(S), [], []
    for _ in range(H):  # numpy finite-horizon backward induction, steps H-1 .. 0
        Q = np.float64(R) + gamma * np.float64(P) @ V
        V = Q.max(axis=1)
        policies.insert(0, Q.argmax(axis=1))
        Qs.insert(0, Q)
    np.testing.assert_allclose(stock_value(res, 0.0), V, atol=1e-4)
    np.testing.assert_allclose(stock_value(res, 0.5), V + 0.5, atol=1e-4)
    np.testing.assert_allclose(res.q[0, :, :, i0], Qs[0], atol=1e-4)
    np.testing.assert_array_equal(res.policy[:, :, i0], np.stack(policies))


def test_batch_equals_loop():
    P = np.stack([_tree(s, 2, 2)[0] for s in range(3)]).astype(np.float32)
    R = np.stack([_tree(s, 2, 2)[1] for s in range(3)]).astype(np.float32)
    grid = jnp.arange(-6.0, 7.0)
    f = cvar_utility(0.25)
    batch = stock_backward_induction(P, R, 1.0, 3, grid, f)
    assert batch.values.shape == (3, 4, 2, 13) and batch.policy.shape == (3, 3, 2, 13)
    cvar_b, c0_b = optimal_cvar(batch)
    for b in range(3):
        single = stock_backward_induction(P[b], R[b], 1.0, 3, grid, f)
        np.testing.assert_allclose(batch.values[b], single.values, atol=1e-6)
        np.testing.assert_array_equal(batch.policy[b], single.policy)
        cvar, c0 = optimal_cvar(single)
        np.testing.assert_allclose(cvar_b[b], cvar, atol=1e-6)
        np.testing.assert_array_equal(c0_b[b], c0)


@pytest.mark.parametrize("alpha", [0.0, -0.2, 1.5, float("nan")])
def test_alpha_outside_unit_interval_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        cvar_utility(alpha)


def test_bad_stock_inputs_rejected():
    P, R = (x.astype(np.float32) for x in _tree(0, 2, 2))
    grid = jnp.arange(-3.0, 4.0)
    with pytest.raises(ValueError, match="gamma"):
        stock_backward_induction(P, R, 0.0, 2, grid, expectation_utility)
    with pytest.raises(ValueError, match="horizon"):
        stock_backward_induction(P, R, 1.0, 0, grid, expectation_utility)
    with pytest.raises(ValueError, match="stock_grid"):
        stock_backward_induction(P, R, 1.0, 2, grid[::-1], expectation_utility)
    with pytest.raises(ValueError, match="P rows must sum to 1"):
        stock_backward_induction(P * 2, R, 1.0, 2, grid, expectation_utility)
