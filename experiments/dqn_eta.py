"""DηN (CVaR objective) vs DQN on the slippery cliff walk.

``python -m experiments.dqn_eta [--scale paper] [--num-seeds 4] [--eta.dqn.total-timesteps N] ...``

Trains ``num_seeds`` DηN agents (:mod:`jaxrl_icl.distributional.dqn`, objective
``CVaR_alpha`` of the return, ``alpha = eta.alpha``) and as many plain DQN agents
(:mod:`jaxrl_icl.rl.dqn`) with the same shared hyperparameters ``eta.dqn`` on ``cliffwalk``
(slip 10%, -1 per step, a fall costs -40 and restarts, episodes truncated after
``max_steps`` steps), each algorithm's seeds in one ``jax.vmap``. Both final greedy policies
are then evaluated by ``num_episodes`` Monte Carlo episodes of ``max_steps`` steps on the
exact tabular model of the cliff walk (:mod:`jaxrl_icl.distributional.monte_carlo`):

* DQN: its greedy action in each cell, ``mc_returns``;
* DηN: ``c_0`` chosen by the agent at the start cell, then its greedy action at every
  ``(cell, stock)`` tabulated on the integer stock grid ``[stock_min, c0_max]``
  (``mc_stock_returns``). With ``gamma = 1`` and integer rewards every stock is an integer,
  so the tabulated policy is the agent's own wherever the stock stays above ``stock_min``.

Returns are undiscounted episode returns. The table gives, per algorithm, the mean over seeds
(with its standard error) of each policy's mean return, ``CVaR_alpha`` and
``Pr(G >= threshold)``; the success criterion is DηN's mean CVaR above DQN's. Writes
``config.json``, ``versions.json``, ``summary.json``, ``return_histograms.png`` (pooled
returns of each algorithm) and ``episode_return.png`` (training curves), prints the table
and the run directory.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.cliffwalk import NUM_STATES, START, cliffwalk_mdp
from jaxrl_icl.config import ConfigError, field, require_in, require_positive, require_types
from jaxrl_icl.distributional import cvar, mc_returns, mc_stock_returns, threshold_probability
from jaxrl_icl.distributional.dqn import DQNEtaConfig, make_agent
from jaxrl_icl.distributional.dqn import make_train as make_eta_train
from jaxrl_icl.distributional.stock import StockResult
from jaxrl_icl.rl.dqn import DQNConfig, q_network
from jaxrl_icl.rl.dqn import make_train as make_dqn_train
from jaxrl_icl.run import plots
from jaxrl_icl.run.config import parse_cli, with_scale
from jaxrl_icl.run.plots import HistogramPanel, plot_curves
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.run.sweep import seed_keys

PROG = "python -m experiments.dqn_eta"
PRESETS = {"paper": ["--num-seeds", "10", "--num-episodes", "100000",
                     "--eta.dqn.total-timesteps", "500000", "--eta.dqn.epsilon-anneal-steps", "250000",
                     "--eta.dqn.steps-per-update", "5000"]}

_DQN = DQNConfig(num_envs=4, total_timesteps=60_000, steps_per_update=2_000, buffer_size=20_000,
                 batch_size=64, lr=1e-3, gamma=1.0, target_update_interval=200,
                 epsilon_anneal_steps=30_000, learning_starts=1_000, train_frequency=4,
                 hidden_size=64, num_layers=2)


@dataclasses.dataclass(frozen=True)
class DQNEtaExperimentConfig:
    """DηN (CVaR objective) vs DQN on the cliff walk, Monte Carlo evaluation of both."""

    scale: Literal["cpu", "paper"] = field("cpu", help="size preset: cpu (a few minutes) or paper; "
                                           "other flags override it")
    num_seeds: int = field(4, help="seeds per algorithm (one vmap each)")
    seed: int = field(0, help="integer seed of training and evaluation")
    slip_prob: float = field(0.1, help="cliff walk slip probability")
    max_steps: int = field(100, help="episode length limit (training and evaluation)")
    threshold: int = field(-17, help="report Pr(G >= threshold)")
    num_episodes: int = field(20_000, help="Monte Carlo episodes per policy")
    stock_min: int = field(-400, help="lowest stock of the DηN policy table (evaluation)")
    dqn_loss: str = field("huber", help="the DQN baseline's TD loss, mse or huber (the rest is eta.dqn)")
    eta: DQNEtaConfig = DQNEtaConfig(dqn=_DQN, num_atoms=51, v_min=-100.0, v_max=0.0,
                                     objective="cvar", alpha=0.1, c0_min=0.0, c0_max=100.0,
                                     num_c0=101, stock_scale=100.0)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "max_steps", "num_episodes"):
            require_positive(self, name)
        require_in(self, "slip_prob", 0.0, 1.0)
        if self.eta.objective != "cvar":
            raise ConfigError("eta.objective",
                              f"this experiment compares the cvar objective, got {self.eta.objective!r}")
        if self.dqn_loss not in ("mse", "huber"):
            raise ConfigError("dqn_loss", f"must be 'mse' or 'huber', got {self.dqn_loss!r}")
        if self.stock_min >= self.eta.c0_min:
            raise ConfigError("stock_min", f"must be below eta.c0_min={self.eta.c0_min}, got {self.stock_min}")


def dqn_config(config: DQNEtaExperimentConfig) -> DQNConfig:
    """The DQN baseline's hyperparameters: ``eta.dqn`` with the loss ``dqn_loss``."""
    return dataclasses.replace(config.eta.dqn, loss=config.dqn_loss)


ALGORITHMS = ("DηN", "DQN")


@functools.lru_cache(maxsize=4)
def _runners(config: DQNEtaExperimentConfig):
    """``(env, env_params, {name: run})``: the jitted, seed-vmapped trainers of ``ALGORITHMS``,
    ``run(keys, env_params) -> (state, metrics)`` (cached per config: no recompiling)."""
    env, params = envs.make("cliffwalk")
    params = params.replace(slip_prob=config.slip_prob, max_steps_in_episode=config.max_steps)
    trainers = (make_eta_train(config.eta, env, params), make_dqn_train(dqn_config(config), env, params))
    return env, params, {name: jax.jit(jax.vmap(t, in_axes=(0, None))) for name, t in zip(ALGORITHMS, trainers)}


def train(config: DQNEtaExperimentConfig, algorithms: tuple[str, ...] = ALGORITHMS):
    """``({name: (state, metrics)}, env, env_params)`` for each of ``algorithms`` (names from
    ``ALGORITHMS``), seeds on the leading axis of states and metrics."""
    unknown = sorted(set(algorithms) - set(ALGORITHMS))
    if unknown:
        raise ValueError(f"algorithms: unknown {unknown}; choose from {list(ALGORITHMS)}")
    env, params, runners = _runners(config)
    keys = seed_keys(config.seed, config.num_seeds)
    out = {}
    for i, name in enumerate(ALGORITHMS):  # the key of each algorithm does not depend on the others run
        if name in algorithms:
            state, metrics = runners[name](jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys), params)
            out[name] = (state, jax.tree.map(np.asarray, metrics))
    return out, env, params


def _greedy_tables(config: DQNEtaExperimentConfig, env, params, states: dict) -> dict:
    """The final policies of every seed, in one compiled program: ``{"DQN": float32[num_seeds,
    S, A]}`` Q-values at every cell, ``{"DηN": (int32[num_seeds, S, G] greedy action at every
    cell and stock of the grid, float32[num_seeds] c_0 at the start cell)}``, for the algorithms
    in ``states``."""
    cells = jnp.arange(NUM_STATES)
    agent = make_agent(config.eta, env, params)
    grid = _stock_grid(config)
    tables = {"DQN": lambda p: _dqn_q(dqn_config(config), env, params, p, cells),
              "DηN": lambda p: (agent.act(p, cells[:, None], grid[None, :]),
                                agent.initial_stock(p, jnp.array([START]))[0])}
    return jax.jit(lambda s: {name: jax.vmap(tables[name])(state.params) for name, state in s.items()})(states)


def _stock_grid(config: DQNEtaExperimentConfig) -> jax.Array:
    """``float32[G]``: the integer stocks ``stock_min .. c0_max`` DηN's policy is tabulated on."""
    return jnp.arange(config.stock_min, config.eta.c0_max + 1.0, dtype=jnp.float32)


def evaluate(config: DQNEtaExperimentConfig, states: dict, env, params) -> tuple[dict, np.ndarray | None]:
    """Monte Carlo returns ``{name: float32[num_seeds, num_episodes]}`` of the final greedy
    policies of the algorithms in ``states`` (``{name: train state}``), and DηN's ``c_0`` per
    seed (None without DηN)."""
    mdp = cliffwalk_mdp(params)
    P, R, init = (np.asarray(x) for x in (mdp.P, mdp.R, mdp.init_dist))
    H = config.max_steps
    gamma = config.eta.dqn.gamma
    grid = _stock_grid(config)
    key = jax.random.key(config.seed + 1)
    tables = _greedy_tables(config, env, params, states)
    c0 = np.asarray(tables["DηN"][1]) if "DηN" in tables else None
    returns = {name: [] for name in ALGORITHMS if name in states}
    for s in range(config.num_seeds):
        k_dqn, k_eta = jax.random.split(jax.random.fold_in(key, s))
        if "DQN" in tables:
            policy = np.asarray(jnp.argmax(tables["DQN"][s], axis=-1), np.int32)
            returns["DQN"].append(mc_returns(k_dqn, P, R, init, policy, H, config.num_episodes, gamma))
        if "DηN" in tables:
            table = np.broadcast_to(np.asarray(tables["DηN"][0][s]), (H, NUM_STATES, grid.shape[0]))
            result = StockResult(grid, jnp.zeros((H + 1, NUM_STATES, grid.shape[0])),
                                 jnp.zeros((H, NUM_STATES, 4, grid.shape[0])), table)
            returns["DηN"].append(mc_stock_returns(k_eta, P, R, init, result, float(c0[s]),
                                                   config.num_episodes, gamma))
    return {name: np.stack([np.asarray(g) for g in gs]) for name, gs in returns.items()}, c0


def _dqn_q(dqn: DQNConfig, env, params, net_params, states):
    """``float32[S, A]``, a trained DQN's Q-values at every cell (one-hot observations)."""
    network = q_network(dqn, env.action_space(params).n)
    return network.apply(net_params, jax.nn.one_hot(states, NUM_STATES))


def summarize(config: DQNEtaExperimentConfig, returns: dict) -> dict:
    """Per algorithm: per-seed mean, CVaR_alpha and threshold probability, and their mean over
    seeds with its standard error."""
    alpha = config.eta.alpha
    out = {}
    for name, g in returns.items():
        rows = {
            "mean_return": [float(np.mean(x)) for x in g],
            f"cvar_{alpha:g}": [float(cvar(jnp.asarray(x), alpha)) for x in g],
            "threshold_prob": [float(threshold_probability(jnp.asarray(x), config.threshold)) for x in g],
        }
        out[name] = {
            metric: {"per_seed": vals, "mean": float(np.mean(vals)),
                     "se": float(np.std(vals, ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else None}
            for metric, vals in rows.items()
        }
    return out


def format_table(config: DQNEtaExperimentConfig, table: dict) -> str:
    alpha = config.eta.alpha
    cols = ["mean return", f"CVaR_{alpha:g}", f"P(G>={config.threshold})"]
    keys = ["mean_return", f"cvar_{alpha:g}", "threshold_prob"]
    lines = [f"cliff walk (slip {config.slip_prob}, {config.max_steps} steps), {config.num_seeds} seeds, "
             f"{config.num_episodes} MC episodes per policy; mean over seeds (standard error)",
             f"{'agent':<8}" + "".join(f"{c:>22}" for c in cols)]
    for name, row in table.items():
        cells = []
        for k in keys:
            se = row[k]["se"]
            cells.append(f"{row[k]['mean']:.3f}" + ("" if se is None else f" ({se:.3f})"))
        lines.append(f"{name:<8}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def plot_histograms(config: DQNEtaExperimentConfig, returns: dict, table: dict, path) -> None:
    """Pooled return histograms (log counts) of both agents with their mean and CVaR lines."""
    alpha = config.eta.alpha
    pooled = {name: g.ravel() for name, g in returns.items()}
    both = np.concatenate(list(pooled.values()))
    lo, hi = float(both.min()), float(both.max())
    bins = np.arange(lo - 0.5, hi + 1.5) if hi - lo < 120 else np.linspace(lo - 0.5, hi + 0.5, 120)
    marks = {name: {"mean": table[name]["mean_return"]["mean"], "cvar": table[name][f"cvar_{alpha:g}"]["mean"]}
             for name in pooled}
    title = f"cliff walk returns of the final greedy policies\nsolid: mean, dashed: CVaR_{alpha:g}"
    plots.plot_histograms([[HistogramPanel(title, pooled, bins, marks)]], path, "episode return G",
                          "episodes (all seeds)", figsize=(7.5, 4.0))


def main(argv: list[str] | None = None):
    argv = with_scale(argv, PRESETS)
    config, options = parse_cli(DQNEtaExperimentConfig, argv, prog=PROG)
    run = open_run("dqn_eta", config, options)
    t0 = time.perf_counter()
    trained, env, params = train(config)
    train_s = time.perf_counter() - t0
    returns, c0 = evaluate(config, {name: state for name, (state, _) in trained.items()}, env, params)
    eta_metrics, dqn_metrics = trained["DηN"][1], trained["DQN"][1]
    table = summarize(config, returns)
    alpha_key = f"cvar_{config.eta.alpha:g}"
    success = table["DηN"][alpha_key]["mean"] > table["DQN"][alpha_key]["mean"]
    steps = (np.arange(config.eta.dqn.num_updates) + 1) * config.eta.dqn.steps_per_update
    plot_curves({"DηN (CVaR)": (steps, eta_metrics["episode_return"]),
                 "DQN": (steps, dqn_metrics["episode_return"])},
                run.plot_path("episode_return"), xlabel="env steps per seed",
                ylabel="training episode return", title=f"cliff walk, {config.num_seeds} seeds (95% CI)")
    plot_histograms(config, returns, table, run.plot_path("return_histograms"))
    summary = {"scale": config.scale, "alpha": config.eta.alpha, "threshold": config.threshold,
               "num_seeds": config.num_seeds, "num_episodes": config.num_episodes,
               "env_steps_per_seed": config.eta.dqn.total_timesteps, "eta_c0_per_seed": c0.tolist(),
               "agents": table, "success_eta_cvar_beats_dqn": bool(success),
               "train_seconds": round(train_s, 1)}
    write_json(run.path / "summary.json", summary)
    print(format_table(config, table))
    print(f"DηN c_0 per seed: {', '.join(f'{c:g}' for c in c0)}")
    verdict = "met" if success else "NOT met"
    print(f"criterion (DηN CVaR_{config.eta.alpha:g} > DQN's): {verdict}; training {train_s:.0f} s")
    print(f"run directory: {run.path}")
    return run.path


if __name__ == "__main__":
    main(sys.argv[1:])
