"""T2MIR vs the dense backbone for AD and DPT on Dark Room 9x9 and Dark Key-to-Door 9x9:
``python -m experiments.t2mir [--envs darkroom-9x9 key-to-door-9x9] [--models ad dpt] [--scale paper]``.

For each (model, env) both variants see the same data with the same optimiser and number of
updates; the only difference is the feed-forward block of the last layer (T2MIR's token MoE
and task MoE side by side, :mod:`jaxrl_icl.icl.moe`). Each variant is trained ``num_seeds``
times (seeds vmapped) and rolled out in context on held-out tasks for ``eval_episodes``
episodes (``eval_seeds`` rollouts per task), no weight updates.

* AD (``--moe.*``, T2MIR's AD weights: balance 0.1, contrastive 0.01) distils tabular
  Q-learning histories (``histories_per_goal`` runs per task). Dark Room: the 65 training
  goals of :func:`experiments.darkroom_ad.goal_split`, the other 16 held out. Key-to-Door:
  the env observes ``(x, y, has_key)`` (``KeyToDoor(observe_key=True)``; Q-learning needs
  the key bit to be Markov), tasks are ordered (key, door) pairs of distinct cells, split by
  :func:`key_door_split` into ``key_door_train_tasks`` training and ``key_door_held_out_tasks``
  held-out tasks; its optimum is :func:`envs.darkroom.key_to_door_optimal_return` (2 for
  every 9x9 task at H = 50).
* DPT (``--dpt.*``, ``--dpt-optim.*``; T2MIR's DPT weights: balance 0.01, contrastive 0.001,
  8 task experts, :data:`jaxrl_icl.icl.dpt.DPT_MOE`), pretrained on the same training tasks.
  Dark Room: batches from :func:`jaxrl_icl.icl.dpt.darkroom_batch` with ``rewarded_mix`` 0.5
  (half the contexts get a random share of rewarded transitions; the baseline section below
  says why; ``--dpt.rewarded-mix 0`` is the paper's uniform data), held-out evaluation by
  :func:`experiments.darkroom_dpt.evaluate_dpt` (online, every transition into a sliding
  context, sampled actions; the exact posterior's curve is the ceiling). Key-to-Door:
  batches from :func:`jaxrl_icl.icl.dpt.key_door_batch` (random transitions from random
  (cell, key bit) states, queries labelled with a shortest-path move to the key or, holding
  it, to the door), the same online evaluation with ``context_len`` transitions in the
  sliding window (2 episodes of 50 steps at the default 100); no exact posterior.

Defaults (CPU): AD on Dark Room 9x9 only, 3 seeds, at the strong baseline of
:mod:`experiments.darkroom_ad` (:data:`~experiments.darkroom_ad.AD_OPTIM`: 18,000 updates of
batch 16 at lr 2e-3; 5 Q-learning histories per goal; 100 evaluation episodes); DPT uses
:data:`experiments.darkroom_dpt.DPT_OPTIM`. ``--envs darkroom-9x9 key-to-door-9x9`` and
``--models ad dpt`` add the rest. On 2 idle cores the default took 77.5 minutes: the dense
variant 12.1 updates/s of 3 seeds, T2MIR 5.7 (at these sizes, 80 tokens of width 64, dense
dispatch over 6 + 12 experts makes an update 2.1x the dense backbone's; at context 1024,
where attention dominates, ``bench icl`` measures 0.76x dense's tokens/s). An earlier
measurement under load (about 4.5) of one update of 3 vmapped seeds on Key-to-Door (4
episodes of 50 steps: a 200-step context) gave 1.9 s dense and 2.1 s T2MIR, which is why
Key-to-Door is not in the CPU default (``--ad.context-episodes 2`` or a smaller
``--optim.batch-size`` cut it). ``--scale paper`` is for a GPU: both envs and models, 5
seeds, 50k updates at batch 128 (lr 1e-3), T2MIR's published model sizes.

Measured at the CPU default (2 idle cores, 3 training seeds, 16 held-out goals x 4
rollouts): held-out return at episodes 1 / 25 / 50 / 100, dense 0.65 / 6.35 / 9.27 / 12.80,
T2MIR 0.92 / 6.89 / 9.14 / 12.57 (optimum 16.94; the source Q-learning 0.24 / 8.47 / 13.49 /
15.10); **T2MIR - dense at episode 100: -0.23, 95% CI [-2.09, +1.64]**: no difference at this
scale. Final training losses 0.885 and 0.887. The token experts share the load evenly
(0.16-0.17 each); the task router uses 11 of its 12 experts (0.02-0.17 each), and its
contrastive loss falls slowly (0.019 -> 0.009, weighted). With one MoE layer in a width-64
model trained to its loss plateau on 65 training goals, the dense backbone already fits the
histories as well as T2MIR does. The paper's gains come at 50k+ updates on more varied tasks
(``--scale paper``, for a GPU).

The DPT baseline on Dark Room 9x9 (dense backbone, :data:`~experiments.darkroom_dpt.DPT_OPTIM`,
3 training seeds, 16 held-out goals x 4 rollouts, 2-core CPU). With the paper's uniform
contexts it is seed-fragile: held-out return at episode 100 is 14.2 / 4.0 / 4.2 for seeds 0 / 1
/ 2, although all three reach the same pretraining loss (0.924 / 0.920 / 0.917; the exact
posterior's 0.896). The weak seeds find the goal (67% and 83% of last episodes, seed 0 83%)
but do not keep it: an episode after one that reached the goal returns 6.1 and 4.5 (seed 0
17.3, the exact posterior 17.2), and from an expert context (one optimal episode) they
return 4.8 and 2.2 against 16.9. Once found, the goal fills DPT's sliding context with
repeats of "stay on the goal, reward 1" (15 of an episode's 20 steps), a context that
uniform random transitions never hold, and whether a model generalises to it depends on
the seed. With ``rewarded_mix`` 0.5 such contexts are in the pretraining data (the exact
posterior stays the Bayes-optimal predictor) and all three seeds keep the goal: episode 100
returns 13.5 / 13.8 / 13.3 (mean 13.52, the exact posterior 16.50, optimum 16.94), 17.4-17.5
after a found goal, 16.9 from an expert context; losses 0.757 / 0.752 / 0.755 on the mixed
data against its floor of 0.728. What remains is finding the goal: 77-80% of last episodes
reach it, the posterior's 97%.

T2MIR against that baseline (``--models dpt``: DPT on Dark Room 9x9, ``rewarded_mix`` 0.5, 3
seeds, 13,000 updates each, 16 held-out goals x 4 rollouts; 123 minutes on 2 cores, three quarters
of it shared with another run): held-out return at episodes 1 / 25 / 50 / 100, dense 0.90 /
10.61 / 12.69 / 13.52 (the per-seed figures above, to the digit), T2MIR 0.90 / 10.38 / 12.32 /
13.65, the exact posterior 0.75 / 13.23 / 15.34 / 16.50. **T2MIR - dense at episode 100: +0.13,
Welch 95% CI [-1.22, +1.48], paired by seed [-1.56, +1.82]**: no difference, now with every
seed of both variants between 13.1 and 14.1. T2MIR keeps the goal as well as dense does (17.4-17.6
after a found goal, 16.9 from an expert context) and finds it as often (75-81% of last
episodes, dense 77-80%), so the gap to the posterior is the same exploration gap for both.
Final losses 0.757 and 0.759. The task router gives 0.45 of its slots to one of its 8 experts
and 0.02-0.05 to five others; the token experts share the load (0.15-0.23).

DPT on Dark Room 9x9 with uniform contexts, before the mix (``--models dpt --dpt.rewarded-mix
0``; 3 seeds, 13,000 updates each, 16 held-out goals x 4 rollouts; 90 minutes on 2 cores,
partly shared with other runs): held-out return at episodes 1 /
25 / 50 / 100, dense 0.75 / 6.08 / 7.27 / 7.47, T2MIR 0.85 / 7.30 / 8.72 / 8.70, the exact
posterior 0.75 / 13.23 / 15.34 / 16.50 (optimum 16.94). **T2MIR - dense at episode 100:
+1.23, Welch 95% CI [-13.67, +16.14], paired by seed [-4.40, +6.87]**: no difference. The
seeds dominate: seed 0 trains a DPT near 14 in both variants, seeds 1 and 2 near 4 (T2MIR
7.9 on seed 2), the fragility above. Final
losses 0.919 (dense) and 0.922. The task router sends almost every sequence to one of its 8
experts (0.48 of the slots, the most top-2 allows) and leaves two unused; the token experts
share the load (0.13-0.22).

DPT on Key-to-Door 9x9 (``--envs key-to-door-9x9 --models dpt --eval-episodes 20``; 3 seeds,
13,000 updates, 200 training and 16 held-out (key, door) tasks x 4 rollouts; 100 minutes on 2
cores, partly shared): held-out return at episodes 1 / 5 / 10 / 20, dense 0.22 / 0.43 / 0.61 /
0.86, T2MIR 0.21 / 0.45 / 0.65 / 0.88 (optimum 2), still rising at episode 20. **T2MIR -
dense at episode 20: +0.01, Welch 95% CI [-0.60, +0.62], paired by seed [-0.11, +0.13]**:
no difference. Final losses 1.103 and 1.092; the task router again favours one expert (0.38)
and leaves two almost unused.

AD on Key-to-Door 9x9 with half the default's context and updates (``--envs key-to-door-9x9 --models ad
--ad.context-episodes 2 --optim.num-updates 9000``; 3 seeds, 1000 Q-learning histories of
100 episodes on 200 training tasks, 16 held-out tasks x 4 rollouts; 92 minutes on 2 cores
shared with a DPT run): held-out return at episodes 1 / 10 / 25 / 50 / 100, dense 0.18 / 0.44 /
0.61 / 0.71 / 0.62, T2MIR 0.17 / 0.47 / 0.51 / 0.63 / 0.60 (optimum 2; the source Q-learning
0.19 / 0.35 / 1.18 / 1.54 / 1.78). **T2MIR - dense at episode 100: -0.03, Welch 95% CI
[-0.26, +0.21], paired by seed [-0.25, +0.19]**: no difference. Both variants learn in
context (0.18 to about 0.65) but stop at a third of the optimum while the histories they
distil reach 89%. The likely cause (not isolated by an ablation): a window of 2 episodes
holds one earlier episode, so a key or door found before that has left the context, while
Q-learning's improvement lives in its table across all 100 episodes. The AD paper's
Key-to-Door contexts span several episodes; the 4-episode default (``--ad.context-episodes
4``, 18,000 updates) costs at least 4x this run on the CPU (twice the updates of twice the
tokens) and is meant for a GPU. Final losses 1.249 and 1.267; the token experts share the load evenly
(0.16-0.17), the task router uses all 12 experts (0.01-0.20).

The same comparison with the default 4-episode context and the same 9000 updates, on one NVIDIA
H200 (jax 0.11.2; ``--envs key-to-door-9x9 --models ad --optim.num-updates 9000``, 3 seeds; 41 s
of training per variant at 216 updates/s): held-out return at episodes 1 / 10 / 25 / 50 / 100,
dense 0.20 / 0.58 / 0.80 / 1.09 / 1.31, T2MIR 0.17 / 0.51 / 0.78 / 1.04 / 1.25 (the source
0.19 / 0.35 / 1.18 / 1.52 / 1.76). **T2MIR - dense at episode 100: -0.06, Welch 95% CI
[-0.47, +0.35], paired by seed [-0.34, +0.22]**: no difference. The longer context is what
lifts AD: with the data, updates and seeds of the 2-episode run, episode 100 goes from 0.62 to
1.31 (31% to 65% of the optimum, 74% of the source's 1.76), which supports the cause named above.
Final losses 1.207 and 1.220.

Writes ``runs/t2mir/<timestamp>/``: ``config.json``, ``versions.json``, ``returns.png`` (one
panel per (model, env): held-out return per episode as a fraction of the optimum, mean and
95% band over training seeds), ``router_losses.png`` (balance and contrastive losses over
training, a panel per (model, env, loss)), ``router_load.png`` (the share of routing slots
each expert takes on a training batch, mean over seeds) and ``summary.json`` with
``difference[model][env] = {"mean", "ci95", "paired_ci95"}``: the held-out return of the last
episode, T2MIR minus dense, with Welch's 95% interval over training seeds and the paired one
(both variants of a seed share its data stream, initialisation key and evaluation rollouts, so
the paired interval removes the seed-to-seed variation they have in common). For DPT on Dark
Room, ``runs.dpt.darkroom-9x9.per_seed_checks[variant]`` adds per training seed the greedy
return from an expert context (one optimal episode: a context of mostly repeated rewarded
transitions) and :func:`experiments.darkroom_dpt.goal_reached_stats` of the online curve,
which say whether a weak seed fails to find the goal or fails to keep it once found. The CPU
default is small; its difference says little about the paper's scale, and the summary says
how many seeds it rests on.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.darkroom import KeyToDoor, all_goals, key_to_door_optimal_return, optimal_return
from experiments.darkroom_ad import AD_OPTIM, goal_split, source_returns
from experiments.darkroom_dpt import DPT_OPTIM, DarkroomDPTConfig, evaluate_dpt, goal_reached_stats
from jaxrl_icl.batching import sequential_on_cpu
from jaxrl_icl.config import (
    ConfigError,
    field,
    require_choices,
    require_in,
    require_nonnegative,
    require_positive,
    require_types,
)
from jaxrl_icl.icl import ad, dpt
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import held_out_evaluation
from jaxrl_icl.icl.moe import MoEConfig
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl import q_learning
from jaxrl_icl.rl.histories import compact_histories, histories_from_metrics
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.run.config import check_num_seeds, parse_cli, with_scale
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.plots import moving_average, plot_bars, plot_curve_panels
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.run.sweep import gather_seeds, seed_keys
from jaxrl_icl.stats import difference_intervals_text, paired_difference, welch_difference

PROG = "python -m experiments.t2mir"
ENVS = ("darkroom-9x9", "key-to-door-9x9")
MODELS = ("ad", "dpt")
VARIANTS = ("dense", "t2mir")
# T2MIR's public configs (REFERENCES.md): AD hidden 64, 4 layers, 8 heads, batch 128; DPT hidden
# 128, 3 layers, batch 32; 5 seeds. Put before the user's flags, so those override it.
PRESETS = {"paper": [
    "--num-seeds", "5", "--envs", *ENVS, "--models", "ad", "dpt", "--histories-per-goal", "10", "--eval-seeds", "16",
    "--chunk-updates", "1000", "--ad.backbone.num-heads", "8", "--optim.num-updates", "50000",
    "--optim.batch-size", "128", "--optim.lr", "1e-3", "--optim.warmup-updates", "2000", "--dpt.backbone.width", "128",
    "--dpt.backbone.num-layers", "3", "--dpt-optim.num-updates", "50000", "--dpt-optim.batch-size", "32",
    "--dpt-optim.lr", "1e-3", "--dpt-optim.warmup-updates", "2000", "--key-door-train-tasks", "1000",
]}


@dataclasses.dataclass(frozen=True)
class T2MIRConfig:
    """Dense backbone vs T2MIR in the last layer, for AD and DPT, same data and updates."""

    scale: Literal["cpu", "paper"] = field("cpu", help="size preset: cpu or paper (for a GPU); other flags "
                                           "override it")
    envs: tuple[str, ...] = field(ENVS[:1], help="envs to run: " + ", ".join(ENVS))
    models: tuple[str, ...] = field(("ad",), help="models to run: " + ", ".join(MODELS))
    num_seeds: int = field(3, help="training seeds per model (the confidence intervals are over these)")
    seed: int = field(0, help="seed of collection, training (seed keys) and evaluation")
    histories_per_goal: int = field(5, help="Q-learning runs per task (5: as experiments.darkroom_ad)")
    split_seed: int = field(0, help="task permutation of goal_split / key_door_split")
    num_train_goals: int = field(65, help="Dark Room training goals; the rest of the 81 are held out")
    key_door_train_tasks: int = field(200, help="Key-to-Door training (key, door) tasks")
    key_door_held_out_tasks: int = field(16, help="Key-to-Door held-out (key, door) tasks")
    eval_episodes: int = field(100, help="in-context episodes per held-out task and rollout")
    eval_seeds: int = field(4, help="rollouts per held-out task and trained model")
    chunk_updates: int = field(250, help="updates per jitted chunk (progress)")
    ad: ad.ADConfig = ad.ADConfig(obs_scale=0.125)
    moe: MoEConfig = MoEConfig()
    optim: OptimConfig = AD_OPTIM
    dpt: dpt.DPTConfig = dpt.DPTConfig(rewarded_mix=0.5)  # see the module docstring
    dpt_optim: OptimConfig = DPT_OPTIM
    q_learning: QLearningConfig = QLearningConfig(num_episodes=100, lr=1.0, epsilon_decay_episodes=25,
                                                  record_history=True)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "histories_per_goal", "eval_episodes", "eval_seeds", "chunk_updates",
                     "key_door_train_tasks", "key_door_held_out_tasks"):
            require_positive(self, name)
        require_nonnegative(self, "split_seed")
        require_in(self, "num_train_goals", 1, 80)
        if self.key_door_train_tasks + self.key_door_held_out_tasks > 81 * 80:
            raise ConfigError("key_door_train_tasks", "train + held-out tasks must be at most the 6480 "
                              "(key, door) pairs")
        require_choices(self, "envs", ENVS)
        require_choices(self, "models", MODELS)

    def ad_config(self, variant: str) -> ad.ADConfig:
        """The AD config of ``variant`` (``"dense"`` or ``"t2mir"``)."""
        return dataclasses.replace(self.ad, backbone=dataclasses.replace(self.ad.backbone, ffn=variant, moe=self.moe))

    def dpt_config(self, variant: str) -> dpt.DPTConfig:
        """The DPT config of ``variant``; its MoE weights are ``dpt.backbone.moe`` (DPT's)."""
        return dataclasses.replace(self.dpt, backbone=dataclasses.replace(self.dpt.backbone, ffn=variant))

    def runs(self) -> list[tuple[str, str]]:
        """The (model, env) pairs to run, model-major."""
        return [(m, e) for m in self.models for e in self.envs]


def key_door_split(split_seed: int, num_train: int, num_held_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train int32[num_train, 2, 2], held_out int32[num_held_out, 2, 2])`` Key-to-Door 9x9
    tasks, rows ``(key, door)``: the 6480 ordered pairs of distinct cells (key-major over
    :func:`envs.darkroom.all_goals`) permuted by ``np.random.RandomState(split_seed)``; the
    first ``num_train`` train, the next ``num_held_out`` are held out (disjoint)."""
    cells = np.asarray(all_goals(9))
    pairs = np.array([(k, d) for k in cells for d in cells if not np.array_equal(k, d)], np.int32)
    pairs = pairs[np.random.RandomState(split_seed).permutation(len(pairs))]
    return pairs[:num_train], pairs[num_train:num_train + num_held_out]


class Tasks(NamedTuple):
    """One env's experiment tasks: ``env``, stacked task params ``train`` / ``held_out`` and
    the mean optimal return over the held-out tasks."""

    env: Any
    train: Any
    held_out: Any
    optimum: float


def make_tasks(config: T2MIRConfig, name: str) -> Tasks:
    """The tasks of env ``name`` (Dark Room goals, or Key-to-Door (key, door) pairs observed with the key bit)."""
    env, base = envs.make(name)
    start = np.asarray(env.start, np.int32)
    if name == "darkroom-9x9":
        train, test = goal_split(config.split_seed, config.num_train_goals)
        params = lambda goals: jax.vmap(lambda g: base.replace(goal=g))(jnp.asarray(goals))  # noqa: E731
        optimum = float(np.mean([optimal_return(g, start, env.horizon) for g in test]))
        return Tasks(env, params(train), params(test), optimum)
    env = KeyToDoor(env.size, env.start, env.horizon, observe_key=True)
    train, test = key_door_split(config.split_seed, config.key_door_train_tasks, config.key_door_held_out_tasks)
    params = lambda t: jax.vmap(lambda kd: base.replace(key=kd[0], door=kd[1]))(jnp.asarray(t))  # noqa: E731
    optimum = float(np.mean([key_to_door_optimal_return(k, d, start, env.horizon) for k, d in test]))
    return Tasks(env, params(train), params(test), optimum)


def collect(config: T2MIRConfig, env: Any, params: Any) -> dict[str, np.ndarray]:
    """Tabular Q-learning histories ``[histories_per_goal * N * E, T, ...]`` on the ``N`` tasks of
    ``params`` (``E = q_learning.num_envs``; run ``i`` with seed ``seed + i``, history ``(i * N + n) * E + e``)."""
    trainer = jax.jit(jax.vmap(q_learning.make_train(config.q_learning, env)))
    num = jax.tree.leaves(params)[0].shape[0]
    parts = [compact_histories(histories_from_metrics(
        trainer(jax.random.split(jax.random.key(config.seed + i), num), params)[1]))
        for i in range(config.histories_per_goal)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def dpt_eval_config(config: T2MIRConfig, variant: str) -> DarkroomDPTConfig:
    """The :func:`experiments.darkroom_dpt.evaluate_dpt` settings of a DPT ``variant``."""
    return DarkroomDPTConfig(seed=config.seed, trials=config.eval_seeds, online_episodes=config.eval_episodes,
                             dpt=config.dpt_config(variant))


def expert_loads(model: tr.TransformerConfig, params: Any, tokens: jax.Array) -> dict[str, np.ndarray]:
    """Share of routing slots per expert, ``name -> [num_seeds, E]``, on ``tokens [B, L, d]``
    (names like ``block_3/task/task_load``)."""

    def loads(p):
        _, inter = tr.Transformer(model).apply(p, tokens, mutable=["intermediates"])
        flat = jax.tree_util.tree_flatten_with_path(inter["intermediates"])[0]
        return {"/".join(str(getattr(k, "key", k)) for k in path[:-1]): v for path, v in flat}

    return {name: np.asarray(v) for name, v in jax.jit(jax.vmap(loads))(params).items()}


def run_ad(config: T2MIRConfig, tasks: Tasks, progress: bool) -> dict[str, Any]:
    """AD dense vs T2MIR on ``tasks``: ``curves``/``logs`` per variant, T2MIR's ``loads``, the
    training histories' count and the held-out tasks' source returns per episode."""
    env = tasks.env
    num_train = jax.tree.leaves(tasks.train)[0].shape[0]
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), tasks.train, tasks.held_out)
    histories = collect(config, env, both)
    per_run = jax.tree.leaves(both)[0].shape[0] * config.q_learning.num_envs  # history i * per_run + n * E + e
    is_train = np.arange(histories["action"].shape[0]) % per_run < num_train * config.q_learning.num_envs
    data = ad.ad_data({k: v[is_train] for k, v in histories.items()}, env.num_actions)
    obs_dim = data.obs.shape[-1]
    out = {"curves": {}, "logs": {}, "loads": {}, "num_train_histories": int(is_train.sum()),
           "source": source_returns({k: v[~is_train] for k, v in histories.items()}, env.horizon).mean(0)}
    for variant in VARIANTS:
        ad_config = config.ad_config(variant)
        model = ad.make_model(ad_config, obs_dim, env.num_actions, env.horizon)
        trainer = ad.make_train(ad_config, config.optim, obs_dim, env.num_actions, env.horizon)
        state, out["logs"][variant] = train_in_chunks(trainer, seed_keys(config.seed, config.num_seeds), data,
                                                      chunk_updates=config.chunk_updates, progress=progress,
                                                      sequential_seeds=sequential_on_cpu())
        params = gather_seeds(state.params)
        out["curves"][variant] = held_out_evaluation(ad.make_agent(ad_config, model), env, tasks.held_out,
                                                       eval_episodes=config.eval_episodes,
                                                       eval_seeds=config.eval_seeds, seed=config.seed)(params)
        if variant != "dense":
            window = ad.sample_windows(data, jax.random.PRNGKey(config.seed), config.optim.batch_size,
                                       ad_config.context_steps(env.horizon))
            out["loads"] = expert_loads(model, params, ad.window_tokens(ad_config, window, env.num_actions)[0])
    return out


def run_dpt(config: T2MIRConfig, tasks: Tasks, progress: bool) -> dict[str, Any]:
    """DPT dense vs T2MIR on ``tasks``, as :func:`run_ad`. Dark Room: pretraining batches from
    :func:`jaxrl_icl.icl.dpt.darkroom_batch`, evaluation by
    :func:`experiments.darkroom_dpt.evaluate_dpt` plus the exact posterior's curve
    ``posterior`` (DPT's ceiling under this protocol). Key-to-Door: batches from
    :func:`jaxrl_icl.icl.dpt.key_door_batch`, online evaluation with a sliding context (sampled
    actions, every transition added), no posterior."""
    env, size = tasks.env, tasks.env.size
    key_door = isinstance(env, KeyToDoor)
    n = config.dpt.context_len
    if key_door:
        train_tasks = jnp.stack([tasks.train.key, tasks.train.door], axis=1)
        batch_fn = lambda key, b: dpt.key_door_batch(key, train_tasks, size, n, b, random_ties=True)  # noqa: E731
        state_fn, state_dim = dpt.key_door_state(size), 3
    else:
        train_goals, test_goals = tasks.train.goal, tasks.held_out.goal
        batch_fn = dpt.darkroom_batch_fn(config.dpt, train_goals, size, random_ties=True)
        state_dim = 2
    out = {"curves": {}, "logs": {}, "loads": {}, "checks": {}, "num_train_histories": None, "source": None,
           "posterior": None}
    for variant in VARIANTS:
        model = dpt.make_model(config.dpt_config(variant), state_dim, env.num_actions)
        trainer = dpt.make_train(config.dpt_config(variant), config.dpt_optim, model, batch_fn)
        state, out["logs"][variant] = train_in_chunks(trainer, seed_keys(config.seed, config.num_seeds), None,
                                                      chunk_updates=config.chunk_updates, progress=progress,
                                                      sequential_seeds=sequential_on_cpu())
        params = gather_seeds(state.params)
        if key_door:
            agent = dpt.make_agent(model, env.num_actions, state_fn, greedy=False)
            out["curves"][variant] = held_out_evaluation(agent, env, tasks.held_out,
                                                         eval_episodes=config.eval_episodes,
                                                         eval_seeds=config.eval_seeds, seed=config.seed)(params)
        else:
            rows, checks = [], []
            for s in range(config.num_seeds):
                first = out["posterior"] is None  # the posterior's rollouts are the same for every model
                result = evaluate_dpt(dpt_eval_config(config, variant), jax.tree.map(lambda x, s=s: x[s], params),
                                      test_goals, env_name="darkroom-9x9", train_goals=train_goals,
                                      with_posterior=first)
                rows.append(result["online"].mean(0))
                checks.append({"offline_expert_context": float(result["offline_expert"].mean()),
                               **goal_reached_stats(result["online"])})
                if first:
                    out["posterior"] = result["posterior_online"].mean(0)
            out["curves"][variant] = np.stack(rows)
            out["checks"][variant] = {k: [c[k] for c in checks] for k in checks[0]}
        if variant != "dense":
            context, query, _ = batch_fn(jax.random.PRNGKey(config.seed), config.dpt_optim.batch_size)
            out["loads"] = expert_loads(model, params, jnp.concatenate([context, query[:, None]], axis=1))
    return out


def write_figures(config: T2MIRConfig, run, results: dict, optimum: dict) -> None:
    """``returns.png``, ``router_losses.png`` and ``router_load.png``."""
    episodes = np.arange(1, config.eval_episodes + 1)
    labels = {"dense": "dense backbone", "t2mir": "T2MIR (last layer)"}
    panels = {}
    for (m, e), res in results.items():
        curves = {f"{labels[v]} ({config.num_seeds} seeds)": (episodes, res["curves"][v] / optimum[e])
                  for v in VARIANTS}
        title = f"{m.upper()}, {e}"
        if res.get("posterior") is not None:  # the legend names the first panel's curves only: say it here
            curves["exact posterior"] = (episodes, res["posterior"][None] / optimum[e])
            title += " (dotted: exact posterior)"
        panels[title] = curves
    plot_curve_panels(panels, run.plot_path("returns"), xlabel="episode", ylabel="held-out return / optimal",
                      title="T2MIR vs dense backbone: held-out return per episode", ncols=min(2, len(panels)))
    loss_panels = {}
    for (m, e), res in results.items():
        logs = res["logs"]["t2mir"]
        aux = {k: v for k, v in logs.items() if k.startswith("layer") and k.endswith("_loss")}
        num = next(iter(logs.values())).shape[-1]
        smooth = max(1, num // 50)
        for k, v in aux.items():
            loss_panels[f"{m.upper()}, {e}: {k}"] = {
                f"T2MIR (moving average of {smooth})": (np.arange(smooth, num + 1), moving_average(v, smooth))}
    if loss_panels:
        plot_curve_panels(loss_panels, run.plot_path("router_losses"), xlabel="update", ylabel="weighted loss",
                          title="T2MIR auxiliary losses over training", ncols=2)
    bars = {f"{m} {e.split('-')[0]} {k.split('/')[0]} {k.split('/')[-1].split('_')[0]} e{i}": float(v[:, i].mean())
            for (m, e), res in results.items() for k, v in res["loads"].items() for i in range(v.shape[1])}
    plot_bars(bars, run.plot_path("router_load"), ylabel="share of routing slots",
              title="Expert load per MoE layer (a training batch, mean over seeds)")


def main(argv: list[str] | None = None):
    argv = with_scale(argv, PRESETS)
    config, options = parse_cli(T2MIRConfig, argv, prog=PROG)
    check_num_seeds(PROG, config.num_seeds)
    run = open_run("t2mir", config, options)
    print(f"run directory: {run.path}  (scale: {config.scale})", file=sys.stderr)
    tasks = {e: make_tasks(config, e) for e in config.envs}
    results = {}
    for m, e in config.runs():
        print(f"{m} on {e}", file=sys.stderr)
        results[(m, e)] = (run_ad if m == "ad" else run_dpt)(config, tasks[e], options.progress)
    optimum = {e: t.optimum for e, t in tasks.items()}
    if results:
        write_figures(config, run, results, optimum)

    difference, per_run = {}, {}
    for (m, e), res in results.items():
        last = {v: res["curves"][v][:, -1] for v in VARIANTS}
        diff, lo, hi = welch_difference(last["dense"], last["t2mir"])
        _, paired_lo, paired_hi = paired_difference(last["dense"], last["t2mir"])
        difference.setdefault(m, {})[e] = {"mean": diff, "ci95": [lo, hi], "paired_ci95": [paired_lo, paired_hi]}
        num_updates = (config.optim if m == "ad" else config.dpt_optim).num_updates
        per_run.setdefault(m, {})[e] = {
            "optimal_return": optimum[e], "num_updates": num_updates,
            "num_train_histories": res["num_train_histories"],
            "held_out_tasks": int(jax.tree.leaves(tasks[e].held_out)[0].shape[0]),
            "source_return_per_episode": None if res["source"] is None else [float(x) for x in res["source"]],
            "posterior_return_per_episode": (None if res.get("posterior") is None
                                             else [float(x) for x in res["posterior"]]),
            "return_per_episode": {v: [float(x) for x in res["curves"][v].mean(0)] for v in VARIANTS},
            "last_episode_return": {v: {"mean": float(last[v].mean()), "per_seed": [float(x) for x in last[v]]}
                                    for v in VARIANTS},
            "train_loss_final": {v: float(np.mean(res["logs"][v]["loss"][:, -config.chunk_updates:]))
                                 for v in VARIANTS},
            "expert_load": {k: [float(x) for x in v.mean(0)] for k, v in res["loads"].items()},
        }
        if res.get("checks"):  # DPT on Dark Room: per seed, where the online curve's shortfall comes from
            per_run[m][e]["per_seed_checks"] = res["checks"]
    summary = {"machine": "see versions.json", "scale": config.scale, "num_seeds": config.num_seeds,
               "eval_episodes": config.eval_episodes, "eval_seeds": config.eval_seeds,
               "difference": difference, "runs": per_run}
    write_json(run.path / "summary.json", summary)
    for m, per_env in difference.items():
        for e, d in per_env.items():
            last = per_run[m][e]["last_episode_return"]
            print(f"{m.upper()} on {e}, held-out return of episode {config.eval_episodes}: dense "
                  f"{last['dense']['mean']:.2f}, T2MIR {last['t2mir']['mean']:.2f}; T2MIR - dense {d['mean']:+.2f} "
                  f"({difference_intervals_text(d['ci95'], d['paired_ci95'], config.num_seeds)}); "
                  f"optimal {optimum[e]:.2f}")
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
