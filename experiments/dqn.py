"""DQN seed sweep: ``python -m experiments.dqn [--env gymnax:CartPole-v1] [--num-seeds 8] [...]``.

Trains ``num_seeds`` independent DQN runs at once (one ``jax.vmap``) with the chunked
runner: a progress bar, ``metrics.jsonl``, orbax checkpoints and ``--resume DIR``. Writes
``runs/dqn/<timestamp>/`` with ``config.json``, ``versions.json``, ``metrics.jsonl``,
``episode_return.png`` (mean learning curve over seeds with a 95% t-band) and
``summary.json`` (each seed's final return: its mean over the episodes finished in the
last ``final_updates`` updates), then prints the summary and the run directory.
Algorithm flags are nested: ``--dqn.lr 1e-3 --dqn.double-dqn``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

import envs
from jaxrl_icl.config import ConfigError, require_positive, require_types
from jaxrl_icl.rl.dqn import DQNConfig, make_train
from jaxrl_icl.run.config import check_num_seeds, cli_error, parse_cli
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.run.sweep import seed_keys

PROG = "python -m experiments.dqn"


@dataclasses.dataclass(frozen=True)
class DQNExperimentConfig:
    """DQN on one environment over several seeds.

    Attributes:
      env: environment name for envs.make (needs a Discrete action space).
      num_seeds: independent runs, trained together in one vmap.
      seed: integer seed the per-run keys are split from.
      chunk_updates: updates per jitted chunk (progress, metrics.jsonl and checkpoint granularity).
      final_updates: last updates of each run averaged into its final return.
      dqn: algorithm hyperparameters.
    """

    env: str = "gymnax:CartPole-v1"
    num_seeds: int = 8
    seed: int = 0
    chunk_updates: int = 50
    final_updates: int = 10
    dqn: DQNConfig = DQNConfig()

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "chunk_updates", "final_updates"):
            require_positive(self, name)
        if self.final_updates > self.dqn.num_updates:
            raise ConfigError(
                "final_updates", f"must be <= the run's {self.dqn.num_updates} updates, got {self.final_updates}"
            )


def main(argv: list[str] | None = None) -> Path:
    """Run the sweep described by ``argv``; returns the run directory."""
    config, options = parse_cli(DQNExperimentConfig, argv, prog=PROG)
    try:
        env, env_params = envs.make(config.env)
        trainer = make_train(config.dqn, env)
    except ValueError as err:  # unknown env, or one DQN cannot run (ConfigError)
        cli_error(PROG, f"argument --env: {config.env}: {err}")
    check_num_seeds(PROG, config.num_seeds)
    run = open_run("dqn", config, options, resumable=True)

    start = time.perf_counter()
    train_in_chunks(
        trainer, seed_keys(config.seed, config.num_seeds), env_params,
        chunk_updates=config.chunk_updates, run=run, resume=options.resume is not None,
        progress=options.progress,
    )
    wall = time.perf_counter() - start

    log = read_metrics(run.metrics_path)
    returns = log.values["episode_return"]
    plot = plot_curves(
        {"DQN": (log.steps, returns)}, run.plot_path("episode_return"), xlabel="env steps per seed",
        ylabel="episode return", title=f"DQN on {config.env} ({config.num_seeds} seeds, 95% CI)",
    )
    tail = returns[:, -config.final_updates:]
    has_value = np.isfinite(tail).any(axis=1)
    final = [float(np.nanmean(row)) if ok else None for row, ok in zip(tail, has_value)]
    finite = [f for f in final if f is not None]
    summary = {
        "env": config.env,
        "num_seeds": config.num_seeds,
        "env_steps_per_seed": int(log.steps[-1]),
        "final_window_env_steps": config.final_updates * config.dqn.steps_per_update,
        "final_return_per_seed": final,
        "final_return_mean": float(np.mean(finite)) if finite else None,
        "wall_seconds_this_call": round(wall, 1),
    }
    write_json(run.path / "summary.json", summary)

    shown = ", ".join("n/a" if f is None else f"{f:.1f}" for f in final)
    mean = "n/a" if summary["final_return_mean"] is None else f"{summary['final_return_mean']:.1f}"
    print(f"DQN on {config.env}: final return per seed (last {summary['final_window_env_steps']} steps): {shown}")
    print(f"mean over seeds: {mean}; {summary['env_steps_per_seed']} env steps per seed; {wall:.1f} s")
    print(f"plot: {plot}")
    print(f"run directory: {run.path}")
    return run.path


if __name__ == "__main__":
    main()
