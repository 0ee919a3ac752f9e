"""Algorithm Distillation on Dark Room 9x9: ``python -m experiments.darkroom_ad [--scale paper]``.

1. Learning histories: tabular Q-learning on every one of the 81 goals
   (:func:`jaxrl_icl.rl.collect.collect_histories`, ``histories_per_goal`` independent runs
   per goal), saved as ``histories.h5`` in the run directory; or ``--histories PATH`` to
   distil an existing file (checked against the env on load).
2. Goal split: a fixed permutation of the 81 goals (``np.random.RandomState(split_seed)``);
   the first ``num_train_goals`` (65) train, the other 16 are held out. AD trains only on
   the histories of training goals, in jitted chunks with checkpoints (``--resume DIR``).
3. In-context evaluation on the held-out goals: ``eval_episodes`` episodes x ``eval_seeds``
   seeds per goal, one jitted ``vmap`` over goals and seeds, no weight updates.

Writes ``runs/darkroom_ad/<timestamp>/``: ``config.json``, ``versions.json``,
``metrics.jsonl``, checkpoints, ``returns.png`` (mean return per episode with a 95% band:
AD in context vs the source Q-learning's own learning curve on the same goals, and the
optimum), ``loss.png`` and ``summary.json``. ``--scale paper`` sets the paper-sized run
(:data:`PAPER_FLAGS`: 3 tokens per step, width 512, 4 layers, 4 heads, lr 3e-4, 100k updates,
10 Q-learning runs per goal; meant for a GPU); flags given after it override it.

The CPU default is the strong baseline that the T2MIR comparisons use: 18,000 updates of
batch 16 at lr 2e-3, about 9 minutes of training on 2 idle cores (34 updates/s), with 5
Q-learning histories per goal. Measured on the 16 held-out goals x 8 rollouts (2-core CPU,
one training seed): held-out return 0.54 at episode 1, 8.72 at 25, 12.19 at 50 and 13.92 at
100 (82% of the optimum 16.94; mean of the last 10 episodes 13.75), against the source
Q-learning's own 0.24 / 7.62 / 11.85 / 14.69 on the same goals: AD runs the source's learning
curve in context, ending 0.8 below it (it samples its actions, as the epsilon-greedy source
did). At the same wall time, batch 32 at lr 1e-3 (8,450 updates) ended at 13.50 (last 10:
13.29); the old default (3,000 updates of batch 32, about 3 minutes) at 12.7. On this CPU an
update's cost is proportional to its sequences (batch 16 and 32 cost the same per sequence),
so the budget buys most as many small updates.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Literal

import jax
import numpy as np

import envs
from envs.darkroom import all_goals, optimal_return
from jaxrl_icl.config import ConfigError, field, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.icl import TransformerConfig, ad, lhf
from jaxrl_icl.icl.evaluate import episode_returns, held_out_evaluation
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl.collect import CollectConfig, collect_histories
from jaxrl_icl.rl.histories import save_histories
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.run.config import cli_error, parse_cli, with_scale
from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.models import load_trained_params, train_one_model
from jaxrl_icl.run.plots import plot_curves, plot_training_loss
from jaxrl_icl.run.rundir import RunDir, open_run, write_json

PROG = "python -m experiments.darkroom_ad"
ENV = "darkroom-9x9"
NUM_GOALS = 81

# The strong CPU baseline (module docstring): about 9 minutes of training on 2 idle cores.
# experiments.t2mir's AD uses it too.
AD_OPTIM = OptimConfig(num_updates=18000, batch_size=16, lr=2e-3, warmup_updates=100)

# The paper-sized run (REFERENCES.md: public AD reimplementations use 3 tokens per step,
# hidden 512, 4 layers, 4 heads, lr 3e-4, 300k updates); put before the user's flags, so
# those override it.
PAPER_FLAGS = (
    "--ad.layout", "triplet", "--ad.backbone.width", "512", "--ad.backbone.num-layers", "4",
    "--ad.backbone.num-heads", "4", "--ad.backbone.dropout", "0.1", "--optim.lr", "3e-4",
    "--optim.num-updates", "100000", "--optim.batch-size", "128",
    "--optim.warmup-updates", "2000", "--optim.bf16", "--histories-per-goal", "10",
    "--chunk-updates", "1000", "--eval-seeds", "16",
)


@dataclasses.dataclass(frozen=True)
class DarkroomADConfig:
    """Algorithm Distillation on Dark Room 9x9 from Q-learning histories, evaluated on held-out goals."""

    scale: Literal["cpu", "paper"] = field("cpu", help="size preset: cpu (a few minutes) or paper (for a "
                                           "GPU); other flags override it")
    histories: str = field("", help="histories.h5 to distil (experiments.collect_histories); "
                           "empty: collect Q-learning histories into the run directory")
    # Held-out return at episode 100 (CPU): one history per goal 9.3 (1500 updates) or 10.9 (3000,
    # dropout 0.1); five per goal 12.7 (3000 updates); ten 11.0 (3000 updates).
    histories_per_goal: int = field(5, help="independent Q-learning runs per goal when collecting")
    seed: int = field(0, help="seed of collection (run i uses seed + i), training and evaluation")
    split_seed: int = field(0, help="goals are permuted by np.random.RandomState(split_seed)")
    num_train_goals: int = field(65, help="the first goals of the permutation train, the rest are held out")
    eval_episodes: int = field(100, help="in-context evaluation episodes per held-out goal and seed "
                               "(the source histories' length, so the curves compare throughout)")
    eval_seeds: int = field(8, help="evaluation rollouts per held-out goal")
    chunk_updates: int = field(100, help="updates per jitted chunk (progress, logging)")
    checkpoint_every_chunks: int = field(5, help="checkpoint every this many chunks")
    ad: ad.ADConfig = ad.ADConfig(obs_scale=0.125)
    lhf: lhf.LHFConfig = lhf.LHFConfig()
    optim: OptimConfig = AD_OPTIM  # the strong baseline of the module docstring
    q_learning: QLearningConfig = QLearningConfig(
        num_episodes=100, lr=1.0, epsilon_decay_episodes=25, record_history=True
    )

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("histories_per_goal", "eval_episodes", "eval_seeds", "chunk_updates",
                     "checkpoint_every_chunks"):
            require_positive(self, name)
        require_nonnegative(self, "split_seed")
        require_in(self, "num_train_goals", 1, NUM_GOALS - 1)
        if not self.q_learning.record_history:
            raise ConfigError("q_learning.record_history", "must be true to collect histories")


def goal_split(split_seed: int, num_train: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train int32[num_train, 2], held_out int32[81 - num_train, 2])`` goals: a permutation
    of :func:`envs.darkroom.all_goals` by ``np.random.RandomState(split_seed)``."""
    goals = np.asarray(all_goals(9))[np.random.RandomState(split_seed).permutation(NUM_GOALS)]
    return goals[:num_train], goals[num_train:]


def collect(config: DarkroomADConfig, path) -> None:
    """Q-learning histories on all 81 goals, ``histories_per_goal`` runs each, saved at ``path``."""
    parts, meta = [], None
    for i in range(config.histories_per_goal):
        collect_config = CollectConfig(env=ENV, algo="q_learning", seed=config.seed + i, summary_episodes=1,
                                       q_learning=config.q_learning)
        histories, meta, _, _ = collect_histories(collect_config)
        parts.append((histories, meta["params"]))
    keys = parts[0][0].keys()
    histories = {k: np.concatenate([h[k] for h, _ in parts]) for k in keys}
    params = {k: np.concatenate([p[k] for _, p in parts]) for k in parts[0][1]}
    save_histories(path, histories, {**meta, "params": params})


def _load(path, env, env_params, config: DarkroomADConfig):
    histories, meta = ad.load_ad_histories(path, ENV, env, env_params, config.ad)
    if "goal" not in meta["params"]:
        raise ValueError(f"{path}: no params/goal: cannot tell which goal each history belongs to")
    return histories, np.asarray(meta["params"]["goal"])


def belongs(goal: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """bool ``[N]``: whether each row of ``goal [N, 2]`` is one of ``goals [G, 2]``."""
    return np.any(np.all(goal[:, None, :] == goals[None, :, :], axis=-1), axis=1)


def source_returns(histories: dict[str, np.ndarray], horizon: int) -> np.ndarray:
    """Per-episode returns ``[N, T // horizon]`` of histories made of whole ``horizon``-step episodes."""
    done = histories["terminated"] | histories["truncated"]
    steps = (done.shape[1] // horizon) * horizon
    return episode_returns(histories["reward"][:, :steps].astype(np.float64), done[:, :steps], horizon)


def select_training_histories(config: DarkroomADConfig, histories: dict[str, np.ndarray], goal: np.ndarray,
                              start: np.ndarray, horizon: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Learning-history filtering (``config.lhf``, :func:`jaxrl_icl.icl.lhf.select_histories`) of
    the training histories by their per-episode returns against each goal's optimal return."""
    if config.lhf.method == "none":
        return histories, None
    r_max = np.asarray([optimal_return(g, start, horizon) for g in goal], np.float32)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    return lhf.select_histories(config.lhf, key, histories, goal, source_returns(histories, horizon), r_max)


def evaluate_ad(config: DarkroomADConfig, model: TransformerConfig, params: Any, goals: np.ndarray) -> np.ndarray:
    """In-context returns ``[goals, eval_seeds, eval_episodes]`` of one trained model on
    ``goals int32[N, 2]``: :func:`held_out_evaluation` unreduced, keys from ``config.seed``."""
    env, base = envs.make(ENV)
    tasks = jax.vmap(lambda g: base.replace(goal=g))(jax.numpy.asarray(goals))
    returns = held_out_evaluation(ad.make_agent(config.ad, model), env, tasks, eval_episodes=config.eval_episodes,
                                  eval_seeds=config.eval_seeds, seed=config.seed, per_rollout=True)
    return returns(jax.tree.map(lambda x: x[None], params))[0]


def load_trained(run_dir) -> tuple[DarkroomADConfig, TransformerConfig, Any]:
    """``(config, model, params)`` of a run of this experiment (its ``config.json`` and newest
    checkpoint), e.g. for ``ad.make_agent(config.ad, model)``."""
    run, config = RunDir.open(run_dir, DarkroomADConfig)
    env, base = envs.make(ENV)
    model = ad.make_model(config.ad, int(np.prod(env.observation_space(base).shape)), env.num_actions, env.horizon)
    return config, model, load_trained_params(run.checkpoints, config.optim, lambda k: ad.init_params(model, k))[1]


def main(argv: list[str] | None = None) -> RunDir:
    argv = with_scale(argv, {"paper": list(PAPER_FLAGS)})
    config, options = parse_cli(DarkroomADConfig, argv, prog=PROG)
    env, base = envs.make(ENV)
    train_goals, test_goals = goal_split(config.split_seed, config.num_train_goals)
    if config.histories:
        try:
            histories, goal = _load(config.histories, env, base, config)
        except (OSError, ValueError) as err:
            cli_error(PROG, f"argument --histories: {err}")
    run = open_run("darkroom_ad", config, options, resumable=True)
    print(f"run directory: {run.path}", file=sys.stderr)
    if not config.histories:
        path = run.path / "histories.h5"
        if not (options.resume is not None and path.is_file()):
            collect(config, path)
        histories, goal = _load(path, env, base, config)

    train_rows = belongs(goal, train_goals)
    if not train_rows.any():
        raise ValueError(f"{config.histories or run.path / 'histories.h5'}: no history of a training goal")
    start = np.asarray(env.start, np.int32)
    train, weights = select_training_histories(config, {k: v[train_rows] for k, v in histories.items()},
                                               goal[train_rows], start, env.horizon)
    data = ad.ad_data(train, env.num_actions, weights)
    obs_dim = data.obs.shape[-1]
    trainer = ad.make_train(config.ad, config.optim, obs_dim, env.num_actions, env.horizon)
    params = train_one_model(trainer, config.seed, run, options, chunk_updates=config.chunk_updates,
                             checkpoint_every_chunks=config.checkpoint_every_chunks, data=data)

    model = ad.make_model(config.ad, obs_dim, env.num_actions, env.horizon)
    ad_rows = evaluate_ad(config, model, params, test_goals).reshape(-1, config.eval_episodes)

    source = source_returns(histories, env.horizon)[belongs(goal, test_goals), : config.eval_episodes]
    optimum = float(np.mean([optimal_return(g, start, env.horizon) for g in test_goals]))
    episodes = np.arange(1, config.eval_episodes + 1)
    curves = {f"AD in context ({len(test_goals)} held-out goals x {config.eval_seeds} seeds)": (episodes, ad_rows)}
    if source.shape[0]:
        curves[f"Q-learning, source ({source.shape[0]} histories, same goals)"] = (
            np.arange(1, source.shape[1] + 1), source)
    plot_curves(curves, run.plot_path("returns"), xlabel="episode", ylabel="return",
                title=f"Algorithm Distillation on {ENV}: held-out goals",
                hlines={f"optimal ({optimum:.2f})": optimum})
    log = read_metrics(run.metrics_path)
    plot_training_loss(log.updates, log.values["loss"], run.plot_path("loss"), "AD training loss (next action)")

    mean_curve = ad_rows.mean(axis=0)
    last_chunk = slice(-min(config.chunk_updates, log.updates.size), None)
    summary = {
        "env": ENV,
        "num_train_goals": int(len(train_goals)),
        "num_held_out_goals": int(len(test_goals)),
        "num_train_histories": int(train_rows.sum()),
        "history_steps": int(histories["reward"].shape[1]),
        "eval_episodes": config.eval_episodes,
        "eval_seeds": config.eval_seeds,
        "first_episode_return": float(mean_curve[0]),
        "last_episode_return": float(mean_curve[-1]),
        "return_per_episode": [float(x) for x in mean_curve],
        "optimal_return": optimum,
        "last_percent_of_optimal": float(100 * mean_curve[-1] / optimum),
        "source_first_episode_return": float(source[:, 0].mean()) if source.size else None,
        "source_last_episode_return": float(source[:, -1].mean()) if source.size else None,
        "source_episodes": int(source.shape[1]),
        "train_loss_final": float(np.nanmean(log.values["loss"][0, last_chunk])),
        "train_accuracy_final": float(np.nanmean(log.values["accuracy"][0, last_chunk])),
    }
    write_json(run.path / "summary.json", summary)
    print(f"AD on {ENV}, {len(test_goals)} held-out goals: return {summary['first_episode_return']:.2f} "
          f"(episode 1) -> {summary['last_episode_return']:.2f} (episode {config.eval_episodes}); optimal "
          f"{optimum:.2f} ({summary['last_percent_of_optimal']:.0f}%); final train loss "
          f"{summary['train_loss_final']:.3f}")
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
