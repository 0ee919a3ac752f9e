"""PPO training speed: our ``make_train`` against a PureJaxRL-design reference, same process.

Both train PPO on gymnax CartPole-v1 with PureJaxRL's default config (4 envs x 128 steps,
4 epochs, 4 minibatches, lr 2.5e-4 annealed) for every seed count in ``num_seeds``, each
as one ``jax.jit(jax.vmap(train))`` over seeds. Each function is compiled ahead of time
(``lower(...).compile()``, the reported compile time) and then timed over ``repeats``
calls; the best call gives env steps/s (all seeds together; a row's ratio is also the ratio
of wall times). The reference is :mod:`experiments.bench_ref.purejaxrl_ppo`.

Steps per seed are ``min(total_timesteps, max_total_steps // seeds)`` rounded down to whole
rollouts (at least one), so large seed counts stay affordable on a CPU; each row's case
says what was used.

The whole-process case (:func:`whole_process`) times ``python -m experiments.ppo`` against
``python -m experiments.bench_ref.purejaxrl_ppo`` as fresh interpreters doing the same
training: start-up, imports, compilation, training and (ours) the run directory,
``metrics.jsonl``, checkpoint, plot and summary.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

import envs
from experiments.bench_ref import purejaxrl_ppo
from experiments.benchmarks.report import compared, row
from experiments.benchmarks.timing import time_jitted
from jaxrl_icl.config import ConfigError, field, require_nonnegative, require_positive
from jaxrl_icl.rl.ppo import PPOConfig, make_train

SUITE = "ppo"
ENV = "gymnax:CartPole-v1"


@dataclasses.dataclass(frozen=True)
class PPOBenchConfig:
    """PPO steps/s on CartPole-v1: ours vs the PureJaxRL-design reference."""

    num_seeds: tuple[int, ...] = field((1, 16, 256), help="seed counts to time (vmapped)")
    total_timesteps: int = field(100_000, help="env steps per seed (at most)")
    max_total_steps: int = field(
        2_000_000, help="cap on env steps per call over all seeds (per-seed steps shrink for many seeds)"
    )
    repeats: int = field(2, help="timed calls per implementation and seed count; the best is kept")
    seed: int = 0
    whole_seeds: int = field(4, help="seeds of the whole-process case (0: skip it)")
    whole_timesteps: int = field(100_000, help="env steps per seed of the whole-process case")
    whole_repeats: int = field(1, help="runs of each script in the whole-process case, alternating; median kept")

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "max_total_steps", "repeats", "whole_timesteps", "whole_repeats"):
            require_positive(self, name)
        require_nonnegative(self, "whole_seeds")
        if not self.num_seeds or min(self.num_seeds) < 1:
            raise ConfigError("num_seeds", f"must be a non-empty tuple of positive ints, got {self.num_seeds}")
        batch = PPOConfig().batch_size
        if self.total_timesteps < batch:
            raise ConfigError("total_timesteps",
                              f"must be at least one rollout ({batch} steps), got {self.total_timesteps}")


def steps_per_seed(cfg: PPOBenchConfig, seeds: int) -> int:
    """Env steps per seed used for ``seeds`` seeds: whole rollouts, at least one."""
    batch = PPOConfig().batch_size
    steps = min(cfg.total_timesteps, cfg.max_total_steps // seeds)
    return max(batch, steps // batch * batch)


def _reference_config(ppo: PPOConfig) -> dict:
    return {
        "ENV_NAME": "CartPole-v1", "NUM_ENVS": ppo.num_envs, "NUM_STEPS": ppo.num_steps,
        "TOTAL_TIMESTEPS": ppo.total_timesteps, "UPDATE_EPOCHS": ppo.update_epochs,
        "NUM_MINIBATCHES": ppo.num_minibatches, "LR": ppo.lr, "ANNEAL_LR": ppo.anneal_lr,
        "GAMMA": ppo.gamma, "GAE_LAMBDA": ppo.gae_lambda, "CLIP_EPS": ppo.clip_eps,
        "ENT_COEF": ppo.ent_coef, "VF_COEF": ppo.vf_coef, "MAX_GRAD_NORM": ppo.max_grad_norm,
    }


def measure(cfg: PPOBenchConfig, seeds: int) -> list[dict]:
    """Time ours and the reference for ``seeds`` vmapped seeds: an env steps/s row and a compile row."""
    ppo = PPOConfig(total_timesteps=steps_per_seed(cfg, seeds))
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), seeds)
    env, env_params = envs.make(ENV)
    ours = jax.vmap(make_train(ppo, env, env_params), in_axes=(0, None))
    reference = jax.vmap(purejaxrl_ppo.make_train(_reference_config(ppo)))
    ours_s, ours_compile = time_jitted(ours, (keys, env_params), cfg.repeats)
    ref_s, ref_compile = time_jitted(reference, (keys,), cfg.repeats)
    per_seed = ppo.num_updates * ppo.batch_size  # env steps actually taken per seed
    case = f"{seeds} seeds x {per_seed:,} steps"
    return [row(SUITE, f"{case}: training (best of {cfg.repeats})", seeds * per_seed / ours_s,
                seeds * per_seed / ref_s, "steps/s"),
            row(SUITE, f"{case}: compile", ours_compile, ref_compile, "s", lower_is_better=True)]


def run(cfg: PPOBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`) of every case, the reference being the
    PureJaxRL design: per seed count, training env steps/s over all seeds and compile seconds."""
    rows = []
    for seeds in cfg.num_seeds:
        rows += measure(cfg, seeds)
    if cfg.whole_seeds:
        rows.append(whole_process(cfg))
    return rows


def _wall_seconds(argv: list[str]) -> float:
    """Wall seconds of ``python <argv>`` in a fresh interpreter; RuntimeError with its stderr if it fails."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"python {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def whole_process(cfg: PPOBenchConfig) -> dict:
    """A row of whole-process wall seconds: ``python -m experiments.ppo`` (into a temporary run
    directory) against the PureJaxRL-design script, ``whole_seeds`` seeds x ``whole_timesteps``
    steps each, the two run alternately ``whole_repeats`` times (medians)."""
    seeds, steps = str(cfg.whole_seeds), str(cfg.whole_timesteps)
    reference = ["-m", "experiments.bench_ref.purejaxrl_ppo", "--num-seeds", seeds, "--total-timesteps", steps,
                 "--seed", str(cfg.seed)]
    ours_s, ref_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(cfg.whole_repeats):
            ref_s.append(_wall_seconds(reference))
            ours_s.append(_wall_seconds([
                "-m", "experiments.ppo", "--num-seeds", seeds, "--ppo.total-timesteps", steps,
                "--seed", str(cfg.seed), "--no-progress", "--run-dir", str(Path(tmp) / f"run{i}"),
            ]))
    case = f"whole process, {cfg.whole_seeds} seeds x {cfg.whole_timesteps:,} steps (median of {cfg.whole_repeats})"
    return row(SUITE, case, statistics.median(ours_s), statistics.median(ref_s), "s", lower_is_better=True)


def plot(rows: list[dict], path) -> None:
    """Bars of env steps/s for ours and the reference at each seed count (log axis)."""
    from jaxrl_icl.run.plots import plot_paired_bars

    plot_paired_bars(compared(rows, "steps/s"), ("ours", "reference"), path,
                     ylabel="env steps / s (all seeds, compile excluded)",
                     title="PPO on CartPole-v1: ours vs PureJaxRL design")
