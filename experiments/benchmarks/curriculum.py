"""ALP-GMM teacher throughput: the jitted JAX teacher vs a scikit-learn host one, same process.

Each teacher runs ``num_updates`` rounds of ``sample`` then ``update`` against a fixed
synthetic student whose competence on task ``p`` at round ``t`` is
``clip(2 t / num_updates - p_0, 0, 1)`` (progress sweeps the box along the first axis), so
the GMM is refitted ``num_updates // fit_rate`` times (k = 2..max_k, AIC) at the reference
``fit_rate``. Ours is one ``jax.jit(jax.vmap(run))`` over seeds, the whole loop a
``lax.scan`` with the refits inside; compiled ahead of time (the reported compile time) and
timed as the best of ``repeats`` calls. The reference is
:class:`experiments.bench_ref.alp_gmm_sklearn.SklearnALPGMM`: a Python loop over rounds,
and ``n`` seeds are ``n`` teachers run one after the other; it is timed once per seed
count. Throughput is teacher updates per second over all seeds (sample + update + refits).

The host-loop case is how a teacher is driven when the environment lives outside JAX:
``jax.vmap(init)`` over ``host_loop_seeds`` seeds once, then one jitted ``vmap(sample)`` and
``vmap(update)`` call per round from Python. Its rows are the compile time of the jitted update
and the wall time per round (refits included, which run only on the rounds they are due).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks.report import Skipped, row
from experiments.benchmarks.timing import time_jitted
from jaxrl_icl.config import ConfigError, field, require_nonnegative, require_positive
from jaxrl_icl.curriculum import ALPGMMConfig, alp_gmm

SUITE = "curriculum"
LOW, HIGH = (0.0, 0.0), (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class CurriculumBenchConfig:
    """ALP-GMM sample+update throughput: ours (jitted, vmapped seeds) vs scikit-learn on the host."""

    num_seeds: tuple[int, ...] = field((1, 64), help="seed counts to time (vmapped / sequential)")
    num_updates: int = field(1000, help="sample+update rounds per teacher")
    fit_rate: int = field(250, help="rounds between GMM refits (the reference's 250)")
    max_k: int = field(10, help="largest number of Gaussians tried per refit (k = 2..max_k)")
    repeats: int = field(2, help="timed calls of ours per seed count; the best is kept")
    host_loop_seeds: int = field(8, help="seeds of the host-loop case (0: skip it)")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_updates", "fit_rate", "repeats"):
            require_positive(self, name)
        require_nonnegative(self, "host_loop_seeds")
        if not self.num_seeds or min(self.num_seeds) < 1:
            raise ConfigError("num_seeds", f"must be a non-empty tuple of positive ints, got {self.num_seeds}")
        if self.fit_rate > self.num_updates:
            raise ConfigError("fit_rate", f"must be <= num_updates ({self.num_updates}) so that the GMM "
                              f"is refitted at least once, got {self.fit_rate}")
        self.teacher_config()  # max_k and the rest checked by the teacher's config

    def teacher_config(self) -> ALPGMMConfig:
        """The ALP-GMM config timed (history as long as the run)."""
        return ALPGMMConfig(low=LOW, high=HIGH, fit_rate=self.fit_rate, max_k=self.max_k,
                            history_capacity=self.num_updates)


def _competence(task, step, num_updates: int, xp=jnp):
    return xp.clip(2.0 * step / num_updates - task[0], 0.0, 1.0)


def make_ours(cfg: CurriculumBenchConfig):
    """``run(key) -> tasks float32[num_updates, 2]``: one teacher's whole loop (vmap over keys)."""
    teacher_cfg = cfg.teacher_config()

    def run(key: jax.Array) -> jax.Array:
        init_key, run_key = jax.random.split(key)

        def step(state, xs):
            k, t = xs
            task, state = alp_gmm.sample(k, state)
            return alp_gmm.update(state, task, _competence(task, t, cfg.num_updates)), task

        xs = (jax.random.split(run_key, cfg.num_updates), jnp.arange(cfg.num_updates, dtype=jnp.float32))
        return jax.lax.scan(step, alp_gmm.init(init_key, teacher_cfg), xs)[1]

    return jax.vmap(run)


def run_reference(cfg: CurriculumBenchConfig, seeds: int) -> float:
    """Seconds for ``seeds`` scikit-learn teachers run one after the other.

    BLAS is limited to one thread: on tiny (d + 1) x (d + 1) matrices a multi-threaded
    OpenBLAS is many times slower (thread hand-off per call), and the reference should be
    timed at its best.
    """
    from threadpoolctl import threadpool_limits

    from experiments.bench_ref.alp_gmm_sklearn import SklearnALPGMM

    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        for s in range(seeds):
            teacher = SklearnALPGMM(LOW, HIGH, seed=cfg.seed + s, fit_rate=cfg.fit_rate, max_k=cfg.max_k)
            for t in range(cfg.num_updates):
                task = teacher.sample()
                teacher.update(task, float(_competence(task, t, cfg.num_updates, np)))
        return time.perf_counter() - t0


def measure(cfg: CurriculumBenchConfig, seeds: int) -> list[dict]:
    """Time ours and the reference for ``seeds`` seeds: an updates/s row and ours' compile row."""
    keys = jax.random.split(jax.random.key(cfg.seed), seeds)
    ours_s, ours_compile = time_jitted(make_ours(cfg), (keys,), cfg.repeats)
    ref_s = run_reference(cfg, seeds)
    updates = seeds * cfg.num_updates
    case = f"{seeds} seeds x {cfg.num_updates} updates ({cfg.num_updates // cfg.fit_rate} refits, k=2..{cfg.max_k})"
    return [row(SUITE, f"{case} vs scikit-learn", updates / ours_s, updates / ref_s, "updates/s"),
            row(SUITE, f"{case}: compile", ours_compile, None, "s")]


def measure_host_loop(cfg: CurriculumBenchConfig) -> list[dict]:
    """The host-loop case: the jitted update's compile seconds and the milliseconds per round."""
    seeds, teacher_cfg = cfg.host_loop_seeds, cfg.teacher_config()
    keys = jax.random.split(jax.random.key(cfg.seed), (cfg.num_updates + 1, seeds))
    state = jax.vmap(alp_gmm.init, in_axes=(0, None))(keys[-1], teacher_cfg)
    t0 = time.perf_counter()
    update = jax.jit(jax.vmap(alp_gmm.update)).lower(state, jnp.zeros((seeds, 2)), jnp.zeros(seeds)).compile()
    compile_s = time.perf_counter() - t0
    sample = jax.jit(jax.vmap(alp_gmm.sample)).lower(keys[0], state).compile()
    competence = jax.jit(lambda task, t: _competence(task.T, t, cfg.num_updates)).lower(
        jnp.zeros((seeds, 2)), 0.0).compile()
    t0 = time.perf_counter()
    for t in range(cfg.num_updates):
        task, state = sample(keys[t], state)
        state = update(state, task, competence(task, float(t)))
    jax.block_until_ready(state)
    per_round = (time.perf_counter() - t0) / cfg.num_updates
    case = (f"host loop, {seeds} seeds vmapped, {cfg.num_updates} rounds ({cfg.num_updates // cfg.fit_rate} refits, "
            f"k=2..{cfg.max_k})")
    return [row(SUITE, f"{case}: jitted update compile", compile_s, None, "s"),
            row(SUITE, f"{case}: per round (sample + update)", 1e3 * per_round, None, "ms")]


def run(cfg: CurriculumBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`) of every seed count (target: ours >= 20x
    the reference at 64 seeds); skipped without scikit-learn."""
    try:
        import sklearn  # noqa: F401
    except ImportError as err:
        raise Skipped(f"the reference needs scikit-learn ({err}): pip install scikit-learn") from None
    rows = []
    for seeds in cfg.num_seeds:
        rows += measure(cfg, seeds)
    if cfg.host_loop_seeds:
        rows += measure_host_loop(cfg)
    return rows


def plot(rows: list[dict], path) -> None:
    """Bars of teacher updates/s for ours and scikit-learn at each seed count (log axis)."""
    from jaxrl_icl.run.plots import plot_paired_bars

    pairs = {r["case"].split(" x ")[0]: (r["ours"], r["reference"]) for r in rows if r["unit"] == "updates/s"}
    plot_paired_bars(pairs, ("ours (jax)", "scikit-learn"), path,
                     ylabel="teacher updates / s (all seeds, compile excluded)",
                     title="ALP-GMM: jitted JAX vs scikit-learn host loop")
