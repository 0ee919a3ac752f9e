"""DPT on Dark Room 10x10 at the paper's size, for a GPU: its returns against the exact posterior
and the paper.

The ``--scale paper`` run of :mod:`experiments.darkroom_dpt` (100,000 pretraining updates at
batch 128, warmup 2000, x-first labels; Lee et al. 2023), trained in one jitted call, then
evaluated by :func:`experiments.darkroom_dpt.evaluate_dpt` on the 20 held-out goals x
``trials``. Rows (ratio > 1: DPT above its reference):

* online return in the last of ``online_episodes`` episodes, in both protocols (the previous
  episode as the context, as the paper's code; every transition into the context), against the
  exact posterior policy (:mod:`jaxrl_icl.icl.posterior`: DPT's limit with unlimited
  pretraining) under the same protocol and environment randomness;
* offline return from a random context against the paper's 61.5 (``REFERENCES.md``), and from
  an expert context against the optimum;
* the last 1000 updates' pretraining loss against the exact posterior's (the floor);
* pretraining and evaluation seconds (no reference).

On a CPU the suite is skipped: an update at the paper's size took 2-5 s on a loaded 2-core CPU,
so 100,000 would take days (``--allow-cpu`` runs it anyway, e.g. at toy sizes in the tests).
Sized for one H100, estimated (not yet measured on a GPU) from XLA's cost analysis of one
update on the CPU: 13 GFLOP and at most 6.5 GB of memory traffic, about 2 ms at an H100's
3.35 TB/s, so at most about 3.5 minutes for 100,000 updates, plus compilation and the
evaluation (well under a minute: 4000 sequential steps per online protocol); the rows report
the measured times.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.darkroom import dpt_goal_split, optimal_return
from experiments.benchmarks.report import Skipped, row
from experiments.darkroom_dpt import PAPER_RANDOM_CONTEXT_RETURN, PRESETS, DarkroomDPTConfig, evaluate_dpt
from jaxrl_icl.config import field, require_nonnegative, require_positive
from jaxrl_icl.icl import dpt, posterior
from jaxrl_icl.run.config import parse_cli, with_scale

SUITE = "dpt-paper"
LOSS_WINDOW = 1000  # the final loss is the mean over this many last updates (all if fewer)


@dataclasses.dataclass(frozen=True)
class DPTPaperBenchConfig:
    """DPT on Dark Room at the paper's 100k updates: online vs the exact posterior, offline vs the paper (GPU)."""

    num_updates: int = field(100_000, help="pretraining updates (the paper's 100k)")
    batch_size: int = field(128, help="pretraining batch (the paper preset's)")
    trials: int = field(20, help="evaluation runs per held-out goal (the paper's 20)")
    online_episodes: int = field(40, help="episodes of online evaluation (the paper's 40)")
    allow_cpu: bool = field(False, help="run on a CPU too (hours at the paper's size; tests use toy sizes)")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_updates", "batch_size", "trials", "online_episodes"):
            require_positive(self, name)
        require_nonnegative(self, "seed")

    def experiment_config(self) -> DarkroomDPTConfig:
        """:mod:`experiments.darkroom_dpt`'s ``--scale paper`` config with this suite's sizes."""
        flags = ["--scale", "paper", "--optim.num-updates", str(self.num_updates), "--optim.batch-size",
                 str(self.batch_size), "--trials", str(self.trials), "--online-episodes", str(self.online_episodes),
                 "--seed", str(self.seed)]
        return parse_cli(DarkroomDPTConfig, with_scale(flags, PRESETS))[0]


def pretrain(config: DarkroomDPTConfig):
    """``(params, losses [num_updates], compile seconds, training seconds)``: the whole
    pretraining as one jitted call, compiled ahead of time."""
    env, _ = envs.make("darkroom-10x10")
    train_goals, _ = dpt_goal_split()
    model = dpt.make_model(config.dpt, 2, 5)
    trainer = dpt.make_train(config.dpt, config.optim, model,
                             dpt.darkroom_batch_fn(config.dpt, train_goals, env.size, random_ties=config.random_ties))
    key = jax.random.key(config.seed)
    t0 = time.perf_counter()
    compiled = jax.jit(trainer).lower(key, None).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(key, None))
    return state.params, np.asarray(metrics["loss"]), compile_s, time.perf_counter() - t0


def run(cfg: DPTPaperBenchConfig) -> list[dict]:
    """Pretrain, evaluate and compare (see the module docstring); skipped on a CPU unless
    ``cfg.allow_cpu``."""
    if jax.default_backend() == "cpu" and not cfg.allow_cpu:
        raise Skipped("needs a GPU: the paper's 100,000 updates take days on a 2-core CPU (--allow-cpu, in "
                      "bench all --dpt-paper.allow-cpu, runs it anyway)")
    config = cfg.experiment_config()
    params, losses, compile_s, train_s = pretrain(config)
    env, _ = envs.make("darkroom-10x10")
    train_goals, test_goals = dpt_goal_split()
    t0 = time.perf_counter()
    result = evaluate_dpt(config, params, test_goals)
    eval_s = time.perf_counter() - t0
    start = jnp.asarray(env.start, jnp.int32)
    optimum = float(jnp.mean(jax.vmap(lambda g: optimal_return(g, start, env.horizon))(test_goals)))
    floor, _ = posterior.loss_floor(jax.random.key(config.seed + 2), train_goals, env.size,
                                    config.dpt.context_len, random_ties=config.random_ties,
                                    rewarded_mix=config.dpt.rewarded_mix)
    last = f"online return in episode {cfg.online_episodes}"
    rows = [row(SUITE, f"{last}, previous episode as context (paper's code), vs the exact posterior",
                result["online_episodic"][:, -1].mean(), result["posterior_online_episodic"][:, -1].mean(), "return"),
            row(SUITE, f"{last}, every transition into the context, vs the exact posterior",
                result["online"][:, -1].mean(), result["posterior_online"][:, -1].mean(), "return"),
            row(SUITE, "offline return, random context, vs the paper's", result["offline_random"].mean(),
                PAPER_RANDOM_CONTEXT_RETURN, "return"),
            row(SUITE, "offline return, expert context, vs the optimum", result["offline_expert"].mean(), optimum,
                "return"),
            row(SUITE, f"pretraining loss (last {min(LOSS_WINDOW, losses.size)} updates) vs the exact posterior's",
                losses[-LOSS_WINDOW:].mean(), floor, "nats", lower_is_better=True),
            row(SUITE, f"pretraining, {cfg.num_updates:,} updates x {cfg.batch_size} (compile excluded)", train_s,
                None, "s"),
            row(SUITE, "pretraining: compile", compile_s, None, "s"),
            row(SUITE, f"evaluation, {test_goals.shape[0]} goals x {cfg.trials} trials (compile included)", eval_s,
                None, "s")]
    return rows


def plot(rows: list[dict], path) -> None:
    """Bars of DPT's returns beside their references (the exact posterior, the paper, the optimum)."""
    from jaxrl_icl.run.plots import plot_bars

    values = {}
    for r in rows:
        if r["unit"] == "return":
            case, reference = r["case"].split(", vs ")
            values[f"DPT, {case}"] = r["ours"]
            values[f"{reference}, {case}"] = r["reference"]
    plot_bars(values, path, ylabel="return (held-out goals)", title="DPT on Dark Room 10x10 at the paper's size",
              figsize=(9.0, 5.0))
