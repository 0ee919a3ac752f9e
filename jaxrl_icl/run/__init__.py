"""Run infrastructure: configs and CLI, seed sweeps over devices and hosts, run
directories, metrics, checkpoints, the chunked training loop and plots."""

from jaxrl_icl.run.checkpoint import CheckpointError, Checkpoints, restore_latest
from jaxrl_icl.run.config import (
    ConfigError,
    RunOptions,
    config_from_dict,
    config_to_dict,
    field,
    parse_cli,
    require_divides,
    require_in,
    require_nonnegative,
    require_positive,
    require_types,
)
from jaxrl_icl.run.loop import scalar_metrics, train_in_chunks
from jaxrl_icl.run.metrics import MetricsLog, MetricsWriter, read_metrics
from jaxrl_icl.run.plots import confidence_band, plot_bars, plot_curves, plot_run
from jaxrl_icl.run.rundir import RunDir, read_json, versions, write_atomic, write_json
from jaxrl_icl.run.sweep import gather_seeds, init_distributed, seed_keys, seed_mesh, shard_seed_axis, sweep_seeds
from jaxrl_icl.run.trainer import Trainer

__all__ = [
    "CheckpointError", "Checkpoints", "ConfigError", "MetricsLog", "MetricsWriter", "RunDir",
    "RunOptions", "Trainer", "config_from_dict", "config_to_dict", "confidence_band", "field",
    "gather_seeds", "init_distributed", "parse_cli", "plot_bars", "plot_curves", "plot_run",
    "read_json", "read_metrics", "require_divides", "require_in", "require_nonnegative",
    "require_positive", "require_types", "restore_latest", "scalar_metrics", "seed_keys",
    "seed_mesh", "shard_seed_axis", "sweep_seeds", "train_in_chunks", "versions", "write_atomic",
    "write_json",
]
