"""Curriculum teachers on the toy task space of Portelas et al. (2019).

``python -m experiments.curriculum_toy [--num-episodes 20000] [--num-seeds 8] [--run-dir DIR]``

Each teacher proposes tasks in ``[0, 1]^nb_dims`` to the toy competence grid
(:mod:`envs.curriculum_toy`) for ``num_episodes`` episodes; the % of mastered cubes is
recorded every ``score_every`` episodes. Per teacher, all seeds run in one vmapped call and
the whole run is one ``lax.scan``. It shows how the teachers order on this toy next to the
authors' own run of their reference code (teachDeepRL, 2-D x 10 cubes, 8 seeds), whose order
is Covar-GMM > RIAC > ALP-GMM > Random (:data:`REFERENCE_RUN`).

Writes ``config.json``, ``versions.json``, ``summary.json`` (per teacher: final % mastered with
its 95% interval, std, min and max over seeds, the mean at 10,000 episodes, wall-clock seconds
and the reports skipped as non-finite, which is 0 here; the measured ordering and the reference
run's) and ``mastered.png`` (% mastered vs episodes with 95% bands, the reference run's values
as marks: the mean with its min-max range at 20,000 episodes, the mean at 10,000), and prints
a table next to the reference run and the run directory.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import numpy as np

from envs import curriculum_toy as toy
from jaxrl_icl.config import require_choices, require_divides, require_positive, require_types
from jaxrl_icl.curriculum import (
    ALPGMMConfig,
    CovarGMMConfig,
    OracleConfig,
    RandomConfig,
    RIACConfig,
    teacher_for,
)
from jaxrl_icl.run.config import check_num_seeds, parse_cli
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.run.sweep import seed_keys, sweep_seeds
from jaxrl_icl.stats import confidence_band

# The authors' reference code (teachDeepRL) run on this toy (2-D x 10 cubes, 8 seeds): % of cubes
# mastered, episodes -> (mean, min, max) over seeds (only the mean at 10,000). No oracle there.
REFERENCE_RUN = {
    "random": {10_000: (1.0, None, None), 20_000: (4.5, 4.0, 6.0)},
    "riac": {10_000: (22.4, None, None), 20_000: (47.8, 45.0, 51.0)},
    "alp-gmm": {10_000: (14.1, None, None), 20_000: (35.1, 33.0, 39.0)},
    "covar-gmm": {10_000: (30.2, None, None), 20_000: (67.0, 60.0, 73.0)},
}
TEACHER_NAMES = ("random", "riac", "alp-gmm", "covar-gmm", "oracle")


@dataclasses.dataclass(frozen=True)
class CurriculumToyConfig:
    """Teachers on the toy competence grid.

    Attributes:
      teachers: which teachers to run, in plotting order (random, riac, alp-gmm, covar-gmm,
        oracle: knows the grid and trains unlocked, unmastered cubes).
      num_episodes: episodes per run.
      score_every: episodes between two scores (must divide num_episodes).
      num_seeds: independent runs per teacher, vmapped together.
      seed: PRNG seed.
      nb_dims: dimensions of the task space.
      nb_cubes: cubes per dimension.
      fit_rate: GMM teachers: tasks between fits (and bootstrap length).
      max_k: GMM teachers: largest number of Gaussians tried.
      nb_em_init: GMM teachers: EM restarts per number of Gaussians.
      random_task_ratio: probability of a uniform task for RIAC and the GMM teachers.
    """

    teachers: tuple[str, ...] = TEACHER_NAMES
    num_episodes: int = 20_000
    score_every: int = 1_000
    num_seeds: int = 8
    seed: int = 0
    nb_dims: int = 2
    nb_cubes: int = 10
    fit_rate: int = 250
    max_k: int = 10
    nb_em_init: int = 1
    random_task_ratio: float = 0.2

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_episodes", "num_seeds", "nb_dims", "nb_cubes"):
            require_positive(self, name)
        require_divides(self, "score_every", "num_episodes")
        require_choices(self, "teachers", TEACHER_NAMES)
        self.teacher_config("alp-gmm")  # teacher-level fields are validated here too

    def teacher_config(self, name: str) -> Any:
        """The teacher config of ``name`` for this experiment's task box."""
        box = {"low": (0.0,) * self.nb_dims, "high": (1.0,) * self.nb_dims}
        if name == "random":
            return RandomConfig(**box)
        if name == "oracle":
            return OracleConfig(nb_dims=self.nb_dims, nb_cubes=self.nb_cubes)
        if name == "riac":
            return RIACConfig(**box, random_task_ratio=self.random_task_ratio)
        if name == "covar-gmm":
            return CovarGMMConfig(**box, fit_rate=self.fit_rate, max_k=self.max_k,
                                  random_task_ratio=self.random_task_ratio, nb_em_init=self.nb_em_init)
        return ALPGMMConfig(**box, fit_rate=self.fit_rate, max_k=self.max_k,
                            random_task_ratio=self.random_task_ratio, nb_em_init=self.nb_em_init,
                            history_capacity=self.num_episodes)


def make_run(config: CurriculumToyConfig, name: str):
    """``run(key) -> (float32[num_episodes / score_every + 1], int32[])``: % mastered at 0, every,
    2 every, ..., and the reports the teacher skipped as non-finite."""
    teacher_config = config.teacher_config(name)
    teacher = teacher_for(teacher_config)

    def episode(carry: tuple, key: jax.Array) -> tuple[tuple, None]:
        teacher_state, grid = carry
        task, teacher_state = teacher.sample(key, teacher_state)
        grid, reward = toy.episode(grid, task)
        return (teacher.update(teacher_state, task, reward), grid), None

    def block(carry: tuple, key: jax.Array) -> tuple[tuple, jax.Array]:
        carry, _ = jax.lax.scan(episode, carry, jax.random.split(key, config.score_every))
        return carry, toy.score(carry[1])

    def run(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        init_key, run_key = jax.random.split(key)
        # init inside the vmapped function: the task count stays unbatched, so the GMM refit
        # under lax.cond is a real branch rather than a select evaluated every episode.
        grid = toy.init(config.nb_dims, config.nb_cubes)
        carry = (teacher.init(init_key, teacher_config), grid)
        num_blocks = config.num_episodes // config.score_every
        (teacher_state, _), scores = jax.lax.scan(block, carry, jax.random.split(run_key, num_blocks))
        return jax.numpy.concatenate([toy.score(grid)[None], scores]), teacher_state.num_rejected

    return run


def run(config: CurriculumToyConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """``(scores, rejected, seconds)``: teacher name -> % mastered float32[num_seeds, num_episodes /
    score_every + 1], teacher name -> reports skipped as non-finite int32[num_seeds], and
    teacher name -> wall-clock seconds of its run (compilation included)."""
    keys = seed_keys(config.seed, config.num_seeds)
    scores, rejected, seconds = {}, {}, {}
    for name in config.teachers:
        start = time.perf_counter()
        scores[name], rejected[name] = map(np.asarray, sweep_seeds(make_run(config, name), keys))
        seconds[name] = time.perf_counter() - start
    return scores, rejected, seconds


def reference_run(config: CurriculumToyConfig) -> dict[str, dict[int, tuple]]:
    """The reference run's values for this config's teachers at episodes it scores ({} unless the
    toy is the reference's, 2-D x 10 cubes)."""
    if (config.nb_dims, config.nb_cubes) != (2, 10):
        return {}
    scored = set(range(0, config.num_episodes + 1, config.score_every))
    return {name: {e: v for e, v in REFERENCE_RUN[name].items() if e in scored}
            for name in config.teachers if name in REFERENCE_RUN}


def summarize(scores: dict[str, np.ndarray], score_every: int) -> dict[str, dict[str, float]]:
    """Teacher -> mean, 95% interval, std, min and max over seeds of the final % mastered, and the
    mean at 10,000 episodes where it was scored."""
    out = {}
    for name, s in scores.items():
        mean, low, high = confidence_band(s[:, -1:])
        out[name] = {"mean": float(mean[0]), "ci95_low": float(low[0]), "ci95_high": float(high[0]),
                     "std": float(s[:, -1].std(ddof=1)) if len(s) > 1 else 0.0,
                     "min": float(s[:, -1].min()), "max": float(s[:, -1].max())}
        if 10_000 % score_every == 0 and 10_000 // score_every < s.shape[1]:
            out[name]["mean_at_10000"] = float(s[:, 10_000 // score_every].mean())
    return out


def ordering(means: dict[str, float]) -> str:
    """``"a > b > c"``: teachers by decreasing mean."""
    return " > ".join(sorted(means, key=means.get, reverse=True))


def main(argv: list[str] | None = None) -> None:
    config, options = parse_cli(CurriculumToyConfig, sys.argv[1:] if argv is None else argv,
                                prog="python -m experiments.curriculum_toy")
    check_num_seeds("python -m experiments.curriculum_toy", config.num_seeds)
    run_dir = open_run("curriculum_toy", config, options)
    scores, rejected, seconds = run(config)
    summary = summarize(scores, config.score_every)
    for name, row in summary.items():
        row["seconds"] = seconds[name]
        row["rejected_reports"] = int(rejected[name].sum())
    reference = reference_run(config)
    measured_order = ordering({name: row["mean"] for name, row in summary.items()})
    final = config.num_episodes
    reference_order = ordering({name: v[final][0] for name, v in reference.items() if final in v})
    write_json(run_dir.path / "summary.json", {
        "num_episodes": config.num_episodes, "num_seeds": config.num_seeds,
        "final_percent_mastered": summary,
        "measured_ordering": measured_order,
        "reference_run": {name: {str(e): dict(zip(("mean", "min", "max"), v)) for e, v in values.items()}
                          for name, values in reference.items()},
        "reference_ordering": reference_order,
    })
    x = np.arange(0, config.num_episodes + 1, config.score_every)
    plot_curves({name: (x, s) for name, s in scores.items()}, run_dir.plot_path("mastered"),
                xlabel="episodes", ylabel="% mastered cubes",
                title=f"toy task space {config.nb_cubes}^{config.nb_dims}, {config.num_seeds} seeds, 95% bands",
                marks={name: [(e, *v) for e, v in values.items()] for name, values in reference.items()},
                marks_label="reference code's run (mean, min-max)", legend_below=True)
    width = max(len(name) for name in summary)
    print(f"{'teacher':<{width}}  % mastered @ {final} (95% CI)   min-max      seconds   reference run")
    for name, row in summary.items():
        band = f"{row['mean']:>6.1f}  ({row['ci95_low']:.1f}, {row['ci95_high']:.1f})"
        ref = reference.get(name, {}).get(final)
        ref_text = f"{ref[0]:.1f} ({ref[1]:.0f}-{ref[2]:.0f})" if ref else "-"
        print(f"{name:<{width}}  {band:<28} {row['min']:>4.0f}-{row['max']:<4.0f}  {row['seconds']:>7.1f}   {ref_text}")
        if row["rejected_reports"]:
            print(f"{'':<{width}}  warning: the teacher skipped {row['rejected_reports']} non-finite reports")
    print(f"measured ordering: {measured_order}")
    if reference_order:
        print(f"reference run's ordering: {reference_order}")
    print(f"run directory: {run_dir.path}")


if __name__ == "__main__":
    main()
