"""Environment throughput: steps/s of a uniformly random policy, vmapped over many envs.

Each environment is stepped ``num_steps`` times in one jitted ``lax.scan`` over a
``jax.vmap`` of ``num_envs`` copies (auto-reset included), after a warm-up call that
compiles it (its time, compile included, is reported too); the best of ``repeats`` timed
calls is reported. gymnax CartPole-v1 runs in the same process as every row's reference, so
the ratios compare like with like.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

import envs
from experiments.benchmarks.report import row
from jaxrl_icl.config import require_positive

SUITE = "envs"
REFERENCE = "gymnax:CartPole-v1"
OWN_ENVS = (
    "darkroom-9x9",
    "darkroom-10x10",
    "key-to-door-9x9",
    "bandit-bernoulli",
    "bandit-gaussian",
    "bandit-linear",
    "tabular-random",
)


@dataclasses.dataclass(frozen=True)
class EnvBenchConfig:
    """Random-policy throughput of every own environment against gymnax CartPole-v1."""

    num_envs: int = dataclasses.field(default=4096, metadata={"help": "environments vmapped"})
    num_steps: int = dataclasses.field(default=1000, metadata={"help": "steps per env in one scan"})
    repeats: int = dataclasses.field(default=3, metadata={"help": "timed calls; the best is kept"})
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps", "repeats"):
            require_positive(self, name)


def _rollout_fn(env, params, num_envs: int, num_steps: int):
    """Jitted ``key -> total reward`` stepping ``num_envs`` envs ``num_steps`` times."""
    action_space = env.action_space(params)

    def run(key):
        key, reset_key = jax.random.split(key)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_envs), params)

        def body(carry, _):
            state, key, total = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actions = jax.vmap(action_space.sample)(jax.random.split(act_key, num_envs))
            _, state, reward, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_envs), state, actions, params
            )
            return (state, key, total + reward.sum()), None

        (_, _, total), _ = jax.lax.scan(body, (state, key, jnp.float32(0)), None, num_steps)
        return total

    return jax.jit(run)


def measure(name: str, cfg: EnvBenchConfig) -> tuple[float, float]:
    """``(steps/s, compile seconds)`` of ``name``: the best of ``cfg.repeats`` timed calls."""
    env, params = envs.make(name)
    fn = _rollout_fn(env, params, cfg.num_envs, cfg.num_steps)
    key = jax.random.PRNGKey(cfg.seed)
    t0 = time.perf_counter()
    fn(key).block_until_ready()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for i in range(cfg.repeats):
        t0 = time.perf_counter()
        fn(jax.random.fold_in(key, i)).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return cfg.num_envs * cfg.num_steps / best, compile_s


def run(cfg: EnvBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`), CartPole being every row's reference:
    per own env, random-policy steps/s and the first call's seconds (compile and one run)."""
    ref_speed, ref_compile = measure(REFERENCE, cfg)
    rows = []
    for name in OWN_ENVS:
        speed, compile_s = measure(name, cfg)
        rows += [row(SUITE, f"{name} ({cfg.num_envs} envs x {cfg.num_steps} steps)", speed, ref_speed, "steps/s"),
                 row(SUITE, f"{name}: first call (compile)", compile_s, ref_compile, "s", lower_is_better=True)]
    return rows


def plot(rows: list[dict], path) -> None:
    """Bar chart of steps/s per environment with CartPole's level as a dashed line."""
    from jaxrl_icl.run.plots import plot_bars

    speeds = [r for r in rows if r["unit"] == "steps/s"]
    plot_bars(
        {REFERENCE: speeds[0]["reference"], **{r["case"].split(" (")[0]: r["ours"] for r in speeds}},
        path,
        ylabel="env steps / s (random policy)",
        title="Environment throughput",
        reference=(REFERENCE, speeds[0]["reference"]),
    )
