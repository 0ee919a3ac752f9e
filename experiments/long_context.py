"""Long contexts for Algorithm Distillation with and without Sink-KV: ``python -m experiments.long_context``.

ReLIC's Sink-KV gives every attention head a learned key (and value) that any query may attend
to, so a head that finds nothing relevant in a long context can put its weight there instead of
spreading it over thousands of tokens. This experiment trains AD on Dark Room 9x9 at several
context lengths, once per sink option (``--sinks none k``: no sink, and ReLIC's main choice
"KV0", a learned key with the value kept at zero; ``kv`` learns both), and reports per context
length:

* held-out return against the number of episodes in context (a rollout of as many episodes as
  the window holds, on the held-out goals, no weight updates);
* training throughput (tokens/s of one update) and the compiled update's temporary memory;
* cached-rollout throughput (tokens/s over all goals x seeds) and memory (the rollout's
  temporary buffers and the KV cache per task).

Steps of the experiment: tabular Q-learning histories on all 81 goals (long enough for the
longest context; :func:`jaxrl_icl.rl.collect.collect_histories`), the goal split of
:mod:`experiments.darkroom_ad`, then for each context length ``L`` (rounded up to whole
episodes; one token per step) and sink option one AD model with a window of ``L`` steps and
``max(1, tokens_per_update // L)`` windows per update (the same tokens per update at every
length). The CPU default (contexts 256 to 4096 steps, a 2-layer width-32 model, 50 updates,
one training seed) is a small-scale run: it measures how the costs grow with the context and
exercises the whole pipeline, but 50 updates are far from AD's converged returns (the 80-step
contexts of :mod:`experiments.darkroom_ad` need about 3000), so its return curves do not
compare the two models; on 2 CPU cores shared with other jobs it took about half an hour,
most of it at 2048 and 4096 steps (``--context-steps 256 1024`` for a quick look).
``--scale paper`` (contexts 1k to 16k steps, width 128, 4 layers, 5000 updates of 65,536
tokens, 3 vmapped seeds) is meant for a GPU. Attention over all rows at once keeps every
window's ``[T, T]`` scores per head, so its memory grows with the square of the context: by XLA's
memory analysis of the update compiled on the CPU (:func:`update_memory`, which puts the H200 run
below at 1.87 GiB, the H200 itself at 1.83), one update of one seed at the paper sizes needs
10.0 / 29.0 / 51.6 / 86.3 GiB at 1k / 4k / 8k / 16k steps, past one H100 from 8k on. The paper
preset therefore computes attention 512 query rows at a time, recomputed in the backward pass
(``--ad.backbone.attention-chunk 512``, :class:`~jaxrl_icl.icl.transformer.BackboneConfig`): 5.5 /
5.1 / 4.7 / 4.1 GiB per seed, the same function up to float rounding, so three vmapped seeds fit
one GPU at every length (``--sequential-seeds`` trains them one after another if not). Before
training each model the run compiles its update and, on a device that reports its memory (a
GPU), stops with an error naming ``--tokens-per-update`` and ``--sequential-seeds`` if the update
would not fit.

With returns that mean something (2-core CPU, jax 0.10.2, one training seed, 16 held-out goals x
4 rollouts): ``--context-steps 1024 --ad.backbone.width 64 --ad.backbone.num-layers 4
--ad.backbone.num-heads 4 --optim.num-updates 4000 --optim.lr 2e-3 --optim.warmup-updates 100
--eval-seeds 4`` (AD's own backbone, 16M tokens per model, about 35 minutes per model with the
cores shared). In a 52-episode window AD learns in context, 0.56 -> 6.81 without a sink and
0.72 -> 6.50 with KV0 (mean of the last 10 episodes 6.59 and 6.58; final losses 0.552 and
0.551): ahead of the source Q-learning over the first 20 episodes, then behind it (13.12 at
episode 52, optimum 16.94). The sink changes neither the returns nor the loss at this length,
and costs about 10% of the training throughput (4514 vs 4075 tokens/s, timed on shared
cores). ReLIC's gain is at contexts of many thousands of steps, past what this CPU trains to
convergence. Shorter windows say little about either model: the source itself reaches only
1.44 by episode 13 (the 260-step window). With the default width-32, 2-layer model, 2500
updates end below 2.5 at both 260 and 1040 steps, with or without the sink.

On one NVIDIA H200 (jax 0.11.2, 3 training seeds, 16 held-out goals x 4 rollouts): ``--context-steps
4096`` with the same backbone and lr, ``--optim.num-updates 3000 --num-seeds 3`` (one 4100-step
window per update, 12M tokens per seed; 150 s for both models). AD learns little in context at
this budget: 0.39 -> 2.03 over 205 episodes without a sink, 0.32 -> 2.72 with KV0 (mean of
episodes 51-100: 1.23 and 1.94; of the last 50: 1.63 and 2.30), while the source Q-learning
reaches 11.8 by episode 50 and 15.9 by episode 205; final losses 0.630 and 0.632. KV0 is ahead
from about episode 25 on, a gap at the edge of the two bands in ``returns.png``; that run's
summary predates the per-seed interval below, so no CI. Costs at 4100 steps: one update of one
window trains at 334,585 tokens/s without the sink and 315,697 with it (-6%), with 1,876 and
2,137 MB of temporary memory; cached rollouts of 64 tasks run at about 224,000 tokens/s either
way (8.0 MB of KV cache per task). At that one-window rate (16 windows per update would run
faster per token) the paper preset (5000 updates of 65,536 tokens,
3 seeds, per model and context length) is about 49 GPU-minutes per model at 4096 steps alone,
more at 8k and 16k, where attention's cost grows with the context: far past the 15 minutes of
device time a session here is lent.

The paper preset's sizes at 8k and 16k steps on the same H200 (2026-11-27, jax 0.11.2):
``--scale paper --context-steps 8192`` (and ``16384``) ``--num-seeds 1 --optim.num-updates 60
--eval-seeds 1``, i.e. width 128, 4 layers, attention in 512-row chunks, 7 windows of 8,200 steps
(3 of 16,400) per update, one training seed, 2.5 and 2.8 minutes per run with compiles. Training
ran at 234,264 tokens/s without the sink and 238,780 with KV0 at 8,200 steps, and at 119,277 and
119,596 at 16,400 (half the rate per doubling: attention's cost dominates); one update's
temporary memory was 3,713 / 4,420 MB at 8,200 steps and 3,782 / 3,782 MB at 16,400, within
XLA's CPU estimate above; cached rollouts of the 16 held-out goals ran at 52,055 / 53,613
tokens/s at 8,200 steps and 36,419 / 35,920 at 16,400, with 32 and 64 MB of KV cache per task.
After 60 updates neither model learns in context (held-out returns between 0.1 and 0.9, the
optimum 16.9; the source Q-learning reaches 15.5 on the same goals). At these rates the preset's 5000
updates for 3 seeds take about 61 GPU-minutes per model at 8k steps and 103 at 16k, so the
paper-scale comparison of the two models at these lengths needs about 5.5 GPU-hours.

Writes ``runs/long_context/<timestamp>/``: ``returns.png`` (one panel per context length, with
the source Q-learning's own curve on the same goals),
``speed.png`` and ``memory.png`` (against the context length, one line per sink option and
face), ``table.md`` and ``summary.json`` (``results[<sink>][<context steps>]``: returns per
episode, first and last episode, the mean of the last 10 episodes per training seed, tokens/s,
memory, final training loss; ``difference[<sink>][<context steps>]``: that mean minus the
no-sink model's, with Welch's and the paired 95% interval over training seeds (null with one seed);
``source_return_per_episode``; and the machine).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.darkroom import optimal_return
from experiments.darkroom_ad import belongs, goal_split, source_returns
from jaxrl_icl.config import ConfigError, field, require_choices, require_in, require_positive, require_types
from jaxrl_icl.icl import ad
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import episode_returns, evaluate
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl.collect import CollectConfig, collect_histories
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.run.config import parse_cli, with_scale
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.plots import plot_curve_panels, plot_curves
from jaxrl_icl.run.rundir import open_run, write_atomic, write_json
from jaxrl_icl.run.sweep import gather_seeds, seed_keys
from jaxrl_icl.stats import difference_intervals_text, paired_difference, welch_difference

PROG = "python -m experiments.long_context"
ENV = "darkroom-9x9"
PRESETS = {"paper": [
    "--context-steps", "1024", "2048", "4096", "8192", "16384", "--tokens-per-update", "65536",
    "--ad.backbone.width", "128", "--ad.backbone.num-layers", "4", "--ad.backbone.num-heads", "4",
    "--optim.num-updates", "5000", "--optim.warmup-updates", "200", "--chunk-updates", "500",
    "--q-learning.num-episodes", "840", "--num-seeds", "3", "--eval-seeds", "4", "--ad.backbone.attention-chunk", "512",
]}


@dataclasses.dataclass(frozen=True)
class LongContextConfig:
    """AD at several context lengths, with and without an attention sink."""

    scale: Literal["cpu", "paper"] = field("cpu", help="size preset: cpu (a few minutes, small scale) or paper "
                                           "(for a GPU); other flags override it")
    context_steps: tuple[int, ...] = field((256, 512, 1024, 2048, 4096), help="context lengths in environment "
                                           "steps (rounded up to whole episodes)")
    sinks: tuple[str, ...] = field(("none", "k"), help="backbone sink options to compare: none, k (KV0), kv")
    tokens_per_update: int = field(4096, help="tokens per update; windows per update = this // context")
    num_seeds: int = field(1, help="training seeds per model (vmapped)")
    seed: int = field(0, help="seed of collection, training and evaluation")
    split_seed: int = field(0, help="goal permutation seed (as experiments.darkroom_ad)")
    num_train_goals: int = field(65, help="training goals; the other goals are held out")
    eval_seeds: int = field(1, help="evaluation rollouts per held-out goal and training seed")
    timing_repeats: int = field(3, help="timed calls of one update; the fastest is kept")
    chunk_updates: int = field(50, help="updates per jitted chunk (progress)")
    sequential_seeds: bool = field(False, help="train the seeds one after another inside each jitted chunk "
                                   "(the memory of one seed; long contexts on a GPU) instead of vmapped")
    ad: ad.ADConfig = ad.ADConfig(obs_scale=0.125, backbone=tr.BackboneConfig(width=32, num_layers=2, num_heads=2))
    # optim.batch_size is replaced per context length by max(1, tokens_per_update // context steps)
    optim: OptimConfig = OptimConfig(num_updates=50, batch_size=1, lr=1e-3, warmup_updates=10)
    q_learning: QLearningConfig = QLearningConfig(num_episodes=230, lr=1.0, epsilon_decay_episodes=25,
                                                  record_history=True)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("tokens_per_update", "num_seeds", "eval_seeds", "timing_repeats", "chunk_updates"):
            require_positive(self, name)
        require_in(self, "num_train_goals", 1, 80)
        if not self.context_steps or min(self.context_steps) < 1:
            raise ConfigError("context_steps", f"must be positive ints, got {self.context_steps}")
        require_choices(self, "sinks", ("none", "k", "kv"))
        if self.ad.layout != "step":
            raise ConfigError("ad.layout", "must be 'step' (one token per step, so tokens = steps)")
        if not self.q_learning.record_history:
            raise ConfigError("q_learning.record_history", "must be true to collect histories")
        horizon = envs.make(ENV)[0].horizon
        need = max(episodes(steps, horizon) for steps in self.context_steps)
        if self.q_learning.num_episodes < need:
            raise ConfigError("q_learning.num_episodes", f"histories must hold the longest context: "
                              f"{need} episodes, got {self.q_learning.num_episodes}")


def episodes(steps: int, horizon: int) -> int:
    """Whole episodes of ``horizon`` steps covering ``steps`` steps."""
    return -(-steps // horizon)


def collect(config: LongContextConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Q-learning histories on all 81 goals and the goal of each row ``int32 [N, 2]``."""
    collect_config = CollectConfig(env=ENV, algo="q_learning", seed=config.seed, summary_episodes=1,
                                   q_learning=config.q_learning)
    histories, meta, _, _ = collect_histories(collect_config)
    return histories, np.asarray(meta["params"]["goal"])


def _best_seconds(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (each blocked until ready)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def device_memory_limit() -> int | None:
    """Bytes the first device's allocator may hold (``memory_stats()["bytes_limit"]``), or None
    where the backend reports none (the CPU)."""
    stats = jax.devices()[0].memory_stats()
    return stats.get("bytes_limit") if stats else None


def update_memory(trainer: Any, keys: jax.Array, data: ad.ADData, seeds: int) -> int:
    """Bytes of temporary and argument buffers of one update of ``seeds`` vmapped seeds, by
    XLA's memory analysis of the update compiled on abstract state (nothing runs)."""
    state = jax.eval_shape(jax.vmap(trainer.init, in_axes=(0, None)), keys[:seeds], data)
    memory = jax.jit(jax.vmap(trainer.update, in_axes=(0, None))).lower(state, data).compile().memory_analysis()
    return int(memory.temp_size_in_bytes + memory.argument_size_in_bytes)


def check_update_fits(need: int, seeds: int, window: int, limit: int) -> None:
    """ConfigError naming ``tokens_per_update`` when one update of ``seeds`` seeds at a window
    of ``window`` steps needs ``need`` bytes, more than the device's ``limit``."""
    if need > limit:
        raise ConfigError("tokens_per_update", f"one update of {seeds} seed(s) at {window} steps needs "
                          f"{need / 2**30:.1f} GiB, more than the device's {limit / 2**30:.1f} GiB: lower "
                          "--tokens-per-update, compute attention in chunks (--ad.backbone.attention-chunk "
                          "512), or pass --sequential-seeds (or fewer --num-seeds)")


def _megabytes(compiled) -> float:
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def run_one(config: LongContextConfig, data: ad.ADData, held_out: np.ndarray, steps: int, sink: str,
            progress: bool) -> dict[str, Any]:
    """Train, time and evaluate AD with a window of ``steps`` steps and backbone sink ``sink``."""
    env, base = envs.make(ENV)
    num_episodes = episodes(steps, env.horizon)
    ad_config = dataclasses.replace(config.ad, context_episodes=num_episodes,
                                    backbone=dataclasses.replace(config.ad.backbone, sink=sink))
    window = ad_config.context_steps(env.horizon)
    optim = dataclasses.replace(config.optim, batch_size=max(1, config.tokens_per_update // window))
    trainer = ad.make_train(ad_config, optim, data.obs.shape[-1], env.num_actions, env.horizon)
    keys = seed_keys(config.seed, config.num_seeds)
    limit = device_memory_limit()
    if limit is not None:  # a GPU: refuse an update that cannot fit before any training
        seeds = 1 if config.sequential_seeds else config.num_seeds
        check_update_fits(update_memory(trainer, keys, data, seeds), seeds, window, limit)
    state, metrics = train_in_chunks(trainer, keys, data, chunk_updates=config.chunk_updates, progress=progress,
                                     sequential_seeds=config.sequential_seeds)

    # One update of one seed, compiled alone: throughput and temporary memory.
    one = jax.tree.map(lambda x: x[0], gather_seeds(state))
    update = jax.jit(trainer.update).lower(one, data).compile()
    train_seconds = _best_seconds(lambda: update(one, data), config.timing_repeats)

    model = ad.make_model(ad_config, data.obs.shape[-1], env.num_actions, env.horizon)
    tasks = jax.vmap(lambda g: base.replace(goal=g))(jnp.asarray(held_out))
    num_steps = num_episodes * env.horizon

    def rollouts(params, key):
        return evaluate(env, tasks, ad.make_agent(ad_config, model), params, key, num_steps=num_steps,
                        num_seeds=config.eval_seeds)

    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    params = gather_seeds(state.params)
    rollout = jax.jit(rollouts).lower(jax.tree.map(lambda x: x[0], params), key).compile()
    returns, rollout_seconds = [], math.inf
    for s in range(config.num_seeds):
        seed_params = jax.tree.map(lambda x, s=s: x[s], params)
        start = time.perf_counter()
        out = jax.block_until_ready(rollout(seed_params, jax.random.fold_in(key, s)))
        rollout_seconds = min(rollout_seconds, time.perf_counter() - start)
        returns.append(episode_returns(out["reward"], out["done"], env.horizon).reshape(-1, num_episodes))
    returns = np.concatenate(returns)  # [seeds x goals x eval seeds, episodes]
    backbone = ad_config.backbone
    cache_bytes = 2 * backbone.num_layers * backbone.num_heads * model.cache_len * backbone.head_dim * 4
    loss = np.asarray(metrics["loss"])
    return {
        "context_steps": window,
        "context_episodes": num_episodes,
        "batch_size": optim.batch_size,
        "returns": returns,
        "return_per_episode": returns.mean(axis=0).tolist(),
        "first_episode_return": float(returns[:, 0].mean()),
        "last_episode_return": float(returns[:, -1].mean()),
        # per training seed: the mean return of the last (up to) 10 episodes over goals and rollouts
        "last_10_per_seed": returns.reshape(config.num_seeds, -1, num_episodes)[:, :, -10:].mean(axis=(1, 2)).tolist(),
        "train_tokens_per_s": optim.batch_size * window / train_seconds,
        "train_temp_mb": _megabytes(update),
        "rollout_tokens_per_s": returns.size // config.num_seeds * env.horizon / rollout_seconds,
        "rollout_temp_mb": _megabytes(rollout),
        "kv_cache_mb_per_task": cache_bytes / 2**20,
        "final_loss": float(np.nanmean(loss[..., -min(config.chunk_updates, loss.shape[-1]):])),
    }


def table(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    """A markdown table of the results, one row per sink option and context length."""
    rows = ["| sink | context steps | episodes | windows/update | return ep. 1 | return last ep. | train tokens/s "
            "| train memory MB | rollout tokens/s | rollout memory MB | KV cache MB/task | final loss |",
            "|" + "---|" * 12]
    for sink, by_len in results.items():
        for r in by_len.values():
            rows.append(
                f"| {sink} | {r['context_steps']} | {r['context_episodes']} | {r['batch_size']} "
                f"| {r['first_episode_return']:.2f} | {r['last_episode_return']:.2f} | {r['train_tokens_per_s']:.0f} "
                f"| {r['train_temp_mb']:.1f} | {r['rollout_tokens_per_s']:.0f} | {r['rollout_temp_mb']:.1f} "
                f"| {r['kv_cache_mb_per_task']:.3f} | {r['final_loss']:.3f} |")
    return "\n".join(rows) + "\n"


def sink_differences(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``difference[sink][steps] = {"mean", "ci95", "paired_ci95"}``: each sink option's mean
    return of the last 10 episodes minus the no-sink model's, over training seeds, with Welch's
    and the paired 95% interval (a seed's two models share its data stream, initialisation key
    and evaluation rollouts); empty without ``"none"`` among the options."""
    if "none" not in results:
        return {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sink in (s for s in results if s != "none"):
        for n, r in results[sink].items():
            base, other = results["none"][n]["last_10_per_seed"], r["last_10_per_seed"]
            mean, lo, hi = welch_difference(base, other)
            _, plo, phi = paired_difference(base, other)
            out.setdefault(sink, {})[str(n)] = {"mean": mean, "ci95": [lo, hi], "paired_ci95": [plo, phi]}
    return out


SINK_LABELS = {"none": "AD", "k": "AD + Sink-KV (KV0: learned key, zero value)", "kv": "AD + Sink-KV (learned KV)"}


def main(argv: list[str] | None = None):
    config, options = parse_cli(LongContextConfig, with_scale(argv, PRESETS), prog=PROG)
    run = open_run("long_context", config, options)
    print(f"run directory: {run.path}", file=sys.stderr)
    env, _ = envs.make(ENV)
    histories, goal = collect(config)
    train_goals, held_out = goal_split(config.split_seed, config.num_train_goals)
    data = ad.ad_data({k: v[belongs(goal, train_goals)] for k, v in histories.items()}, env.num_actions)

    results: dict[str, dict[int, dict[str, Any]]] = {sink: {} for sink in config.sinks}
    for steps in sorted(config.context_steps):
        for sink in config.sinks:
            r = run_one(config, data, held_out, steps, sink, options.progress)
            results[sink][r["context_steps"]] = r
            print(f"context {r['context_steps']} steps, sink {sink}: return {r['first_episode_return']:.2f} -> "
                  f"{r['last_episode_return']:.2f}, train {r['train_tokens_per_s']:.0f} tokens/s, rollout "
                  f"{r['rollout_tokens_per_s']:.0f} tokens/s, loss {r['final_loss']:.3f}", file=sys.stderr)

    start = np.asarray(env.start, np.int32)
    optimum = float(np.mean([optimal_return(g, start, env.horizon) for g in held_out]))
    lengths = sorted(results[config.sinks[0]])
    # The reference AD distils: the source Q-learning's own learning curve on the held-out goals.
    source = source_returns(histories, env.horizon)[belongs(goal, held_out)]
    panels = {}
    for n in lengths:
        num_episodes = results[config.sinks[0]][n]["context_episodes"]
        panels[f"{n} steps ({num_episodes} episodes)"] = {
            **{SINK_LABELS[sink]: (np.arange(num_episodes), results[sink][n]["returns"]) for sink in config.sinks},
            f"Q-learning, source ({len(source)} histories, same goals)": (np.arange(num_episodes),
                                                                         source[:, :num_episodes]),
        }
    plot_curve_panels(panels, run.plot_path("returns"), "episodes in context", "held-out return",
                      f"AD on {ENV}, held-out goals (optimal {optimum:.2f}); {config.num_seeds} training seed(s)",
                      ncols=min(3, len(panels)))
    x = np.asarray(lengths)
    speed, memory = {}, {}
    for sink in config.sinks:
        rs = [results[sink][n] for n in lengths]
        speed[f"{SINK_LABELS[sink]}: training"] = (x, np.array([[r["train_tokens_per_s"] for r in rs]]))
        speed[f"{SINK_LABELS[sink]}: cached rollout"] = (x, np.array([[r["rollout_tokens_per_s"] for r in rs]]))
        memory[f"{SINK_LABELS[sink]}: training update"] = (x, np.array([[r["train_temp_mb"] for r in rs]]))
        memory[f"{SINK_LABELS[sink]}: cached rollout"] = (x, np.array([[r["rollout_temp_mb"] for r in rs]]))
    device = jax.devices()[0].device_kind
    plot_curves(speed, run.plot_path("speed"), "context (steps = tokens)", "tokens/s",
                f"Throughput on {device}", legend_below=True)
    plot_curves(memory, run.plot_path("memory"), "context (steps = tokens)", "XLA temporary buffers (MB)",
                f"Memory on {device}", legend_below=True)
    write_atomic(run.path / "table.md", table(results).encode())
    difference = sink_differences(results)
    for sink, by_len in difference.items():
        for n, d in by_len.items():
            interval = difference_intervals_text(d["ci95"], d["paired_ci95"], config.num_seeds)
            print(f"context {n} steps: {sink} - none, mean return of the last 10 episodes: {d['mean']:+.2f} "
                  f"({interval})", file=sys.stderr)
    summary = {
        "env": ENV, "device": device, "num_seeds": config.num_seeds, "eval_seeds": config.eval_seeds,
        "num_held_out_goals": int(len(held_out)), "optimal_return": optimum,
        "source_return_per_episode": source[:, :max(lengths) // env.horizon].mean(axis=0).tolist(),
        "small_scale": config.scale == "cpu", "difference": difference,
        "results": {sink: {str(n): {k: v for k, v in r.items() if k != "returns"} for n, r in by_len.items()}
                    for sink, by_len in results.items()},
    }
    write_json(run.path / "summary.json", summary)
    print(table(results))
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
