"""Offline RL on one dataset: ``python -m experiments.offline --algo td3_bc --dataset pendulum-v1-medium``.

Trains ``--algo`` (``bc``, ``td3_bc``, ``iql``, ``cql``, ``rebrac``, and the Decision
Transformers ``dt`` and ``mo_dt``, commanded the dataset's expert reference return when
evaluated, in JAX envs only) on every seed at once
(one program: seeds vmapped, or one after another on a CPU where that is faster; the dataset
is an argument shared by all seeds), in checkpointed chunks
with a progress bar, evaluating the policy in the dataset's JAX env every ``--eval-every``
gradient steps inside the same jitted program (policies trained on a real D4RL or Minari
MuJoCo file are evaluated in the matching gymnasium env on the host between jitted chunks
instead: :mod:`jaxrl_icl.offline.host_evaluate`, extra ``offline``). Writes ``runs/offline/<timestamp>/``:
``config.json``, ``versions.json``, ``metrics.jsonl`` (losses, ``eval_return`` and
``normalized_score`` per evaluation and seed), orbax checkpoints (``--resume DIR``),
``normalized_score.png`` (mean over seeds, 95% band) and ``summary.json`` (final normalised
score per seed, mean and std). :func:`load_trained` gives a run's policies back, acting on the
env's own observations.

``--dataset`` is a D4RL-layout HDF5 path, ``minari:<dataset id>`` (a local Minari dataset),
or the name of a generated dataset (``pendulum-v1-medium``): looked up in ``--datasets-dir``,
else in the newest ``runs/collect_offline/*/datasets/`` (make them with
``python -m experiments.collect_offline``). The env to evaluate in is ``--env``, else the
dataset's ``env_name`` metadata (a grid world on the goal its ``goal_x`` / ``goal_y`` name),
else (for a D4RL MuJoCo file named like ``hopper-medium-v2.hdf5`` or a Minari id like
``mujoco/hopper/medium-v0``) the gymnasium MuJoCo env of that name; the score uses the
dataset's own reference returns, or D4RL's for the MuJoCo tasks.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp

import envs
from jaxrl_icl.batching import sequential_on_cpu
from jaxrl_icl.config import ConfigError, field, require_nonnegative, require_positive, require_types
from jaxrl_icl.offline import (
    Dataset,
    DatasetError,
    ObsNormalizer,
    load_d4rl,
    load_minari,
    normalize_observations,
    normalized_score,
    observation_stats,
    scale_rewards_by_return_range,
)
from jaxrl_icl.offline import bc as bc_algo
from jaxrl_icl.offline import cql as cql_algo
from jaxrl_icl.offline import decision_transformer as dt_algo
from jaxrl_icl.offline import iql as iql_algo
from jaxrl_icl.offline import td3_bc as td3_bc_algo
from jaxrl_icl.offline.evaluate import env_policy, make_evaluator, repeat_updates, with_evaluation
from jaxrl_icl.offline.host_evaluate import HostEvaluator, gymnasium_env_id
from jaxrl_icl.offline.scores import reference_returns
from jaxrl_icl.run.checkpoint import restore_latest
from jaxrl_icl.run.config import check_num_seeds, cli_error, parse_cli
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import RunDir, open_run, read_json, write_json
from jaxrl_icl.run.sweep import gather_seeds, init_distributed, seed_keys

PROG = "python -m experiments.offline"
ALGOS = ("bc", "td3_bc", "iql", "cql", "rebrac")
SEQUENCE_ALGOS = ("dt", "mo_dt")  # Decision Transformers: rollouts in JAX envs only


@dataclasses.dataclass(frozen=True)
class OfflineConfig:
    """One offline algorithm on one dataset, many seeds.

    Attributes:
      algo: the algorithm; its settings are the nested config of the same name.
      dataset: an HDF5 path, minari:<id>, or a generated dataset's name.
      datasets_dir: folder of generated datasets, or a collect_offline run directory ("" means
        the newest collect_offline run holding the dataset; a new run's config.json names the
        folder found, :func:`pin_datasets_dir`).
      env: env to evaluate in ("" means the dataset's env_name metadata).
      num_seeds: seeds trained at once (vmapped).
      num_updates: gradient steps per seed (TD3+BC and ReBRAC: critic steps).
      eval_every: gradient steps between evaluations.
      eval_episodes: episodes per evaluation.
      max_episode_steps: steps per evaluation episode (0: the env's own time limit).
      normalize_reward: train on rewards times 1000 / (max - min) of the dataset's episode
        returns (:func:`~jaxrl_icl.offline.dataset.scale_rewards_by_return_range`): IQL's
        setting for D4RL locomotion, as in CORL. Scores are of the env's own rewards. On the
        generated Pendulum datasets (IQL, 64-64 nets, 10k updates, 5 seeds, 2-core CPU) it
        lifts random from 1.6 to 14.7 (factor 0.85; every seed gains 10 to 15; the noisy
        curves' mean from 5k steps on 4.8 to 15.8) and leaves medium (62.6 / 62.7) and expert
        (97.6 / 97.0) as they were.
      final_evals: the final score is the mean over this many last evaluations.
      seed: base seed.
      chunk_evals: evaluations per jitted chunk (progress, logging, checkpoints).
    """

    algo: Literal["bc", "td3_bc", "iql", "cql", "rebrac", "dt", "mo_dt"] = "td3_bc"
    dataset: str = "pendulum-v1-medium"
    datasets_dir: str = ""
    env: str = ""
    num_seeds: int = 5
    num_updates: int = field(30_000, help="gradient steps per seed (TD3+BC / ReBRAC: critic steps)")
    eval_every: int = 1_000
    eval_episodes: int = 10
    max_episode_steps: int = field(0, help="steps per evaluation episode (0: the env's own time limit)")
    normalize_reward: bool = field(False, help="train on rewards times 1000 / (max - min episode return), IQL's "
                                   "D4RL locomotion setting (not with dt / mo_dt)")
    final_evals: int = 3
    seed: int = 0
    chunk_evals: int = 5
    bc: bc_algo.BCConfig = bc_algo.BCConfig()
    td3_bc: td3_bc_algo.TD3BCConfig = td3_bc_algo.TD3BCConfig()
    iql: iql_algo.IQLConfig = iql_algo.IQLConfig()
    cql: cql_algo.CQLConfig = cql_algo.CQLConfig()
    rebrac: td3_bc_algo.TD3BCConfig = td3_bc_algo.rebrac_config()
    dt: dt_algo.DTConfig = dt_algo.DTConfig()
    mo_dt: dt_algo.DTConfig = dt_algo.mo_dt_config()

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "num_updates", "eval_every", "eval_episodes", "final_evals", "chunk_evals"):
            require_positive(self, name)
        for name in ("seed", "max_episode_steps"):
            require_nonnegative(self, name)
        if self.num_updates % self.eval_every:
            raise ConfigError("num_updates", f"must be a multiple of eval_every={self.eval_every}")
        if self.eval_every % self.steps_per_update:
            raise ConfigError("eval_every", f"must be a multiple of {self.algo}'s policy_freq={self.steps_per_update}")
        if self.normalize_reward and self.algo in SEQUENCE_ALGOS:
            raise ConfigError("normalize_reward", f"{self.algo} is commanded returns of the env's own rewards; "
                              "scale its returns with --" + self.algo.replace("_", "-") + ".return-scale")

    @property
    def steps_per_update(self) -> int:
        """Gradient (critic) steps in one trainer update: TD3+BC's and ReBRAC's policy_freq, else 1."""
        return getattr(self, self.algo).policy_freq if self.algo in ("td3_bc", "rebrac") else 1


def dataset_folder(datasets_dir: str) -> Path:
    """The folder ``--datasets-dir`` names: itself, or its ``datasets/`` when it is the run
    directory of a collect_offline run (which keeps its files there)."""
    folder = Path(datasets_dir)
    return folder / "datasets" if (folder / "datasets").is_dir() else folder


def resolve_dataset(spec: str, datasets_dir: str, runs_root: Path = Path("runs")) -> tuple[Any, dict]:
    """``(dataset, metadata)`` for ``--dataset``; raises SystemExit-worthy ValueErrors naming it."""
    if spec.startswith("minari:"):
        return load_minari(spec.removeprefix("minari:"))
    path = Path(spec)
    if path.suffix in (".hdf5", ".h5") or path.exists():
        if not path.exists():
            raise ValueError(f"{path}: no such file")
        return load_d4rl(path)
    found = generated_dataset(spec, datasets_dir, runs_root)
    if found is None:
        where = dataset_folder(datasets_dir) if datasets_dir else f"{runs_root}/collect_offline/*/datasets"
        raise ValueError(f"{spec!r} is not a file, a minari: id or a dataset in {where}; "
                         "make it with python -m experiments.collect_offline")
    return load_d4rl(found)


def newest_generated_folder(names: list[str], runs_root: Path = Path("runs")) -> Path | None:
    """The newest ``runs_root/collect_offline/*/datasets/`` holding every file of ``names``; None
    if none does."""
    folders = sorted(runs_root.glob("collect_offline/*/datasets"), key=lambda p: p.parent.name, reverse=True)
    return next((folder for folder in folders if all((folder / n).exists() for n in names)), None)


def generated_dataset(name: str, datasets_dir: str, runs_root: Path = Path("runs")) -> Path | None:
    """The file ``<name>.hdf5`` in ``datasets_dir`` (:func:`dataset_folder`), or with ``""`` in
    the newest collect_offline run holding it; None if there is none."""
    file = f"{name}.hdf5"
    folder = dataset_folder(datasets_dir) if datasets_dir else newest_generated_folder([file], runs_root)
    return folder / file if folder is not None and (folder / file).exists() else None


def pin_datasets_dir(config: OfflineConfig, runs_root: Path = Path("runs")) -> OfflineConfig:
    """``config`` with an empty ``datasets_dir`` replaced by the folder its generated dataset is
    found in now, so a new run's ``config.json`` names the data it trains on and ``--resume``
    and :func:`load_trained` read the same files after newer collect_offline runs. Unchanged
    when ``datasets_dir`` is set or nothing is found (a file path, a minari id, or a name
    loading then reports)."""
    found = None if config.datasets_dir else generated_dataset(config.dataset, "", runs_root)
    return config if found is None else dataclasses.replace(config, datasets_dir=str(found.parent))


def algorithm(config: OfflineConfig, obs_dim: int, action_dim: int, discrete: bool):
    """``(trainer, policy, policy_params_of_state)``; the algorithm's own ``num_updates`` (its
    trainer length and, for IQL, the horizon of the actor's cosine schedule) is set from
    ``config.num_updates``, whatever the nested config says. For ``dt`` and ``mo_dt`` the
    policy is the :class:`~jaxrl_icl.offline.decision_transformer.Layout` its rollouts need."""
    if discrete and config.algo not in ("bc", "cql", *SEQUENCE_ALGOS):
        raise ConfigError("algo", f"{config.algo} needs continuous actions; use bc, cql, dt or mo_dt on discrete data")
    algo_config = dataclasses.replace(getattr(config, config.algo),
                                      num_updates=config.num_updates // config.steps_per_update)
    if config.algo == "bc":
        return (bc_algo.make_train(algo_config, obs_dim, action_dim, discrete=discrete),
                bc_algo.policy(algo_config, action_dim, discrete=discrete), lambda s: s.params)
    if config.algo in SEQUENCE_ALGOS:
        return (dt_algo.make_train(algo_config, obs_dim, action_dim, discrete=discrete),
                dt_algo.layout(algo_config, obs_dim, action_dim, discrete=discrete), lambda s: s.params)
    if config.algo == "cql":
        if discrete:
            return (cql_algo.make_train_discrete(algo_config, obs_dim, action_dim),
                    cql_algo.discrete_policy(algo_config, action_dim), lambda s: s.params)
        return (cql_algo.make_train(algo_config, obs_dim, action_dim), cql_algo.policy(algo_config, action_dim),
                lambda s: s.actor)
    if config.algo == "iql":
        return (iql_algo.make_train(algo_config, obs_dim, action_dim), iql_algo.policy(algo_config, action_dim),
                lambda s: s.actor)
    return (td3_bc_algo.make_train(algo_config, obs_dim, action_dim), td3_bc_algo.policy(algo_config, action_dim),
            lambda s: s.actor)


def _time_limit(env_params: Any, env_name: str) -> int:
    """The env's episode limit ``max_steps_in_episode``; ValueError if its params have none."""
    limit = getattr(env_params, "max_steps_in_episode", None)
    if limit is None:
        raise ValueError(f"{env_name} has no max_steps_in_episode; pass --max-episode-steps")
    return int(limit)


@dataclasses.dataclass
class Prepared:
    """One offline run, validated and built before its run directory exists.

    Attributes:
      trainer: the algorithm with evaluation folded in (or repeated for host evaluation).
      data: the dataset with normalised observations (the trainer's data argument).
      chunking: ``train_in_chunks`` keyword arguments (chunk size, host evaluation hook).
      env_name: the env the policy is evaluated in.
      dataset_score: the dataset's own mean episode return, normalised (None if not stored).
      reward_scale: the factor the training rewards were multiplied by (1 unless
        ``normalize_reward``).
      policy_params: ``state -> the policy's parameters`` of the trainer's state.
      act: ``act(policy params, env observation) -> env action`` (:func:`env_policy`); None for a
        Decision Transformer, which acts on a context (``dt_algo.make_evaluator``).
    """

    trainer: Any
    data: Any
    chunking: dict
    env_name: str
    dataset_score: float | None
    reward_scale: float
    policy_params: Callable[[Any], Any]
    act: Callable[[Any, jax.Array], jax.Array] | None


def prepare(config: OfflineConfig, prog: str = PROG) -> Prepared:
    """Load and check the dataset, the env and the algorithm of ``config``; a bad input exits
    with status 2 and a message naming ``prog``'s flag, before any compute or run directory."""
    try:
        dataset, metadata = resolve_dataset(config.dataset, config.datasets_dir)
    except (ValueError, DatasetError, ImportError) as err:
        cli_error(prog, f"argument --dataset: {err}")
    return prepare_dataset(config, dataset, metadata, prog)


def prepare_dataset(config: OfflineConfig, dataset: Dataset, metadata: dict, prog: str = PROG,
                    normalizer: ObsNormalizer | None = None) -> Prepared:
    """:func:`prepare` for a dataset in memory (``config.dataset`` only names it): observations
    are normalised by ``normalizer``, by default the dataset's own statistics."""
    env_name = config.env or metadata.get("env_name", "") or next(
        (name for name in (metadata.get("dataset_id", ""), Path(config.dataset).stem) if gymnasium_env_id(name)), "")
    if not env_name:
        cli_error(prog, f"argument --env: {config.dataset} names no env in its metadata; pass --env")
    gym_id = gymnasium_env_id(env_name)  # a MuJoCo task with no JAX env: evaluated on the host
    try:
        if gym_id is None:
            task = {"goal": jnp.array([metadata["goal_x"], metadata["goal_y"]], jnp.int32)} \
                if "goal_x" in metadata and not config.env else {}  # a grid world dataset's own goal
            env, env_params = envs.make(env_name, **task)
            eval_steps = config.max_episode_steps or _time_limit(env_params, env_name)
        low, high = reference_returns(env_name, metadata)  # fails early without reference returns
    except (ValueError, KeyError) as err:
        cli_error(prog, f"argument --env: {err}")
    discrete = dataset.discrete_actions
    obs_dim = dataset.observations.shape[1]
    action_dim = int(metadata.get("num_actions", int(dataset.actions.max()) + 1)) if discrete \
        else dataset.actions.shape[1]
    try:
        trainer, policy, policy_params = algorithm(config, obs_dim, action_dim, discrete)
    except ConfigError as err:
        cli_error(prog, f"argument --algo: {err}")
    per_update = config.steps_per_update
    trainer = dataclasses.replace(trainer, num_updates=config.num_updates // per_update)
    check_num_seeds(PROG, config.num_seeds)

    reward_scale = 1.0
    if config.normalize_reward:
        try:
            dataset, reward_scale = scale_rewards_by_return_range(dataset)
        except DatasetError as err:
            cli_error(prog, f"argument --normalize-reward: {err}")
    normalizer = observation_stats(dataset) if normalizer is None else normalizer
    data = normalize_observations(dataset, normalizer)
    score = lambda r: 100.0 * (r - low) / (high - low)  # noqa: E731
    scale = float(metadata.get("action_scale", 1.0))
    if gym_id is None:  # evaluation inside the jitted chunks (a DT's: cached rollouts commanded the expert return)
        evaluate = (dt_algo.make_evaluator(policy, env, env_params, high, num_episodes=config.eval_episodes,
                                           max_episode_steps=eval_steps, normalizer=normalizer, action_scale=scale)
                    if config.algo in SEQUENCE_ALGOS else
                    make_evaluator(env, env_params, policy, num_episodes=config.eval_episodes,
                                   max_episode_steps=eval_steps, normalizer=normalizer, action_scale=scale))
        trainer = with_evaluation(trainer, evaluate, policy_params, config.eval_every // per_update, score=score)
        chunking = {"chunk_updates": config.chunk_evals}
    else:  # one evaluation on the host after each chunk of eval_every gradient steps
        if config.algo in SEQUENCE_ALGOS:
            cli_error(prog, f"argument --algo: {config.algo} rolls out in JAX envs only, not in {gym_id}")
        try:
            evaluator = HostEvaluator(gym_id, policy, num_episodes=config.eval_episodes,
                                      max_episode_steps=config.max_episode_steps or None, normalizer=normalizer,
                                      action_scale=scale)
        except ImportError as err:
            cli_error(prog, f"argument --env: {err}")
        if (evaluator.obs_dim, evaluator.action_dim) != (obs_dim, action_dim):
            cli_error(prog, f"argument --env: {gym_id} has observations {evaluator.obs_dim} and actions "
                      f"{evaluator.action_dim}, the dataset {obs_dim} and {action_dim}")
        trainer = repeat_updates(trainer, config.eval_every // per_update)

        def host_metrics(state: Any, update: int) -> dict:
            keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(state.key)  # as with_evaluation's
            returns = evaluator.evaluate_seeds(keys, jax.device_get(policy_params(state)))
            return {"eval_return": returns, "normalized_score": score(returns)}

        chunking = {"chunk_updates": 1, "checkpoint_every_chunks": config.chunk_evals, "host_metrics": host_metrics}

    dataset_score = (float(normalized_score(env_name, metadata["mean_episode_return"], metadata))
                     if "mean_episode_return" in metadata else None)
    act = None if config.algo in SEQUENCE_ALGOS else env_policy(policy, normalizer, scale)
    return Prepared(trainer, data, chunking, env_name, dataset_score, reward_scale, policy_params, act)


def train(config: OfflineConfig, prepared: Prepared, run: RunDir, *, resume: bool = False,
          progress: bool = True) -> dict:
    """Train every seed of ``config`` into ``run`` (from its newest checkpoint if ``resume``),
    plot the score curves and write ``summary.json``; returns the summary."""
    # on a CPU the seeds run one after another inside each chunk: vmapping them costs 4-20% there
    train_in_chunks(prepared.trainer, seed_keys(config.seed, config.num_seeds), prepared.data, run=run,
                    resume=resume, progress=progress, sequential_seeds=sequential_on_cpu(), **prepared.chunking)

    log = read_metrics(run.metrics_path)
    scores = log.values["normalized_score"]  # [num_seeds, evaluations]
    steps = log.updates * config.eval_every
    algo = config.algo + (" bf16" if getattr(getattr(config, config.algo, None), "bf16", False) else "")
    name = f"{algo} on {Path(config.dataset).stem} ({config.num_seeds} seeds)"
    plot_curves({name: (steps, scores)}, run.plot_path("normalized_score"), xlabel="gradient steps",
                ylabel="normalised score", title=f"Offline RL: {algo}, {Path(config.dataset).stem}",
                hlines=None if prepared.dataset_score is None else {"dataset": prepared.dataset_score})
    final = scores[:, -config.final_evals:].mean(axis=1)
    summary = {"algo": config.algo, "dataset": config.dataset, "env": prepared.env_name,
               "num_seeds": config.num_seeds,
               "gradient_steps": int(steps[-1]), "final_score_mean": float(final.mean()),
               "final_score_std": float(final.std()), "final_score_per_seed": final.tolist(),
               "dataset_score": prepared.dataset_score, "reward_scale": prepared.reward_scale}
    write_json(run.path / "summary.json", summary)
    print(f"{name}: final normalised score {summary['final_score_mean']:.1f} +- {summary['final_score_std']:.1f} "
          f"(dataset {'n/a' if prepared.dataset_score is None else f'{prepared.dataset_score:.1f}'})")
    return summary


def score_entry(summary: dict) -> dict:
    """A run summary's final scores as a table entry ``{"mean", "std", "per_seed"}``."""
    return {"mean": summary["final_score_mean"], "std": summary["final_score_std"],
            "per_seed": summary["final_score_per_seed"]}


def train_in_dir(config: OfflineConfig, prepared: Prepared, path: Path, progress: bool = True) -> dict:
    """:func:`train` into the run directory ``path`` as a part of a larger experiment: a
    finished run's summary is read back, a stopped one resumes from its checkpoint, a new
    one is created there."""
    if (path / "summary.json").exists():
        return read_json(path / "summary.json")
    if (path / "config.json").exists():
        run, _ = RunDir.open(path, OfflineConfig)
        return train(config, prepared, run, resume=run.checkpoints.exists(), progress=progress)
    return train(config, prepared, RunDir.create("offline", config, path=path), progress=progress)


@dataclasses.dataclass
class Trained:
    """A run of this experiment loaded back by :func:`load_trained`.

    Attributes:
      config: the run's config.
      gradient_steps: gradient steps per seed in the checkpoint.
      state: the trainer state of every seed (leading axis ``num_seeds``).
      params: the policy's parameters of every seed (leading axis ``num_seeds``).
      act: ``act(params of one seed, env observation) -> env action``: observations
        normalised by the dataset's statistics, actions in the env's units (None for
        ``dt`` / ``mo_dt``).
      prepared: the dataset, trainer and env as :func:`prepare` builds them.
    """

    config: OfflineConfig
    gradient_steps: int
    state: Any
    params: Any
    act: Callable[[Any, jax.Array], jax.Array] | None
    prepared: Prepared


def load_trained(run_dir: str | Path) -> Trained:
    """The newest checkpoint of a run of this experiment, with what acting on it needs: its
    ``config.json`` is read and its dataset loaded again (from where the run found it) for
    the shapes and observation statistics. Raises ValueError naming the file for a run
    directory without a config and
    :class:`~jaxrl_icl.run.checkpoint.CheckpointError` for one without checkpoints; a dataset
    no longer where the run found it exits as the command line does, naming ``--dataset``.

        trained = load_trained("runs/offline/<timestamp>")
        seed0 = jax.tree.map(lambda x: x[0], trained.params)
        action = trained.act(seed0, obs)  # obs and action in the env's own units
    """
    run, config = RunDir.open(run_dir, OfflineConfig)
    prepared = prepare(config)
    init = jax.jit(jax.vmap(prepared.trainer.init, in_axes=(0, None)))
    update, state = restore_latest(run.checkpoints, init(seed_keys(config.seed, config.num_seeds), prepared.data))
    state = gather_seeds(state)
    return Trained(config, update * config.eval_every, state, prepared.policy_params(state), prepared.act, prepared)


def main(argv: list[str] | None = None) -> dict:
    config, options = parse_cli(OfflineConfig, sys.argv[1:] if argv is None else argv, prog=PROG)
    init_distributed()
    if options.resume is None:  # a resumed run keeps the config.json it was started with
        config = pin_datasets_dir(config)
    prepared = prepare(config)
    run = open_run("offline", config, options, resumable=True)
    print(f"run directory: {run.path}", file=sys.stderr)
    return train(config, prepared, run, resume=options.resume is not None, progress=options.progress)


if __name__ == "__main__":
    main(sys.argv[1:])
