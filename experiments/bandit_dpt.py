"""DPT on the 5-arm Gaussian bandit: regret online and offline against the classic baselines.

``python -m experiments.bandit_dpt [--scale paper] [--num-instances 200] [--run-dir DIR]``

DPT is pretrained on contexts of ``horizon`` pulls from random behaviour policies
(:func:`jaxrl_icl.icl.dpt.bandit_batch`; arm means ~ U(0, 1), noise 0.3), then, on the
same ``num_instances`` new bandits as the baselines, without weight updates:

* online: it plays ``horizon`` pulls, sampling from its predicted optimal-arm
  distribution with its own pulls as context; cumulative regret against UCB (c = 1),
  Thompson sampling (Gaussian) and empirical-mean greedy, run by
  :func:`jaxrl_icl.rl.bandit_algorithms.run_bandit` on the same tasks;
* offline: given the first ``n`` pulls of a random-behaviour dataset, it names one arm
  (argmax); its suboptimality ``max(means) - means[arm]`` for every ``n`` against the
  empirical-mean choice on the same data.

Writes ``config.json``, ``metrics.jsonl``, checkpoints (``--resume``), ``online_regret.png``,
``offline_suboptimality.png``, ``loss.png`` and ``summary.json``. The CPU default uses horizon 100
(pretraining attention is quadratic in it); ``--scale paper`` trains at the paper's 500.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

import envs
from experiments.bandits import BanditsConfig, algorithms
from jaxrl_icl.config import field, require_nonnegative, require_positive
from jaxrl_icl.icl import dpt
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import evaluate
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl.bandit_algorithms import run_bandit
from jaxrl_icl.run.config import parse_cli, with_scale
from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.models import load_trained_params, train_one_model
from jaxrl_icl.run.plots import plot_curves, plot_training_loss
from jaxrl_icl.run.rundir import RunDir, open_run, write_json
from jaxrl_icl.stats import confidence_band

PROG = "python -m experiments.bandit_dpt"
NUM_ARMS = 5
PRESETS = {"paper": ["--dpt.context-len", "500", "--optim.num-updates", "50000", "--optim.batch-size", "64",
                     "--optim.lr", "1e-4", "--optim.warmup-updates", "1000"]}


@dataclasses.dataclass(frozen=True)
class BanditDPTConfig:
    """DPT vs UCB, Thompson and empirical mean on 5-arm Gaussian bandits (horizon = dpt.context_len)."""

    scale: Literal["cpu", "paper"] = field("cpu", help="size preset: cpu (a few minutes) or paper (for a GPU); "
                                           "other flags override it")
    seed: int = field(0, help="seed of pretraining and evaluation")
    num_instances: int = field(200, help="test bandits (paper: 200)")
    chunk_updates: int = field(100, help="updates per jitted chunk (progress, logging)")
    checkpoint_every_chunks: int = field(5, help="checkpoint every this many chunks")
    dpt: dpt.DPTConfig = dpt.DPTConfig(context_len=100)
    # Small batches, many updates: the CPU trade-off measured in experiments.darkroom_dpt.
    optim: OptimConfig = OptimConfig(num_updates=4000, batch_size=16, lr=1e-3, warmup_updates=100)

    def __post_init__(self) -> None:
        for name in ("num_instances", "chunk_updates", "checkpoint_every_chunks"):
            require_positive(self, name)
        require_nonnegative(self, "seed")


def online_regret(config: BanditDPTConfig, params, env, tasks) -> dict[str, np.ndarray]:
    """Label -> cumulative regret ``[num_instances, horizon]`` of DPT and the baselines."""
    horizon = config.dpt.context_len
    model = dpt.make_model(config.dpt, 0, NUM_ARMS)
    key = jax.random.key(config.seed + 1)
    agent = dpt.make_agent(model, NUM_ARMS, dpt.no_state, greedy=False)
    out = jax.jit(lambda p: evaluate(env, tasks, agent, p, key, num_steps=horizon))(params)
    gap = tasks.means.max(axis=-1, keepdims=True) - jnp.take_along_axis(tasks.means, out["action"][:, 0], axis=-1)
    regret = {"DPT (online)": np.asarray(jnp.cumsum(gap, axis=-1))}
    keys = jax.random.split(jax.random.fold_in(key, 1), config.num_instances)
    baselines = algorithms(BanditsConfig(), env.noise_std)
    for label, algo in baselines.items():
        if label.startswith("epsilon"):
            continue
        play = jax.jit(jax.vmap(lambda k, p, algo=algo: run_bandit(algo, k, env, p, horizon)[2]))
        regret[label] = np.asarray(play(keys, tasks))
    return regret


def offline_suboptimality(config: BanditDPTConfig, params, env, tasks) -> dict[str, np.ndarray]:
    """Label -> ``[num_instances, horizon + 1]`` suboptimality of the arm chosen after 0..horizon pulls."""
    n = config.dpt.context_len
    model = dpt.make_model(config.dpt, 0, NUM_ARMS)
    means = tasks.means
    context, query, _ = dpt.bandit_batch(jax.random.key(config.seed + 2), NUM_ARMS, float(env.noise_std), n,
                                         config.num_instances, means=means)
    queries = jnp.broadcast_to(query[:, None], (query.shape[0], n + 1, query.shape[-1]))
    _, logits = jax.jit(lambda p: tr.apply_queries(model, p, context, queries))(params)
    dpt_arm = jnp.argmax(logits, axis=-1)  # [I, n + 1]
    actions, rewards = jnp.argmax(context[..., :NUM_ARMS], -1), context[..., NUM_ARMS]
    onehot = jax.nn.one_hot(actions, NUM_ARMS)
    counts = jnp.concatenate([jnp.zeros((actions.shape[0], 1, NUM_ARMS)), jnp.cumsum(onehot, 1)], 1)
    sums = jnp.concatenate([jnp.zeros((actions.shape[0], 1, NUM_ARMS)), jnp.cumsum(onehot * rewards[..., None], 1)], 1)
    empirical = jnp.where(counts > 0, sums / jnp.maximum(counts, 1), -jnp.inf)
    greedy_arm = jnp.argmax(empirical, axis=-1)  # arm 0 when nothing was pulled
    best = means.max(-1, keepdims=True)
    return {"DPT (offline)": np.asarray(best - jnp.take_along_axis(means, dpt_arm, -1)),
            "empirical mean": np.asarray(best - jnp.take_along_axis(means, greedy_arm, -1))}


def evaluation_tasks(config: BanditDPTConfig):
    """``(env, tasks)``: the Gaussian bandit with horizon ``dpt.context_len`` and
    ``num_instances`` bandits drawn from ``config.seed`` (leading axis of ``tasks``)."""
    env, base = envs.make("bandit-gaussian", max_steps_in_episode=config.dpt.context_len)
    task_keys = jax.random.split(jax.random.key(config.seed + 3), config.num_instances)
    return env, jax.vmap(lambda k: env.sample_params(k, base))(task_keys)


def load_trained(run_dir) -> tuple[BanditDPTConfig, tr.TransformerConfig, Any]:
    """``(config, model, params)`` of a run of this experiment (its ``config.json`` and newest
    checkpoint), e.g. for ``dpt.make_agent(model, NUM_ARMS, dpt.no_state, greedy=False)``."""
    run, config = RunDir.open(run_dir, BanditDPTConfig)
    model = dpt.make_model(config.dpt, 0, NUM_ARMS)
    return config, model, load_trained_params(run.checkpoints, config.optim, lambda k: tr.init(model, k))[1]


def main(argv: list[str] | None = None):
    argv = with_scale(argv, PRESETS)
    config, options = parse_cli(BanditDPTConfig, argv, prog=PROG)
    horizon = config.dpt.context_len
    env, tasks = evaluation_tasks(config)
    model = dpt.make_model(config.dpt, 0, NUM_ARMS)
    trainer = dpt.make_train(
        config.dpt, config.optim, model,
        lambda key, b: dpt.bandit_batch(key, NUM_ARMS, float(env.noise_std), horizon, b),
    )
    run = open_run("bandit_dpt", config, options, resumable=True)
    print(f"run directory: {run.path}  (scale: {config.scale})", file=sys.stderr)
    params = train_one_model(trainer, config.seed, run, options, chunk_updates=config.chunk_updates,
                             checkpoint_every_chunks=config.checkpoint_every_chunks)
    regret = online_regret(config, params, env, tasks)
    offline = offline_suboptimality(config, params, env, tasks)

    t = np.arange(1, horizon + 1)
    plot_curves({label: (t, r) for label, r in regret.items()}, run.plot_path("online_regret"),
                xlabel="t (pulls)", ylabel="cumulative regret",
                title=f"Online, {config.num_instances} Gaussian bandits (5 arms, noise 0.3), 95% bands")
    plot_curves({label: (np.arange(horizon + 1), s) for label, s in offline.items()},
                run.plot_path("offline_suboptimality"), xlabel="pulls in the offline dataset",
                ylabel="suboptimality of the chosen arm",
                title=f"Offline (random-behaviour data), {config.num_instances} bandits, 95% bands")
    log = read_metrics(run.metrics_path)
    plot_training_loss(log.updates, log.values["loss"], run.plot_path("loss"),
                       "DPT pretraining loss (best arm, every prefix)")
    summary = {"scale": config.scale, "horizon": horizon, "num_instances": config.num_instances,
               "online_regret_at_horizon": {}, "offline_suboptimality_at_horizon": {}}
    for label, r in regret.items():
        mean, low, high = confidence_band(r[:, -1:])
        summary["online_regret_at_horizon"][label] = {"mean": float(mean[0]), "ci95": [float(low[0]), float(high[0])]}
    for label, s in offline.items():
        summary["offline_suboptimality_at_horizon"][label] = float(s[:, -1].mean())
    write_json(run.path / "summary.json", summary)
    print(f"cumulative regret at t={horizon} over {config.num_instances} bandits (95% CI):")
    for label, row in summary["online_regret_at_horizon"].items():
        print(f"  {label:<22} {row['mean']:7.2f}  ({row['ci95'][0]:.2f}, {row['ci95'][1]:.2f})")
    print(f"offline suboptimality after {horizon} random pulls:")
    for label, value in summary["offline_suboptimality_at_horizon"].items():
        print(f"  {label:<22} {value:7.3f}")
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
