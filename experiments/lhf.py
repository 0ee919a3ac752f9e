"""Learning-history filtering (LHF) for Algorithm Distillation on Dark Room 9x9: ``python -m experiments.lhf``.

Does filtering the pretraining histories by how well they learn help AD in context, and
more so when the set holds histories that do not learn? Two history sets, three ways to use
each, ``num_seeds`` AD models per cell:

* ``clean``: ``histories_per_goal`` tabular Q-learning runs on each of the 81 goals
  (:func:`experiments.darkroom_ad.collect`, run ``i`` with seed ``seed + i``).
* ``noisy``: the clean set with ``round(noise_fraction * histories_per_goal)`` histories of
  every goal (3 of 10 by default, the paper's 30%) replaced by histories of a uniformly random
  policy on the same goal: the same Q-learning with epsilon fixed at 1 (:func:`random_policy`;
  its Q-table updates but never chooses an action), seeds after the clean runs'. Their returns
  stay flat at the random walk's level. :func:`noisy_set` builds it from the two arrays.
* Methods (:data:`METHODS`): ``none`` (every history, uniform sampling), ``reweight`` and
  ``filter`` (:mod:`jaxrl_icl.icl.lhf` through :func:`experiments.darkroom_ad.select_training_histories`:
  utility Improvement + ``lam`` x Stability of each history's per-episode returns against its
  goal's optimal return, compared within each goal; the filter is drawn once per set, so the
  seeds of a cell share it).

AD trains only on the 65 training goals of :func:`experiments.darkroom_ad.goal_split`, with
the same model, optimiser and updates in all six cells, ``num_seeds`` seeds in one program
per cell (vmapped; one after another inside it on a CPU, where that is faster; keys
:func:`jaxrl_icl.run.sweep.seed_keys`, so seed ``s`` starts from the same weights in every
cell); each trained model is rolled out in context on the 16 held-out
goals (``eval_seeds`` rollouts each, the same evaluation keys in every cell, no weight
updates) for ``eval_episodes`` episodes.

``gain_percent[dataset][method]`` is the gain of the last episode's held-out return over no
filtering, in percent of the no-filtering return: ``100 * mean_s(d_s) / mean_s(none_s)`` with
``d_s = method_s - none_s`` the paired difference of training seed ``s``; its ``ci95`` is
Student's t-interval over the seeds of the mean paired difference, scaled by the same
``100 / mean_s(none_s)`` (the denominator is taken as fixed) (:func:`gain_percent`).

Writes ``runs/lhf/<timestamp>/``: ``config.json``, ``versions.json``, ``clean.h5`` and
``random.h5`` (the source histories), ``returns.png`` (held-out return per episode, one panel
per set, one line per method, mean and 95% band over training seeds), ``table.md`` and
``summary.json`` (``gain_percent``, last-episode returns per seed, the share of random-policy
histories in each cell's training data, the source curves).

CPU default (43.5 minutes on 2 cores shared with another job, perhaps half that on idle ones;
``--optim.num-updates 750`` halves it but shows nothing): 10 histories per goal, a width-32 AD (4
layers, 4 heads, the LHF paper's embedding size), 1500 updates of batch 32 (lr 1e-3) per model, 5 seeds, 20
evaluation episodes x 4 rollouts per held-out goal; far below the paper's budget, so the absolute
returns are low and the comparison is between cells of equal budget. It is also below the strong
AD baseline of :mod:`experiments.darkroom_ad` (:data:`~experiments.darkroom_ad.AD_OPTIM`: 18,000
updates of batch 16 at lr 2e-3, width 64, about 9 minutes per model), which the default does not
use because it trains 30 models (about 4.5 hours at that budget on 2 cores);
``--optim.num-updates 18000 --optim.batch-size 16 --optim.lr 2e-3 --ad.backbone.width 64`` runs
it there (on a GPU: ``--scale paper``).

Measured (2-core CPU shared with another job, load average 4-5; 5 seeds; held-out return of
episode 20, optimum 16.94; the source Q-learning reaches 4.4 by its episode 20, the random
policy 0.3):

* ``--optim.num-updates 750`` (20.3 min): AD barely leaves the random policy's level. Return none /
  reweight / filter: clean 0.49 / 0.62 / 0.77, noisy 0.24 / 0.31 / 0.45; gain_percent clean
  reweight +27.6 [-90.0, +145.1], filter +57.1 [-45.4, +159.5]; noisy reweight +30.3
  [-114.7, +175.2], filter +88.2 [-140.0, +316.3]: the right sign, no interval excludes 0.
* default (1500 updates, 43.5 min under that load): the in-context curves rise. Return
  clean 1.50 / 1.34 / 1.72, noisy 0.80 / 1.38 / 1.52; gain_percent clean reweight -10.6 [-53.5,
  +32.2], filter +14.6 [-39.5, +68.7]; noisy reweight +72.7 [+6.2, +139.1] (excludes 0), filter
  +89.5 [-17.9, +196.8]. The paper: +25.1 clean, +90.7 noisy (AD, filtering, 3 runs).

In both, reweighting and filtering cut the random policy's share of the noisy set's training
data from 30% to 3.3% and 4.3%.

``--scale paper`` runs :data:`experiments.darkroom_ad.PAPER_FLAGS` (width 512, 100k updates;
for a GPU); flags after it override it.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.darkroom import optimal_return
from experiments.darkroom_ad import (
    ENV,
    PAPER_FLAGS,
    DarkroomADConfig,
    belongs,
    collect,
    goal_split,
    select_training_histories,
    source_returns,
)
from jaxrl_icl.batching import sequential_on_cpu
from jaxrl_icl.config import ConfigError, field, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.icl import ad, lhf
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import held_out_evaluation
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl.histories import load_histories
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.run.config import check_num_seeds, parse_cli, with_scale
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.plots import plot_curve_panels
from jaxrl_icl.run.rundir import open_run, write_atomic, write_json
from jaxrl_icl.run.sweep import gather_seeds, seed_keys
from jaxrl_icl.stats import confidence_band

PROG = "python -m experiments.lhf"
DATASETS = ("clean", "noisy")
METHODS = ("none", "reweight", "filter")


@dataclasses.dataclass(frozen=True)
class LHFExperimentConfig:
    """AD on clean and noisy Dark Room histories, without filtering, reweighted and filtered."""

    scale: Literal["cpu", "paper"] = field("cpu", help="size preset: cpu (about 45 minutes on a shared 2-core "
                                           "CPU) or paper (for a GPU); other flags override it")
    num_seeds: int = field(5, help="training seeds per cell (the confidence intervals are over these)")
    seed: int = field(0, help="seed of collection, training (seed keys), filtering and evaluation")
    histories_per_goal: int = field(10, help="Q-learning histories per goal in each set")
    noise_fraction: float = field(0.3, help="share of each goal's histories that the noisy set takes from a "
                                  "uniformly random policy (rounded to whole histories)")
    lam: float = field(1.0, help="weight of Stability in the LHF utility")
    temperature: float = field(0.0, help="0: min-max keep probabilities; else the softmax temperature")
    split_seed: int = field(0, help="goal permutation of experiments.darkroom_ad.goal_split")
    num_train_goals: int = field(65, help="training goals; the rest of the 81 are held out")
    eval_episodes: int = field(20, help="in-context episodes per held-out goal and rollout")
    eval_seeds: int = field(4, help="rollouts per held-out goal and trained model")
    chunk_updates: int = field(100, help="updates per jitted chunk (progress)")
    ad: ad.ADConfig = ad.ADConfig(obs_scale=0.125, backbone=tr.BackboneConfig(width=32, num_layers=4, num_heads=4))
    optim: OptimConfig = OptimConfig(num_updates=1500, batch_size=32, lr=1e-3, warmup_updates=100)
    q_learning: QLearningConfig = QLearningConfig(num_episodes=100, lr=1.0, epsilon_decay_episodes=25,
                                                  record_history=True)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "histories_per_goal", "eval_episodes", "eval_seeds", "chunk_updates"):
            require_positive(self, name)
        require_nonnegative(self, "split_seed")
        require_in(self, "num_train_goals", 1, 80)
        require_in(self, "noise_fraction", 0.0, 1.0)
        self.lhf_config("filter")  # ConfigError naming lam or temperature
        if self.noise_histories() < 1:
            raise ConfigError("noise_fraction", f"replaces no history of {self.histories_per_goal} per goal; "
                              "raise it or --histories-per-goal")
        if not self.q_learning.record_history:
            raise ConfigError("q_learning.record_history", "must be true to collect histories")

    def noise_histories(self) -> int:
        """Histories per goal that the noisy set takes from the random policy."""
        return int(round(self.noise_fraction * self.histories_per_goal))

    def lhf_config(self, method: str) -> lhf.LHFConfig:
        return lhf.LHFConfig(method, lam=self.lam, temperature=self.temperature)


def random_policy(q_learning: QLearningConfig) -> QLearningConfig:
    """``q_learning`` with epsilon fixed at 1: every action uniformly random, whatever the Q-table learns."""
    return dataclasses.replace(q_learning, epsilon_start=1.0, epsilon_end=1.0)


def noisy_set(clean: dict[str, np.ndarray], clean_goal: np.ndarray, noise: dict[str, np.ndarray],
              noise_goal: np.ndarray, per_goal: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(histories, replaced bool[N])``: ``clean`` with its first ``per_goal`` histories of every
    goal replaced by the first ``per_goal`` of ``noise`` on the same goal.

    Args:
      clean: arrays ``[N, ...]``, one history per row, ``m`` rows per goal of ``clean_goal [N, 2]``.
      noise: arrays with the same keys and trailing shapes, ``[M, ...]``, at least ``per_goal``
        rows per goal of ``noise_goal [M, 2]``, on the same goals.
      per_goal: histories replaced per goal, ``0 <= per_goal <= m``.

    Rows keep their goals (``clean_goal`` describes the result too). ValueError on goals that
    differ between the sets or too few rows.
    """
    groups, noise_groups = lhf.task_groups(clean_goal), lhf.task_groups(noise_goal)
    if not np.array_equal(np.unique(clean_goal, axis=0), np.unique(noise_goal, axis=0)):
        raise ValueError("noise_goal: the noise histories cover other goals than the clean ones")
    if not 0 <= per_goal <= min(groups.shape[1], noise_groups.shape[1]):
        raise ValueError(f"per_goal: need 0 <= {per_goal} <= histories per goal (clean {groups.shape[1]}, "
                         f"noise {noise_groups.shape[1]})")
    rows, source = groups[:, :per_goal].reshape(-1), noise_groups[:, :per_goal].reshape(-1)
    out = {}
    for key, value in clean.items():
        out[key] = np.array(value)
        out[key][rows] = noise[key][source]
    replaced = np.zeros(len(clean_goal), bool)
    replaced[rows] = True
    return out, replaced


def gain_percent(base: np.ndarray, other: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(gain, low, high)`` in percent of ``mean(base)``: ``100 * mean(other - base) / mean(base)``
    and Student's t-interval of the mean paired difference over the seeds (``base``, ``other``
    float ``[num_seeds]``, entry ``s`` of both from training seed ``s``), scaled alike; NaN
    unless ``mean(base) > 0``."""
    base, other = np.asarray(base, np.float64), np.asarray(other, np.float64)
    if base.shape != other.shape or base.ndim != 1:
        raise ValueError(f"base {base.shape} and other {other.shape}: need two [num_seeds] arrays")
    mean, low, high = confidence_band((other - base)[:, None], level)
    scale = 100.0 / base.mean() if base.mean() > 0 else np.nan
    return float(scale * mean[0]), float(scale * low[0]), float(scale * high[0])


def _collect(q_learning: QLearningConfig, first_seed: int, runs: int, path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``runs`` Q-learning runs per goal (seeds ``first_seed + i``) saved at ``path``, and their goals ``[N, 2]``."""
    collect(DarkroomADConfig(seed=first_seed, histories_per_goal=runs, q_learning=q_learning), path)
    histories, meta = load_histories(path)
    return histories, np.asarray(meta["params"]["goal"])


def markdown_table(config: LHFExperimentConfig, last: dict, gains: dict, noise_share: dict) -> str:
    """Rows = set x method: last-episode held-out return (mean and 95% t-interval over seeds),
    gain over no filtering, share of random-policy histories in the training data."""
    lines = [f"| set | method | return, episode {config.eval_episodes} (95% CI) | gain over none, % (95% CI) "
             "| random-policy share of training data |", "|---|---|---:|---:|---:|"]
    for dataset in DATASETS:
        for method in METHODS:
            mean, low, high = (float(x[0]) for x in confidence_band(last[dataset][method][:, None]))
            gain = "" if method == "none" else "{:+.1f} [{:+.1f}, {:+.1f}]".format(*gains[dataset][method])
            lines.append(f"| {dataset} | {method} | {mean:.2f} [{low:.2f}, {high:.2f}] | {gain} "
                         f"| {noise_share[dataset][method]:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None):
    argv = with_scale(argv, {"paper": list(PAPER_FLAGS)})
    config, options = parse_cli(LHFExperimentConfig, argv, prog=PROG)
    check_num_seeds(PROG, config.num_seeds)
    env, base = envs.make(ENV)
    run = open_run("lhf", config, options)
    print(f"run directory: {run.path}", file=sys.stderr)
    m, k = config.histories_per_goal, config.noise_histories()
    clean, goal = _collect(config.q_learning, config.seed, m, run.path / "clean.h5")
    noise, noise_goal = _collect(random_policy(config.q_learning), config.seed + m, k, run.path / "random.h5")
    noisy, replaced = noisy_set(clean, goal, noise, noise_goal, k)
    train_goals, test_goals = goal_split(config.split_seed, config.num_train_goals)
    rows = belongs(goal, train_goals)
    sets = {"clean": {**clean, "random_policy": np.zeros(len(goal), bool)},
            "noisy": {**noisy, "random_policy": replaced}}
    start = np.asarray(env.start, np.int32)

    obs_dim = int(np.prod(env.observation_space(base).shape))
    model = ad.make_model(config.ad, obs_dim, env.num_actions, env.horizon)
    trainer = ad.make_train(config.ad, config.optim, obs_dim, env.num_actions, env.horizon)
    test_tasks = jax.vmap(lambda g: base.replace(goal=g))(jnp.asarray(test_goals))
    held_out = held_out_evaluation(ad.make_agent(config.ad, model), env, test_tasks, eval_episodes=config.eval_episodes,
                                   eval_seeds=config.eval_seeds, seed=config.seed)
    curves: dict[str, dict[str, np.ndarray]] = {d: {} for d in DATASETS}
    noise_share: dict[str, dict[str, float]] = {d: {} for d in DATASETS}
    loss: dict[str, dict[str, float]] = {d: {} for d in DATASETS}
    for dataset in DATASETS:
        for method in METHODS:
            print(f"[{dataset}, {method}]", file=sys.stderr)
            select = DarkroomADConfig(seed=config.seed, lhf=config.lhf_config(method))
            train, weights = select_training_histories(select, {key: v[rows] for key, v in sets[dataset].items()},
                                                       goal[rows], start, env.horizon)
            is_noise = train["random_policy"].astype(np.float64)
            noise_share[dataset][method] = float(is_noise.mean() if weights is None else is_noise @ weights)
            state, metrics = train_in_chunks(trainer, seed_keys(config.seed, config.num_seeds),
                                             ad.ad_data(train, env.num_actions, weights),
                                             chunk_updates=config.chunk_updates, progress=options.progress,
                                             sequential_seeds=sequential_on_cpu())
            curves[dataset][method] = held_out(gather_seeds(state.params))
            loss[dataset][method] = float(np.mean(metrics["loss"][:, -config.chunk_updates:]))

    last = {d: {mth: curves[d][mth][:, -1] for mth in METHODS} for d in DATASETS}
    gains = {d: {mth: gain_percent(last[d]["none"], last[d][mth]) for mth in METHODS[1:]} for d in DATASETS}
    optimum = float(np.mean([optimal_return(g, start, env.horizon) for g in test_goals]))
    episodes = np.arange(1, config.eval_episodes + 1)
    labels = {"none": "no filtering", "reweight": "LHF reweighting", "filter": "LHF filtering"}
    plot_curve_panels({f"{d} histories ({'%d%% random policy' % round(100 * k / m) if d == 'noisy' else 'Q-learning'})":
                       {f"{labels[mth]} ({config.num_seeds} seeds)": (episodes, curves[d][mth]) for mth in METHODS}
                       for d in DATASETS}, run.plot_path("returns"), xlabel="episode", ylabel="held-out return",
                      title=f"AD on {ENV}, {len(test_goals)} held-out goals (optimal {optimum:.2f})", ncols=2)
    table = markdown_table(config, last, gains, noise_share)
    write_atomic(run.path / "table.md", table.encode())

    source = source_returns(clean, env.horizon)
    noise_source = source_returns(noise, env.horizon)
    summary = {
        "env": ENV, "machine": "see versions.json", "num_seeds": config.num_seeds,
        "histories_per_goal": m, "random_policy_histories_per_goal": k,
        "num_train_histories": int(rows.sum()), "held_out_goals": int(len(test_goals)),
        "num_updates": config.optim.num_updates, "eval_episodes": config.eval_episodes,
        "eval_seeds": config.eval_seeds, "optimal_return": optimum,
        "source_return_per_episode": {"q_learning": [float(x) for x in source.mean(0)],
                                      "random_policy": [float(x) for x in noise_source.mean(0)]},
        "return_per_episode": {d: {mth: [float(x) for x in curves[d][mth].mean(0)] for mth in METHODS}
                               for d in DATASETS},
        "last_episode_return": {d: {mth: {"mean": float(last[d][mth].mean()),
                                           "per_seed": [float(x) for x in last[d][mth]]} for mth in METHODS}
                                for d in DATASETS},
        "random_policy_share": noise_share,
        "train_loss_final": loss,
        "gain_percent": {d: {mth: {"mean": g[0], "ci95": [g[1], g[2]]} for mth, g in gains[d].items()}
                         for d in DATASETS},
    }
    write_json(run.path / "summary.json", summary)
    print(table, end="")
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
