"""Semi-supervised offline RL with action-free trajectories: ``python -m experiments.semi_supervised``.

Zheng et al. (2023): a fraction of a dataset's episodes keep their actions, the rest only
states and rewards. For each generated dataset quality of ``--qualities`` (files
``<env>-<quality>.hdf5`` from ``python -m experiments.collect_offline``), each labelling
setting (``low_return``: the labelled episodes come from the lowest-return half, the paper's
hardest setting; ``random``: from all episodes) and each labelled fraction of
``--fractions``, this trains one inverse-dynamics model per seed on the labelled episodes
(:mod:`jaxrl_icl.offline.inverse_dynamics`; 10% of them held out to measure its action
error), labels the action-free episodes with it, and trains each offline algorithm of
``--algos`` on

* ``labelled``: the labelled episodes only,
* ``proxy``: the labelled episodes plus the IDM-labelled ones (each seed its own IDM's labels:
  the seeds' datasets differ, and are vmapped as such),
* ``true``: the whole dataset with its true actions (the ceiling; one run per algorithm).

Every run is a full :mod:`experiments.offline` run directory under ``cells/``; ``--resume
DIR`` finishes a stopped experiment. Observations are normalised by the whole dataset's
statistics in every variant (action-free episodes have states too). Writes one
``scores_<quality>_<setting>.png`` per quality and setting (grouped bars over fractions),
``table.md``, and ``summary.json`` with ``scores[quality][setting][fraction][variant][algo] =
{"mean", "std", "per_seed"}``, ``idm_error[quality][setting][fraction] = {"held_out",
"unlabelled"}`` (mean squared action error over seeds) and ``proxy_matches_true`` (per
quality, setting and algorithm at the 10% fraction: the proxy variant's mean within
:data:`MATCH_TOLERANCE` normalised points of the true-label one, what the paper reports).

Measured at the CPU default (generated Pendulum ``medium``, 5 seeds, 10k gradient steps of
(64, 64) networks, final normalised score mean +- std; 2-core CPU shared with two other jobs,
31 minutes). True labels: TD3+BC 48.3 +- 2.8, IQL 49.9 +- 16.3. Labelled from the
lowest-return half, labelled only / labelled + proxy: 1% TD3+BC 37.4 / 49.6, IQL 9.4 / 48.4;
10% TD3+BC 40.7 / 47.1, IQL 13.9 / 52.3. Labelled at random: 1% TD3+BC 54.8 / 52.3, IQL
42.3 / 51.3; 10% TD3+BC 52.8 / 49.1, IQL 66.1 / 55.1. The IDM's held-out mean squared action
error is 0.006-0.017 (actions in [-1, 1]). So, as the paper reports, at 10% the proxy labels
bring both algorithms to the true-label score (within 5 points, or above it: IQL at random
55.1 against 49.9, inside IQL's seed spread of +-13 to +-16), and on the low-return labels
they recover what labelled-only training loses (IQL 13.9 -> 52.3). On this small dataset a
random 1-10% of the episodes already suffices for TD3+BC without proxy labels.
``--qualities medium-expert`` (same machine and flags; true labels TD3+BC 86.0 +- 4.6, IQL
55.6 +- 19.1): low-return labels, labelled only / proxy, 1% TD3+BC 43.3 / 86.4, IQL 42.2 /
51.4; 10% TD3+BC 47.2 / 84.7, IQL 57.6 / 57.9; random labels 1% TD3+BC 82.9 / 87.7, IQL
72.5 / 55.7; 10% TD3+BC 85.9 / 84.9, IQL 55.5 / 56.7: at 10% the proxy variant is within 5
points of the true-label score in all four cases, and on low-return labels it lifts TD3+BC
from 47 to 85.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from experiments import offline
from experiments.offline_table import find_datasets_dir
from jaxrl_icl.config import ConfigError, field, require_choices, require_positive, require_types
from jaxrl_icl.offline import (
    DatasetError,
    concat_datasets,
    episode_returns,
    load_d4rl,
    normalize_observations,
    observation_stats,
    split_episodes,
)
from jaxrl_icl.offline import inverse_dynamics as idm
from jaxrl_icl.offline import iql as iql_algo
from jaxrl_icl.offline import td3_bc as td3_bc_algo
from jaxrl_icl.run.config import check_num_seeds, cli_error, parse_cli
from jaxrl_icl.run.plots import plot_grouped_bars
from jaxrl_icl.run.rundir import RunDir, open_run, write_atomic, write_json
from jaxrl_icl.run.sweep import init_distributed, seed_keys

PROG = "python -m experiments.semi_supervised"
SETTINGS = ("low_return", "random")
VARIANTS = ("labelled", "proxy", "true")
MATCH_TOLERANCE = 5.0  # normalised points


@dataclasses.dataclass(frozen=True)
class SemiSupervisedConfig:
    """Labelled fractions x labelling settings x offline algorithms on generated datasets.

    Attributes:
      env: the generated datasets' name prefix (``collect_offline``'s file stem).
      qualities: dataset qualities (files ``<env>-<quality>.hdf5``).
      datasets_dir: folder of the datasets ("" = the newest collect_offline run that has them all; a new
        run's config.json names the folder found).
      settings: ``low_return`` and/or ``random`` labelled episodes.
      fractions: labelled fractions of the episodes, in (0, 1]; at 1 only ``true`` is run.
      algos: offline algorithms (``td3_bc``, ``iql``).
      num_seeds: seeds (vmapped): each trains its own IDM and its own offline runs.
      num_updates: offline gradient steps per run.
      eval_every: gradient steps between evaluations.
      eval_episodes: episodes per evaluation.
      final_evals: a run's final score is the mean of its last this-many evaluations.
      hidden: hidden widths of the offline algorithms' networks.
      idm: the inverse-dynamics model and its training.
      idm_held_out: fraction of the labelled episodes held out to measure the IDM's error.
      seed: base seed (of the offline runs, the IDMs and the labelled split).
    """

    env: str = "pendulum-v1"
    qualities: tuple[str, ...] = ("medium",)
    datasets_dir: str = ""
    settings: tuple[str, ...] = SETTINGS
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    algos: tuple[str, ...] = ("td3_bc", "iql")
    num_seeds: int = 5
    num_updates: int = 10_000
    eval_every: int = 1_000
    eval_episodes: int = 10
    final_evals: int = 3
    hidden: tuple[int, ...] = (64, 64)
    idm: idm.IDMConfig = field(idm.IDMConfig(num_updates=5_000, batch_size=256, lr=1e-3, hidden=(256, 256)),
                               help="CPU default: a smaller, faster IDM than the paper's 2 x 1024 at lr 1e-4")
    idm_held_out: float = 0.1
    seed: int = 0
    td3_bc: td3_bc_algo.TD3BCConfig = td3_bc_algo.TD3BCConfig()
    iql: iql_algo.IQLConfig = iql_algo.IQLConfig()

    def __post_init__(self) -> None:
        require_types(self)
        require_choices(self, "settings", SETTINGS)
        require_choices(self, "algos", ("td3_bc", "iql"))
        if not self.qualities:
            raise ConfigError("qualities", "must name at least one dataset quality")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ConfigError("fractions", f"must be fractions in (0, 1]; got {list(self.fractions)}")
        for name in ("num_seeds", "num_updates", "eval_every", "eval_episodes", "final_evals"):
            require_positive(self, name)
        if not 0 < self.idm_held_out < 1:
            raise ConfigError("idm_held_out", f"must be in (0, 1); got {self.idm_held_out}")

    def run_config(self, algo: str, name: str) -> offline.OfflineConfig:
        """The :class:`experiments.offline.OfflineConfig` of one run (``name`` labels its dataset)."""
        return offline.OfflineConfig(
            algo=algo, dataset=name, num_seeds=self.num_seeds, num_updates=self.num_updates,
            eval_every=self.eval_every, eval_episodes=self.eval_episodes, final_evals=self.final_evals,
            seed=self.seed, td3_bc=dataclasses.replace(self.td3_bc, hidden=self.hidden),
            iql=dataclasses.replace(self.iql, hidden=self.hidden))


def fraction_name(fraction: float) -> str:
    """``0.1 -> "10%"`` (the key of a fraction in the summary and the run folders)."""
    return f"{100 * fraction:g}%"


def train_idms(config: SemiSupervisedConfig, labelled, unlabelled, action_dim: int) -> tuple[jax.Array, dict]:
    """One IDM per seed on ``labelled`` (less its held-out episodes): ``(proxy actions
    [num_seeds, N_unlabelled, act] for ``unlabelled``, errors {"held_out", "unlabelled"})``."""
    obs_dim = labelled.observations.shape[1]
    if len(episode_returns(labelled)) >= 2:
        fit, held_out = split_episodes(labelled, config.idm_held_out, seed=config.seed)
    else:  # a single labelled episode: nothing to hold out; its error is measured on the data it fits
        fit = held_out = labelled
    trainer = idm.make_train(config.idm, obs_dim, action_dim)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x1D))(seed_keys(config.seed, config.num_seeds))
    states, _ = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, fit)
    label = jax.jit(jax.vmap(lambda p, d: idm.label_actions(config.idm, p, d, action_dim), in_axes=(0, None)))
    held_out_error = jax.vmap(idm.action_error, in_axes=(0, None))(label(states.params, held_out), held_out.actions)
    proxy = label(states.params, unlabelled)
    unlabelled_error = jax.vmap(idm.action_error, in_axes=(0, None))(proxy, unlabelled.actions)
    return proxy, {"held_out": float(held_out_error.mean()), "unlabelled": float(unlabelled_error.mean())}


def per_seed_union(prepared: offline.Prepared, num_labelled: int, proxy: jax.Array) -> offline.Prepared:
    """``prepared`` (the union labelled + unlabelled with true actions) with each seed's own
    proxy actions on the unlabelled rows: data with a leading ``[num_seeds]`` axis."""
    data = prepared.data
    num_seeds = proxy.shape[0]
    labelled = data.actions[:num_labelled]
    actions = jnp.concatenate([jnp.broadcast_to(labelled, (num_seeds,) + labelled.shape), proxy], axis=1)
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_seeds,) + x.shape), data).replace(actions=actions)
    return dataclasses.replace(prepared, data=batched, chunking={**prepared.chunking, "params_per_seed": True})


def main(argv: list[str] | None = None) -> dict:
    config, options = parse_cli(SemiSupervisedConfig, sys.argv[1:] if argv is None else argv, prog=PROG)
    init_distributed()
    check_num_seeds(PROG, config.num_seeds)
    try:
        folder = find_datasets_dir(config.env, config.qualities, config.datasets_dir)
        loaded = {q: load_d4rl(folder / f"{config.env}-{q}.hdf5") for q in config.qualities}
    except (ValueError, DatasetError) as err:
        cli_error(PROG, f"argument --datasets-dir: {err}")
    for quality, (dataset, _) in loaded.items():
        if dataset.discrete_actions:
            cli_error(PROG, f"argument --qualities: {config.env}-{quality} has discrete actions; TD3+BC and IQL "
                      "need continuous ones")

    if options.resume is None:  # config.json names the folder found, for --resume after newer collect_offline runs
        config = dataclasses.replace(config, datasets_dir=str(folder))
    run = open_run("semi_supervised", config, options, resumable=True)
    print(f"run directory: {run.path}", file=sys.stderr)
    scores: dict = {}
    idm_error: dict = {}
    for quality, (dataset, metadata) in loaded.items():
        normalizer = observation_stats(dataset)
        action_dim = dataset.actions.shape[1]
        true_runs = {}
        for algo in config.algos:
            cfg = config.run_config(algo, f"{config.env}-{quality}")
            prepared = offline.prepare_dataset(cfg, dataset, metadata, PROG, normalizer)
            print(f"{quality}, true labels, {algo}", file=sys.stderr)
            true_runs[algo] = offline.score_entry(offline.train_in_dir(
                cfg, prepared, run.path / "cells" / quality / "true" / algo, options.progress))
        for setting in config.settings:
            for fraction in config.fractions:
                key = fraction_name(fraction)
                cell = scores.setdefault(quality, {}).setdefault(setting, {}).setdefault(key, {})
                cell["true"] = true_runs
                labelled, unlabelled = idm.labelled_split(dataset, fraction, setting, seed=config.seed)
                if unlabelled is None:  # every episode labelled: the true-label runs are the answer
                    continue
                labelled_n, unlabelled_n = (normalize_observations(d, normalizer) for d in (labelled, unlabelled))
                folder_cell = run.path / "cells" / quality / setting / key
                proxy, errors = train_idms(config, labelled_n, unlabelled_n, action_dim)  # redone on resume (same)
                folder_cell.mkdir(parents=True, exist_ok=True)
                write_json(folder_cell / "idm_error.json", errors)
                idm_error.setdefault(quality, {}).setdefault(setting, {})[key] = errors
                union = concat_datasets(labelled, unlabelled)
                for algo in config.algos:
                    name = f"{config.env}-{quality} ({setting}, {key} labelled)"
                    cfg = config.run_config(algo, name)
                    print(f"{quality}, {setting}, {key}: labelled only, {algo}", file=sys.stderr)
                    only = offline.prepare_dataset(cfg, labelled, metadata, PROG, normalizer)
                    cell.setdefault("labelled", {})[algo] = offline.score_entry(
                        offline.train_in_dir(cfg, only, folder_cell / "labelled" / algo, options.progress))
                    print(f"{quality}, {setting}, {key}: labelled + proxy, {algo}", file=sys.stderr)
                    both = per_seed_union(offline.prepare_dataset(cfg, union, metadata, PROG, normalizer),
                                          labelled.rewards.shape[0], proxy)
                    cell.setdefault("proxy", {})[algo] = offline.score_entry(
                        offline.train_in_dir(cfg, both, folder_cell / "proxy" / algo, options.progress))

    matches = {q: {s: {a: abs(scores[q][s]["10%"]["proxy"][a]["mean"] - scores[q][s]["10%"]["true"][a]["mean"])
                       <= MATCH_TOLERANCE for a in config.algos}
                   for s in config.settings if "proxy" in scores[q][s].get("10%", {})} for q in scores}
    write_outputs(config, run, scores, idm_error)
    summary = {"env": config.env, "num_seeds": config.num_seeds, "gradient_steps": config.num_updates,
               "scores": scores, "idm_error": idm_error, "proxy_matches_true": matches,
               "match_tolerance": MATCH_TOLERANCE}
    write_json(run.path / "summary.json", summary)
    print(f"proxy labels match true labels at 10% (within {MATCH_TOLERANCE:g} points): {matches}")
    return summary


def write_outputs(config: SemiSupervisedConfig, run: RunDir, scores: dict, idm_error: dict) -> None:
    """``table.md`` and one grouped-bar PNG per quality and setting."""
    lines = ["| quality | setting | labelled | IDM error (held out / unlabelled) | "
             + " | ".join(f"{v} {a}" for v in VARIANTS for a in config.algos) + " |",
             "|---|---|---:|---:|" + "---:|" * (len(VARIANTS) * len(config.algos))]
    for quality, by_setting in scores.items():
        for setting, by_fraction in by_setting.items():
            for key, cell in by_fraction.items():
                err = idm_error.get(quality, {}).get(setting, {}).get(key)
                err_text = "n/a" if err is None else f"{err['held_out']:.4f} / {err['unlabelled']:.4f}"
                values = [f"{cell[v][a]['mean']:.1f} ± {cell[v][a]['std']:.1f}" if v in cell else "—"
                          for v in VARIANTS for a in config.algos]
                lines.append(f"| {quality} | {setting} | {key} | {err_text} | " + " | ".join(values) + " |")
            plot_grouped_bars(
                {key: {f"{v} {a}": (cell[v][a]["mean"], cell[v][a]["std"]) for v in VARIANTS if v in cell
                       for a in config.algos} for key, cell in by_fraction.items()},
                run.plot_path(f"scores_{quality}_{setting}"), ylabel="final normalised score",
                title=f"{config.env}-{quality}, labelled from {setting.replace('_', '-')} episodes "
                      f"({config.num_seeds} seeds)")
    table = "\n".join(lines) + "\n"
    write_atomic(run.path / "table.md", table.encode())
    print(table, end="")


if __name__ == "__main__":
    main(sys.argv[1:])
