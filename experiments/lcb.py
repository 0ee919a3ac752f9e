"""Pessimism across data compositions: LCB against greedy and behaviour cloning.

``python -m experiments.lcb [--bandit-instances 500] [--penalty-scale 1.0] ...``

Reproduces the message of Rashidinejad et al. (2021), "Bridging Offline Reinforcement Learning
and Imitation Learning: A Tale of Pessimism": datasets mix an expert (optimal) policy with
uniformly random actions; with near-expert data behaviour cloning and LCB are good and greedy
on empirical means is bad at small sizes, with uniform data behaviour cloning is bad and LCB is
close to greedy, and LCB is never far from the best of them. Four settings, each with many
random instances vmapped (:mod:`jaxrl_icl.offline.lcb` for the algorithms):

* ``bandit``: Bernoulli arms with means ~ U(0, 1); a dataset is ``N`` pulls.
* ``contextual_bandit``: uniform contexts, Bernoulli arms per context; ``N`` pulls.
* ``mdp``: ``tabular-random`` MDPs (Dirichlet(1) transitions, U(0, 1) mean rewards observed as
  Bernoulli draws, uniform start); a dataset is ``N`` episodes of ``H`` steps.
* ``mdp_darkroom``: Dark Room 9x9 (start (4, 4), H = 20) with a uniformly random goal as
  explicit tables; ``N`` episodes.

In every dataset exactly ``round(f N)`` episodes (a bandit pull is an episode) follow the
expert, for expert fractions ``f``, the rest uniform actions. Methods: ``lcb`` (the LCB
policy; pessimistic value iteration for MDPs), ``greedy`` (empirical means; for MDPs value
iteration on the empirical model, no penalty), ``bc`` (most frequent action per state; for
MDPs counted over all steps, so it cannot copy an expert whose choice changes near the end of
the episode: a small gap remains on expert-only tabular-random data) and, with
``--extra-penalty-scales 0.1 0.02``, LCB at those penalty scales (``lcb_x0.1``, ``lcb_x0.02``).
Sub-optimality is the optimal value minus the policy's exact value on the true model (for
bandits the expected reward gap, averaged over contexts; for MDPs the expected return from the
start distribution).

What to expect with the default (Hoeffding, ``--penalty-scale 1``) penalty: the bandit
settings and the tabular MDP show the paper's picture. On the MDPs the penalty, of order
``H sqrt(log(S A H / delta) / n)``, exceeds the values until counts are large, so pessimistic
VI chooses like BC there: on Dark Room with uniform data, where deterministic dynamics make
greedy exact as soon as the goal is in the data, LCB stays far behind greedy even at
``N = 10^4``. A smaller ``--penalty-scale`` moves LCB towards greedy (better on uniform data,
worse on near-expert data).

Writes ``config.json``, ``versions.json``, ``summary.json`` (``suboptimality[setting][method]
[expert_fraction][N]``: mean over instances; ``halfwidth``: the 95% t-interval half-width in
the same layout) and one PNG per setting (``lcb_<setting>.png``: a panel per expert fraction,
sub-optimality against N with 95% bands), and prints a table at N = 100 and 1000.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from envs.darkroom import DarkRoom, tabular_darkroom
from envs.tabular import TabularMDP
from jaxrl_icl.batching import map_batch
from jaxrl_icl.config import ConfigError, field, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.offline import lcb
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.plots import plot_curve_panels
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.stats import confidence_band

SETTINGS = ("bandit", "contextual_bandit", "mdp", "mdp_darkroom")
METHODS = ("lcb", "greedy", "bc")
TABLE_SIZES = (100, 1000)


@dataclasses.dataclass(frozen=True)
class LCBConfig:
    """LCB, greedy and behaviour cloning across expert fractions and dataset sizes."""

    settings: tuple[str, ...] = field(SETTINGS, help="settings to run, from " + ", ".join(SETTINGS))
    expert_fractions: tuple[float, ...] = field((0.0, 0.25, 0.5, 0.75, 0.9, 1.0), help="expert fractions f")
    sizes: tuple[int, ...] = field((10, 22, 46, 100, 215, 464, 1000, 2154, 4642, 10000),
                                   help="dataset sizes N (pulls for bandits, episodes for MDPs)")
    bandit_arms: int = field(10, help="bandit arms")
    contexts: int = field(10, help="contextual bandit contexts")
    context_arms: int = field(10, help="contextual bandit arms")
    mdp_states: int = field(10, help="tabular-random states")
    mdp_actions: int = field(5, help="tabular-random actions")
    mdp_horizon: int = field(10, help="tabular-random horizon H (steps)")
    bandit_instances: int = field(500, help="random instances for each bandit setting")
    mdp_instances: int = field(100, help="random instances for each MDP setting")
    delta: float = field(0.1, help="LCB confidence level delta")
    penalty_scale: float = field(1.0, help="multiplies the LCB penalty (method lcb)")
    extra_penalty_scales: tuple[float, ...] = field((), help="more LCB penalty scales c, as methods lcb_x<c>")
    seed: int = field(0, help="PRNG seed")

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("bandit_arms", "contexts", "context_arms", "mdp_states", "mdp_actions", "mdp_horizon",
                     "bandit_instances", "mdp_instances", "delta"):
            require_positive(self, name)
        require_in(self, "delta", 0.0, 1.0)
        require_nonnegative(self, "penalty_scale")
        if any(c < 0 for c in self.extra_penalty_scales):
            raise ConfigError("extra_penalty_scales", f"each must be >= 0, got {self.extra_penalty_scales}")

    @property
    def methods(self) -> tuple[str, ...]:
        """Method names in output order: lcb, greedy, bc, then lcb_x<c> per extra scale."""
        return (*METHODS, *(f"lcb_x{c:g}" for c in self.extra_penalty_scales))
        if not self.settings or any(s not in SETTINGS for s in self.settings):
            raise ConfigError("settings", f"must be a non-empty subset of {', '.join(SETTINGS)}, got {self.settings}")
        if not self.expert_fractions or any(not 0.0 <= f <= 1.0 for f in self.expert_fractions):
            raise ConfigError("expert_fractions", f"must be non-empty, each in [0, 1], got {self.expert_fractions}")
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise ConfigError("sizes", f"must be non-empty, each >= 1, got {self.sizes}")


def bandit_instance(config: LCBConfig, shape: tuple[int, ...], key: jax.Array, data_keys: jax.Array) -> jax.Array:
    """Sub-optimality ``[fractions, sizes, methods]`` on one Bernoulli (contextual) bandit with
    means ``U(0, 1)`` of ``shape`` (``[A]`` or ``[S, A]``) drawn from ``key``; one data stream
    per expert fraction (``data_keys [fractions]``)."""
    means = jax.random.uniform(key, shape)

    def methods(counts: lcb.Counts) -> jax.Array:
        policies = (lcb.bandit_lcb(counts, config.delta, config.penalty_scale), lcb.bandit_greedy(counts),
                    lcb.behaviour_cloning(counts.visits),
                    *(lcb.bandit_lcb(counts, config.delta, c) for c in config.extra_penalty_scales))
        return jnp.stack([lcb.bandit_suboptimality(means, pi) for pi in policies])

    def per_fraction(data_key: jax.Array, fraction: jax.Array) -> jax.Array:
        return jax.vmap(methods)(lcb.mixture_bandit_counts(data_key, means, fraction, config.sizes))

    return jax.vmap(per_fraction)(data_keys, jnp.asarray(config.expert_fractions, jnp.float32))


def mdp_instance(config: LCBConfig, setting: str, key: jax.Array, data_keys: jax.Array) -> jax.Array:
    """Sub-optimality ``[fractions, sizes, methods]`` on one MDP of ``setting`` drawn from
    ``key``; one stream of episodes per expert fraction (``data_keys [fractions]``)."""
    if setting == "mdp":
        env = TabularMDP(config.mdp_states, config.mdp_actions, config.mdp_horizon)
        task = env.sample_params(key)
        horizon = config.mdp_horizon
    else:
        env = DarkRoom()
        task = tabular_darkroom(env, env.sample_params(key))
        horizon = env.horizon
    q_star = lcb.optimal_q(task.P, task.R, horizon)
    optimum = task.init_dist @ q_star[0].max(axis=-1)

    def methods(counts: lcb.Counts) -> jax.Array:
        bc = jnp.broadcast_to(lcb.behaviour_cloning(counts.visits), (horizon, *counts.visits.shape))
        policies = (lcb.pessimistic_value_iteration(counts, horizon, config.delta, config.penalty_scale)[0],
                    lcb.empirical_value_iteration(counts, horizon), bc,
                    *(lcb.pessimistic_value_iteration(counts, horizon, config.delta, c)[0]
                      for c in config.extra_penalty_scales))
        return jnp.stack([optimum - lcb.policy_value(task.P, task.R, task.init_dist, pi) for pi in policies])

    def per_fraction(data_key: jax.Array, fraction: jax.Array) -> jax.Array:
        counts = lcb.mixture_mdp_counts(data_key, task.P, task.R, task.init_dist, q_star.argmax(axis=-1), fraction,
                                        config.sizes)
        return jax.vmap(methods)(counts)

    return jax.vmap(per_fraction)(data_keys, jnp.asarray(config.expert_fractions, jnp.float32))


def run_setting(config: LCBConfig, setting: str, key: jax.Array) -> np.ndarray:
    """float64 ``[instances, fractions, sizes, methods]`` sub-optimality. Each (instance,
    fraction) has one data stream whose first ``N`` episodes are the size-``N`` dataset, so the
    datasets of one instance and fraction are nested; the task is the same at every fraction."""
    if setting in ("bandit", "contextual_bandit"):
        shape = (config.bandit_arms,) if setting == "bandit" else (config.contexts, config.context_arms)
        num, instance = config.bandit_instances, partial(bandit_instance, config, shape)
    else:
        num, instance = config.mdp_instances, partial(mdp_instance, config, setting)
    task_keys = jax.random.split(jax.random.fold_in(key, 0), num)
    data_keys = jax.random.split(jax.random.fold_in(key, 1), (num, len(config.expert_fractions)))
    return np.asarray(jax.jit(partial(map_batch, instance))(task_keys, data_keys), np.float64)


def summarize(config: LCBConfig, results: dict[str, np.ndarray]) -> dict:
    """``suboptimality`` and ``halfwidth`` as ``[setting][method][fraction][N]`` (mean over
    instances and its 95% t half-width), plus the grid and instance counts."""
    means, halves = {}, {}
    for setting, sub in results.items():
        means[setting], halves[setting] = {}, {}
        for m, method in enumerate(config.methods):
            means[setting][method], halves[setting][method] = {}, {}
            for i, f in enumerate(config.expert_fractions):
                mean, low, high = confidence_band(sub[:, i, :, m])
                means[setting][method][f"{f:g}"] = {str(n): float(v) for n, v in zip(config.sizes, mean)}
                halves[setting][method][f"{f:g}"] = {str(n): float(v) for n, v in zip(config.sizes, (high - low) / 2)}
    instances = {s: int(sub.shape[0]) for s, sub in results.items()}
    return {"suboptimality": means, "halfwidth": halves, "instances": instances, "methods": list(config.methods),
            "expert_fractions": list(config.expert_fractions), "sizes": list(config.sizes)}


def format_table(summary: dict, setting: str, sizes: tuple[int, ...]) -> str:
    """Rows: expert fraction; columns: method at each N of ``sizes`` present in the run."""
    table = summary["suboptimality"][setting]
    cols = [(n, m) for n in sizes if str(n) in table[METHODS[0]][f"{summary['expert_fractions'][0]:g}"]
            for m in summary["methods"]]
    width = max(15, *(len(f"{m} N={n}") + 2 for n, m in cols))
    lines = [f"{setting}: sub-optimality (mean over {summary['instances'][setting]} instances)",
             f"{'f':>6}" + "".join(f"{f'{m} N={n}':>{width}}" for n, m in cols)]
    for f in summary["expert_fractions"]:
        lines.append(f"{f:>6g}" + "".join(f"{table[m][f'{f:g}'][str(n)]:>{width}.4f}" for n, m in cols))
    return "\n".join(lines)


def plot_setting(config: LCBConfig, setting: str, sub: np.ndarray, path) -> None:
    """One panel per expert fraction: sub-optimality against N per method, 95% bands."""
    x = np.asarray(config.sizes)
    panels = {f"expert fraction {f:g}": {m: (x, sub[:, i, :, k]) for k, m in enumerate(config.methods)}
              for i, f in enumerate(config.expert_fractions)}
    plot_curve_panels(panels, path, "dataset size N", "sub-optimality", f"{setting}: LCB vs greedy vs BC",
                      log_x=True)


def main(argv: list[str] | None = None) -> None:
    config, options = parse_cli(LCBConfig, sys.argv[1:] if argv is None else argv, prog="python -m experiments.lcb")
    run_dir = open_run("lcb", config, options)
    key = jax.random.key(config.seed)
    results = {}
    for setting in config.settings:
        start = time.perf_counter()
        results[setting] = run_setting(config, setting, jax.random.fold_in(key, SETTINGS.index(setting)))
        print(f"{setting}: {time.perf_counter() - start:.1f} s")
    summary = summarize(config, results)
    write_json(run_dir.path / "summary.json", summary)
    for setting, sub in results.items():
        plot_setting(config, setting, sub, run_dir.plot_path(f"lcb_{setting}"))
        print(format_table(summary, setting, TABLE_SIZES))
        print()
    print(f"run directory: {run_dir.path}")


if __name__ == "__main__":
    main()
