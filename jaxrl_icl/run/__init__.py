"""Run infrastructure: the CLI, seed sweeps over devices and hosts, run directories,
metrics, checkpoints, the chunked training loop and plots.

Library packages never import this one; config dataclasses and their validators are in
:mod:`jaxrl_icl.config`, and the ``Trainer`` shape in :mod:`jaxrl_icl.trainer`.
"""

from jaxrl_icl.run.checkpoint import CheckpointError, Checkpoints, restore_latest
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.loop import scalar_metrics, train_in_chunks
from jaxrl_icl.run.metrics import MetricsLog, MetricsWriter, read_metrics
from jaxrl_icl.run.plots import plot_bars, plot_curves, plot_run
from jaxrl_icl.run.rundir import RunDir, RunOptions, read_json, versions, write_atomic, write_json
from jaxrl_icl.run.sweep import gather_seeds, init_distributed, seed_keys, seed_mesh, shard_seed_axis, sweep_seeds

__all__ = [
    "CheckpointError", "Checkpoints", "MetricsLog", "MetricsWriter", "RunDir", "RunOptions",
    "gather_seeds", "init_distributed", "parse_cli", "plot_bars", "plot_curves",
    "plot_run", "read_json", "read_metrics", "restore_latest", "scalar_metrics", "seed_keys",
    "seed_mesh", "shard_seed_axis", "sweep_seeds", "train_in_chunks", "versions", "write_atomic",
    "write_json",
]
