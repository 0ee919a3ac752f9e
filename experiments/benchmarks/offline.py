"""Offline RL training speed: our TD3+BC and IQL trainers against a JAX-CORL-design reference.

Both train on one synthetic dataset of ``dataset_size`` transitions (``obs_dim`` 17 and
``action_dim`` 6, D4RL halfcheetah's sizes; Gaussian observations and rewards, uniform
actions in [-1, 1], episodes of 1000 steps) with the default networks and hyperparameters
(256-256 MLPs, batch 256, Adam 3e-4, twin critics, TD3+BC's actor every 2nd critic step).
An *update* is one critic gradient step, as JAX-CORL counts them (1M TD3+BC updates are 1M
critic and 500k actor steps; one of our TD3+BC trainer updates is ``policy_freq`` = 2 of them).

- ours: ``make_train(config, 17, 6)`` run by the chunk program of ``train_in_chunks`` as
  ``experiments.offline`` runs it (:func:`jaxrl_icl.run.loop.chunk_program`): one jitted loop
  over updates, the dataset an argument shared by all seeds, the seeds vmapped on a GPU and
  one after another inside the program on a CPU (``sequential_seeds``), one seed unbatched;
- reference (:mod:`experiments.bench_ref.jaxcorl_offline`): one seed, 8 updates unrolled per
  jitted call, a host loop over calls. For 16 and 64 seeds the reference is that seed's rate,
  i.e. the seeds run one after another (total updates/s unchanged; timed again beside every
  seed count), and, as a second row,
  ``jax.jit(jax.vmap(update_n_times))`` over the seeds with the same host loop.

Everything is compiled (and run once) before the clock starts; the implementations of one
case are called in turn ``repeats`` times and each keeps its best time, so that load from
other processes falls on all alike. Updates per seed are ``max_total_updates // seeds``
rounded down to a multiple of 8 (at least 8) on a CPU, so many seeds stay affordable there,
and ``max_total_updates`` for every seed count on an accelerator: the device bar compares
equal updates per seed, and at 128 per seed a 16-seed call lasts about 30 ms on an H200, short
enough for its fixed cost per call to show (2.73x one seed's time, against 2.53x in calls of
512 updates). Rows are updates/s over all seeds.

FLOP/s: the FLOPs of one update are XLA's cost analysis of the compiled reference
``update_n_times`` (one seed) over its 8 updates (matmuls, forward and backward, are nearly
all of them), multiplied by each measured rate; the machine's peak is a float32 ``jnp.dot``
of two ``peak_size`` square matrices (2048 on a CPU, 8192 on an accelerator, where a
2048-sized product takes tens of microseconds and its dispatch would count as much), timed
in the same run over ``PEAK_CALLS`` back-to-back calls. With a GPU two more rows give
the issue's device bars: the projected time of 1M updates of one seed against JAX-CORL's
published 9 minutes (GTX 1080 Ti, compile included), and the time of ``seeds`` seeds over
the time of one (bar: under 2x).

Roofline (with a GPU, or ``--roofline``): XLA's cost analysis of the compiled reference
``update_n_times`` vmapped over the seeds gives the FLOPs and the bytes its kernels read and
write per update of all seeds. ``FLOPs / peak`` is a floor no implementation of this math
beats at this precision; ``bytes / bandwidth`` (bandwidth of an elementwise ``x + 1`` over
``bandwidth_mb`` of float32, read and write) is the time of that program's traffic if none of
it stayed in cache: not a floor (the GPU's L2 holds a seed batch's activations), a scale for
how much of the measured time moving data can explain. Rows: our measured time per update
against each, per seed count, and for many seeds the compute floor over one seed's measured
time (the least the bar's ratio could be at this precision).

Kernels (``--profile``, GPU only): each of our timed calls traced once
(:mod:`experiments.benchmarks.kernels`): GPU kernels, busy time and the GEMM share of kernel
time per update. On an H200 (jax 0.11.2) a TD3+BC trainer update (two critic steps, one actor
step) ran 110 kernels in 169 us for one seed, the GPU never idle (about 1.5 us per kernel: bound
by the number of kernels), and 105 kernels in 427 us for 16 vmapped seeds, half of the kernel
time in GEMMs (13.5 GFLOP at about 60 TFLOP/s) and half in memory-bound elementwise and
reduction kernels (Adam, the Polyak step, bias gradients): the 16-seed time over one seed's is
2.5-2.6x, above the issue's 2x bar.

``dt`` (in ``--algos``) times Decision Transformer evaluation instead: ``dt_episodes``
vmapped Pendulum-v1 episodes of ``dt_steps`` steps of the default DT (untrained; the cost
does not depend on the weights), env steps/s of the KV-cached rollout (three one-token
``transformer.step`` calls per env step) against recomputing the causal ``apply`` over the
whole token stream at every step (the same actions; quadratic in the episode length).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import envs
from experiments.bench_ref import jaxcorl_offline as ref
from experiments.benchmarks.kernels import kernel_profile
from experiments.benchmarks.report import row
from experiments.benchmarks.timing import best_of_alternating
from jaxrl_icl.batching import sequential_on_cpu
from jaxrl_icl.config import ConfigError, field, require_choices, require_nonnegative, require_positive
from jaxrl_icl.icl import transformer
from jaxrl_icl.offline import decision_transformer, iql, td3_bc
from jaxrl_icl.offline.dataset import Dataset, make_dataset
from jaxrl_icl.run.loop import chunk_program

SUITE = "offline"
ALGOS = ("td3_bc", "iql", "dt")
PEAK_CALLS = 4  # matmuls per peak timing
JAXCORL_1M_SECONDS = 9 * 60.0  # published: 1M TD3+BC / IQL updates in about 9 minutes on a GTX 1080 Ti


@dataclasses.dataclass(frozen=True)
class OfflineBenchConfig:
    """TD3+BC and IQL updates/s at several seed counts: ours vs the JAX-CORL design."""

    algos: tuple[str, ...] = field(ALGOS, help="algorithms to time (td3_bc, iql; dt: cached vs recomputed rollouts)")
    num_seeds: tuple[int, ...] = field((1, 16, 64), help="seed counts to time (ours as experiments.offline runs them)")
    dataset_size: int = field(1_000_000, help="transitions of the synthetic dataset")
    obs_dim: int = field(17, help="observation size")
    action_dim: int = field(6, help="action size")
    max_total_updates: int = field(2048, help="critic updates per timed call over all seeds")
    repeats: int = field(2, help="timed calls per implementation and seed count; the best is kept")
    reference_vmap: bool = field(True, help="also time a plain vmap of the reference loop for many seeds")
    peak_size: int = field(0, help="side of the square matrices of the peak-FLOP/s matmul (0: 2048 on a CPU, "
                           "8192 on an accelerator)")
    roofline: bool = field(False, help="also on a CPU: the roofline floor rows (always with a GPU)")
    bandwidth_mb: int = field(1024, help="MiB of float32 of the memory-bandwidth measurement")
    profile: bool = field(False, help="also trace ours at every seed count and report its GPU kernels per update, "
                          "busy time and GEMM share (experiments.benchmarks.kernels; no rows on a CPU)")
    dt_episodes: int = field(2, help="dt: Pendulum episodes per timed rollout call (vmapped)")
    dt_steps: int = field(200, help="dt: env steps per episode")
    bf16: bool = field(False, help="our TD3+BC and IQL in bfloat16 compute (their configs' bf16; rows named "
                       "'td3_bc bf16', 'iql bf16'); the reference stays float32")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dataset_size", "obs_dim", "action_dim", "max_total_updates", "repeats",
                     "bandwidth_mb", "dt_episodes", "dt_steps"):
            require_positive(self, name)
        require_nonnegative(self, "peak_size")
        if not self.num_seeds or min(self.num_seeds) < 1:
            raise ConfigError("num_seeds", f"must be a non-empty tuple of positive ints, got {self.num_seeds}")
        require_choices(self, "algos", ALGOS)


def updates_per_seed(cfg: OfflineBenchConfig, seeds: int) -> int:
    """Critic updates per seed for ``seeds`` seeds: a multiple of the reference's 8, at least 8
    (``max_total_updates`` split over the seeds on a CPU, for each seed elsewhere)."""
    n = ref.N_JITTED_UPDATES
    if jax.default_backend() != "cpu":
        seeds = 1
    return max(n, cfg.max_total_updates // seeds // n * n)


def synthetic_arrays(cfg: OfflineBenchConfig) -> dict[str, np.ndarray]:
    """The D4RL arrays of the synthetic dataset (numpy, seeded by ``cfg.seed``)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.dataset_size
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    return {"observations": rng.standard_normal((n, cfg.obs_dim), np.float32),
            "actions": rng.uniform(-1, 1, (n, cfg.action_dim)).astype(np.float32),
            "rewards": rng.standard_normal(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": timeouts,
            "next_observations": rng.standard_normal((n, cfg.obs_dim), np.float32)}


def cost_per_update(update_n_times: Callable, *args: Any) -> dict[str, float]:
    """``{"flops", "bytes"}`` of one update (all seeds the arguments hold) by XLA's cost
    analysis of the compiled ``update_n_times(*args)`` (``N_JITTED_UPDATES`` updates) over
    ``N_JITTED_UPDATES``: matmuls as ``2 * M * N * K``, elementwise ops one per element, bytes
    as read and written by each fused kernel, after dead code is removed."""
    cost = jax.jit(update_n_times).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"flops": float(cost["flops"]) / ref.N_JITTED_UPDATES,
            "bytes": float(cost["bytes accessed"]) / ref.N_JITTED_UPDATES}


def bandwidth(megabytes: int, repeats: int) -> float:
    """Bytes/s read and written by a jitted ``x + 1`` over ``megabytes`` MiB of float32 (best of ``repeats``)."""
    x = jnp.zeros(megabytes * 2**18, jnp.float32)
    add = jax.jit(lambda x: x + 1.0)
    jax.block_until_ready(add(x))
    return 2.0 * x.nbytes / best_of_alternating(max(repeats, 3), {"add": lambda: add(x)})["add"]


def roofline_rows(algo: str, cfg: OfflineBenchConfig, ref_dataset: dict, rates: dict[int, float], peak: float,
                  bytes_per_s: float, label: str) -> list[dict]:
    """Rows (named ``label``) of our measured seconds per update (all seeds) against the compute
    floor and the traffic time of the reference's update vmapped over the same seeds, and, per
    seed count above one, the compute floor over one seed's measured time."""
    init, update_n_times = reference(algo, cfg, ref.N_JITTED_UPDATES)
    rows = []
    for seeds, rate in rates.items():
        keys = jax.random.split(jax.random.PRNGKey(cfg.seed), seeds)
        cost = cost_per_update(jax.vmap(update_n_times, in_axes=(0, None, 0)), jax.vmap(init)(keys), ref_dataset, keys)
        compute, traffic = cost["flops"] / peak, cost["bytes"] / bytes_per_s
        measured = seeds / rate  # seconds of one update of every seed
        head = f"{label}, {seeds} seed{'s' * (seeds > 1)}: seconds per update"
        print(f"offline: {head}: measured {measured * 1e6:.1f} us; {cost['flops'] / 1e9:.2f} GFLOP -> compute floor "
              f"{compute * 1e6:.1f} us; {cost['bytes'] / 1e6:.1f} MB -> traffic {traffic * 1e6:.1f} us", flush=True)
        rows.append(row(SUITE, f"{head} vs compute floor (FLOPs / peak; ratio = fraction of it reached)",
                        measured, compute, "s", lower_is_better=True))
        rows.append(row(SUITE, f"{head} vs XLA's bytes accessed / bandwidth (all from memory)", measured, traffic,
                        "s", lower_is_better=True))
        if seeds > 1 and 1 in rates:
            rows.append(row(SUITE, f"{label}, {seeds} seeds: compute floor over 1 seed's measured time (bar 2x)",
                            compute * rates[1], 2.0, "x", lower_is_better=True))
    return rows


def kernel_rows(case: str, profile: dict | None) -> list[dict]:
    """Rows (no reference) of a :func:`~experiments.benchmarks.kernels.kernel_profile` per update
    (all seeds), printed with its top kernels; none without a GPU trace."""
    if profile is None:
        return []
    top = "; ".join(f"{name[:48]} {us:.1f} us x{count:.1f}" for name, us, count in profile["top"][:6])
    print(f"offline: {case}: per update {profile['kernels']:.1f} GPU kernels, {profile['kernel_us']:.1f} us of "
          f"kernels, busy {profile['busy_us']:.1f} us, GEMMs {100 * profile['gemm_share']:.0f}% of kernel time; "
          f"top: {top}", flush=True)
    return [row(SUITE, f"{case}: GPU kernels per update", profile["kernels"], None, "kernels"),
            row(SUITE, f"{case}: GPU busy time per update (traced)", profile["busy_us"] * 1e-6, None, "s",
                lower_is_better=True),
            row(SUITE, f"{case}: GEMM share of kernel time", profile["gemm_share"], None, "fraction")]


def peak_flops(size: int, repeats: int) -> float:
    """FLOP/s of a float32 ``jnp.dot`` of two ``size`` x ``size`` matrices at JAX's default
    matmul precision: the best of ``repeats`` timings of ``PEAK_CALLS`` calls dispatched back to back."""
    a, b = (jax.random.normal(k, (size, size)) for k in jax.random.split(jax.random.PRNGKey(0)))
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    seconds = best_of_alternating(max(repeats, 3), {"dot": lambda: [dot(a, b) for _ in range(PEAK_CALLS)]})["dot"]
    return PEAK_CALLS * 2.0 * size**3 / seconds


def ours_call(algo: str, cfg: OfflineBenchConfig, dataset: Dataset, seeds: int, updates: int) -> Callable[[], Any]:
    """A call running ``updates`` critic updates of ``seeds`` seeds of our trainer in one chunk of
    :func:`~jaxrl_icl.run.loop.chunk_program` (each call continues from the last one's state);
    init and compilation happen here, outside the clock (and it runs once)."""
    if algo == "td3_bc":
        config = td3_bc.TD3BCConfig(bf16=cfg.bf16)
        trainer, steps = td3_bc.make_train(config, cfg.obs_dim, cfg.action_dim), config.policy_freq
    else:
        trainer, steps = iql.make_train(iql.IQLConfig(bf16=cfg.bf16), cfg.obs_dim, cfg.action_dim), 1
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), seeds)
    chunk = chunk_program(trainer.update, False, sequential_on_cpu())
    state = [jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))(keys, dataset)]

    def call() -> Any:
        state[0], metrics = chunk(state[0], dataset, updates // steps, updates // steps)
        return metrics

    jax.block_until_ready(call())
    return call


def reference(algo: str, cfg: OfflineBenchConfig, updates: int) -> tuple[Callable, Callable]:
    """The reference's ``(init, update_n_times)`` for ``algo``."""
    if algo == "td3_bc":
        return ref.make_td3_bc(cfg.obs_dim, cfg.action_dim)
    return ref.make_iql(cfg.obs_dim, cfg.action_dim, updates)


def reference_call(algo: str, cfg: OfflineBenchConfig, dataset: dict, seeds: int, updates: int,
                   vmapped: bool) -> Callable[[], Any]:
    """A call of the reference's host loop over ``updates`` critic updates: one seed, or
    (``vmapped``) ``jax.vmap`` of its ``update_n_times`` over ``seeds`` seeds; compiled and
    warmed up here."""
    init, update_n_times = reference(algo, cfg, updates)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), seeds + 1)
    if vmapped:
        state, rng = jax.vmap(init)(keys[1:]), keys[1:]
        step = jax.jit(jax.vmap(update_n_times, in_axes=(0, None, 0)))
    else:
        state, rng = init(keys[0]), keys[1]
        step = jax.jit(update_n_times)
    ref.train(step, state, dataset, rng, ref.N_JITTED_UPDATES)
    return lambda: ref.train(step, state, dataset, rng, updates)


def dt_rollout_rows(cfg: OfflineBenchConfig) -> list[dict]:
    """One row: env steps/s of KV-cached DT rollouts against recomputing the context each step."""
    env, env_params = envs.make("gymnax:Pendulum-v1")
    lay = decision_transformer.layout(decision_transformer.DTConfig(), 3, 1)
    params = transformer.init(lay.model, jax.random.PRNGKey(cfg.seed))
    calls = {}
    for name, cached in (("cached", True), ("recomputed", False)):
        rollouts = jax.jit(lambda p, k, cached=cached: decision_transformer.target_returns(
            lay, p, k, env, env_params, jnp.array([-150.0]), num_episodes=cfg.dt_episodes, num_steps=cfg.dt_steps,
            cached=cached))
        compiled = rollouts.lower(params, jax.random.PRNGKey(1)).compile()
        jax.block_until_ready(compiled(params, jax.random.PRNGKey(1)))
        calls[name] = lambda compiled=compiled: compiled(params, jax.random.PRNGKey(1))
    best = best_of_alternating(cfg.repeats, calls)
    steps = cfg.dt_episodes * cfg.dt_steps
    case = (f"dt rollout, {cfg.dt_episodes} episodes x {cfg.dt_steps} steps (window {lay.model.window} tokens): "
            "KV cache vs recomputing the context each step")
    cached, recomputed = steps / best["cached"], steps / best["recomputed"]
    print(f"offline: {case}: {cached:,.0f} vs {recomputed:,.0f} env steps/s", flush=True)
    return [row(SUITE, case, cached, recomputed, "env steps/s")]


def run(cfg: OfflineBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`): per algorithm and seed count, updates/s
    of ours against the reference (one seed, seeds one after another, a vmap of it); the peak
    and achieved FLOP/s; with a GPU, the device bars."""
    arrays = synthetic_arrays(cfg)
    dataset = make_dataset(arrays, source="synthetic")
    ref_dataset = ref.dataset_dict(arrays["observations"], arrays["actions"], arrays["rewards"],
                                   arrays["next_observations"], arrays["terminals"])
    del arrays
    peak_size = cfg.peak_size or (2048 if jax.default_backend() == "cpu" else 8192)
    peak = peak_flops(peak_size, cfg.repeats)
    print(f"offline: peak float32 matmul {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = [row(SUITE, f"peak FLOP/s: jnp.dot {peak_size}x{peak_size} float32", peak, None, "FLOP/s")]
    gpu = jax.default_backend() == "gpu"
    bytes_per_s = bandwidth(cfg.bandwidth_mb, cfg.repeats) if gpu or cfg.roofline else None
    if bytes_per_s:
        print(f"offline: bandwidth {bytes_per_s / 1e9:.1f} GB/s (x + 1, read and write)", flush=True)
        rows.append(row(SUITE, f"bandwidth: x + 1 over {cfg.bandwidth_mb} MiB float32 (read and write)",
                        bytes_per_s, None, "B/s"))
    for algo in (a for a in cfg.algos if a != "dt"):
        label = f"{algo} bf16" if cfg.bf16 else algo
        init, update_n_times = reference(algo, cfg, ref.N_JITTED_UPDATES)
        flops = cost_per_update(update_n_times, init(jax.random.PRNGKey(0)), ref_dataset,
                                jax.random.PRNGKey(1))["flops"]
        n1 = updates_per_seed(cfg, 1)
        one_ref_call = reference_call(algo, cfg, ref_dataset, 1, n1, False)
        rates = {}
        for seeds in cfg.num_seeds:
            n = updates_per_seed(cfg, seeds)
            calls = {"ours": ours_call(algo, cfg, dataset, seeds, n), "one": one_ref_call}
            if seeds > 1 and cfg.reference_vmap:
                calls["vmapped"] = reference_call(algo, cfg, ref_dataset, seeds, n, True)
            best = best_of_alternating(cfg.repeats, calls)
            rates[seeds] = ours = seeds * n / best["ours"]
            one_ref = n1 / best["one"]
            case = f"{label}, {seeds} seed{'s' * (seeds > 1)} x {n:,} updates"
            print(f"offline: {case}: ours {ours:,.0f} updates/s, reference 1 seed {one_ref:,.0f}", flush=True)
            if cfg.profile:
                rows += kernel_rows(case, kernel_profile(calls["ours"], n))
            if seeds == 1:
                rows.append(row(SUITE, f"{case}: vs reference", ours, one_ref, "updates/s"))
                rows.append(row(SUITE, f"{label}, 1 seed: achieved FLOP/s ({flops / 1e6:.0f} MFLOP/update)",
                                ours * flops, one_ref * flops, "FLOP/s"))
                rows.append(row(SUITE, f"{label}, 1 seed: fraction of the peak FLOP/s", ours * flops / peak,
                                one_ref * flops / peak, "fraction"))
                continue
            rows.append(row(SUITE, f"{case}: ours vs reference seeds one after another", ours, one_ref,
                            "updates/s"))
            if "vmapped" in best:
                vmapped = seeds * n / best["vmapped"]
                print(f"offline: {case}: reference vmapped {vmapped:,.0f} updates/s", flush=True)
                rows.append(row(SUITE, f"{case}: ours vs reference vmapped", ours, vmapped, "updates/s"))
        if gpu and 1 in rates:
            rows.append(row(SUITE, f"{label}, 1 seed: 1M updates, projected s vs JAX-CORL's published 9 min "
                            "(GTX 1080 Ti)", 1e6 / rates[1], JAXCORL_1M_SECONDS, "s", lower_is_better=True))
            for seeds in (s for s in cfg.num_seeds if s > 1):
                # time of `seeds` seeds over the time of one, for equal updates per seed; bar: under 2
                rows.append(row(SUITE, f"{label}, {seeds} seeds: time over 1 seed's (bar 2x)",
                                seeds * rates[1] / rates[seeds], 2.0, "x", lower_is_better=True))
        if bytes_per_s:
            rows += roofline_rows(algo, cfg, ref_dataset, rates, peak, bytes_per_s, label)
    if "dt" in cfg.algos:
        rows += dt_rollout_rows(cfg)
    return rows


ALGO_LABELS = {"td3_bc": "TD3+BC", "iql": "IQL"}


def plot(rows: list[dict], path) -> None:
    """Grouped bars of updates/s per algorithm and seed count: ours, the reference one seed at a
    time (its 1-seed rate), and the reference vmapped; when only ``dt`` ran, its rollout env
    steps/s, cached and recomputed."""
    from jaxrl_icl.run.plots import plot_grouped_bars

    series = {"vs reference": "reference (1 seed at a time)",
              "ours vs reference seeds one after another": "reference (1 seed at a time)",
              "ours vs reference vmapped": "reference vmapped"}
    groups: dict[str, dict[str, tuple[float, float]]] = {}
    algos: dict[str, None] = {}  # in the order they ran
    for r in rows:
        if r["unit"] != "updates/s" or r["reference"] is None:
            continue
        head, kind = r["case"].split(": ", 1)
        algo, seeds = head.split(", ")
        algos[ALGO_LABELS.get(algo, algo)] = None
        group = groups.setdefault(f"{algo}\n{seeds.split(' x ')[0]}", {})
        group["ours"] = (r["ours"], 0.0)
        group[series[kind]] = (r["reference"], 0.0)
    if groups:
        plot_grouped_bars(groups, path, ylabel="critic updates / s (all seeds)",
                          title=f"Offline {' and '.join(algos)}: ours vs JAX-CORL design (compile excluded)")
        return
    for r in rows:  # only the dt case ran: its rollout speeds
        if r["unit"] == "env steps/s":
            groups[r["case"].split(" (")[0]] = {"KV cache": (r["ours"], 0.0), "recomputed": (r["reference"], 0.0)}
    plot_grouped_bars(groups, path, ylabel="env steps / s (all episodes)",
                      title="DT rollouts: KV cache vs recomputing (compile excluded)")
