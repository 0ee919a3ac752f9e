"""D4RL-style offline datasets from JAX envs: ``python -m experiments.collect_offline``.

For each env of ``--envs``, PPO trains to an expert while its snapshots and its own rollouts
are kept (:func:`jaxrl_icl.offline.generate.generate_qualities`), then the five qualities
``random``, ``medium``, ``medium-replay``, ``expert`` and ``medium-expert`` are written as
D4RL-layout HDF5 files ``datasets/<env>-<quality>.hdf5`` in the run directory, each with its
measured random and expert reference returns in ``metadata/``. Load one with
``jaxrl_icl.offline.load_d4rl(path)``.

The run directory also gets ``summary.json`` (per env and quality: transitions, episodes,
mean episode return and its normalised score; the reference returns; the medium snapshot)
and ``<env>.png``: the learner's training curve, its snapshots' returns and the medium point.

Grid worlds with an exact optimal policy (``--envs darkroom-9x9``, ``darkroom-10x10``: the
shortest path to the goal) get discrete qualities from it instead, with no learner:
``uniform`` (uniform random actions), ``epsilon-optimal`` (the optimal action, replaced with
probability ``--epsilon``, default 0.3, by a uniform one) and ``optimal``, on the goal
``--goal X Y`` (default: the env's), with int actions and the uniform and optimal returns as
references (:func:`jaxrl_icl.offline.generate.generate_grid_qualities`).

CPU default: ``gymnax:Pendulum-v1``, 1e5 transitions per quality, PPO for 6e5 steps (about a
minute of training on 2 cores; random -1230, expert about -190). ``--scale paper``: Brax
``hopper``, ``halfcheetah`` and ``walker2d`` at 1e6 transitions each, for a GPU.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import envs
from jaxrl_icl.config import ConfigError, field, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.offline import make_dataset, normalized_score, save_d4rl
from jaxrl_icl.offline.generate import exact_optimal_action, generate_grid_qualities, generate_qualities
from jaxrl_icl.rl.ppo import PPOConfig
from jaxrl_icl.run.config import parse_cli, with_scale
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import open_run, write_json

PROG = "python -m experiments.collect_offline"

# PPO on Pendulum: normalised observations and rewards, gamma 0.95, 64 envs x 32 steps
CPU_PPO = PPOConfig(num_envs=64, num_steps=32, total_timesteps=600_000, num_minibatches=16, update_epochs=10,
                    lr=3e-4, ent_coef=0.0, normalize_obs=True, normalize_reward=True, gamma=0.95)

SCALES = {
    "paper": [
        "--envs", "brax:hopper", "brax:halfcheetah", "brax:walker2d", "--num-transitions", "1000000",
        "--num-envs", "100", "--eval-episodes", "16", "--chunk-updates", "20",
        "--ppo.num-envs", "256", "--ppo.num-steps", "32", "--ppo.total-timesteps", "30000000",
        "--ppo.num-minibatches", "32", "--ppo.update-epochs", "4", "--ppo.gamma", "0.99",
    ],
}


@dataclasses.dataclass(frozen=True)
class CollectOfflineConfig:
    """Offline datasets of every D4RL quality from JAX envs.

    Attributes:
      envs: env names for envs.make (continuous or discrete actions).
      num_transitions: transitions of the random, medium and expert datasets (each).
      num_envs: parallel envs when recording (num_transitions is a multiple of it).
      max_episode_steps: the envs' episode limit, which the reference returns and the datasets'
        episode statistics rely on (0: each env's own ``max_steps_in_episode``; another value
        must equal it).
      eval_episodes: episodes per snapshot and for the random / expert reference returns (grid worlds
        measure them on every episode of their uniform and optimal datasets).
      chunk_updates: PPO updates between snapshots.
      medium_fraction: the medium policy reaches this fraction of the way from random to expert.
      epsilon: grid worlds' epsilon-optimal quality: probability of a uniform action instead of the optimal one.
      goal: grid worlds' task, the goal cell (x, y); empty: the env's default goal.
      seed: PRNG seed.
      scale: "cpu" (the defaults) or "paper" (Brax locomotion at 1e6 transitions, for a GPU).
      ppo: the expert learner.
    """

    envs: tuple[str, ...] = ("gymnax:Pendulum-v1",)
    num_transitions: int = 100_000
    num_envs: int = field(50, help="parallel envs when recording (num-transitions is a multiple of it)")
    max_episode_steps: int = field(0, help="the envs' episode limit (0: each env's own max_steps_in_episode)")
    eval_episodes: int = 32
    chunk_updates: int = field(1, help="PPO updates between snapshots (medium is chosen among them)")
    medium_fraction: float = 1 / 3
    epsilon: float = field(0.3, help="grid worlds' epsilon-optimal data: probability of a uniform action")
    goal: tuple[int, ...] = field((), help="grid worlds' goal cell X Y (default: the env's default goal)")
    seed: int = 0
    scale: Literal["cpu", "paper"] = "cpu"
    ppo: PPOConfig = CPU_PPO

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_transitions", "num_envs", "eval_episodes", "chunk_updates"):
            require_positive(self, name)
        require_nonnegative(self, "max_episode_steps")
        require_in(self, "medium_fraction", 0.0, 1.0)
        require_in(self, "epsilon", 0.0, 1.0)
        if not self.envs:
            raise ConfigError("envs", "name at least one env")
        if len(self.goal) not in (0, 2):
            raise ConfigError("goal", f"must be a cell X Y, got {self.goal}")
        if self.num_transitions % self.num_envs:
            raise ConfigError("num_transitions", f"must be a multiple of num_envs={self.num_envs}, "
                              f"got {self.num_transitions}")
        if self.ppo.num_updates < self.chunk_updates:
            raise ConfigError("chunk_updates", f"must be at most the PPO run's {self.ppo.num_updates} updates")


def file_stem(env_name: str, quality: str) -> str:
    """``gymnax:Pendulum-v1``, ``medium`` -> ``pendulum-v1-medium``."""
    return f"{env_name.split(':')[-1].lower()}-{quality}"


def _save(run, name: str, datasets: dict, metadata: dict) -> dict:
    """Write each quality's D4RL file; its summary entry (path, size, mean return and score)."""
    entries = {}
    for quality, arrays in datasets.items():
        meta = metadata[quality]
        bounds = (-1.0, 1.0) if arrays["actions"].ndim == 2 else (
            (0, meta["num_actions"] - 1) if "num_actions" in meta else None)
        dataset = make_dataset(arrays, source=f"{name} {quality}", action_bounds=bounds)
        path = save_d4rl(run.path / "datasets" / f"{file_stem(name, quality)}.hdf5", dataset, meta)
        ret = meta["mean_episode_return"]
        entries[quality] = {
            "path": str(path.relative_to(run.path)), "transitions": dataset.size,
            "episodes": int(np.sum(np.asarray(dataset.timesteps) == 0)), "mean_episode_return": ret,
            "normalized_score": float(normalized_score(name, ret, meta)),
        }
    return entries


def episode_limit(config: CollectOfflineConfig, name: str, params) -> int:
    """The episode limit of env ``name`` (``params.max_steps_in_episode``, else
    ``config.max_episode_steps``); ValueError if the two differ or neither is set. Its complete
    episodes are what the reference returns and the datasets' statistics average over."""
    own = getattr(params, "max_steps_in_episode", None)
    if own is None:
        if not config.max_episode_steps:
            raise ValueError(f"{name} has no max_steps_in_episode; pass its episode limit")
        return config.max_episode_steps
    if config.max_episode_steps not in (0, int(own)):
        raise ValueError(f"{name} ends episodes after {int(own)} steps, not {config.max_episode_steps}; "
                         "pass 0 for the env's own limit")
    return int(own)


def _grid_datasets(config: CollectOfflineConfig, run, index: int, name: str, env, params) -> dict:
    """The grid qualities of env ``name`` (its exact optimal policy), saved; its summary entry."""
    datasets, metadata = generate_grid_qualities(
        jax.random.fold_in(jax.random.PRNGKey(config.seed), index), env, params, name,
        num_transitions=config.num_transitions, num_envs=config.num_envs, epsilon=config.epsilon)
    first = next(iter(metadata.values()))
    return {"ref_min_score": first["ref_min_score"], "ref_max_score": first["ref_max_score"],
            "epsilon": config.epsilon, "datasets": _save(run, name, datasets, metadata)}


def main(argv: list[str] | None = None) -> dict:
    config, options = parse_cli(CollectOfflineConfig, with_scale(argv, SCALES), prog=PROG)
    make = lambda name: envs.make(name, **({"goal": jnp.asarray(config.goal, jnp.int32)} if config.goal else {}))
    limits = {}
    for name in config.envs:  # unknown names, goals outside the grid and episode limits fail before any compute
        try:
            env, params = make(name)
        except ValueError as err:
            raise SystemExit(f"{PROG}: error: argument --{'goal' if 'goal' in str(err) else 'envs'}: {err}") from None
        if exact_optimal_action(env) is None:
            try:
                limits[name] = episode_limit(config, name, params)
            except ValueError as err:
                raise SystemExit(f"{PROG}: error: argument --max-episode-steps: {err}") from None
    run = open_run("collect_offline", config, options)
    (run.path / "datasets").mkdir(exist_ok=True)
    summary: dict = {}
    for i, name in enumerate(config.envs):
        env, params = make(name)
        if exact_optimal_action(env) is not None:
            summary[name] = _grid_datasets(config, run, i, name, env, params)
            continue
        with tqdm(total=1, desc=f"PPO on {name}", unit="chunk", disable=not options.progress) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            made = generate_qualities(
                jax.random.fold_in(jax.random.PRNGKey(config.seed), i), env, params, name, config.ppo,
                num_transitions=config.num_transitions, num_envs=config.num_envs,
                chunk_updates=config.chunk_updates, eval_episodes=config.eval_episodes,
                max_episode_steps=limits[name], medium_fraction=config.medium_fraction,
                progress=progress,
            )
        entry = {"ref_min_score": made.metadata["random"]["ref_min_score"],
                 "ref_max_score": made.metadata["random"]["ref_max_score"], "medium_update": made.medium_update,
                 "datasets": _save(run, name, made.datasets, made.metadata)}
        summary[name] = entry
        updates = np.arange(1, made.train_returns.shape[0] + 1)
        plot_curves(
            {"PPO training return": (updates, made.train_returns[None]),
             "snapshot return (evaluation)": (made.snapshot_updates, made.snapshot_returns[None])},
            run.plot_path(file_stem(name, "learner")), xlabel="PPO update", ylabel="episode return",
            title=f"Source policy on {name}",
            hlines={"random": entry["ref_min_score"], "expert": entry["ref_max_score"],
                    f"medium (update {made.medium_update})": made.snapshot_returns[
                        int(np.searchsorted(made.snapshot_updates, made.medium_update))]},
        )
    write_json(run.path / "summary.json", summary)
    for name, entry in summary.items():
        print(f"{name}: random {entry['ref_min_score']:.1f}, expert {entry['ref_max_score']:.1f}"
              + (f", medium snapshot at update {entry['medium_update']}" if "medium_update" in entry else ""))
        print(f"  {'quality':<14} {'transitions':>11} {'episodes':>8} {'return':>9} {'normalised':>10}")
        for quality, d in entry["datasets"].items():
            print(f"  {quality:<14} {d['transitions']:>11} {d['episodes']:>8} {d['mean_episode_return']:>9.1f} "
                  f"{d['normalized_score']:>10.1f}")
    print(f"run directory: {run.path}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
