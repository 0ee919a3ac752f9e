"""Every offline algorithm on every generated dataset: ``python -m experiments.offline_table``.

Runs :mod:`experiments.offline` for each algorithm of ``--algos`` (``bc``, ``td3_bc``,
``iql``, ``cql``, ``rebrac``; the Decision Transformers ``dt`` and ``mo_dt`` on request, sized
by ``--dt.*`` / ``--mo-dt.*`` rather than ``--hidden``) on each quality of ``--qualities``
(``random``, ``medium``, ``medium-replay``, ``medium-expert``, ``expert``) of one generated env (``--env``, the
dataset name prefix, ``pendulum-v1`` for the CPU default of
``python -m experiments.collect_offline``), all seeds of a cell vmapped in one program. Each
cell is a full offline run directory under ``cells/<algo>__<quality>/`` (metrics, checkpoints,
curve, summary); ``--resume DIR`` finishes the cells a stopped table left and reuses the done
ones. Writes ``table.md`` (mean +- std over seeds of the final normalised score, with the
dataset's own score as a row), ``scores.png`` (grouped bars, the dataset's score as marks),
and ``summary.json`` with ``scores[algo][quality] = {"mean", "std", "per_seed"}``,
``dataset_scores[quality]`` and ``checks``: the published pattern of the D4RL tables
(on ``medium`` TD3+BC, IQL and ReBRAC beat BC; on ``expert`` BC reaches 90; on ``random`` BC
stays low while a value-based method improves on the data) as measured here, and, when both
Decision Transformers ran, ``mo_dt_beats_dt[quality]``.

The CPU default trains (64, 64) networks for 10k gradient steps per cell, 5 seeds (25 cells,
about half an hour on 2 cores); ``--scale paper`` uses the papers' (256, 256) networks and
1M steps (for an accelerator).

Measured at the CPU default on the generated Pendulum datasets (5 seeds, final normalised
score, mean +- std; random / medium / medium-replay / expert / medium-expert). On a 2-core
CPU: BC 4.0 / 30.6 / 8.9 / 98.4 / 57.1, TD3+BC 5.9 / 48.1 / 14.7 / 72.9 / 87.0, IQL
8.4 / 51.3 / 94.9 / 98.3 / 56.9, ReBRAC 101.7 / 101.9 / 101.6 / -22.6 / 101.7 (TD3+BC
before its actor loss ran only the first critic and reused the critic's batch). On one
NVIDIA H200 (jax 0.11.2), the same datasets and flags: CQL 50.0 +- 16.1 / 67.3 +- 12.1 /
95.0 +- 2.4 / 97.8 +- 3.7 / 81.9 +- 8.1; DT 49.4 +- 3.9 (medium), 16.3 +- 9.7
(medium-replay); MO-DT 46.3 +- 4.7 and 21.1 +- 3.4 (still rising at 10k steps). The
datasets score 0.4 / 28.5 / 5.7 / 97.6 / 63.0. Every check holds.

ReBRAC's collapse on ``expert`` comes from its default actor BC weight (1e-3, the locomotion
default of ``rebrac_config``; the paper tunes it per dataset), not from a bug. Its actor then ignores the
data (per-dimension BC error 0.2-1.3 on actions in [-1, 1]), which pays on the broad medium
data and fails on the narrow expert data. Measured on a 2-core CPU, 5 seeds each, medium /
expert, with ``--algos rebrac --qualities medium expert --rebrac.actor-bc-weight W`` (datasets
scoring 30.7 / 97.0):

- W = 1e-3 (default): 99.9 +- 1.6 / -12.8 +- 17.8;
- W = 1e-2: 99.2 +- 1.7 / -0.6 +- 13.7;
- W = 0.1: 86.7 +- 3.2 / 66.3 +- 27.7 (the expert curve peaks near 80 at 5k steps, then falls);
- W = 1: 43.9 +- 1.9 / 98.2 +- 1.8.

No one weight serves both datasets.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Literal

from experiments import offline
from jaxrl_icl.config import ConfigError, field, require_choices, require_positive, require_types
from jaxrl_icl.offline import bc as bc_algo
from jaxrl_icl.offline import cql as cql_algo
from jaxrl_icl.offline import decision_transformer as dt_algo
from jaxrl_icl.offline import iql as iql_algo
from jaxrl_icl.offline import td3_bc as td3_bc_algo
from jaxrl_icl.offline.generate import QUALITIES
from jaxrl_icl.run.config import cli_error, parse_cli
from jaxrl_icl.run.plots import plot_grouped_bars
from jaxrl_icl.run.rundir import RunDir, open_run, write_atomic, write_json
from jaxrl_icl.run.sweep import init_distributed

PROG = "python -m experiments.offline_table"
VALUE_BASED = ("td3_bc", "iql", "cql", "rebrac")
RANDOM_BC_LOW = 20.0  # normalised score under which BC on random data counts as "low"
EXPERT_BC_BAR = 90.0


@dataclasses.dataclass(frozen=True)
class OfflineTableConfig:
    """Algorithms x dataset qualities of one generated env, the same budget for every cell.

    Attributes:
      algos: algorithms, in table order.
      qualities: dataset qualities, in table order (files ``<env>-<quality>.hdf5``).
      env: the generated datasets' name prefix (``collect_offline``'s file stem).
      datasets_dir: folder of the generated datasets ("" = the newest collect_offline run that has them all;
        a new run's config.json names the folder found).
      scale: ``cpu`` as set below, or ``paper``: (256, 256) networks and 1M gradient steps.
      num_seeds: seeds per cell (vmapped).
      num_updates: gradient steps per cell.
      eval_every: gradient steps between evaluations.
      eval_episodes: episodes per evaluation.
      final_evals: a cell's final score is the mean of its last this-many evaluations.
      hidden: hidden widths of every network of every algorithm.
      seed: base seed (every cell uses the same seeds).
    """

    algos: tuple[str, ...] = offline.ALGOS
    qualities: tuple[str, ...] = QUALITIES
    env: str = "pendulum-v1"
    datasets_dir: str = ""
    scale: Literal["cpu", "paper"] = field("cpu", help="cpu, or paper: (256, 256) nets and 1M gradient steps")
    num_seeds: int = 5
    num_updates: int = 10_000
    eval_every: int = 1_000
    eval_episodes: int = 10
    final_evals: int = 3
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0
    bc: bc_algo.BCConfig = bc_algo.BCConfig()
    td3_bc: td3_bc_algo.TD3BCConfig = td3_bc_algo.TD3BCConfig()
    iql: iql_algo.IQLConfig = iql_algo.IQLConfig()
    cql: cql_algo.CQLConfig = cql_algo.CQLConfig()
    rebrac: td3_bc_algo.TD3BCConfig = td3_bc_algo.rebrac_config()
    dt: dt_algo.DTConfig = dt_algo.DTConfig()
    mo_dt: dt_algo.DTConfig = dt_algo.mo_dt_config()

    def __post_init__(self) -> None:
        require_types(self)
        require_choices(self, "algos", offline.ALGOS + offline.SEQUENCE_ALGOS)
        require_choices(self, "qualities", QUALITIES)
        for name in ("num_seeds", "num_updates", "eval_every", "eval_episodes", "final_evals"):
            require_positive(self, name)
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError("hidden", f"must be positive widths; got {self.hidden}")

    def effective(self) -> OfflineTableConfig:
        """The config the table runs: ``scale=paper`` sets the papers' sizes."""
        if self.scale == "paper":
            return dataclasses.replace(self, scale="cpu", num_updates=1_000_000, eval_every=10_000,
                                       hidden=(256, 256))
        return self

    def cell(self, algo: str, quality: str, datasets_dir: str) -> offline.OfflineConfig:
        """The :class:`experiments.offline.OfflineConfig` of one table cell."""
        algo_configs = {a: dataclasses.replace(getattr(self, a), hidden=self.hidden) for a in offline.ALGOS}
        algo_configs.update({a: getattr(self, a) for a in offline.SEQUENCE_ALGOS})
        return offline.OfflineConfig(
            algo=algo, dataset=f"{self.env}-{quality}", datasets_dir=datasets_dir, num_seeds=self.num_seeds,
            num_updates=self.num_updates, eval_every=self.eval_every, eval_episodes=self.eval_episodes,
            final_evals=self.final_evals, seed=self.seed, **algo_configs)


def find_datasets_dir(env: str, qualities: tuple[str, ...], datasets_dir: str = "",
                      runs_root: Path = Path("runs")) -> Path:
    """The folder holding every ``<env>-<quality>.hdf5``: ``datasets_dir`` (or its ``datasets/``,
    :func:`experiments.offline.dataset_folder`), or else the newest
    collect_offline run that has them all; ValueError naming the missing files (and how to
    make them) otherwise."""
    names = [f"{env}-{q}.hdf5" for q in qualities]
    if datasets_dir:
        folder = offline.dataset_folder(datasets_dir)
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise ValueError(f"{folder} lacks {', '.join(missing)}")
        return folder
    folder = offline.newest_generated_folder(names, runs_root)
    if folder is not None:
        return folder
    raise ValueError(f"no {runs_root}/collect_offline/*/datasets holds all of {', '.join(names)}; make them with "
                     "python -m experiments.collect_offline (or pass --datasets-dir)")


def cell_dir(run: RunDir, algo: str, quality: str) -> Path:
    return run.path / "cells" / f"{algo}__{quality}"


def checks(scores: dict[str, dict[str, dict]], dataset_scores: dict[str, float | None]) -> dict[str, Any]:
    """The D4RL tables' pattern, on the cells that were run (a check whose cells are missing is
    absent): ``medium_beats_bc[algo]`` for TD3+BC, IQL and ReBRAC; ``expert_bc_at_least_90``;
    ``random_bc_low`` (BC under :data:`RANDOM_BC_LOW`) and ``random_value_improves`` (the
    value-based methods whose mean beats the random dataset's own score); ``mo_dt_beats_dt[quality]`` where
    both Decision Transformers ran."""
    mean = lambda algo, quality: scores.get(algo, {}).get(quality, {}).get("mean")  # noqa: E731
    out: dict[str, Any] = {}
    if mean("bc", "medium") is not None:
        out["medium_beats_bc"] = {a: bool(mean(a, "medium") > mean("bc", "medium"))
                                  for a in ("td3_bc", "iql", "rebrac") if mean(a, "medium") is not None}
    if mean("bc", "expert") is not None:
        out["expert_bc_at_least_90"] = bool(mean("bc", "expert") >= EXPERT_BC_BAR)
    if mean("bc", "random") is not None:
        out["random_bc_low"] = bool(mean("bc", "random") < RANDOM_BC_LOW)
    if dataset_scores.get("random") is not None:
        improving = [a for a in VALUE_BASED if mean(a, "random") is not None
                     and mean(a, "random") > dataset_scores["random"]]
        out["random_value_improves"] = improving
    both = [q for q in scores.get("dt", {}) if q in scores.get("mo_dt", {})]
    if both:
        out["mo_dt_beats_dt"] = {q: bool(mean("mo_dt", q) > mean("dt", q)) for q in both}
    return out


def markdown_table(config: OfflineTableConfig, scores: dict, dataset_scores: dict) -> str:
    """Rows = algorithms (and the dataset), columns = qualities; mean +- std of the final score."""
    header = "| algorithm | " + " | ".join(config.qualities) + " |"
    rule = "|---|" + "---:|" * len(config.qualities)
    rows = [f"| {algo} | " + " | ".join(
        f"{scores[algo][q]['mean']:.1f} ± {scores[algo][q]['std']:.1f}" for q in config.qualities) + " |"
        for algo in config.algos]
    data_row = "| dataset | " + " | ".join(
        "n/a" if dataset_scores[q] is None else f"{dataset_scores[q]:.1f}" for q in config.qualities) + " |"
    return "\n".join([header, rule, *rows, data_row]) + "\n"


def main(argv: list[str] | None = None) -> dict:
    requested, options = parse_cli(OfflineTableConfig, sys.argv[1:] if argv is None else argv, prog=PROG)
    init_distributed()
    config = requested.effective()
    try:
        folder = str(find_datasets_dir(config.env, config.qualities, config.datasets_dir))
    except ValueError as err:
        cli_error(PROG, f"argument --datasets-dir: {err}")
    cells = {(a, q): config.cell(a, q, folder) for a in config.algos for q in config.qualities}
    prepared = {key: offline.prepare(cell, prog=PROG) for key, cell in cells.items()}  # every input checked first

    if options.resume is None:  # config.json names the folder found, for --resume after newer collect_offline runs
        requested = dataclasses.replace(requested, datasets_dir=folder)
    run = open_run("offline_table", requested, options, resumable=True)
    print(f"run directory: {run.path}", file=sys.stderr)
    scores: dict[str, dict[str, dict]] = {a: {} for a in config.algos}
    dataset_scores: dict[str, float | None] = {}
    for i, ((algo, quality), cell) in enumerate(cells.items()):
        print(f"[{i + 1}/{len(cells)}] {algo} on {cell.dataset}", file=sys.stderr)
        summary = offline.train_in_dir(cell, prepared[algo, quality], cell_dir(run, algo, quality),
                                       options.progress)
        scores[algo][quality] = offline.score_entry(summary)
        dataset_scores[quality] = summary["dataset_score"]

    table = markdown_table(config, scores, dataset_scores)
    write_atomic(run.path / "table.md", table.encode())
    plot_grouped_bars({q: {a: (scores[a][q]["mean"], scores[a][q]["std"]) for a in config.algos}
                       for q in config.qualities}, run.plot_path("scores"), ylabel="final normalised score",
                      title=f"Offline RL on {config.env} ({config.num_seeds} seeds, {config.num_updates:,} steps)",
                      marks=("dataset", {q: s for q, s in dataset_scores.items() if s is not None}))
    summary = {"env": config.env, "datasets_dir": folder, "num_seeds": config.num_seeds,
               "gradient_steps": config.num_updates, "hidden": list(config.hidden), "scores": scores,
               "dataset_scores": dataset_scores, "checks": checks(scores, dataset_scores)}
    write_json(run.path / "summary.json", summary)
    print(table, end="")
    print(f"checks: {summary['checks']}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
