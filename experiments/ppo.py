"""PPO seed sweep: ``python -m experiments.ppo --env gymnax:CartPole-v1 --num-seeds 16``.

Trains PPO on every seed at once (one ``jax.vmap``, sharded over all devices), in jitted
chunks with a progress bar, writing ``runs/ppo/<timestamp>/``: ``config.json``,
``versions.json``, ``metrics.jsonl`` (one line per update and seed), orbax checkpoints
(``--resume DIR`` continues a stopped run bitwise), ``episode_return.png`` (mean over
seeds with a 95% band) and ``summary.json`` (final return per seed). PPO hyperparameters
are flags too: ``--ppo.lr 1e-3 --ppo.total-timesteps 1e6``.

The PPO defaults are PureJaxRL's CartPole settings. For ``--env brax:<name>`` the flags of
:data:`BRAX_FLAGS` come first (continuous control on a CPU budget: 4 seeds, 3e5 steps, 64
envs x 16 steps, observation and reward normalisation), and any flag given explicitly wins.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

import envs
from jaxrl_icl.config import field, require_nonnegative, require_positive
from jaxrl_icl.rl.ppo import PPOConfig, make_train
from jaxrl_icl.run.config import check_num_seeds, cli_error, flag_value, parse_cli
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import RunDir, open_run, write_json
from jaxrl_icl.run.sweep import init_distributed, seed_keys

PROG = "python -m experiments.ppo"
# Checkpoints cost little but not nothing (orbax writes a directory tree): at the defaults a
# CartPole run saves once, at the end; a long run at least every 10 minutes.
CHECKPOINT_EVERY_S = 600.0

# Defaults for Brax envs (put before the user's flags). With them brax:inverted_pendulum
# (default spring backend) goes from 12 to 567 +- 231 over 4 seeds in 3e5 steps, about a
# minute on 2 CPU cores; on the positional backend it reaches the 1000-step limit by 2e5.
BRAX_FLAGS = (
    "--num-seeds", "4", "--ppo.total-timesteps", "300000", "--ppo.num-envs", "64",
    "--ppo.num-steps", "16", "--ppo.num-minibatches", "16", "--ppo.lr", "3e-4", "--no-ppo.anneal-lr",
    "--ppo.ent-coef", "0.0", "--ppo.normalize-obs", "--ppo.normalize-reward",
)


@dataclasses.dataclass(frozen=True)
class PPOExperimentConfig:
    """PPO on one environment over many seeds."""

    env: str = field("gymnax:CartPole-v1", help="environment name for envs.make")
    num_seeds: int = field(16, help="seeds trained at once (vmapped)")
    seed: int = field(0, help="base seed; seed i uses split(PRNGKey(seed), num_seeds)[i]")
    chunk_updates: int = field(100, help="updates per jitted chunk (progress, logging)")
    checkpoint_every_chunks: int = field(
        10, help="checkpoint every this many chunks, after a chunk ending 10 minutes or more after the "
        "previous checkpoint, and at the end"
    )
    final_window: int = field(10, help="the final return is the mean over this many last updates")
    ppo: PPOConfig = PPOConfig()

    def __post_init__(self) -> None:
        for name in ("num_seeds", "chunk_updates", "checkpoint_every_chunks", "final_window"):
            require_positive(self, name)
        require_nonnegative(self, "seed")


def final_returns(returns: np.ndarray, window: int) -> np.ndarray:
    """Per-seed mean of the last ``window`` finite values of ``returns [num_seeds, T]``."""
    out = np.full(returns.shape[0], np.nan)
    for i, row in enumerate(returns):
        finite = row[np.isfinite(row)]
        if finite.size:
            out[i] = finite[-window:].mean()
    return out


def with_env_defaults(argv: list[str] | None) -> list[str]:
    """``argv`` with :data:`BRAX_FLAGS` in front when ``--env`` names a Brax env."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if (flag_value(argv, "--env") or "").startswith("brax:"):
        return [*BRAX_FLAGS, *argv]
    return argv


def carry_forward(returns: np.ndarray) -> np.ndarray:
    """``returns [num_seeds, T]`` with each NaN (an update in which no episode finished) replaced
    by the seed's last finished value; NaN until a seed's first finished episode."""
    finite = np.isfinite(returns)
    last = np.maximum.accumulate(np.where(finite, np.arange(returns.shape[1]), -1), axis=1)
    filled = np.take_along_axis(returns, np.maximum(last, 0), axis=1)
    return np.where(last >= 0, filled, np.nan)


def main(argv: list[str] | None = None) -> RunDir:
    config, options = parse_cli(PPOExperimentConfig, with_env_defaults(argv), prog=PROG)
    init_distributed()
    try:
        env, env_params = envs.make(config.env)
        trainer = make_train(config.ppo, env, env_params)  # checks the env fits PPO
    except ValueError as err:  # unknown env, or spaces PPO cannot handle (ConfigError)
        cli_error(PROG, f"argument --env: {config.env}: {err}")
    check_num_seeds(PROG, config.num_seeds)
    run = open_run("ppo", config, options, resumable=True)
    print(f"run directory: {run.path}", file=sys.stderr)

    train_in_chunks(
        trainer,
        seed_keys(config.seed, config.num_seeds),
        env_params,
        chunk_updates=config.chunk_updates,
        run=run,
        checkpoint_every_chunks=config.checkpoint_every_chunks,
        checkpoint_every_s=CHECKPOINT_EVERY_S,
        resume=options.resume is not None,
        progress=options.progress,
    )

    log = read_metrics(run.metrics_path)
    returns = log.values["episode_return"]
    plot_curves(
        {f"PPO ({config.num_seeds} seeds)": (log.steps, carry_forward(returns))},
        run.plot_path("episode_return"),
        xlabel="env steps per seed",
        ylabel="return of the last finished episode",
        title=f"PPO on {config.env}",
    )
    final = final_returns(returns, config.final_window)
    finished = final[np.isfinite(final)]  # seeds that finished an episode
    summary = {
        "env": config.env,
        "num_seeds": config.num_seeds,
        "env_steps_per_seed": int(log.steps[-1]),
        "final_return_mean": float(finished.mean()) if finished.size else None,
        "final_return_std": float(finished.std()) if finished.size else None,
        "final_return_per_seed": final.tolist(),  # NaN (no finished episode) is written as null
    }
    write_json(run.path / "summary.json", summary)
    steps = f"{summary['env_steps_per_seed']:,} steps per seed"
    if finished.size:
        seeds = f"{finished.size} seeds" if finished.size == config.num_seeds else (
            f"the {finished.size} of {config.num_seeds} seeds that finished an episode")
        print(
            f"PPO on {config.env}: final episode return {summary['final_return_mean']:.1f} "
            f"+- {summary['final_return_std']:.1f} (mean +- std over {seeds}, "
            f"last {config.final_window} updates, {steps})"
        )
    else:
        print(f"PPO on {config.env}: no episode finished on any of the {config.num_seeds} seeds in {steps}; "
              "summary.json has null returns")
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
