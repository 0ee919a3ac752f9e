"""Regret of the classic bandit baselines on DPT's 5-arm Gaussian bandit.

``python -m experiments.bandits [--num-instances 1000] [--horizon 500] [--run-dir DIR]``

UCB(c), Gaussian Thompson sampling (known noise 0.3), empirical-mean greedy and
epsilon-greedy each play the same ``num_instances`` tasks (arm means ~ U(0, 1)) in one
vmapped call. Writes a run directory with ``config.json``, ``versions.json``,
``summary.json`` (mean cumulative regret at the horizon per algorithm with its 95%
interval) and ``regret.png`` (mean regret vs t with 95% bands), and prints a table and the
run directory.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import numpy as np

import envs
from jaxrl_icl.config import require_in, require_positive, require_types
from jaxrl_icl.rl.bandit_algorithms import (
    BanditAlgorithm,
    epsilon_greedy_bandit,
    greedy,
    run_bandit,
    thompson_gaussian,
    ucb,
)
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.stats import confidence_band


@dataclasses.dataclass(frozen=True)
class BanditsConfig:
    """Bandit baselines on the DPT Gaussian bandit.

    Attributes:
      num_instances: bandit tasks (arm means ~ U(0, 1)), all played in one vmapped call.
      horizon: pulls per task.
      seed: PRNG seed for the tasks and the algorithms' randomness.
      ucb_c: UCB exploration coefficient c (index mean + c / sqrt(n)).
      epsilon: exploration rate of epsilon-greedy.
      prior_std: std of Thompson sampling's Gaussian prior on each arm mean (prior mean 0.5).
    """

    num_instances: int = 1000
    horizon: int = 500
    seed: int = 0
    ucb_c: float = 1.0
    epsilon: float = 0.1
    prior_std: float = 1.0

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_instances", "horizon", "prior_std"):
            require_positive(self, name)
        require_in(self, "ucb_c", 0.0, float("inf"))
        require_in(self, "epsilon", 0.0, 1.0)


def algorithms(config: BanditsConfig, noise_std: float) -> dict[str, BanditAlgorithm]:
    """Label -> algorithm, in plotting order."""
    return {
        f"UCB (c={config.ucb_c:g})": ucb(config.ucb_c),
        "Thompson (Gaussian)": thompson_gaussian(noise_std, prior_mean=0.5, prior_std=config.prior_std),
        "greedy": greedy(),
        f"epsilon-greedy ({config.epsilon:g})": epsilon_greedy_bandit(config.epsilon),
    }


def run(config: BanditsConfig) -> dict[str, np.ndarray]:
    """Label -> cumulative regret float32[num_instances, horizon] (same tasks for all)."""
    env, base = envs.make("bandit-gaussian", max_steps_in_episode=config.horizon)
    task_key, run_key = jax.random.split(jax.random.key(config.seed))
    params = jax.vmap(lambda k: env.sample_params(k, base))(jax.random.split(task_key, config.num_instances))
    keys = jax.random.split(run_key, config.num_instances)
    regret = {}
    for label, algo in algorithms(config, env.noise_std).items():
        play = jax.jit(jax.vmap(lambda k, p, algo=algo: run_bandit(algo, k, env, p, config.horizon)[2]))
        regret[label] = np.asarray(play(keys, params))
    return regret


def summarize(regret: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Label -> mean, 95% interval and std of the final cumulative regret over tasks."""
    out = {}
    for label, r in regret.items():
        mean, low, high = confidence_band(r[:, -1:])
        out[label] = {"mean": float(mean[0]), "ci95_low": float(low[0]), "ci95_high": float(high[0]),
                      "std": float(r[:, -1].std(ddof=1))}
    return out


def main(argv: list[str] | None = None) -> None:
    config, options = parse_cli(BanditsConfig, sys.argv[1:] if argv is None else argv,
                                prog="python -m experiments.bandits")
    run_dir = open_run("bandits", config, options)
    regret = run(config)
    summary = summarize(regret)
    write_json(run_dir.path / "summary.json", {
        "horizon": config.horizon, "num_instances": config.num_instances,
        "regret_at_horizon": summary,
    })
    t = np.arange(1, config.horizon + 1)
    plot_curves(
        {label: (t, r) for label, r in regret.items()}, run_dir.plot_path("regret"),
        xlabel="t (pulls)", ylabel="cumulative regret",
        title=f"5-arm Gaussian bandit (noise 0.3), mean of {config.num_instances} tasks, 95% bands",
    )
    width = max(len(label) for label in summary)
    print(f"{'algorithm':<{width}}  regret@T={config.horizon}  (95% CI)")
    for label, row in summary.items():
        print(f"{label:<{width}}  {row['mean']:>12.2f}  ({row['ci95_low']:.2f}, {row['ci95_high']:.2f})")
    print(f"run directory: {run_dir.path}")


if __name__ == "__main__":
    main()
