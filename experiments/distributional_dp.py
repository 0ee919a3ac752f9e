"""Risk-sensitive planning by stock augmentation on cliff walk and a random MDP.

``python -m experiments.distributional_dp [--cliff-horizon 25] [--num-episodes 20000] ...``

For each MDP, finite horizon ``H`` and ``gamma = 1``, :func:`stock_backward_induction` solves
six objectives of the return ``G`` from a fixed start state: the mean, ``CVaR_alpha`` for
alpha in 0.1 / 0.25 / 0.5, homeostatic regulation ``-E|G - target|`` and the threshold
probability ``Pr(G >= threshold)``. Rewards are integers and the stock grid holds every
integer from the lowest to the highest reachable stock, so each solve is exact. Every policy
(a Markov policy on state and stock) is then run for ``num_episodes`` Monte Carlo episodes on
the same tabular model, and the table reports each one's mean, CVaR_alpha and threshold
probability next to the DP value of its own objective.

The MDPs: the 4 x 12 cliff walk of :mod:`envs.cliffwalk` (10% slips, -1 per step, a fall
costs -40 on the step after it and returns the agent to the start) from the start cell, and
the fixed ``tabular-random`` MDP (``mdp_states`` x ``mdp_actions``, Dirichlet transitions)
with its U(0, 1) rewards mapped to integers ``floor(5 R) - 2`` in {-2, ..., 2}, from state 0.

Writes ``config.json``, ``versions.json``, ``summary.json``, ``return_histograms.png`` (one
panel per MDP and objective) and ``cliffwalk_paths.png`` (mean visits per episode to each
cell under each objective's policy), prints the tables and the run directory.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from envs.cliffwalk import CLIFF, COLS, GOAL, ROWS, START, CliffWalkParams, cliffwalk_mdp
from envs.tabular import TabularMDP
from jaxrl_icl.config import field, require_in, require_positive, require_types
from jaxrl_icl.distributional import (
    cvar,
    cvar_utility,
    expectation_utility,
    homeostatic_utility,
    mc_stock_returns,
    optimal_cvar,
    stock_backward_induction,
    stock_value,
    threshold_probability,
    threshold_utility,
)
from jaxrl_icl.run import plots
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.plots import HistogramPanel, plot_log_maps
from jaxrl_icl.run.rundir import open_run, write_json

ALPHAS = (0.1, 0.25, 0.5)


@dataclasses.dataclass(frozen=True)
class DistributionalDPConfig:
    """Stock-augmented objectives on cliff walk and a random MDP."""

    cliff_horizon: int = field(25, help="cliff walk horizon H (steps)")
    slip_prob: float = field(0.1, help="cliff walk slip probability")
    cliff_threshold: int = field(-17, help="cliff walk threshold objective: Pr(G >= this)")
    cliff_target: int = field(-15, help="cliff walk homeostatic objective: -E|G - this|")
    mdp_states: int = field(10, help="random MDP states")
    mdp_actions: int = field(3, help="random MDP actions")
    mdp_horizon: int = field(10, help="random MDP horizon H (steps)")
    mdp_seed: int = field(0, help="seed of the random MDP (tabular-random's default_params)")
    mdp_threshold: int = field(8, help="random MDP threshold objective: Pr(G >= this)")
    mdp_target: int = field(4, help="random MDP homeostatic objective: -E|G - this|")
    num_episodes: int = field(20000, help="Monte Carlo episodes per policy")
    seed: int = field(0, help="PRNG seed of the Monte Carlo rollouts")

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("cliff_horizon", "mdp_states", "mdp_actions", "mdp_horizon", "num_episodes"):
            require_positive(self, name)
        require_in(self, "slip_prob", 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finite-horizon MDP: float32 ``P [S, A, S]``, integer-valued ``R [S, A]``, start."""

    name: str
    P: np.ndarray
    R: np.ndarray
    start: int
    horizon: int
    threshold: int
    target: int


def problems(config: DistributionalDPConfig) -> list[Problem]:
    """Cliff walk and the random MDP, as described in the module docstring."""
    cliff = cliffwalk_mdp(CliffWalkParams(slip_prob=config.slip_prob))
    mdp = TabularMDP(config.mdp_states, config.mdp_actions, config.mdp_horizon, config.mdp_seed)
    params = mdp.default_params
    R = np.floor(5.0 * np.asarray(params.R)) - 2.0
    return [
        Problem("cliffwalk", np.asarray(cliff.P), np.asarray(cliff.R), START,
                config.cliff_horizon, config.cliff_threshold, config.cliff_target),
        Problem("random-mdp", np.asarray(params.P), R.astype(np.float32), 0,
                config.mdp_horizon, config.mdp_threshold, config.mdp_target),
    ]


def return_range(problem: Problem) -> tuple[float, float]:
    """``(lowest, highest)`` sum of the first ``t <= H`` rewards that any policy can get with
    positive probability from ``problem.start``: min-plus and max-plus backward induction over
    the support of ``P``, for every ``t``."""
    reachable = problem.P > 0
    lo = hi = np.zeros(problem.P.shape[0])
    low = high = 0.0
    for _ in range(problem.horizon):
        lo = (problem.R + np.where(reachable, lo, np.inf).min(axis=2)).min(axis=1)
        hi = (problem.R + np.where(reachable, hi, -np.inf).max(axis=2)).max(axis=1)
        low, high = min(low, float(lo[problem.start])), max(high, float(hi[problem.start]))
    return low, high


def stock_grid(problem: Problem) -> jnp.ndarray:
    """Every integer stock reachable from any initial stock used here: ``c_0`` ranges over
    minus the returns (CVaR), ``-threshold`` and ``-target``, and ``c_t = c_0 + partial sum``."""
    lo, hi = return_range(problem)
    c0_lo = min(-hi, -problem.threshold, -problem.target)
    c0_hi = max(-lo, -problem.threshold, -problem.target)
    return jnp.arange(c0_lo + lo, c0_hi + hi + 1.0, dtype=jnp.float32)


def objectives(problem: Problem) -> dict[str, tuple]:
    """Label -> (utility, initial stock rule) in table order; rule None = CVaR's optimal c_0."""
    out = {"expectation": (expectation_utility, 0.0)}
    out |= {f"CVaR_{a:g}": (cvar_utility(a), None) for a in ALPHAS}
    out[f"homeostatic (target {problem.target})"] = (homeostatic_utility, -float(problem.target))
    out[f"threshold (G >= {problem.threshold})"] = (threshold_utility, -float(problem.threshold))
    return out


def solve_and_evaluate(problem: Problem, config: DistributionalDPConfig, key: jax.Array) -> dict:
    """Label -> dict with the DP objective value, c_0, solve seconds, MC returns and states."""
    grid = stock_grid(problem)
    init = np.eye(problem.P.shape[0], dtype=np.float32)[problem.start]
    out = {}
    for i, (label, (utility, c0)) in enumerate(objectives(problem).items()):
        t0 = time.perf_counter()
        res = stock_backward_induction(problem.P, problem.R, 1.0, problem.horizon, grid, utility)
        if c0 is None:
            value, c0_all = optimal_cvar(res)
            value, c0 = float(value[problem.start]), float(c0_all[problem.start])
        else:
            value = float(stock_value(res, c0)[problem.start])
            value -= c0 if utility is expectation_utility else 0.0  # W_0 = c_0 + E G
        seconds = time.perf_counter() - t0
        returns, states = mc_stock_returns(jax.random.fold_in(key, i), problem.P, problem.R, init,
                                           res, c0, config.num_episodes, with_states=True)
        out[label] = {"dp_value": value, "c0": c0, "solve_s": seconds,
                      "returns": np.asarray(returns), "states": np.asarray(states)}
    return out


def _cvar_se(returns: np.ndarray, alpha: float) -> float:
    """Asymptotic standard error of the empirical CVaR_alpha of i.i.d. ``returns``:
    ``sd(min(G - VaR_alpha, 0)) / (alpha sqrt(N))``."""
    var = np.quantile(returns, alpha)
    return float(np.std(np.minimum(returns - var, 0.0)) / (alpha * np.sqrt(len(returns))))


def summarize(problem: Problem, runs: dict) -> dict:
    """Label -> MC mean and CVaR per alpha (each with its standard error), threshold
    probability, the DP value of the policy's own objective, ``c_0`` and the solve time."""
    table = {}
    for label, run in runs.items():
        g = jnp.asarray(run["returns"])
        table[label] = {
            "mean": float(g.mean()),
            "mean_se": float(g.std() / np.sqrt(g.shape[0])),
            **{f"cvar_{a:g}": float(cvar(g, a)) for a in ALPHAS},
            **{f"cvar_{a:g}_se": _cvar_se(run["returns"], a) for a in ALPHAS},
            "threshold_prob": float(threshold_probability(g, problem.threshold)),
            "dp_objective": run["dp_value"],
            "c0": run["c0"],
            "solve_s": run["solve_s"],
        }
    return table


def format_table(problem: Problem, table: dict, num_grid: int) -> str:
    width = max(len(label) for label in table)
    head = (f"{problem.name}: H={problem.horizon}, start state {problem.start}, "
            f"{num_grid} stock grid points; Monte Carlo over the policies below")
    cols = ["mean"] + [f"CVaR_{a:g}" for a in ALPHAS] + [f"P(G>={problem.threshold})", "DP obj"]
    lines = [head, f"{'policy':<{width}}" + "".join(f"{c:>12}" for c in cols)]
    for label, row in table.items():
        values = [row["mean"]] + [row[f"cvar_{a:g}"] for a in ALPHAS]
        values += [row["threshold_prob"], row["dp_objective"]]
        lines.append(f"{label:<{width}}" + "".join(f"{v:>12.3f}" for v in values))
    return "\n".join(lines)


def plot_histograms(results: dict, path) -> None:
    """One row per MDP, one panel per objective: histogram of returns, mean and CVaR_0.1."""
    panels = []
    for name, (_, runs, table) in results.items():
        all_g = np.concatenate([r["returns"] for r in runs.values()])
        bins = np.arange(all_g.min() - 0.5, all_g.max() + 1.5)
        if len(bins) > 80:
            bins = np.linspace(all_g.min() - 0.5, all_g.max() + 0.5, 80)
        panels.append([HistogramPanel(f"{name}\n{label}", {label: run["returns"]}, bins,
                                      {label: {"mean": table[label]["mean"], "CVaR_0.1": table[label]["cvar_0.1"]}})
                       for label, run in runs.items()])
    columns = len(panels[0])
    plots.plot_histograms(panels, path, "return G", "episodes", figsize=(3.2 * columns, 3.0 * len(panels)),
                          legend_fontsize=7)


def plot_paths(runs: dict, horizon: int, path) -> None:
    """Cliff walk: mean visits per episode to each cell (log colour) per objective, the
    cliff outlined in red, S and G marked (the goal left blank: the episode ends there)."""
    maps = {}
    for label, run in runs.items():
        visits = np.bincount(run["states"].ravel(), minlength=ROWS * COLS) / run["states"].shape[0]
        visits[GOAL] = np.nan  # steps "at" the goal are the model's time after termination
        maps[f"{label}: mean visits per episode (H={horizon})"] = visits.reshape(ROWS, COLS)
    plot_log_maps(maps, path, floor=1e-3, outline=(CLIFF[0] // COLS, CLIFF[0] % COLS, 1, len(CLIFF)),
                  cell_text={divmod(START, COLS): ("S", "w"), divmod(GOAL, COLS): ("G", "k")})


def run(config: DistributionalDPConfig) -> dict:
    """Name -> (problem, per-objective runs, summary table) for both MDPs."""
    key = jax.random.key(config.seed)
    results = {}
    for i, problem in enumerate(problems(config)):
        runs = solve_and_evaluate(problem, config, jax.random.fold_in(key, i))
        results[problem.name] = (problem, runs, summarize(problem, runs))
    return results


def main(argv: list[str] | None = None) -> None:
    config, options = parse_cli(DistributionalDPConfig, sys.argv[1:] if argv is None else argv,
                                prog="python -m experiments.distributional_dp")
    run_dir = open_run("distributional_dp", config, options)
    results = run(config)
    summary = {}
    for name, (problem, _, table) in results.items():
        summary[name] = {"horizon": problem.horizon, "start_state": problem.start,
                         "threshold": problem.threshold, "target": problem.target,
                         "stock_grid_size": int(stock_grid(problem).shape[0]),
                         "num_episodes": config.num_episodes, "policies": table}
        print(format_table(problem, table, summary[name]["stock_grid_size"]))
        print()
    write_json(run_dir.path / "summary.json", summary)
    plot_histograms(results, run_dir.plot_path("return_histograms"))
    plot_paths(results["cliffwalk"][1], config.cliff_horizon, run_dir.plot_path("cliffwalk_paths"))
    print(f"run directory: {run_dir.path}")


if __name__ == "__main__":
    main()
