"""Distributional DP speed: categorical value iteration vs a vectorised NumPy version, the
batch of MDPs in one call vs one, and the stock-augmented solve as the stock grid grows.

1. Categorical distributional value iteration (``jaxrl_icl.distributional.value_iteration``,
   ``num_iterations`` fixed, jitted) on a ``num_states`` x ``num_actions`` random MDP with dense
   ``P`` (``tabular-random``'s Dirichlet rows, U(0, 1) rewards) and ``num_atoms`` atoms on
   ``[0, 1 / (1 - gamma)]``, against :func:`numpy_value_iteration` below: the same algorithm
   fully vectorised in NumPy (one matmul with ``P`` and one batched matmul with the precomputed
   projection matrix per iteration; the only Python loop is over iterations). Both start from
   the point mass at 0 and are checked to give the same distributions before timing.
2. The same value iteration on ``batch_size`` MDPs of ``batch_states`` states in one batched
   call (``lax.map`` on CPU, ``vmap`` on accelerators; see :mod:`jaxrl_icl.distributional.dp`)
   vs one such MDP per call: MDP-iterations/s of each and the throughput ratio.
3. ``stock_backward_induction`` (CVaR_0.1 utility, horizon ``stock_horizon``) on a
   ``stock_states``-state MDP for stock grids of 8, 16, 32 and 64 points: seconds per solve,
   the larger grids against 8 points (ratio: the 8-point time over theirs, the inverse of the
   cost growth).

Timings are the best of ``repeats`` calls after a warm-up call (which compiles); they time the
public functions, input checks included.
"""

from __future__ import annotations

import dataclasses
import time

import jax.numpy as jnp
import numpy as np

from envs.tabular import TabularMDP
from experiments.benchmarks.report import row
from jaxrl_icl.config import require_in, require_positive
from jaxrl_icl.distributional import (
    CategoricalRep,
    cvar_utility,
    stock_backward_induction,
    value_iteration,
)

SUITE = "dp"
STOCK_SIZES = (8, 16, 32, 64)


@dataclasses.dataclass(frozen=True)
class DPBenchConfig:
    """Distributional value iteration vs NumPy; batch of MDPs; stock-grid scaling."""

    num_states: int = dataclasses.field(default=1000, metadata={"help": "states of the MDP"})
    num_actions: int = dataclasses.field(default=4, metadata={"help": "actions of every MDP"})
    num_atoms: int = dataclasses.field(default=51, metadata={"help": "categorical atoms"})
    num_iterations: int = dataclasses.field(default=20, metadata={"help": "Bellman backups per call"})
    gamma: float = dataclasses.field(default=0.9, metadata={"help": "discount of the value iteration"})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "MDPs in the batched call"})
    batch_states: int = dataclasses.field(default=50, metadata={"help": "states of each batched MDP"})
    stock_states: int = dataclasses.field(default=100, metadata={"help": "states for the stock solve"})
    stock_horizon: int = dataclasses.field(default=20, metadata={"help": "horizon of the stock solve"})
    repeats: int = dataclasses.field(default=3, metadata={"help": "timed calls; the best is kept"})
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_states", "num_actions", "num_atoms", "num_iterations", "batch_size",
                     "batch_states", "stock_states", "stock_horizon", "repeats"):
            require_positive(self, name)
        require_in(self, "gamma", 0.0, 0.999)
        if self.num_atoms < 2:
            raise ValueError(f"num_atoms: must be >= 2, got {self.num_atoms}")


def numpy_value_iteration(P, R, gamma, support, num_iterations):
    """Categorical distributional value iteration in NumPy (float32), greedy in the mean.

    ``P: [S, A, S]``, ``R: [S, A]``, ``support: [m]``. Returns ``dist: float32[S, A, m]``.
    ``Phi[s, a, j, i]`` is the weight the target atom ``R[s, a] + gamma z_j`` puts on ``z_i``
    (Cramér projection); each iteration is ``dist <- (P @ greedy_law) @ Phi``.
    """
    S, A, _ = P.shape
    m = support.shape[0]
    z = support.astype(np.float32)
    x = np.clip(R[..., None] + np.float32(gamma) * z, z[0], z[-1])[..., None]  # [S, A, m, 1]
    left = np.concatenate([z[:1] - 1, z[:-1]])
    right = np.concatenate([z[1:], z[-1:] + 1])
    Phi = np.clip(np.where(x <= z, (x - left) / (z - left), (right - x) / (right - z)), 0, 1)
    Phi = Phi.astype(np.float32)
    dist = np.zeros((S, A, m), np.float32)
    dist[..., int(np.argmin(np.abs(z)))] = 1.0  # point mass at the atom nearest 0
    P2 = P.reshape(S * A, S).astype(np.float32)
    for _ in range(num_iterations):
        greedy = np.argmax(dist @ z, axis=1)
        law = dist[np.arange(S), greedy]  # [S, m]
        next_law = (P2 @ law).reshape(S, A, 1, m)
        dist = np.matmul(next_law, Phi)[:, :, 0, :]
    return dist


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up (compiles)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _mdp(seed: int, num_states: int, num_actions: int):
    params = TabularMDP(num_states, num_actions, seed=seed).default_params
    return np.asarray(params.P), np.asarray(params.R)


def run(cfg: DPBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`) of the three measurements: ours vs
    NumPy, the batch vs one MDP per call, each stock grid vs the smallest (its ratio < 1 is
    the cost of the larger grid)."""
    support = np.linspace(0.0, 1.0 / (1.0 - cfg.gamma), cfg.num_atoms, dtype=np.float32)
    rep = CategoricalRep(jnp.asarray(support))
    K = cfg.num_iterations

    # 1. ours vs NumPy on one large MDP.
    P, R = _mdp(cfg.seed, cfg.num_states, cfg.num_actions)

    def ours():
        return value_iteration(P, R, cfg.gamma, rep, num_iterations=K).dist.block_until_ready()

    np.testing.assert_allclose(np.asarray(ours()),
                               numpy_value_iteration(P, R, cfg.gamma, support, K), atol=2e-4)
    t_ours = _best_time(ours, cfg.repeats)
    t_numpy = _best_time(lambda: numpy_value_iteration(P, R, cfg.gamma, support, K), cfg.repeats)
    rows = [row(SUITE, f"value iteration S={cfg.num_states} A={cfg.num_actions} m={cfg.num_atoms}, vs NumPy",
                K / t_ours, K / t_numpy, "it/s")]

    # 2. a batch of MDPs in one call vs one.
    mdps = [_mdp(cfg.seed + 1 + b, cfg.batch_states, cfg.num_actions) for b in range(cfg.batch_size)]
    Pb = np.stack([p for p, _ in mdps])
    Rb = np.stack([r for _, r in mdps])

    def single():
        return value_iteration(Pb[0], Rb[0], cfg.gamma, rep, num_iterations=K).dist.block_until_ready()

    def batch():
        return value_iteration(Pb, Rb, cfg.gamma, rep, num_iterations=K).dist.block_until_ready()

    np.testing.assert_allclose(np.asarray(batch())[0], np.asarray(single()), atol=1e-5)
    t_single = _best_time(single, cfg.repeats)
    t_batch = _best_time(batch, cfg.repeats)
    rows.append(row(SUITE, f"value iteration on {cfg.batch_size} MDPs (S={cfg.batch_states}) in one call, "
                    "vs one per call", cfg.batch_size * K / t_batch, K / t_single, "MDP-it/s"))

    # 3. stock-augmented solve vs grid size.
    Ps, Rs = _mdp(cfg.seed, cfg.stock_states, cfg.num_actions)
    f = cvar_utility(0.1)
    H = cfg.stock_horizon
    base = None
    for C in STOCK_SIZES:
        grid = jnp.linspace(-float(H), float(H), C)

        def solve(grid=grid):
            return stock_backward_induction(Ps, Rs, 1.0, H, grid, f).values.block_until_ready()

        t = _best_time(solve, cfg.repeats)
        case = f"stock solve S={cfg.stock_states} A={cfg.num_actions} H={H}, C={C}"
        rows.append(row(SUITE, case if base is None else f"{case} vs C={STOCK_SIZES[0]}", t, base, "s",
                        lower_is_better=True))
        base = t if base is None else base
    return rows


def plot(rows: list[dict], path) -> None:
    """Bar chart of the ratios (log scale), with 1x dashed."""
    from jaxrl_icl.run.plots import plot_bars

    plot_bars({r["case"].replace(", ", "\n", 1): r["ratio"] for r in rows if r["ratio"] is not None}, path,
              ylabel="ratio (x), > 1: ours / the batch / the small grid is faster", reference=("1x", 1.0),
              log_scale=True, figsize=(7.5, 4.0), title="distributional DP: speed-ups and stock-grid cost")
