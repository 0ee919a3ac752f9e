"""A PPO student on CartPole tasks chosen by a curriculum teacher, teacher and student in one jit.

``python -m experiments.curriculum_ppo [--num-seeds 16] [--num-rounds 200] [--run-dir DIR]``

The task is a CartPole-v1 with two continuous parameters, the pole's half-length (m) and the
push force (N), in the box ``length_range x force_range`` (0.003-3 m x 0.03-3000 N by
default). Teachers work on ``(log10 half-length, log10 force)``, so tasks are log-uniform for
the Random teacher and the evaluation grid is even in log scale. The box is mostly
unlearnable on purpose, as in Portelas et al. (2019): poles shorter than a few cm, forces
too weak to catch the pole and forces so strong that a single push overshoots, around a
learnable core of mid-size poles and forces.

Episodes last ``max_steps`` steps, so a task's competence is the CartPole return
/ ``max_steps`` in [0, 1]. With ``fixed_length`` (the default) a failure (pole past 12
degrees or cart off the track) ends the reward but not the training episode: the system stays
frozen and pays 0 until the time limit, so a failed episode costs as many env steps as a
successful one, as a walker stuck at an obstacle uses up its whole episode in Portelas et al.
Returns and competences are CartPole's; only the cost of failing changes. (With plain
CartPole termination, ``--no-fixed-length``, failed episodes on unlearnable tasks end within a
few steps, Random wastes almost nothing on them, and the two teachers end level.)

The env is :class:`envs.task_pool_cartpole.TaskPoolCartPole` and the loop
:func:`jaxrl_icl.curriculum.make_curriculum_run`. One teacher round (a ``lax.scan`` step): the
teacher samples ``tasks_per_round`` tasks; every episode the student starts during the round
plays one of them (uniform, drawn at reset); PPO (:func:`jaxrl_icl.rl.ppo.make_train`) makes
``updates_per_round`` updates; the greedy policy then plays one episode on each proposed task
and the teacher is told each competence. Every ``eval_every`` rounds the greedy policy is
scored on a fixed ``grid_size^2`` grid over the whole box (one episode per cell); that grid
competence is the comparison. Per teacher, seeds are vmapped and the whole run is one jitted scan.

At the defaults (16 seeds, 410k student steps per seed, about 2.5 minutes for both teachers
on 2 CPU cores) ALP-GMM ends with a grid competence of 0.364 (95% CI 0.344-0.384) against
Random's 0.293 (0.253-0.333), difference +0.070 (Welch 95% CI +0.027 to +0.114); with
``--seed 1``, 0.346 against 0.300, difference +0.046 (+0.004 to +0.088). ALP-GMM masters
more of the learnable core; both stay near 0 on the unlearnable rest.

Writes ``config.json``, ``versions.json``, ``summary.json`` (final grid competence per teacher
and seed, mean and 95% interval, seconds, competences the teacher skipped as non-finite; with
both teachers, ALP-GMM minus Random with a 95% Welch interval), ``competence.png`` (grid
competence vs env steps, 95% bands) and ``grid.png`` (final per-cell competence per teacher, mean over seeds).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.task_pool_cartpole import TaskPoolCartPole, TaskPoolParams
from jaxrl_icl.config import ConfigError, field, require_choices, require_divides, require_positive, require_types
from jaxrl_icl.curriculum import ALPGMMConfig, RandomConfig, make_curriculum_run, teacher_for, trainer_student
from jaxrl_icl.rl.evaluate import greedy_episode_return
from jaxrl_icl.rl.networks import ActorCritic
from jaxrl_icl.rl.ppo import PPOConfig, make_train
from jaxrl_icl.run.config import check_num_seeds, parse_cli
from jaxrl_icl.run.plots import plot_curves, plot_heatmaps
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.run.sweep import seed_keys, sweep_seeds
from jaxrl_icl.stats import confidence_band, welch_difference

TEACHER_NAMES = ("random", "alp-gmm")


@dataclasses.dataclass(frozen=True)
class CurriculumPPOConfig:
    """ALP-GMM vs Random teaching a PPO student on a 2-D, mostly unlearnable family of CartPole tasks."""

    teachers: tuple[str, ...] = field(TEACHER_NAMES, help="teachers to compare: random, alp-gmm")
    num_seeds: int = field(16, help="seeds per teacher, vmapped")
    seed: int = field(0, help="base PRNG seed")
    num_rounds: int = field(200, help="teacher rounds per run")
    updates_per_round: int = field(2, help="PPO updates between two teacher rounds")
    tasks_per_round: int = field(16, help="tasks the teacher proposes (and is told about) per round")
    eval_every: int = field(10, help="rounds between two grid evaluations (divides num_rounds)")
    grid_size: int = field(8, help="grid cells per task dimension for the evaluation")
    max_steps: int = field(200, help="episode time limit; competence = return / max_steps")
    fixed_length: bool = field(True, help="a failure ends the reward, not the training episode, which "
                               "then costs max_steps env steps whatever happens")
    length_range: tuple[float, ...] = field((0.003, 3.0), help="pole half-length box (m); teachers sample its log10")
    force_range: tuple[float, ...] = field((0.03, 3000.0), help="push force box (N); teachers sample its log10")
    fit_rate: int = field(64, help="ALP-GMM: reports between GMM fits (and bootstrap length)")
    max_k: int = field(6, help="ALP-GMM: largest number of Gaussians tried")
    random_task_ratio: float = field(0.2, help="ALP-GMM: probability of a uniform task")
    ppo: PPOConfig = PPOConfig(num_envs=16, num_steps=64, num_minibatches=4, update_epochs=4, lr=1e-3,
                               total_timesteps=1024)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "num_rounds", "updates_per_round", "tasks_per_round", "grid_size",
                     "max_steps"):
            require_positive(self, name)
        require_divides(self, "eval_every", "num_rounds")
        require_choices(self, "teachers", TEACHER_NAMES)
        for name in ("length_range", "force_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] < lo_hi[1]:
                raise ConfigError(name, f"must be (low, high) with 0 < low < high, got {lo_hi}")
        self.teacher_config("alp-gmm")

    @property
    def low(self) -> tuple[float, float]:
        """Lower corner of the teachers' box, ``(log10 half-length, log10 force)``."""
        return (float(np.log10(self.length_range[0])), float(np.log10(self.force_range[0])))

    @property
    def high(self) -> tuple[float, float]:
        """Upper corner of the teachers' box, ``(log10 half-length, log10 force)``."""
        return (float(np.log10(self.length_range[1])), float(np.log10(self.force_range[1])))

    def teacher_config(self, name: str) -> Any:
        """The teacher config of ``name`` on this task box."""
        if name == "random":
            return RandomConfig(low=self.low, high=self.high)
        return ALPGMMConfig(low=self.low, high=self.high, fit_rate=self.fit_rate, max_k=self.max_k,
                            random_task_ratio=self.random_task_ratio,
                            history_capacity=self.num_rounds * self.tasks_per_round)

    def ppo_config(self) -> PPOConfig:
        """The PPO config with ``total_timesteps`` set to the whole run (learning-rate annealing)."""
        steps = self.num_rounds * self.updates_per_round * self.ppo.batch_size
        return dataclasses.replace(self.ppo, total_timesteps=steps)

    def grid_tasks(self) -> np.ndarray:
        """float32[grid_size^2, 2]: cell centres of the evaluation grid in the teachers' (log10)
        coordinates, length-major."""
        edges = [np.linspace(lo, hi, self.grid_size + 1) for lo, hi in zip(self.low, self.high)]
        centres = [(e[:-1] + e[1:]) / 2 for e in edges]
        return np.stack(np.meshgrid(*centres, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)


def to_physical(tasks: jax.Array) -> jax.Array:
    """Teacher coordinates ``(log10 half-length, log10 force)`` float32[..., 2] -> ``(m, N)``."""
    return 10.0 ** tasks


def make_evaluate(config: CurriculumPPOConfig, env: TaskPoolCartPole):
    """``evaluate(params, tasks [M, 2], key) -> competence float32[M]``: one greedy episode per task."""
    ppo = config.ppo
    network = ActorCritic(action_dim=2, continuous=False, hidden=ppo.hidden_size,
                          num_layers=ppo.num_layers, activation=ppo.activation)
    cartpole = env._cartpole

    def episode(params: Any, task: jax.Array, key: jax.Array) -> jax.Array:
        scores = lambda obs: network.apply(params, obs)[0].logits  # noqa: E731
        task_params = env.task_params(task, config.max_steps)
        return greedy_episode_return(key, cartpole, task_params, scores, config.max_steps) / config.max_steps

    def evaluate(params: Any, tasks: jax.Array, key: jax.Array) -> jax.Array:
        return jax.vmap(episode, in_axes=(None, 0, 0))(params, tasks, jax.random.split(key, tasks.shape[0]))

    return evaluate


def make_run(config: CurriculumPPOConfig, name: str):
    """``run(key) -> (grid competence float32[num_evals + 1], final grid float32[grid_size^2],
    int32[] competences the teacher skipped as non-finite)``."""
    env = TaskPoolCartPole(config.fixed_length)
    evaluate = make_evaluate(config, env)
    student = trainer_student(
        make_train(config.ppo_config(), env),
        env_params=lambda tasks: TaskPoolParams(to_physical(tasks), config.max_steps),
        updates_per_round=config.updates_per_round,
        competence=lambda state, tasks, key: evaluate(state.params, to_physical(tasks), key),
    )
    loop = make_curriculum_run(teacher_for(config.teacher_config(name)), config.teacher_config(name), student,
                               jnp.asarray(config.grid_tasks()), num_rounds=config.num_rounds,
                               tasks_per_round=config.tasks_per_round, eval_every=config.eval_every)

    def run(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        _, out = loop(key)
        return out.eval_competence.mean(axis=-1), out.eval_competence[-1], out.num_rejected

    return run


def run(config: CurriculumPPOConfig) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], dict[str, float]]:
    """``(results, seconds)``: teacher -> (grid competence [num_seeds, num_evals + 1], final grid
    [num_seeds, grid_size^2], competences skipped as non-finite [num_seeds]) and teacher ->
    wall-clock seconds (compilation included)."""
    keys = seed_keys(config.seed, config.num_seeds)
    results, seconds = {}, {}
    for name in config.teachers:
        start = time.perf_counter()
        results[name] = tuple(map(np.asarray, sweep_seeds(make_run(config, name), keys)))
        seconds[name] = time.perf_counter() - start
    return results, seconds


def main(argv: list[str] | None = None) -> None:
    config, options = parse_cli(CurriculumPPOConfig, sys.argv[1:] if argv is None else argv,
                                prog="python -m experiments.curriculum_ppo")
    check_num_seeds("python -m experiments.curriculum_ppo", config.num_seeds)
    run_dir = open_run("curriculum_ppo", config, options)
    results, seconds = run(config)
    summary = {}
    for name, (_, final, rejected) in results.items():
        per_seed = final.mean(axis=-1)
        mean, low, high = confidence_band(per_seed[:, None])
        summary[name] = {"mean": float(mean[0]), "ci95_low": float(low[0]), "ci95_high": float(high[0]),
                         "per_seed": [float(x) for x in per_seed],
                         "cells_above_0.9": float(np.mean(final > 0.9)), "seconds": seconds[name],
                         "rejected_reports": int(rejected.sum())}
    difference = None
    if set(TEACHER_NAMES) <= set(summary):
        diff, low, high = welch_difference(*(summary[name]["per_seed"] for name in TEACHER_NAMES))
        difference = {"mean": diff, "ci95_low": low, "ci95_high": high}
    steps_per_round = config.updates_per_round * config.ppo.batch_size
    write_json(run_dir.path / "summary.json", {
        "task_space": {"pole_half_length_m": list(config.length_range), "force_N": list(config.force_range),
                       "teacher_coordinates": "log10", "fixed_length": config.fixed_length},
        "env_steps_per_seed": config.num_rounds * steps_per_round, "num_seeds": config.num_seeds,
        "grid_cells": config.grid_size**2, "final_grid_competence": summary,
        "alp_gmm_minus_random": difference,
    })
    x = np.arange(0, config.num_rounds + 1, config.eval_every) * steps_per_round
    plot_curves({name: (x, curve) for name, (curve, _, _) in results.items()}, run_dir.plot_path("competence"),
                xlabel="student env steps per seed", ylabel="competence over the task grid",
                title=f"PPO on CartPole tasks, {config.num_seeds} seeds, 95% bands")
    grids = {name: final.mean(axis=0).reshape(config.grid_size, config.grid_size) for name, (_, final, _) in
             results.items()}
    (length_lo, force_lo), (length_hi, force_hi) = config.low, config.high
    plot_heatmaps({f"{name}: mean {grid.mean():.2f}": grid for name, grid in grids.items()}, run_dir.plot_path("grid"),
                  extent=(force_lo, force_hi, length_lo, length_hi), xlabel="push force (N, log scale)",
                  ylabel="pole half-length (m, log scale)", colorbar_label="competence (return / max steps)",
                  decade_ticks=True)
    print(f"{'teacher':<8}  grid competence (95% CI)   cells > 0.9   seconds")
    for name, row in summary.items():
        band = f"{row['mean']:.3f} ({row['ci95_low']:.3f}, {row['ci95_high']:.3f})"
        print(f"{name:<8}  {band:<25} {100 * row['cells_above_0.9']:>9.1f}%   {row['seconds']:>7.1f}")
        if row["rejected_reports"]:
            print(f"{'':<8}  warning: the teacher skipped {row['rejected_reports']} non-finite competences")
    if difference is not None:
        print(f"alp-gmm - random: {difference['mean']:+.3f} "
              f"(95% Welch CI {difference['ci95_low']:+.3f}, {difference['ci95_high']:+.3f})")
    print(f"run directory: {run_dir.path}")


if __name__ == "__main__":
    main()
