"""Collect learning histories for Algorithm Distillation: train a source RL algorithm on every task.

``python -m experiments.collect_histories --env darkroom-9x9 --algo {q_learning,ppo} [--run-dir DIR]``

Every goal cell of the Dark Room grid is one task; the source algorithm trains on all of them
at once (:func:`jaxrl_icl.rl.collect.collect_histories`, one ``jax.vmap`` over tasks) and
records every env step. The run directory gets ``config.json``, ``versions.json``,
``histories.h5`` (see :mod:`jaxrl_icl.rl.histories`; one history per task and parallel env,
compact dtypes), ``summary.json`` (sizes, first/last episode returns, the optimum) and
``returns.png``: the mean return per episode across tasks, the curve AD must distil, with the
optimal mean return as a dashed line.

Source algorithms and their nested settings: ``q_learning`` (``--q-learning.*``, one update
per episode) and ``ppo`` (``--ppo.*``; the network sees Dark Room's ``int32[2]`` position as
a float32 Box vector). For PPO an "episode" is one episode of one parallel env (Dark Room
episodes all last ``horizon`` steps), its return recomputed from the recorded rewards.
"""

from __future__ import annotations

import sys

import numpy as np

from jaxrl_icl.rl.collect import CollectConfig, collect_histories
from jaxrl_icl.rl.histories import nbytes, save_histories
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import RunDir, write_json


def main(argv: list[str] | None = None) -> None:
    config, options = parse_cli(CollectConfig, sys.argv[1:] if argv is None else argv,
                                prog="python -m experiments.collect_histories")
    if options.resume is not None:
        sys.exit("--resume: collection runs in one call and has nothing to resume; run it again")
    run_dir = RunDir.create("collect_histories", config, path=options.run_dir)
    histories, meta, returns, optimum = collect_histories(config)
    path = save_histories(run_dir.path / "histories.h5", histories, meta)
    k = config.summary_episodes
    summary = {
        "num_tasks": int(returns.shape[0]), "num_histories": int(histories["reward"].shape[0]),
        "steps_per_history": int(histories["reward"].shape[1]), "episodes": int(returns.shape[1]),
        "bytes_in_memory": nbytes(histories), "bytes_on_disk": path.stat().st_size,
        f"mean_return_first_{k}_episodes": float(returns[:, :k].mean()),
        f"mean_return_last_{k}_episodes": float(returns[:, -k:].mean()),
        "optimal_mean_return": optimum,
        "dtypes": {name: str(x.dtype) for name, x in histories.items()},
    }
    write_json(run_dir.path / "summary.json", summary)
    episodes = np.arange(1, returns.shape[1] + 1)
    plot_curves(
        {f"{config.algo} ({returns.shape[0]} tasks)": (episodes, returns)}, run_dir.plot_path("returns"),
        xlabel="episode", ylabel="return", title=f"Learning histories: {config.env}, {config.algo}",
        hlines={f"optimal ({optimum:.2f})": optimum},
    )
    print(f"histories: {summary['num_histories']} x {summary['steps_per_history']} steps "
          f"({summary['episodes']} episodes each)")
    print(f"size: {summary['bytes_in_memory'] / 2**20:.2f} MiB in memory, "
          f"{summary['bytes_on_disk'] / 2**20:.2f} MiB on disk ({path.name})")
    print(f"mean return, first {k} episodes: {summary[f'mean_return_first_{k}_episodes']:.2f}; "
          f"last {k}: {summary[f'mean_return_last_{k}_episodes']:.2f}; optimal: {optimum:.2f}")
    print(f"run directory: {run_dir.path}")


if __name__ == "__main__":
    main()
