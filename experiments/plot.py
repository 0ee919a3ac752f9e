"""Overlay learning curves of one or more runs: mean over seeds with a 95% t-band per run.

    python -m experiments.plot RUN_DIR [RUN_DIR ...] [--metric NAME] [--out PNG] [--label ...]

The x-axis is env steps per seed. ``--metric`` defaults to the first metric (alphabetical)
that every run logged. ``--out`` defaults to ``RUN_DIR/<metric>.png`` for one run and
``compare_<metric>.png`` in the current directory for several. Prints the PNG path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import RunDir


def main(argv: list[str] | None = None) -> Path:
    """Parse ``argv``, draw the plot, return its path; errors name the offending run dir."""
    parser = argparse.ArgumentParser(prog="python -m experiments.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories to overlay")
    parser.add_argument("--metric", help="metric to plot (default: the first one common to all runs)")
    parser.add_argument("--out", type=Path, help="output PNG path")
    parser.add_argument("--label", nargs="+", help="one legend label per run (default: experiment (dir))")
    args = parser.parse_args(argv)
    if args.label is not None and len(args.label) != len(args.runs):
        raise ValueError(f"--label: got {len(args.label)} labels for {len(args.runs)} runs")

    runs, logs = [], []
    for path in args.runs:
        if not (path / "metrics.jsonl").is_file():
            raise FileNotFoundError(f"{path}: no metrics.jsonl (not a run directory, or no metrics logged yet)")
        run, _ = RunDir.open(path)
        runs.append(run)
        logs.append(read_metrics(run.metrics_path))

    metric = args.metric
    if metric is None:
        common = [name for name in logs[0].values if all(name in log.values for log in logs)]
        if not common:
            available = "; ".join(f"{run.path}: {', '.join(log.values) or 'none'}" for run, log in zip(runs, logs))
            raise ValueError(f"no metric common to all runs ({available})")
        metric = common[0]
    for run, log in zip(runs, logs):
        if metric not in log.values:
            raise ValueError(f"{run.path}: no metric {metric!r}; available: {', '.join(log.values) or 'none'}")

    labels = args.label or [f"{run.experiment} ({run.path.name})" for run in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--label: labels must be distinct, got {labels}")
    out = args.out or (runs[0].plot_path(metric) if len(runs) == 1 else Path(f"compare_{metric}.png"))
    curves = {label: (log.steps, log.values[metric]) for label, log in zip(labels, logs)}
    title = runs[0].experiment if len({run.experiment for run in runs}) == 1 else None
    return plot_curves(curves, out, xlabel="env steps (per seed)", ylabel=metric, title=title)


if __name__ == "__main__":
    try:
        print(main())
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"experiments.plot: error: {err}")
