"""Stock-augmented objectives against brute force over all history-dependent policies."""

import itertools
from functools import partial

import jax
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
    with pytest.raises(ValueError, match="concrete P, R"):  # the padded grid is sized from them
        jax.jit(lambda P: stock_backward_induction(P, R, 1.0, 2, grid, expectation_utility).values)(P)


# ----------------------------------------------------------------------------- grid ends
# Oracle: every deterministic history-dependent policy, written out as a table from histories
# (s_0, k_0, s_1, ..., s_t) (k_t the index of the reward atom drawn at step t) to actions; its
# exact return law by enumerating every trajectory; CVaR and E f(c_0 + G) computed from the law.


def _histories(s0, H, S, K):
    """Every history at which a decision is taken: tuples (s_0, k_0, s_1, ..., s_t), t < H."""
    out, frontier = [], [(s0,)]
    for _ in range(H):
        out += frontier
        frontier = [h + (k, s) for h in frontier for k in range(K) for s in range(S)]
    return out


def _policy_law(P, atoms, probs, s0, H, table):
    """Exact law {return: probability} of the policy ``table`` (history -> action) from s0."""
    law, stack = {}, [((s0,), 1.0, 0.0)]
    while stack:
        h, p, g = stack.pop()
        if (len(h) - 1) // 2 == H:
            law[g] = law.get(g, 0.0) + p
            continue
        s, a = h[-1], table[h]
        for k in range(atoms.shape[-1]):
            for t in range(P.shape[0]):
                q = p * probs[s, a, k] * P[s, a, t]
                if q > 0:
                    stack.append((h + (k, t), q, g + float(atoms[s, a, k])))
    return law


def _all_laws(P, atoms, probs, s0, H):
    """Distinct return laws of all deterministic history-dependent policies from s0, as
    ``(g, p)``: ``g[L, n]`` each law's returns, increasing (padded with its last return),
    ``p[L, n]`` their probabilities (padded with 0)."""
    S, A, K = atoms.shape
    hist = _histories(s0, H, S, K)
    laws = set()
    for actions in itertools.product(range(A), repeat=len(hist)):
        law = _policy_law(P, atoms, probs, s0, H, dict(zip(hist, actions)))
        laws.add(tuple((g, round(law[g], 12)) for g in sorted(law)))
    n = max(len(law) for law in laws)
    rows = [list(law) + [(law[-1][0], 0.0)] * (n - len(law)) for law in laws]
    table = np.array(rows)  # [L, n, 2]
    return table[..., 0], table[..., 1]


def _law_cvar(g, p, alpha):
    """``float[L]``: (1 / alpha) * integral_0^alpha F^{-1}(u) du of each law (g, p)."""
    before = np.cumsum(p, axis=-1) - p
    taken = np.minimum(p, np.maximum(alpha - before, 0.0))
    return (taken * g).sum(-1) / alpha


def _best_expected_utility(g, p, c, f):
    """``float[C]``: max over the laws of E f(c + G) at each stock ``c[C]``."""
    return (p[:, :, None] * f(g[:, :, None] + c)).sum(1).max(0)


def _random_tree(seed, S, A, K):
    """P [S, A, S] with some zero transitions; integer reward atoms in [-2, 2] (K per (s, a))
    and their probabilities."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A)) * (rng.random((S, A, S)) < 0.8)
    P[..., 0] += P.sum(-1) == 0
    P /= P.sum(-1, keepdims=True)
    atoms = rng.integers(-2, 3, (S, A, K)).astype(np.float64)
    probs = rng.dirichlet(np.ones(K), size=(S, A))
    return P, atoms, probs


ALPHAS = (0.05, 0.1, 0.3, 0.5, 0.8, 0.9, 1.0)
SLOW = pytest.mark.slow  # one backward-induction compile per grid size, each about a second
TREES = [  # seed, S, A, K reward atoms, H
    (11, 3, 2, 1, 3),
    pytest.param(10, 2, 2, 1, 3, marks=SLOW),
    pytest.param(12, 2, 3, 1, 3, marks=SLOW),
    pytest.param(13, 2, 2, 2, 2, marks=SLOW),
]


def _grids(laws):
    """Wide (much wider than the returns), tight (exactly minus the return range) and two
    shifted grids (off the return range on one side, beyond it on the other)."""
    lo = min(g.min() for g, _ in laws)
    hi = max(g.max() for g, _ in laws)
    return {
        "wide": np.arange(-hi - 15.0, -lo + 16.0),
        "tight": np.arange(-hi, -lo + 1.0),
        "shifted up": np.arange(-hi + 3.0, -lo + 6.0),
        "shifted down": np.arange(-hi - 7.0, -lo - 2.0),
    }


@pytest.mark.parametrize("seed, S, A, K, H", TREES)
def test_cvar_exact_on_any_integer_grid_against_history_dependent_brute_force(seed, S, A, K, H):
    # Every W_0(s, c_0) on the grid is the best E f(c_0 + G) over all history-dependent
    # policies, wherever the grid sits, and optimal_cvar is the best -c_0 + W_0 over the grid:
    # the optimal CVaR when the grid holds minus the optimal VaR.
    P, atoms, probs = _random_tree(seed, S, A, K)
    laws = [_all_laws(P, atoms, probs, s, H) for s in range(S)]
    best_cvar = {a: [_law_cvar(g, p, a).max() for g, p in laws] for a in ALPHAS}
    best_on_grid = jax.jit(optimal_cvar)  # one compiled program per grid size
    for name, grid in _grids(laws).items():
        for alpha in ALPHAS:
            res = stock_backward_induction(
                P.astype(np.float32), atoms.astype(np.float32), 1.0, H, jnp.asarray(grid),
                cvar_utility(alpha), reward_probs=probs.astype(np.float32),
            )
            f = partial(lambda a, x: np.minimum(x, 0.0) / a, alpha)
            w0 = np.array([_best_expected_utility(g, p, grid, f) for g, p in laws])
            np.testing.assert_allclose(np.asarray(res.values)[0], w0, rtol=1e-5, atol=1e-4,
                                       err_msg=f"{name} {alpha}")
            cvar, _ = best_on_grid(res)
            np.testing.assert_allclose(cvar, (w0 - grid).max(-1), atol=1e-4,
                                       err_msg=f"{name} {alpha}")
            assert np.all(np.asarray(cvar) <= np.array(best_cvar[alpha]) + 1e-4)
            if name != "shifted up":  # the others hold -VaR of every optimal policy
                np.testing.assert_allclose(cvar, best_cvar[alpha], atol=1e-4,
                                           err_msg=f"{name} {alpha}")


def _finite_horizon_vi(P, atoms, probs, H):
    V = np.zeros(P.shape[0])
    for _ in range(H):
        V = ((atoms * probs).sum(-1) + P @ V).max(axis=1)
    return V


@pytest.mark.parametrize("seed, S, A, K, H", [
    (14, 4, 3, 2, 4), pytest.param(11, 3, 2, 1, 3, marks=SLOW), pytest.param(15, 5, 2, 1, 6, marks=SLOW),
])
def test_cvar_at_alpha_one_is_the_optimal_expected_return(seed, S, A, K, H):
    # CVaR_1 = E G: optimal_cvar at alpha = 1 is finite-horizon value iteration's V, on a grid
    # much wider than the returns (the case that clamped reads pushed above V), a tight one and
    # one with its ends off in both directions.
    P, atoms, probs = _random_tree(seed, S, A, K)
    V = _finite_horizon_vi(P, atoms, probs, H)
    for grid in (np.arange(-40.0, 41.0), np.arange(-2.0 * H, 2.0 * H + 1), np.arange(-2.0 * H, 3.0)):
        res = stock_backward_induction(P.astype(np.float32), atoms.astype(np.float32), 1.0, H,
                                       jnp.asarray(grid), cvar_utility(1.0),
                                       reward_probs=probs.astype(np.float32))
        np.testing.assert_allclose(optimal_cvar(res)[0], V, atol=2e-4, err_msg=f"{grid[[0, -1]]}")


def _stock_policy_value(P, atoms, probs, policy, grid, s0, c0, H, f):
    """Exact E f(c_0 + G) of the stock-augmented ``policy [H, S, C]`` from (s0, c0), gamma = 1:
    enumerate trajectories, tracking the stock; off the grid the end point's action is used."""
    total, stack = 0.0, [(0, s0, c0, 1.0)]
    while stack:
        t, s, c, p = stack.pop()
        if t == H:
            total += p * f(c)  # c_H = c_0 + G
            continue
        a = policy[t, s, int(np.argmin(np.abs(grid - c)))]
        for k in range(atoms.shape[-1]):
            for s_next in range(P.shape[0]):
                q = p * probs[s, a, k] * P[s, a, s_next]
                if q > 0:
                    stack.append((t + 1, s_next, c + atoms[s, a, k], q))
    return total


def test_greedy_stock_policy_attains_the_brute_force_optimum_from_every_grid_stock():
    # From every (s, c_0) on a grid much wider than the returns (its ends included, where the
    # clamped reads misjudged the actions) the greedy policy's own E f(c_0 + G) is the optimum
    # over history-dependent policies, and from c_0* its CVaR is the optimal CVaR.
    seed, S, A, K, H = TREES[0]
    P, atoms, probs = _random_tree(seed, S, A, K)
    laws = [_all_laws(P, atoms, probs, s, H) for s in range(S)]
    grid = _grids(laws)["wide"]
    for alpha in (0.1, 0.5, 1.0):
        res = stock_backward_induction(
            P.astype(np.float32), atoms.astype(np.float32), 1.0, H, jnp.asarray(grid),
            cvar_utility(alpha), reward_probs=probs.astype(np.float32),
        )
        policy = np.asarray(res.policy)
        f = partial(lambda a, x: np.minimum(x, 0.0) / a, alpha)
        for s, (g, p) in enumerate(laws):
            best = _best_expected_utility(g, p, grid, f)
            achieved = [_stock_policy_value(P, atoms, probs, policy, grid, s, c, H, f)
                        for c in grid]
            np.testing.assert_allclose(achieved, best, rtol=1e-6, atol=1e-6,
                                       err_msg=f"alpha {alpha} state {s}")
        cvar, c0 = optimal_cvar(res)
        np.testing.assert_allclose(
            cvar, [_law_cvar(g, p, alpha).max() for g, p in laws], atol=1e-4)
